"""Issue 11 part 7: no statement the TAXII ingest, read or the outbox's scan runs reads a
whole table, so their cost does not grow with the number of stored items.

A figure bench could only show at 1,000,000 items is asserted here on a small real store:
SQLite's own query plan (``EXPLAIN QUERY PLAN``) of every statement a federated node sends
while it ingests through the TAXII store, pages through it with a cursor, reads by id and
scans for deliveries. A table read without an index (``SCAN items``) is a statement whose
time grows with the store (the outbox's scan watermark read all ``items`` on each publish,
2.5 s at 1,000,000); so is an index walked from its first entry on every page, which is
what a cursor's position must seek past (the keyset read from the first item each time).
"""

from __future__ import annotations

import itertools
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from gsomia.core.custody import CustodyRecord
from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import Person
from gsomia.core.taxii import Filters, Position
from gsomia.service.taxii_ports import Query, Submission
from gsomia.shell import exchange
from gsomia.shell import store as st
from gsomia.shell.node import Node
from gsomia.shell.taxii_store import SqlObjectStore
from query_plans import items_read_plan

LABEL = SecurityLabel("JPN", "秘", frozenset({"JPN", "KOR"}), "dprk-missile")
PUBLISHER = Person("aiko", "JPN", "極秘", frozenset({"dprk-missile"}))
TABLES = frozenset(st.metadata.tables)


@contextmanager
def statements(engine: sa.Engine) -> Iterator[list[tuple[str, Any]]]:
    """Every statement sent on ``engine`` meanwhile, with its first set of parameters."""
    sent: list[tuple[str, Any]] = []

    def keep(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
             executemany: bool) -> None:
        sent.append((statement, parameters[0] if executemany else parameters))

    sa.event.listen(engine, "before_cursor_execute", keep)
    try:
        yield sent
    finally:
        sa.event.remove(engine, "before_cursor_execute", keep)


def full_reads(engine: sa.Engine, sent: list[tuple[str, Any]]) -> list[tuple[str, str]]:
    """(plan line, statement) of each table of the store read without an index."""
    found = []
    with engine.connect() as conn:
        for statement, parameters in sent:
            if not re.match(r"\s*(SELECT|UPDATE|DELETE|INSERT)", statement, re.I):
                continue
            # Aliases name the table in the plan: "SCAN i" for "items AS i".
            names = {alias or table: table for table, alias in re.findall(
                r'(?:FROM|JOIN|UPDATE)\s+"?(\w+)"?(?:\s+AS\s+(\w+))?', statement, re.I)}
            plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement,
                                        parameters).all()
            for line in (str(r[3]) for r in plan):
                scanned = re.match(r"SCAN (\w+)( USING (COVERING )?INDEX \w+)?", line)
                if scanned is None or names.get(scanned[1]) not in TABLES:
                    continue
                # An index walked in order is fine only where its order is the answer's and
                # the walk stops at LIMIT (the newest tree head, a first page); a page after
                # a cursor must seek to it.
                if scanned[2] is None or not re.search(r"\bLIMIT\b", statement, re.I) \
                        or '"row" >' in statement:
                    found.append((line, statement))
            conn.rollback()
    return found


def federate(jpn: Node, kor: Node) -> None:
    peers = {code: exchange.Peer(code, "https://127.0.0.1:1", n.keys.public_signing_key(),
                                 n.keys.envelope_key().public_key())
             for code, n in (("JPN", jpn), ("KOR", kor))}
    exchange.Partners("JPN", "direct", peers, ("KOR",)).write(jpn.folder)


def test_ingest_reads_by_page_and_by_id_and_the_outbox_scan_read_no_whole_table(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]]
) -> None:
    jpn, kor = node_factory("JPN"), node_factory("KOR")
    federate(jpn, kor)
    partners = exchange.Partners.load(jpn.folder)
    assert partners is not None
    now = datetime.now(UTC)
    store = SqlObjectStore(jpn.store, keys=jpn.keys, catalogue=jpn.catalogue, validate=None)
    try:
        # Enough stored that a page and a cursor after it exist; the scan mark set as a
        # node's courier sets it on its first pass.
        store.add_objects([Submission(make_indicator(n), LABEL) for n in range(6)],
                          PUBLISHER, now)
        exchange.scan(jpn, partners, now)
        visible = frozenset(store.label_classes())
        with statements(jpn.store.engine) as sent:
            later = now + timedelta(seconds=1)
            done = store.add_objects(
                [Submission(make_indicator(n, modified="2024-03-02T08:00:00.000Z"), LABEL)
                 for n in range(3)]
                + [Submission(make_indicator(n), LABEL) for n in range(6, 9)],
                PUBLISHER, later)
            assert [o.ok for o in done] == [True] * 6
            first = store.page(Query(Filters(types=frozenset({"indicator"})), visible,
                                     None, 4))
            assert first.more and len(first.rows) == 4
            at = first.rows[-1]
            nxt = store.page(Query(Filters(types=frozenset({"indicator"})), visible,
                                   Position(at.date_added, at.key), 4))
            assert nxt.rows and nxt.rows[0].key != at.key
            one = store.page(Query(Filters(), visible, None, 1,
                                   object_id=make_indicator(1)["id"]))
            assert [r.version for r in one.rows] == ["2024-03-02T08:00:00.000Z"]
            assert store.labels_of(make_indicator(2)["id"])
            exchange.scan(jpn, partners, later)
        # The federated publish ran the scan watermark's query; the reads their own.
        assert any("seq >" in s for s, _ in sent)
        assert any('"row" >' in s for s, _ in sent)
        assert full_reads(jpn.store.engine, sent) == []
    finally:
        store.close()


def test_migration_0015_indexes_the_items_of_an_existing_store_by_seq(db_url: str) -> None:
    from test_one_outbox import at_revision, newest_revision

    engine = at_revision(db_url, "0014")
    try:
        rows = [{"id": f"indicator--{n}", "version": "2024-03-01T08:00:00.000Z",
                 "type": "indicator", "originator": "JPN", "content": b"{}", "label": b"{}",
                 "binding": b"{}", "added_at": datetime(2024, 3, 1, tzinfo=UTC), "seq": n}
                for n in range(5)]
        with engine.begin() as conn:
            conn.execute(st.items.insert(), rows)
        st.migrate(engine)
        assert st.current_revision(engine) == newest_revision()
        with engine.connect() as conn:
            indexes = {i["name"]: i["column_names"] for i in sa.inspect(conn).get_indexes("items")}
            kept = conn.execute(sa.select(st.items.c.id, st.items.c.seq)
                                .order_by(st.items.c.seq)).all()
        assert indexes["ix_items_seq"] == ["seq"]
        assert [tuple(r) for r in kept] == [(r["id"], r["seq"]) for r in rows]
    finally:
        engine.dispose()


LEVELS = ["機密", "特定秘密", "極秘", "秘"]
_NODES: dict[Any, Node] = {}
_COUNT = itertools.count(1000)
_national = hs.builds(lambda level, rel: SecurityLabel("JPN", level, frozenset({"JPN", *rel}),
                                                       "dprk-missile"),
                      hs.sampled_from(LEVELS), hs.sets(hs.sampled_from(["KOR", "USA"])))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(relabels=hs.lists(hs.lists(_national, max_size=3), min_size=4, max_size=4),
       shown=hs.lists(hs.booleans(), min_size=8, max_size=8), limit=hs.integers(1, 5))
def test_a_page_answers_by_the_latest_custody_record_of_each_version_alone(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]],
        relabels: list[list[SecurityLabel]], shown: list[bool], limit: int) -> None:
    """Art. 7 is decided on the national label of a version's latest custody record (the
    page query joins it by its row): whatever records follow the first, a page lists exactly
    the versions whose latest label's class is visible, with that class, and no other."""
    # One node for every example (a node's keys and certificates take a while to make);
    # each example's items are new, and the page is asked for those alone.
    if node_factory not in _NODES:
        _NODES.clear()
        _NODES[node_factory] = node_factory("JPN")
    jpn = _NODES[node_factory]
    now = datetime.now(UTC)
    store = SqlObjectStore(jpn.store, keys=jpn.keys, catalogue=jpn.catalogue, validate=None)
    try:
        objs = [make_indicator(next(_COUNT)) for _ in relabels]
        store.add_objects([Submission(o, LABEL) for o in objs], PUBLISHER, now)
        latest = {o["id"]: LABEL for o in objs}
        with jpn.store.engine.connect().execution_options(gsomia_write=True) as conn, \
                conn.begin():
            repo = st.SqlRepository(conn)
            for obj, labels in zip(objs, relabels, strict=True):
                for label in labels:
                    repo.add_custody(CustodyRecord(
                        obj["id"], obj["modified"], "created", "JPN", LABEL, label, now),
                        seq=0)
                    latest[obj["id"]] = label
        classes = store.label_classes()
        visible = frozenset(k for n, k in enumerate(sorted(classes)) if shown[n % len(shown)])
        seen: list[tuple[str, str]] = []
        after = None
        while True:
            page = store.page(Query(Filters(ids=frozenset(latest)), visible, after, limit))
            seen += [(r.id, r.label_key) for r in page.rows]
            if not page.more:
                break
            after = Position(page.rows[-1].date_added, page.rows[-1].key)

        def class_of(label: SecurityLabel) -> str:
            return next(k for k, v in classes.items() if v == label)

        assert sorted(seen) == sorted((i, class_of(label)) for i, label in latest.items()
                                      if class_of(label) in visible)
    finally:
        store.close()


def test_a_fresh_nodes_first_publish_sets_the_scan_watermark_so_a_restart_replans_nothing(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]]
) -> None:
    # deliver18: the courier's first scan of an empty store set no watermark, and the
    # publishes after it could not move one, so the first restart read every item ever
    # stored again (its row and its custody, 0.6 ms of CPU each) to queue nothing.
    from gsomia.service import handlers
    from gsomia.service import outbox as outbox_handlers

    jpn, kor = node_factory("JPN"), node_factory("KOR")
    federate(jpn, kor)
    partners = exchange.Partners.load(jpn.folder)
    assert partners is not None
    now = datetime.now(UTC)
    assert exchange.scan(jpn, partners, now) == 0  # the courier's first pass: nothing held
    label = handlers.LabelRequest("秘", ("JPN", "KOR"), "dprk-missile")
    for first in (0, 3):  # the first commit sets the mark, the next moves it
        with statements(jpn.store.engine) as sent:
            exchange.publish(jpn, entries=[(make_indicator(n), label) for n in
                                           range(first, first + 3)], now=now)
        assert full_reads(jpn.store.engine, sent) == []
        with jpn.store.engine.connect() as conn:
            mark = conn.execute(sa.select(st.exchange_state.c.scanned_seq)).scalar()
            newest = conn.execute(sa.select(sa.func.max(st.items.c.seq))).scalar()
        assert newest is not None and mark == newest
    assert outbox_handlers.recover(jpn.uow(), now) == 0
    # Each delivery still queued once, and the mark is the one the log recorded.
    with jpn.store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(st.outbox)).scalar() == 6
    with jpn.store.reader() as reader:
        assert handlers.verify_audit(reader, public_key=jpn.keys.public_signing_key()).ok


def test_an_item_stored_before_the_node_had_partners_keeps_the_watermark_unset_for_the_scan(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]]
) -> None:
    # The watermark a first federated commit sets must never pass an item no commit planned:
    # the scan queues it (lose nothing).
    from gsomia.service import handlers

    jpn, kor = node_factory("JPN"), node_factory("KOR")
    now = datetime.now(UTC)
    label = handlers.LabelRequest("秘", ("JPN", "KOR"), "dprk-missile")
    handlers.publish_many(jpn.uow(), keys=jpn.keys, catalogue=jpn.catalogue,
                          entries=[(make_indicator(0), label)], now=now)  # no partners yet
    federate(jpn, kor)
    partners = exchange.Partners.load(jpn.folder)
    assert partners is not None
    exchange.publish(jpn, entries=[(make_indicator(1), label)], now=now)
    with jpn.store.engine.connect() as conn:
        assert conn.execute(sa.select(st.exchange_state.c.scanned_seq)).scalar() is None
    assert exchange.scan(jpn, partners, now) == 1
    with jpn.store.engine.connect() as conn:
        queued = {r.item_id for r in conn.execute(sa.select(st.outbox.c.item_id))}
    assert queued == {make_indicator(0)["id"], make_indicator(1)["id"]}


T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def _pending_notices(store: st.Store, recipients: dict[str, int], *, first: int = 0,
                     at: datetime = T0) -> None:
    """``recipients``' count of pending notices each, due a second apart from ``at``,
    straight into the outbox (``first``: the number of the first)."""
    with store.engine.begin() as conn:
        st.insert_many(conn, st.outbox, [
            {"kind": "incident", "item_id": None, "version": None, "recipient": to,
             "reference": f"ref-{to}-{n}", "body": "{}", "status": "pending", "attempts": 1,
             "not_now": 0, "next_at": at + timedelta(seconds=n), "queued_at": at,
             "delivered_at": None, "last_error": None, "seq": None}
            for to, count in recipients.items() for n in range(first, first + count)])


def test_next_due_reads_each_part_of_the_outbox_from_its_earliest_on_an_index(
        tmp_path: Any) -> None:
    """courier23, notices26: a link's idle pass reads the deliveries and notices to its
    partner on ``ix_outbox_due`` in its order from the partner's first entry (no sort:
    the first row of either kind that passes the check ends the read); the notices to a
    recipient it does not deliver to on ``ix_outbox_notices`` (which holds no delivery)
    the same way; the link that posts the notices to anyone without a link reads the
    recipients with notices pending on that index, one entry each. Before: every pending
    notice read in order of next try (``status=?`` alone), each recipient checked in
    Python. tidy27: all in one statement, however many recipients have notices pending
    (before: one statement for each, and one more to find each)."""
    store = st.Store(f"sqlite:///{tmp_path / 'node.db'}")
    asks: dict[str, tuple[list[str], str, set[str] | None]] = {
        "link": (["KOR"], "KOR", None), "notices alone": ([], "KOR", None),
        "first link": (["KOR"], "KOR", {"KOR", "USA"})}
    try:
        _pending_notices(store, {"USA": 3, "CHN": 1})
        sent: dict[str, list[tuple[str, Any]]] = {}
        for ask, (named, to, strays) in asks.items():
            with statements(store.engine) as sent[ask]:
                store.next_due(recipients=named, notices_to=to, or_not_to=strays)
        _pending_notices(store, {f"X{n:02}": 1 for n in range(40)}, first=10)
        with statements(store.engine) as sent["first link, 42 strays"]:
            store.next_due(recipients=["KOR"], notices_to="KOR", or_not_to={"KOR", "USA"})
        with store.engine.connect() as conn:
            plans = {ask: [[str(r[3]) for r in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + statement, parameters)]
                for statement, parameters in statements_
                if re.match(r"\s*(WITH|SELECT)", statement)]
                for ask, statements_ in sent.items()}
    finally:
        store.dispose()
    either = "SEARCH outbox USING INDEX ix_outbox_due (status=? AND recipient=?)"
    notices = "SEARCH outbox USING INDEX ix_outbox_notices (status=? AND recipient=?)"
    recipients = "SEARCH outbox USING INDEX ix_outbox_notices (status=? AND recipient>?)"
    # Each ask one statement; of the outbox, only these searches (no scan, no sort). The
    # first link: KOR's rows, the recipients with notices pending (the first, then each
    # next one), then each one's notices but those with a link (USA).
    outbox_read = {ask: [[line for line in plan if " outbox" in line or "B-TREE" in line]
                         for plan in statement_plans] for ask, statement_plans in plans.items()}
    first_link = [[either, recipients, recipients, notices]]
    assert outbox_read == {"link": [[either]], "notices alone": [[notices]],
                           "first link": first_link, "first link, 42 strays": first_link}
    assert {len(s) for s in sent.values()} == {1}


def test_a_links_idle_pass_reads_as_much_with_thousands_of_notices_queued_to_another(
        tmp_path: Any) -> None:
    """notices26: the work of ``next_due`` (SQLite's virtual machine steps) does not grow
    with the notices queued to a partner that is down, due before anything else: 2,000 of
    them cost another partner's link, and that partner's own (whose delivery is due
    after them), what 2 do. Before, both links read every one of them (x100 the steps)."""
    store = st.Store(f"sqlite:///{tmp_path / 'node.db'}")
    later = T0 + timedelta(days=1)
    steps = [0]

    def tick() -> int:
        steps[0] += 1
        return 0  # go on

    def count(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        dbapi_conn.set_progress_handler(tick, 1)

    def stop(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.set_progress_handler(None, 1)

    def read(link: str, due: datetime) -> int:
        steps[0] = 0
        sa.event.listen(store.engine, "checkout", count)
        sa.event.listen(store.engine, "checkin", stop)
        try:
            assert store.next_due(recipients=[link], notices_to=link) == due
        finally:
            sa.event.remove(store.engine, "checkout", count)
            sa.event.remove(store.engine, "checkin", stop)
        return steps[0]

    try:
        _pending_notices(store, {"USA": 2})
        _pending_notices(store, {"KOR": 2}, at=later)
        with store.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE outbox SET kind = 'delivery', item_id = 'indicator--1',"
                                 " version = 'v', recipient = 'USA', reference = NULL,"
                                 " body = NULL WHERE reference = 'ref-KOR-1'")
        few = {"KOR": read("KOR", later), "USA": read("USA", T0)}
        _pending_notices(store, {"USA": 1_998}, first=2)
        many = {"KOR": read("KOR", later), "USA": read("USA", T0)}
    finally:
        store.dispose()
    assert all(few[link] > 0 and many[link] <= few[link] * 1.1 for link in few), (few, many)


def test_the_first_links_claim_of_notices_reads_the_recipients_it_posts_to_alone(
        tmp_path: Any) -> None:
    """notices26: the claim of the notices due reads them on ``ix_outbox_notices`` by
    recipient; the first link's, which takes the notices to anyone without a link too,
    the recipients with notices pending one entry each, then those to it and to them.
    Before: ``recipient NOT IN`` read every pending row of the outbox (``status=?``),
    deliveries and all, on each notice pass of the first link."""
    store = st.Store(f"sqlite:///{tmp_path / 'node.db'}")
    try:
        _pending_notices(store, {"USA": 3, "CHN": 1, "KOR": 1})
        with statements(store.engine) as sent:
            taken = store.claim(deliveries=False, now=T0 + timedelta(hours=1), limit=10,
                                recipient="KOR", or_not_to={"KOR", "USA"})
        with store.engine.connect() as conn:
            plans = [" / ".join(str(r[3]) for r in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + statement, parameters)
                if " outbox" in str(r[3]) or "B-TREE" in str(r[3]))
                for statement, parameters in sent if re.match(r"\s*(WITH|SELECT)", statement)]
    finally:
        store.dispose()
    assert sorted(r.recipient for r in taken) == ["CHN", "KOR"]
    # tidy27: the recipients in one statement (the first, then each next one), not one each.
    recipients = "SEARCH outbox USING INDEX ix_outbox_notices (status=? AND recipient>?)"
    assert plans == [f"{recipients} / {recipients}",
        "SEARCH outbox USING INDEX ix_outbox_notices (status=? AND recipient=? AND next_at<?)"
        " / USE TEMP B-TREE FOR ORDER BY"]


def test_the_first_links_claim_takes_strays_however_many_recipients_the_outbox_names(
        tmp_path: Any) -> None:
    """review26: the first link's claim named every recipient of stray notices in one
    ``IN`` list. Rows written behind the node's back with more distinct recipients than a
    statement takes variables (SQLite: 32,766) made the claim raise at every pass, and the
    link stalled; past ``STRAYS_LISTED_AT_MOST`` it now says "not to these" instead."""
    store = st.Store(f"sqlite:///{tmp_path / 'node.db'}")

    def default_limit(dbapi_conn: Any, _record: Any) -> None:
        # SQLite's own default (Debian's build allows 250,000)
        dbapi_conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 32_766)

    sa.event.listen(store.engine, "connect", default_limit)
    store.engine.dispose()  # the connections made before the limit
    try:
        many = {f"X{n:05d}": 1 for n in range(33_000)}
        _pending_notices(store, {"KOR": 1, **many})
        taken = store.claim(deliveries=False, now=T0 + timedelta(hours=1), limit=10,
                            recipient="KOR", or_not_to={"KOR", "USA"})
        few = store.claim(deliveries=False, now=T0 + timedelta(hours=1), limit=10,
                          recipient="USA", or_not_to={"KOR", "USA"})
    finally:
        store.dispose()
    assert {r.recipient for r in taken} >= {"KOR"} and len(taken) == 10
    assert {r.recipient for r in few} <= {"USA", *many} and len(few) == 10


def test_the_read_of_items_stored_after_a_mark_takes_the_seqs_after_it(tmp_path: Any) -> None:
    """scanseq29: ``items_stored_after`` (the sensor player's read of its centre's warnings)
    read ``type = 'note'`` by ix_items_type on SQLite (no statistics), every note held, then
    sorted: 8.7 ms of CPU with 20,000 items, where the seqs after the mark are 0.09 ms
    (bench/type_reads_ab.py). The plan SQLite makes for the statement run."""
    store = st.Store(f"sqlite:///{tmp_path / 'node.db'}")
    try:
        answer, plan = items_read_plan(store, lambda repo: repo.items_stored_after(
            5, originator="JPN", stix_type="note"))
        assert answer == []
        assert "ix_items_seq" in plan and "ix_items_type" not in plan, plan
    finally:
        store.dispose()
