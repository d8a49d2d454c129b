"""The host's disk is not trusted: SQLite keeps whatever type is written into a column, so an
outbox row may hold text where the courier counts its tries (stop 24's review: the courier
raised TypeError on such a row, every pass, and sent nothing more to that partner). The
courier leaves such a row, sends none of it, delivers the others, and ``gsomia doctor``
names it. Real nodes (SQLite files), the partner's real peer API in process."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as hs

from federating import api_of, federate
from gsomia import bootstrap
from gsomia.service import handlers
from gsomia.shell import exchange
from gsomia.shell.doctor import delivery_checks
from gsomia.shell.node import Node

SECRET = "군사II급비밀"
# The columns of a delivery's row the courier reads, and those it only writes.
READS = ("attempts", "not_now", "next_at", "status", "kind", "recipient", "item_id",
         "version")
WRITES = ("queued_at", "delivered_at", "last_error", "seq", "reference", "body")
ANY_VALUE = hs.one_of(
    hs.none(), hs.integers(-(2**63), 2**63 - 1), hs.sampled_from([2**31, -1, 2**63 - 1]),
    hs.floats(allow_nan=True, allow_infinity=True), hs.text(max_size=12),
    hs.binary(max_size=12), hs.sampled_from(["x", "0", "", "pending", "1e9", "JPN"]))


@contextmanager
def federated(node_factory: Callable[..., Node]) -> Iterator[tuple[Node, Node,
                                                                   exchange.Sender]]:
    """KOR delivering to JPN, whose peer API answers in process, and KOR's courier."""
    kor, jpn = node_factory("KOR"), node_factory("JPN")
    federate(kor, jpn)
    courier = exchange.Sender(kor, client=api_of(jpn, kor))
    try:
        yield kor, jpn, courier
    finally:
        courier.close()


def publish(kor: Node, objects: list[dict[str, Any]]) -> list[str]:
    return [p.item_id for p in handlers.publish_many(
        kor.uow(), keys=kor.keys, catalogue=kor.catalogue, now=datetime.now(UTC),
        entries=[(o, handlers.LabelRequest(SECRET, ("KOR", "JPN"), "dprk-missile"))
                 for o in objects])]


def retype(kor: Node, item_id: str, column: str, value: Any) -> int:
    """Write ``value`` into ``column`` of the delivery of ``item_id``, as anyone with the
    database file can; its row."""
    with kor.store.engine.begin() as conn:
        row = conn.exec_driver_sql("SELECT row FROM outbox WHERE item_id = ?",
                                   (item_id,)).scalar_one()
        conn.exec_driver_sql(f"UPDATE outbox SET {column} = ? WHERE row = ?", (value, row))
    return int(row)


def stored(kor: Node, row: int) -> tuple[Any, ...]:
    with kor.store.engine.connect() as conn:
        return tuple(conn.exec_driver_sql("SELECT * FROM outbox WHERE row = ?",
                                          (row,)).one())


def held_at(jpn: Node, item_id: str) -> bool:
    with jpn.store.repository() as repo:
        return repo.get_item(item_id) is not None


def deliver(courier: exchange.Sender, kor: Node, items: list[str]) -> None:
    """Passes until nothing is in flight and ``items`` are delivered (each pass completes)."""
    def done() -> bool:
        report = courier.step()
        with kor.store.repository() as repo:
            sent = {i for i, _, _ in repo.delivered()}
        return report.in_flight == 0 and set(items) <= sent

    assert exchange.wait_until(done, 30)


@pytest.mark.parametrize(("column", "value"), [("not_now", "x"), ("attempts", "x"),
                                               ("attempts", 2**63 - 1)])
def test_a_row_retyped_on_disk_is_left_and_named_and_the_others_go(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]],
        column: str, value: Any) -> None:
    """Before: the pass raised TypeError (or OverflowError writing the count back) at that
    row, every pass; the batch's receipts were never recorded, nothing more went."""
    with federated(node_factory) as (kor, jpn, courier):
        left, *others = publish(kor, [make_indicator(n) for n in range(3)])
        row = retype(kor, left, column, value)
        as_written = stored(kor, row)
        deliver(courier, kor, others)
        assert all(held_at(jpn, i) for i in others)
        assert not held_at(jpn, left) and stored(kor, row) == as_written
        checks = {c.name: c for c in delivery_checks(kor.folder, bootstrap.catalogue)}
        check = checks["outbox rows the courier leaves"]
        assert not check.ok and check.required
        assert f"row {row} ('delivery' to 'JPN'): its {column} {value!r}" in check.detail


@pytest.mark.parametrize(("value", "as_kept"), [("0", 0), ("1999-99-99 09:00", None)])
def test_a_next_try_that_reads_as_no_time_does_not_stall_the_courier(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]],
        value: str, as_kept: Any) -> None:
    """Before: the claim itself raised on the row's time (every row of the link stalled)
    and the earliest next try read as due always."""
    with federated(node_factory) as (kor, jpn, courier):
        left, other = publish(kor, [make_indicator(n) for n in range(2)])
        row = retype(kor, left, "next_at", value)
        deliver(courier, kor, [other])
        assert held_at(jpn, other) and not held_at(jpn, left)
        assert kor.store.next_due(recipients=["JPN"]) is None  # nothing due but that row
        # As SQLite keeps it (a number where it reads one: the column's affinity).
        assert row_of(kor, row)["next_at"] == (value if as_kept is None else as_kept)


def test_any_value_in_any_column_of_a_row_releases_nothing_of_it_and_the_others_go(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]]
        ) -> None:
    """Security invariant: whatever a column of a delivery's row holds (a number out of
    range, NaN, text, bytes, NULL), the courier's pass completes and the other rows are
    delivered; if the courier reads that column and the value is not one it reads as the
    node writes it, nothing of the row is released. One pair of nodes for every example."""
    numbers = itertools.count()
    with federated(node_factory) as (kor, jpn, courier):

        @settings(max_examples=12, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(column=hs.sampled_from(READS + WRITES), value=ANY_VALUE)
        @example(column="not_now", value="x")
        @example(column="attempts", value=1.5)
        @example(column="next_at", value=b"\x00")
        def one(column: str, value: Any) -> None:
            n = next(numbers)
            left, *others = publish(kor, [make_indicator(n * 3 + k) for k in range(3)])
            original = row_of(kor, left)
            try:
                retype(kor, left, column, value)
            except (sa.exc.IntegrityError, OverflowError):
                assume(False)  # the schema refuses it (NOT NULL, NaN as NULL, past 64 bits)
            deliver(courier, kor, others)
            assert all(held_at(jpn, i) for i in others)
            if column in READS and tampered(column, original[column],
                                            row_of(kor, original["row"])[column]):
                assert not held_at(jpn, left), (column, value)

        one()


def row_of(kor: Node, item_id_or_row: str | int) -> dict[str, Any]:
    where = "row" if isinstance(item_id_or_row, int) else "item_id"
    with kor.store.engine.connect() as conn:
        return dict(conn.exec_driver_sql(f"SELECT * FROM outbox WHERE {where} = ?",
                                         (item_id_or_row,)).one()._mapping)


def tampered(column: str, original: Any, now: Any) -> bool:
    """Whether ``now`` in ``column`` is a value the node would not have written there (the
    courier then must not take the row): an unchanged value, a count in bounds or a time
    it can read is one it could have."""
    if type(now) is type(original) and now == original:
        return False
    if column in ("attempts", "not_now"):
        return not (type(now) is int and 0 <= now <= 2**31 - 2)
    if column == "next_at" and isinstance(now, str):
        try:
            datetime.fromisoformat(now)
        except ValueError:
            return True
        return False  # a time it reads: the row may be due
    # status, kind, recipient, item_id, version: any other value is another row's, not
    # a delivery of this item to this partner that is due
    return True


# ---- the other tables the background loops read every pass ------------------------------


@pytest.mark.parametrize("tampering", [
    "UPDATE exchange_state SET scanned_seq = 'x'",
    "UPDATE items SET seq = 'x' WHERE row = (SELECT min(row) FROM items)"])
def test_a_scan_mark_or_seq_retyped_on_disk_stops_neither_publish_nor_the_courier(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]],
        tampering: str) -> None:
    """Before: the outbox's scan watermark read as text made every publish raise ValueError
    (and the courier's recovery, every pass); an item's seq as text, the courier's."""
    with federated(node_factory) as (kor, jpn, courier):
        first = publish(kor, [make_indicator(0)])
        with kor.store.engine.begin() as conn:
            conn.exec_driver_sql(tampering)
        later = publish(kor, [make_indicator(1)])
        deliver(courier, kor, first + later)
        assert held_at(jpn, first[0]) and held_at(jpn, later[0])
        with kor.store.engine.connect() as conn:
            mark = conn.exec_driver_sql("SELECT scanned_seq FROM exchange_state").scalar()
        assert type(mark) is int  # looked at again, and a seq once more


def test_the_warning_centre_and_the_head_exchange_pass_over_a_retyped_seq_or_time(
        node_factory: Callable[..., Node]) -> None:
    """Before: a note whose seq or stored time was retyped raised at every pass of the
    warning centre, which then fed nothing stored after it (and fed the rows before it
    again each pass); an event's seq as text, every pass of the head exchange."""
    from gsomia.shell.notices import NoticeSender
    from gsomia.shell.warning_centre import CentreWorker, centre_caught_up

    node = node_factory("JPN")
    notes = [{"type": "note", "spec_version": "2.1", "id": f"note--{uuid.UUID(int=n)}",
              "created": "2024-03-01T08:00:00.000Z", "modified": "2024-03-01T08:00:00.000Z",
              "content": f"note {n}", "object_refs": [f"indicator--{uuid.UUID(int=n)}"]}
             for n in range(1, 5)]
    handlers.publish_many(node.uow(), keys=node.keys, catalogue=node.catalogue,
                          now=datetime.now(UTC),
                          entries=[(o, handlers.LabelRequest("秘", ("JPN",), "dprk-missile"))
                                   for o in notes])
    with node.store.engine.begin() as conn:
        seqs = [s for (s,) in conn.exec_driver_sql(
            "SELECT seq FROM items WHERE type = 'note' ORDER BY seq")]
        conn.exec_driver_sql("UPDATE items SET seq = 'x' WHERE seq = ?", (seqs[0],))
        conn.exec_driver_sql("UPDATE items SET added_at = 'x' WHERE seq = ?", (seqs[1],))
        conn.exec_driver_sql("UPDATE audit_events SET seq = 'x' WHERE position = "
                             "(SELECT max(position) FROM audit_events)")
    worker = CentreWorker(node)
    assert worker.pass_once() and not worker.pass_once()
    assert worker.mark == seqs[-1] and centre_caught_up(node)
    sender = NoticeSender(node)
    try:
        assert sender._own_mark() < seqs[-1] + 10  # the newest events read but that one
    finally:
        sender.close()


def test_the_operator_reads_a_retyped_notice_row_as_stored_never_a_traceback(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]]
        ) -> None:
    """Before: a notice row's time or body retyped made ``notice_rows`` raise, and with it
    ``gsomia incidents list`` (a traceback) and the desk's page of incidents."""
    from gsomia.shell import notices

    with federated(node_factory) as (kor, jpn, courier):
        [item] = publish(kor, [make_indicator(0)])
        deliver(courier, kor, [item])
        notices.report_incident(jpn, item_id=item, kind="loss", description="lost")
        with jpn.store.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE outbox SET next_at = '1999-99-99 09:00', "
                                 "body = x'00' WHERE kind = 'incident'")
        [row] = notices.notice_rows(jpn)
        assert row["next_at"] == "unreadable: '1999-99-99 09:00'"
        assert row["body"] == "unreadable: b'\\x00'"
        [sent] = [r for r in notices.incident_rows(jpn) if r["reference"] == row["reference"]]
        assert sent["sent"] == [{"to": "KOR", "status": "pending", "attempts": 0,
                                 "last_error": None}]


def test_rows_passed_over_never_fill_a_claim_nor_read_as_due(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]]
        ) -> None:
    """More retyped rows than a batch holds, oldest first (counts as reals: SQL's bounds let
    them through, the row's reading does not): the claim reads on past them, so the rows
    after them go; and none of them reads as due, so the loop does not wake for them."""
    with federated(node_factory) as (kor, jpn, _):
        items = publish(kor, [make_indicator(n) for n in range(5)])
        for item in items[:3]:
            retype(kor, item, "attempts", 1.5)
        courier = exchange.Sender(kor, batch=2, client=api_of(jpn, kor))
        try:
            deliver(courier, kor, items[3:])
        finally:
            courier.close()
        assert not any(held_at(jpn, i) for i in items[:3])
        assert kor.store.next_due(recipients=["JPN"]) is None
