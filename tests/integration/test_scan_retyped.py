"""The outbox's crash-recovery scan against a store retyped on the host's disk (scanseq29).

The scan queues what was stored after its watermark (items stored while the node had no
partners). It read every item whose seq was past the mark, so an item's seq rewritten to a
whole number past the audit log's size was read, queued, and the mark set to it: every item
stored after was skipped for good. A mark rewritten past the log's size skipped everything.
As for the warning centre (finalreview28b), a seq the log has not given is neither read nor
trusted. Real SQLite node stores; the scan is the one a courier runs at start-up."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from federating import federate
from gsomia.service import handlers
from gsomia.shell import exchange
from gsomia.shell.exchange._partners import PARTNERS_FILE
from gsomia.shell.node import Node

SECRET = "군사II급비밀"
PAST = 10**15  # a whole number no log of these tests reaches


def publish(kor: Node, objects: list[dict[str, Any]]) -> list[str]:
    return [p.item_id for p in handlers.publish_many(
        kor.uow(), keys=kor.keys, catalogue=kor.catalogue, now=datetime.now(UTC),
        entries=[(o, handlers.LabelRequest(SECRET, ("KOR", "JPN"), "dprk-missile"))
                 for o in objects])]


def without_partners(kor: Node) -> None:
    """KOR has no partners: what it stores is queued by no commit, only by the scan."""
    (Path(kor.folder) / PARTNERS_FILE).unlink()


def scan(kor: Node) -> int:
    partners = exchange.Partners.load(kor.folder)
    assert partners is not None
    return exchange.scan(kor, partners, datetime.now(UTC))


def sql(kor: Node, statement: str, *args: Any) -> list[tuple[Any, ...]]:
    with kor.store.engine.begin() as conn:
        result = conn.exec_driver_sql(statement, args)
        return [tuple(r) for r in result] if result.returns_rows else []


def queued(kor: Node) -> dict[str, int]:
    """Each item's number of deliveries to JPN."""
    return dict(sql(kor, "SELECT item_id, count(*) FROM outbox WHERE kind = 'delivery' "
                         "AND recipient = 'JPN' GROUP BY item_id"))


def mark_and_size(kor: Node) -> tuple[Any, int]:
    (found,) = sql(kor, "SELECT (SELECT scanned_seq FROM exchange_state WHERE id = 1), "
                        "(SELECT size FROM audit_state WHERE id = 1)")
    return found[0], int(found[1])


def test_an_item_seq_retyped_past_the_log_is_not_scanned_and_later_items_still_are(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]]
        ) -> None:
    """Before: the retyped item was queued and the mark set to its seq (10^15); the item
    stored after it, while the node had no partners again, was never queued."""
    kor, jpn = node_factory("KOR"), node_factory("JPN")
    retyped, first = publish(kor, [make_indicator(0), make_indicator(1)])
    sql(kor, "UPDATE items SET seq = ? WHERE id = ?", PAST, retyped)
    federate(kor, jpn)
    assert scan(kor) == 1
    assert queued(kor) == {first: 1}
    mark, size = mark_and_size(kor)
    assert type(mark) is int and mark < size
    without_partners(kor)
    (later,) = publish(kor, [make_indicator(2)])
    federate(kor, jpn)
    assert scan(kor) == 1
    assert queued(kor) == {first: 1, later: 1}


@pytest.mark.parametrize("mark", [PAST, 2**63 - 1])
def test_a_scan_mark_moved_past_the_log_is_not_trusted(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]],
        mark: int) -> None:
    """Before: an item stored while the node had no partners was never queued once the
    watermark was rewritten past the log's size (the scan found nothing after it)."""
    kor, jpn = node_factory("KOR"), node_factory("JPN")
    federate(kor, jpn)
    (sent,) = publish(kor, [make_indicator(0)])  # sets the mark
    without_partners(kor)
    (gap,) = publish(kor, [make_indicator(1)])
    sql(kor, "UPDATE exchange_state SET scanned_seq = ?", mark)
    federate(kor, jpn)
    assert scan(kor) == 1
    assert queued(kor) == {sent: 1, gap: 1}  # the rest looked at again, each queued once
    found, size = mark_and_size(kor)
    assert type(found) is int and found < size


def test_a_publish_moves_the_mark_past_an_item_seq_retyped_past_the_log(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]]
        ) -> None:
    """Before: the retyped item counted as one stored after the mark, so no later commit's
    items were all of them and the mark stood still: every start-up planned them again."""
    kor, jpn = node_factory("KOR"), node_factory("JPN")
    federate(kor, jpn)
    (retyped,) = publish(kor, [make_indicator(0)])
    sql(kor, "UPDATE items SET seq = ? WHERE id = ?", PAST, retyped)
    (later,) = publish(kor, [make_indicator(1)])
    (seq,) = sql(kor, "SELECT seq FROM items WHERE id = ?", later)
    assert mark_and_size(kor)[0] == seq[0]


# A whole number past the log's size, as an offset from it (the size is known only then):
# far enough that the log of these tests never grows to it (one just past the size is given
# by the next events: see SECURITY.md, what this does not cover).
PAST_THE_LOG = hs.one_of(hs.integers(2**20, 2**40), hs.just(2**63 - 1))


def test_no_seq_or_mark_retyped_past_the_log_loses_or_forges_a_delivery(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]]
        ) -> None:
    """Security invariant: whatever items' seqs and the scan's mark are rewritten to past
    the audit log's size, the scan queues none of those items, every other is queued to
    JPN exactly once, the mark stays a seq the log has given, and an item stored after the
    scan without partners is queued by the next. One pair of nodes for every example."""
    kor, jpn = node_factory("KOR"), node_factory("JPN")
    numbers = itertools.count()
    retyped: set[str] = set()
    federate(kor, jpn)

    def store(n: int, *, partners: bool) -> list[str]:
        if not partners:
            without_partners(kor)
        try:
            return publish(kor, [make_indicator(next(numbers)) for _ in range(n)])
        finally:
            federate(kor, jpn)

    @settings(max_examples=15, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(gap=hs.integers(1, 3), sent=hs.integers(0, 2), data=hs.data(),
           mark=hs.none() | PAST_THE_LOG)
    def one(gap: int, sent: int, data: hs.DataObject, mark: int | None) -> None:
        fresh = store(sent, partners=True) + store(gap, partners=False)
        chosen = data.draw(hs.lists(hs.sampled_from(fresh), unique=True, max_size=len(fresh)))
        retyped.update(chosen)
        size = mark_and_size(kor)[1]
        for item_id in chosen:
            past = min(size + data.draw(PAST_THE_LOG), 2**63 - 1)
            sql(kor, "UPDATE items SET seq = ? WHERE id = ?", past, item_id)
        if mark is not None:
            sql(kor, "UPDATE exchange_state SET scanned_seq = ?", min(size + mark, 2**63 - 1))
        before = queued(kor)
        scan(kor)
        after = queued(kor)
        # Past the log's size now: not queued by this scan. (One retyped in an earlier
        # example may since be below the grown log's size, and be queued: once at most.)
        assert {i: after.get(i) for i in chosen} == {i: before.get(i) for i in chosen}
        assert all(after.get(i, 0) <= 1 for i in retyped)
        held = {i for (i,) in sql(kor, "SELECT id FROM items")}
        assert {i: n for i, n in after.items() if i not in retyped} == \
            dict.fromkeys(held - retyped, 1)
        found, size = mark_and_size(kor)
        assert type(found) is int and found < size
        (later,) = store(1, partners=False)
        scan(kor)
        assert queued(kor).get(later) == 1

    one()
