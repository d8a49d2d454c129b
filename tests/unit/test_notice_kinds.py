"""The courier claims only the notice kinds it knows (core.outbox.NOTICE_KINDS, courier22's
reading of rows the host's disk may have retyped) and posts each to its path of the peer
API (exchange.NOTICE_PATHS): a kind given a path but not listed would be queued and never
claimed, a kind listed without a path claimed and never posted."""

from __future__ import annotations

from gsomia.core.outbox import DELIVERY, NOTICE_KINDS
from gsomia.shell.exchange import NOTICE_PATHS


def test_every_notice_kind_the_courier_claims_has_a_path_and_no_other() -> None:
    assert set(NOTICE_PATHS) == NOTICE_KINDS
    assert DELIVERY not in NOTICE_KINDS
