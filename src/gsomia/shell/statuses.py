"""The one table from gsomia's error tree to HTTP statuses.

The node's API (:mod:`gsomia.shell.api`), the dashboard (:mod:`gsomia.shell.web`) and the
operator's desk (:mod:`gsomia.shell.desk`) answer the same error with the same status: the
dashboard had answered a service error with 500 and the desk with 422.
"""

from __future__ import annotations

from gsomia.core.errors import (
    ActionRefused,
    GsomiaError,
    LimitReached,
    MalformedInput,
    NotFound,
    PolicyDenied,
    ProofInvalid,
    Replayed,
    Unavailable,
)
from gsomia.core.outbox import AT_BOUND_S

__all__ = ["RETRY_AFTER_S", "status_of"]

# What a partner at one of its ``[limits]`` bounds is told to wait (Retry-After, seconds): a
# bound is a rate or room limit, "not now", never "never"; a gsomia sender waits as long.
RETRY_AFTER_S = AT_BOUND_S


def status_of(exc: GsomiaError) -> int:
    """The status a JSON body answering ``exc`` goes out with (never 500: nothing here is a
    crash). A query's malformed parameter is the caller's 400 to choose; a body's is 422."""
    if isinstance(exc, ActionRefused):
        return exc.status
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Replayed):
        return 409
    if isinstance(exc, LimitReached):
        return 429  # before PolicyDenied: a 403 is final to the sender, and this is not
    if isinstance(exc, PolicyDenied | ProofInvalid):
        return 403
    if isinstance(exc, Unavailable):
        return 503
    if isinstance(exc, MalformedInput) and exc.where == "partner":
        return 502   # what a partner answered was malformed, not what the caller sent
    return 422
