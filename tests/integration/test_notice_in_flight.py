"""A classification notice issued while a delivery is in flight reaches that holder
(noticeflight29).

A notice is queued to the partners whose receipts the originator holds when it is issued. KOR
sealed its item to JPN at 군사II급비밀, JPN stored it and answered, and KOR changed the item's
level before that answer was settled: JPN's receipt was not yet held, so the notice went to
no one, and JPN kept the item at 極秘 for good. Now the receipt, once recorded, queues the
item's newest notice to JPN, once.

Real nodes (SQLite files), JPN's real peer API in process (the harness of
``test_outbox_rewritten``); the answer is held by issuing the notice after JPN answered and
before KOR's courier gets the answer back."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as hs
from test_outbox_rewritten import JPN_ONLY, Wire, drain, publish, sql, trio

from gsomia.core import crypto
from gsomia.core.outbox import CLASSIFICATION
from gsomia.service import handlers
from gsomia.shell import exchange
from gsomia.shell.node import Node

# The JPN-KOR agreement's equivalents of the levels KOR's item goes through.
AT_JPN = {"군사II급비밀": "極秘", "군사III급비밀": "秘"}
_n = iter(range(1000, 10**6))


def hold_answer(wire: Wire, then: Callable[[], None]) -> None:
    """``then`` runs once, after JPN answered KOR's first envelopes and before KOR's courier
    is handed that answer: whatever it does happens while the delivery is in flight."""
    post = wire.post
    pending = [then]

    def held(url: Any, *args: Any, **kwargs: Any) -> Any:
        answer = post(url, *args, **kwargs)
        if str(url).endswith("/peer/v1/envelopes/") and pending:
            pending.pop()()
        return answer

    wire.post = held  # type: ignore[method-assign]


def reclassify(kor: Node, item_id: str, levels: list[str]) -> None:
    at = datetime.now(UTC)
    for k, level in enumerate(levels):
        handlers.change_classification(kor.uow(), keys=kor.keys,
                                       schemes=kor.catalogue.schemes, item_id=item_id,
                                       new_level=level, now=at + timedelta(seconds=k))


def settle_notices(kor: Node, couriers: dict[str, exchange.Sender]) -> None:
    """Passes until no classification notice is pending at KOR."""
    def done() -> bool:
        for courier in couriers.values():
            courier.step()
        return not sql(kor, "SELECT count(*) FROM outbox WHERE kind = ? AND status = "
                            "'pending'", CLASSIFICATION)[0][0]

    assert exchange.wait_until(done, 30)


def notices_to(kor: Node, recipient: str) -> list[tuple[str, str]]:
    """The classification notices KOR queued to ``recipient``: (new level, status)."""
    return [(json.loads(body)["new_level"], status) for body, status in sql(
        kor, "SELECT body, status FROM outbox WHERE kind = ? AND recipient = ? ORDER BY row",
        CLASSIFICATION, recipient)]


def held_levels(node: Node, item_id: str) -> set[str]:
    with node.store.repository() as repo:
        return {repo.custody_of(item_id, v.version)[-1].national_label.level
                for v in repo.item_versions(item_id)}


def test_a_notice_issued_while_the_holders_answer_is_held_reaches_it_after_the_receipt(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]]
        ) -> None:
    with trio(node_factory) as (kor, partners, couriers, wires):
        jpn = partners["JPN"]
        item, _ = publish(kor, JPN_ONLY, 1, make_indicator)
        hold_answer(wires["JPN"], lambda: reclassify(kor, item, ["군사III급비밀"]))
        drain(kor, couriers)
        settle_notices(kor, couriers)
        # Before the fix: no notice queued to JPN, which kept the item at 極秘.
        assert held_levels(jpn, item) == {"秘"}
        assert notices_to(kor, "JPN") == [("군사III급비밀", exchange.DELIVERED)]
        # Once: later passes, and the receipt posted again, queue nothing more.
        with kor.store.repository() as repo:
            [receipt] = [r for r in repo.receipts_for(item) if r.peer == "JPN"]
        handlers.record_receipt(kor.uow(), keys=kor.keys, now=datetime.now(UTC),
                                receipt=crypto.Receipt.from_json(receipt.document))
        settle_notices(kor, couriers)
        assert notices_to(kor, "JPN") == [("군사III급비밀", exchange.DELIVERED)]
        with jpn.store.repository() as repo:
            assert len(repo.notices_for(item)) == 1
        with kor.store.reader() as reader:
            assert handlers.verify_audit(reader, public_key=kor.keys.public_signing_key()).ok


def test_a_level_changed_and_changed_back_in_flight_owes_the_holder_nothing(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]]
        ) -> None:
    """The version left at the level in force: no notice goes (the seal would let such a
    version go too), and JPN keeps it as bound."""
    with trio(node_factory) as (kor, partners, couriers, wires):
        item, _ = publish(kor, JPN_ONLY, 2, make_indicator)
        hold_answer(wires["JPN"],
                    lambda: reclassify(kor, item, ["군사III급비밀", "군사II급비밀"]))
        drain(kor, couriers)
        settle_notices(kor, couriers)
        assert held_levels(partners["JPN"], item) == {"極秘"}
        assert notices_to(kor, "JPN") == []


@settings(max_examples=5, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(bound=hs.sampled_from(sorted(AT_JPN)),
       before=hs.lists(hs.sampled_from(sorted(AT_JPN)), max_size=2),
       during=hs.lists(hs.sampled_from(sorted(AT_JPN)), max_size=3))
# One change in flight, lowered and raised: each failed before (JPN at the bound level).
@example(bound="군사II급비밀", before=[], during=["군사III급비밀"])
@example(bound="군사III급비밀", before=[], during=["군사II급비밀"])
@example(bound="군사II급비밀", before=["군사III급비밀", "군사II급비밀"],
         during=["군사III급비밀", "군사II급비밀"])
@example(bound="군사II급비밀", before=["군사III급비밀", "군사II급비밀"], during=["군사III급비밀"])
def test_the_holder_ends_at_the_newest_notices_level_whenever_it_was_issued(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]],
        bound: str, before: list[str], during: list[str]) -> None:
    """Security invariant: whatever level changes KOR makes before its delivery is sealed
    and while it is in flight, the holder ends at the equivalent of the newest (the bound
    level if none), and is queued each notice at most once."""
    with trio(node_factory) as (kor, partners, couriers, wires):
        [stored] = handlers.publish_many(
            kor.uow(), keys=kor.keys, catalogue=kor.catalogue, now=datetime.now(UTC),
            entries=[(make_indicator(next(_n)),
                      handlers.LabelRequest(bound, JPN_ONLY, "dprk-missile"))])
        item = stored.item_id
        reclassify(kor, item, before)
        # A version re-classified before the seal is refused there (hunt29) unless its level
        # is the bound one again: what goes, goes at the bound level.
        hold_answer(wires["JPN"], lambda: reclassify(kor, item, during))
        drain(kor, couriers)
        settle_notices(kor, couriers)
        newest = (before + during)[-1] if before + during else bound
        jpn = partners["JPN"]
        with jpn.store.repository() as repo:
            held = repo.get_item(item) is not None
        assert held == ((before[-1] if before else bound) == bound)
        if held:
            assert held_levels(jpn, item) == {AT_JPN[newest]}
        sent = notices_to(kor, "JPN")
        assert len(sent) <= 1 and all(status == exchange.DELIVERED for _, status in sent)
