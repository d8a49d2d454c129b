"""The one table from gsomia's error tree to HTTP statuses.

The node's API (:mod:`gsomia.shell.api`), the dashboard (:mod:`gsomia.shell.web`) and the
operator's desk (:mod:`gsomia.shell.desk`) answer the same error with the same status: the
dashboard had answered a service error with 500 and the desk with 422.
"""

from __future__ import annotations

from gsomia.core.errors import (
    ActionRefused,
    GsomiaError,
    MalformedInput,
    NotFound,
    PolicyDenied,
    ProofInvalid,
    Replayed,
    Unavailable,
)

__all__ = ["status_of"]


def status_of(exc: GsomiaError) -> int:
    """The status a JSON body answering ``exc`` goes out with (never 500: nothing here is a
    crash). A query's malformed parameter is the caller's 400 to choose; a body's is 422."""
    if isinstance(exc, ActionRefused):
        return exc.status
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Replayed):
        return 409
    if isinstance(exc, PolicyDenied | ProofInvalid):
        return 403
    if isinstance(exc, Unavailable):
        return 503
    if isinstance(exc, MalformedInput) and exc.where == "partner":
        return 502   # what a partner answered was malformed, not what the caller sent
    return 422
