"""What a pass of the warning centre costs the node beside it (centrepass28).

At the sensors bench, KOR's centre passed 2,356 times in 174 s, 1,828 of them woken by a commit
that stored no note (a claim, a settle, a receipt): each a repository query of 0.8 ms with the
GIL held, half the centre's CPU, falling on the commits of a report's way to JPN. And the pass
that fed a report ran while the couriers claimed, sealed and posted it. A real node and its
store, in this process."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from federating import federate
from gsomia.service import handlers
from gsomia.shell.exchange import CourierProgress
from gsomia.shell.node import Node
from gsomia.shell.store import Changes
from gsomia.shell.warning_centre import HEAD_START_S, CentreWorker
from query_plans import items_read_plan


@contextmanager
def _watched(node: Node) -> Iterator[tuple[CentreWorker, list[str]]]:
    """A centre with the commit watch its loop runs with, and the statements the node's
    engine runs meanwhile."""
    worker = CentreWorker(node)
    worker._changes = Changes(node.store.engine)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    sa.event.listen(node.store.engine, "before_cursor_execute", seen)
    try:
        yield worker, statements
    finally:
        sa.event.remove(node.store.engine, "before_cursor_execute", seen)
        worker._changes.close()


def _publish(node: Node, obj: dict[str, Any]) -> None:
    handlers.publish_many(node.uow(), keys=node.keys, catalogue=node.catalogue,
                          now=datetime.now(UTC), entries=[(obj, handlers.LabelRequest(
                              "秘", (node.party,), "dprk-missile"))])


def _take_note(node: Node, n: int = 0) -> None:
    _publish(node, {"type": "note", "spec_version": "2.1", "id": f"note--{uuid.UUID(int=n + 1)}",
                    "created": "2024-03-01T08:00:00.000Z", "modified": "2024-03-01T08:00:00.000Z",
                    "content": f"note {n}", "object_refs": [f"indicator--{uuid.UUID(int=n + 1)}"]})


def test_a_commit_that_stored_nothing_new_costs_the_centre_no_query(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]]
        ) -> None:
    node = node_factory("JPN")
    _take_note(node)
    with _watched(node) as (worker, statements):
        assert worker.pass_once()
        statements.clear()
        assert not worker.pass_once()
        assert statements == [], statements
        # An item that is not a note: read once (the query finds no note), then not again.
        _publish(node, make_indicator(1))
        mark = worker.mark
        statements.clear()
        assert not worker.pass_once() and statements
        statements.clear()
        assert not worker.pass_once() and statements == [], statements
        assert worker.mark == mark
        # A note stored after it is read at the next pass.
        _take_note(node, 1)
        assert worker.pass_once() and worker.mark > mark
        # A seq retyped on the host's disk cannot be compared: every pass reads, as before.
        with node.store.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE items SET seq = 'x' WHERE seq = "
                                 "(SELECT max(seq) FROM items)")
        statements.clear()
        assert not worker.pass_once() and statements


def test_the_couriers_get_a_head_start_only_where_a_link_owes_a_post(
        node_factory: Callable[..., Node]) -> None:
    jpn, kor = node_factory("JPN"), node_factory("KOR")
    _take_note(jpn)
    with _watched(jpn) as (worker, _):
        # Alone (the sensors bench's measurement-to-warning node): its warnings never wait.
        assert worker.give_way() == 0.0
        federate(jpn, kor)
        progress = worker.couriers = CourierProgress()
        assert worker.give_way() == 0.0  # no link owes a post: no courier to wait for
        progress.queueing(["KOR"])
        progress.queued(["KOR"])
        assert worker.give_way() >= HEAD_START_S  # a courier that never posts: the bound
        assert worker.pass_once()
        # Nothing stored past what it read: a commit that settled a delivery waits for none.
        assert worker.give_way() == 0.0
        _take_note(jpn, 1)
        progress.dealt("KOR", progress.taking("KOR"))
        assert worker.give_way() < 1.0


def test_an_item_seq_retyped_past_the_log_never_stops_the_centre_reading(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]]
        ) -> None:
    """finalreview28b: an item that is not a note, its seq retyped on the host's disk to a
    whole number past any the log has given, made the newest seq read past every later note:
    each pass was skipped, and no report was fed again (a restart read once, then the same)."""
    node = node_factory("JPN")
    _take_note(node)
    _publish(node, make_indicator(1))
    with _watched(node) as (worker, _):
        assert worker.pass_once()
        with node.store.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE items SET seq = 1000000000000000 WHERE type = 'indicator'")
        worker.pass_once()
        mark = worker.mark
        _take_note(node, 1)
        assert worker.pass_once() and worker.mark > mark


def test_a_note_seq_retyped_past_the_log_is_not_read_and_moves_no_mark(
        node_factory: Callable[..., Node]) -> None:
    """finalreview28b: a note's seq retyped on the host's disk to a whole number past any
    the log has given was read, and the mark moved to it: no later note was read again."""
    node = node_factory("JPN")
    _take_note(node)
    _take_note(node, 1)
    with node.store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE items SET seq = 1000000000000000 WHERE seq = "
                             "(SELECT max(seq) FROM items)")
    with _watched(node) as (worker, _):
        assert worker.pass_once()
        mark = worker.mark
        assert mark < 1000000000000000
        _take_note(node, 2)
        assert worker.pass_once() and worker.mark > mark


def test_the_centres_read_takes_the_seqs_after_its_mark_not_every_note(tmp_path: Any) -> None:
    """finalreview28b: SQLite (no statistics) read ``type = 'note'`` by ix_items_type, every
    note held at each pass with new items, then sorted: 13 ms of CPU with 10,000 notes, where
    the range of seqs after the mark is 0.05 ms. The plan SQLite makes for the statement run."""
    from gsomia.shell import store as st

    store = st.Store(f"sqlite:///{tmp_path / 'node.db'}")
    try:
        answer, plan = items_read_plan(store, lambda repo: repo.contents_stored_after(
            5, stix_type="note", limit=500))
        assert answer == []
        assert "ix_items_seq" in plan and "ix_items_type" not in plan, plan
    finally:
        store.dispose()
