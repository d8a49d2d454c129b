"""Every error of the tree answers with one status, the same on every HTTP surface."""

from __future__ import annotations

import pytest

from gsomia.core import errors
from gsomia.shell.statuses import status_of

CASES = [
    (errors.NotFound("x"), 404),
    (errors.Replayed(("x",)), 409),
    (errors.ProofInvalid("x"), 403),
    (errors.PolicyDenied(["x"]), 403),
    (errors.AuditUnavailable("x"), 503),
    (errors.PeerUnavailable("x"), 503),
    (errors.MalformedInput("x", where="rel_to"), 422),
    (errors.MalformedInput("x", where="partner"), 502),
    # a partner that took no connection (a consent request it never got): a bad gateway
    (errors.PartnerUnreachable("x", where="partner"), 502),
    (errors.ActionRefused(409, "x", ("why",)), 409),
    (errors.RolledBack("x"), 422),
    # raised by the command line's federation start only; as any bad input if ever answered
    (errors.PortTaken("x", where="base_port"), 422),
    # raised by audit verify over a rewritten sealed batch; as any bad input if ever answered
    (errors.EntriesRewritten("x", where="details.entries"), 422),
    # a partner's rows at the node's bound: refused for good (the sender does not retry)
    (errors.LimitReached("incidents_per_partner", 3, "x"), 429),
]


@pytest.mark.parametrize(("exc", "status"), CASES, ids=lambda c: type(c).__name__)
def test_each_error_has_its_status(exc: errors.GsomiaError, status: int) -> None:
    assert status_of(exc) == status


def test_every_error_class_is_answered_without_a_500() -> None:
    classes = [getattr(errors, name) for name in errors.__all__]
    covered = {type(exc) for exc, _ in CASES}
    # a new error class must be placed in the table on purpose
    assert set(classes) - covered <= {errors.GsomiaError, errors.NoEquivalent,
                                      errors.Unavailable}
