"""One outbox (issue 11, part 1): deliveries and notices in one table, sent by one courier.

Migration 0012 moves a store's queued notices into the outbox beside its deliveries, on
SQLite and on a real PostgreSQL server, without losing a row or a value: every row still
matches the digest its event recorded. On PostgreSQL several senders share the outbox:
each row is taken by one of them at a time (``FOR UPDATE SKIP LOCKED`` and a lease).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from federating import one_pass
from gsomia.core.custody import ReceiptRecord, register_digest
from gsomia.core.errors import MalformedInput
from gsomia.core.outbox import DELIVERY, LEASE_S
from gsomia.shell import store as st
from starting import WAIT_S

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def migrations() -> Config:
    """The store's migrations, as alembic reads them."""
    cfg = Config()
    cfg.set_main_option("script_location", str(st.MIGRATIONS))
    return cfg


def migrate(engine: sa.Engine, move: Callable[[Config, str], None], revision: str) -> None:
    """Take the store's schema to ``revision`` by its migrations (``move``:
    ``command.upgrade`` or ``command.downgrade``), as an operator would."""
    cfg = migrations()
    with engine.connect().execution_options(gsomia_write=True) as conn, conn.begin():
        cfg.attributes["connection"] = conn
        move(cfg, revision)


def at_revision(url: str, revision: str) -> sa.Engine:
    engine = st.make_engine(url)
    migrate(engine, command.upgrade, revision)
    return engine


DELIVERIES = [
    {"item_id": "indicator--a", "version": "2024-03-01T08:00:00.000Z", "recipient": "JPN",
     "status": "delivered", "attempts": 1, "next_at": T0, "queued_at": T0,
     "delivered_at": T0 + timedelta(seconds=1), "last_error": None, "seq": 4},
    {"item_id": "indicator--b", "version": "2024-03-01T08:00:00.000Z", "recipient": "USA",
     "status": "pending", "attempts": 3, "next_at": T0 + timedelta(seconds=2),
     "queued_at": T0, "delivered_at": None, "last_error": "HTTP 503: busy", "seq": 5},
]
NOTICES: list[dict[str, Any]] = [
    {"kind": "incident", "recipient": "KOR", "reference": "JPN-incident-1",
     "item_id": "indicator--a", "body": '{"kind":"loss"}', "status": "delivered",
     "attempts": 1, "next_at": T0, "queued_at": T0, "delivered_at": T0, "last_error": None,
     "seq": 7},
    {"kind": "classification-notice", "recipient": "USA", "reference": "d" * 64,
     "item_id": "indicator--b", "body": '{"new_level":"III"}', "status": "pending",
     "attempts": 0, "next_at": T0, "queued_at": T0, "delivered_at": None,
     "last_error": "HTTP 0: refused", "seq": 8},
]


def newest_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(migrations()).get_current_head()
    assert head is not None
    return head



def test_migration_0012_moves_every_notice_beside_the_deliveries(db_url: str) -> None:
    engine = at_revision(db_url, "0011")
    try:
        meta = sa.MetaData()
        old_outbox = sa.Table("outbox", meta, autoload_with=engine)
        old_notices = sa.Table("notices", meta, autoload_with=engine)
        with engine.begin() as conn:
            conn.execute(old_outbox.insert(), DELIVERIES)
            conn.execute(old_notices.insert(), NOTICES)
        st.migrate(engine)
        assert st.current_revision(engine) == newest_revision()
        with engine.connect() as conn:
            assert not sa.inspect(conn).has_table("notices")
        with engine.connect() as conn, conn.begin():
            reader = st.SqlAuditReader(conn, None)
            records = sorted((r.table, r.seq, r.digest) for r in reader.record_rows()
                             if r.table in ("outbox", "notices"))
            deliveries = sorted(reader.deliveries())
            notices = sorted(reader.notice_states())
            rows = {(r.kind, r.item_id): r for r in conn.execute(sa.select(st.outbox))}
        assert records == sorted(
            [("outbox", d["seq"], register_digest("outbox", d)) for d in DELIVERIES]
            + [("notices", n["seq"], register_digest("notices", n)) for n in NOTICES])
        assert [(d[0], d[2], d[3], d[4]) for d in deliveries] == [
            (d["item_id"], d["recipient"], d["status"], d["next_at"]) for d in DELIVERIES]
        assert [(n[0], n[1]) for n in notices] == sorted(
            (register_digest("notices", n), n["status"]) for n in NOTICES)
        # Every value came along, bookkeeping included.
        for row in [*DELIVERIES, *NOTICES]:
            kept = rows[(row.get("kind", DELIVERY), row["item_id"])]
            for name, value in row.items():
                assert getattr(kept, name) == value, (name, row)
    finally:
        engine.dispose()


_TEXT = hs.text(hs.characters(blacklist_categories=["Cs"]), min_size=1, max_size=30)
_WHEN = hs.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1),
                     timezones=hs.just(UTC))
_PARTY = hs.sampled_from(["JPN", "KOR", "USA"])
_STATUS = hs.sampled_from(["pending", "delivered", "refused"])


@hs.composite
def _queued(draw: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    deliveries = [{"item_id": f"indicator--{i}", "version": draw(_TEXT),
                   "recipient": draw(_PARTY), "status": draw(_STATUS),
                   "attempts": draw(hs.integers(0, 50)), "next_at": draw(_WHEN),
                   "queued_at": draw(_WHEN), "delivered_at": draw(hs.none() | _WHEN),
                   "last_error": draw(hs.none() | _TEXT), "seq": i}
                  for i in range(draw(hs.integers(0, 6)))]
    notices = [{"kind": draw(hs.sampled_from(["incident", "classification-notice"])),
                "recipient": draw(_PARTY), "reference": f"ref-{i}-{draw(_TEXT)}",
                "item_id": draw(hs.none() | _TEXT), "body": draw(_TEXT),
                "status": draw(_STATUS), "attempts": draw(hs.integers(0, 50)),
                "next_at": draw(_WHEN), "queued_at": draw(_WHEN),
                "delivered_at": draw(hs.none() | _WHEN), "last_error": draw(hs.none() | _TEXT),
                "seq": 100 + i} for i in range(draw(hs.integers(0, 6)))]
    return deliveries, notices


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(queued=_queued())
def test_migration_0012_keeps_every_row_and_its_digest(tmp_path: Path,
                                                       queued: Any) -> None:
    """Security invariant: whatever the two tables held, every row is in the one outbox
    after the migration, each still matching the digest its event recorded."""
    deliveries, notices = queued
    engine = at_revision(f"sqlite:///{tmp_path / f'{uuid.uuid4()}.db'}", "0011")
    try:
        meta = sa.MetaData()
        with engine.begin() as conn:
            if deliveries:
                conn.execute(sa.Table("outbox", meta, autoload_with=engine).insert(),
                             deliveries)
            if notices:
                conn.execute(sa.Table("notices", meta, autoload_with=engine).insert(), notices)
        st.migrate(engine)
        with engine.connect() as conn, conn.begin():
            records = sorted((r.table, r.seq, r.digest)
                             for r in st.SqlAuditReader(conn, None).record_rows()
                             if r.table in ("outbox", "notices"))
            kept = [dict(r._mapping) for r in conn.execute(sa.select(st.outbox))]
        assert records == sorted(
            [("outbox", d["seq"], register_digest("outbox", d)) for d in deliveries]
            + [("notices", n["seq"], register_digest("notices", n)) for n in notices])
        assert len(kept) == len(deliveries) + len(notices)
        for row in [*deliveries, *notices]:
            match = [k for k in kept if k["seq"] == row["seq"]]
            assert len(match) == 1
            assert {name: match[0][name] for name in row} == row
    finally:
        engine.dispose()


def test_migration_0012_goes_back_without_losing_a_notice(db_url: str) -> None:
    engine = at_revision(db_url, "0011")
    try:
        meta = sa.MetaData()
        with engine.begin() as conn:
            conn.execute(sa.Table("outbox", meta, autoload_with=engine).insert(), DELIVERIES)
            conn.execute(sa.Table("notices", meta, autoload_with=engine).insert(), NOTICES)
        st.migrate(engine)
        migrate(engine, command.downgrade, "0011")
        with engine.connect() as conn:
            back = sa.Table("notices", sa.MetaData(), autoload_with=conn)
            assert sorted(r.reference for r in conn.execute(sa.select(back))) == sorted(
                n["reference"] for n in NOTICES)
            assert conn.execute(sa.text("SELECT count(*) FROM outbox")).scalar() == 2
    finally:
        engine.dispose()


# ---- several senders over one outbox ---------------------------------------------------------


def _queue(store: st.Store, deliveries: int, notices: int) -> None:
    with store.engine.begin() as conn:
        st.insert_many(conn, st.outbox, [
            {"kind": DELIVERY, "item_id": f"indicator--{i}", "version": "v", "recipient": "JPN",
             "reference": None, "body": None, "status": "pending", "attempts": 0, "not_now": 0,
             "next_at": T0, "queued_at": T0, "delivered_at": None, "last_error": None,
             "seq": i} for i in range(deliveries)] + [
            {"kind": "incident", "item_id": f"indicator--{i}", "version": None,
             "recipient": "KOR", "reference": f"ref-{i}", "body": "{}", "status": "pending",
             "attempts": 0, "not_now": 0, "next_at": T0, "queued_at": T0, "delivered_at": None,
             "last_error": None, "seq": 1000 + i} for i in range(notices)])


def _claim_concurrently(store: st.Store, senders: int, now: datetime,
                        limit: int) -> list[list[int]]:
    taken: list[list[int]] = [[] for _ in range(senders)]
    start = threading.Barrier(senders)

    def sender(k: int) -> None:
        start.wait()
        while True:
            rows = store.claim(deliveries=k % 2 == 0, now=now, limit=limit)
            rows += store.claim(deliveries=k % 2 == 1, now=now, limit=limit)
            if not rows:
                return
            taken[k].extend(r.row for r in rows)

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return taken


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(deliveries=hs.integers(0, 60), notices=hs.integers(0, 20), senders=hs.integers(2, 4),
       limit=hs.integers(1, 16))
def test_senders_sharing_a_postgresql_outbox_each_take_a_row_once(
        pg_cluster: str, deliveries: int, notices: int, senders: int, limit: int) -> None:
    """Security invariant: a row owed to a partner is taken by exactly one sender until its
    lease ends (no double sending by design), and none is left behind."""
    from pgdb import fresh_pg_database

    store = st.Store(fresh_pg_database(pg_cluster))
    try:
        _queue(store, deliveries, notices)
        taken = _claim_concurrently(store, senders, T0, limit)
        every = [r for rows in taken for r in rows]
        assert len(every) == len(set(every)) == deliveries + notices
        # Leased: nothing is due again before the lease ends, everything after.
        assert store.claim(deliveries=True, now=T0 + timedelta(seconds=LEASE_S - 1),
                           limit=100) == []
        later = T0 + timedelta(seconds=LEASE_S + 1)
        assert len(store.claim(deliveries=True, now=later, limit=100)) == deliveries
        assert len(store.claim(deliveries=False, now=later, limit=100)) == notices
    finally:
        store.dispose()


def test_a_killed_senders_rows_come_back_after_the_lease(pg_url: str,
                                                         tmp_path: Path) -> None:
    store = st.Store(pg_url)
    try:
        _queue(store, 3, 1)
        first = store.claim(deliveries=True, now=T0, limit=10)  # then the sender dies
        assert len(first) == 3
        assert store.claim(deliveries=True, now=T0 + timedelta(seconds=5), limit=10) == []
        again = store.claim(deliveries=True, now=T0 + timedelta(seconds=LEASE_S), limit=10)
        assert sorted(r.row for r in again) == sorted(r.row for r in first)
        # Rows a sender took but will not post now (its batch was full) are due at once.
        later = T0 + timedelta(seconds=2 * LEASE_S)
        taken = store.claim(deliveries=True, now=later, limit=10)
        store.release([r.row for r in taken[1:]], later)
        assert sorted(r.row for r in store.claim(deliveries=True, now=later, limit=10)) == \
            sorted(r.row for r in taken[1:])
    finally:
        store.dispose()


def test_sqlite_has_one_sender_that_leaves_out_its_rows_in_flight(tmp_path: Path) -> None:
    store = st.Store(f"sqlite:///{tmp_path / 'node.db'}")
    try:
        _queue(store, 4, 2)
        first = store.claim(deliveries=True, now=T0, limit=2)
        rest = store.claim(deliveries=True, now=T0, limit=10,
                           leaving=[r.row for r in first])
        assert {r.row for r in first}.isdisjoint({r.row for r in rest})
        assert len(first) + len(rest) == 4
        notices: Any = store.claim(deliveries=False, now=T0, limit=10)
        assert [r.kind for r in notices] == ["incident", "incident"]
    finally:
        store.dispose()


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=hs.lists(hs.tuples(hs.booleans(), hs.sampled_from(["JPN", "KOR", "USA", "XYZ"])),
                     max_size=30),
       links=hs.sets(hs.sampled_from(["JPN", "KOR", "USA"]), min_size=1))
def test_each_partner_links_courier_takes_its_own_rows_and_no_other(
        tmp_path: Path, rows: list[tuple[bool, str]], links: set[str]) -> None:
    """Security invariant of the couriers (one loop per partner link, as ``node run``
    starts them): no two loops ever take the same row, each takes only rows to its
    partner, and every notice is taken by some loop (one to a recipient without a link by
    the first link's, to fail and back off rather than sit unseen)."""
    store = st.Store(f"sqlite:///{tmp_path / 'node.db'}")  # one per test, emptied each time
    try:
        with store.engine.begin() as conn:
            conn.execute(st.outbox.delete())
            st.insert_many(conn, st.outbox, [
                {"kind": DELIVERY if delivery else "incident", "item_id": f"indicator--{i}",
                 "version": "v" if delivery else None, "recipient": recipient,
                 "reference": None if delivery else f"ref-{i}",
                 "body": None if delivery else "{}", "status": "pending", "attempts": 0,
                 "not_now": 0, "next_at": T0, "queued_at": T0, "delivered_at": None,
                 "last_error": None, "seq": i} for i, (delivery, recipient) in enumerate(rows)])
            queued = {r.row: (r.kind == DELIVERY, r.recipient)
                      for r in conn.execute(sa.select(st.outbox))}
        first = min(links)
        taken: dict[int, list[str]] = {}
        for link in sorted(links):
            strays = frozenset(links) if link == first else None
            for deliveries in (True, False):
                for row in store.claim(deliveries=deliveries, now=T0, limit=100,
                                       recipient=link, or_not_to=None if deliveries else strays):
                    taken.setdefault(row.row, []).append(link)
            # Its loop sleeps for what it would take, and only that.
            mine = [n for n, by in taken.items() if by[-1] == link]
            assert store.next_due(recipients=[link], notices_to=link, or_not_to=strays) == \
                (T0 if mine else None)
    finally:
        store.dispose()
    assert all(len(by) == 1 for by in taken.values()), taken
    assert set(taken) == {n for n, (delivery, to) in queued.items()
                          if to in links or not delivery}
    for n, (by,) in taken.items():
        delivery, to = queued[n]
        assert to == by or (not delivery and to not in links and by == first)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(links=hs.sets(hs.sampled_from(["JPN", "KOR", "USA"]), min_size=1),
       commits=hs.lists(hs.tuples(
           hs.lists(hs.tuples(hs.booleans(), hs.sampled_from(["JPN", "KOR", "USA", "XYZ"])),
                    max_size=4),
           hs.lists(hs.integers(0, 40), max_size=3)), min_size=1, max_size=8))
def test_a_commit_wakes_the_links_it_queued_rows_for_and_no_other(
        tmp_path: Path, links: set[str],
        commits: list[tuple[list[tuple[bool, str]], list[int]]]) -> None:
    """Lose nothing, wake no one for nothing: after each commit (rows queued, others
    settled), the couriers wake exactly the links with a row queued since their last
    wake-up and still pending (a stray notice's link: the first), so a link no commit
    concerns (one whose partner only had receipts settled) costs nothing."""
    import threading

    from gsomia.shell import exchange

    store = st.Store(f"sqlite:///{tmp_path / 'node.db'}")  # one per test, emptied each time
    node: Any = type("Node", (), {"store": store})()
    couriers = exchange.Couriers(node)
    couriers._links = {code: (Any, Any, threading.Event()) for code in links}  # type: ignore[misc]
    n = 0
    try:
        with store.engine.begin() as conn:
            conn.execute(st.outbox.delete())
        for queued, settled in commits:
            with store.engine.begin() as conn:
                for delivery, recipient in queued:
                    n += 1
                    st.insert_many(conn, st.outbox, [{
                        "kind": DELIVERY if delivery else "incident",
                        "item_id": f"indicator--{n}", "version": "v" if delivery else None,
                        "recipient": recipient, "reference": None if delivery else f"r{n}",
                        "body": None if delivery else "{}", "status": "pending",
                        "attempts": 0, "not_now": 0, "next_at": T0, "queued_at": T0,
                        "delivered_at": None, "last_error": None, "seq": n}])
                new = [int(r) for r in conn.execute(
                    sa.select(st.outbox.c.row).order_by(st.outbox.c.row.desc())
                    .limit(len(queued))).scalars()]
                pending = [int(r) for r in conn.execute(
                    sa.select(st.outbox.c.row).where(st.outbox.c.status == "pending")
                    .order_by(st.outbox.c.row)).scalars()]
                gone = {pending[i % len(pending)] for i in settled} if pending else set()
                conn.execute(st.outbox.update().where(st.outbox.c.row.in_(sorted(gone)))
                             .values(status="delivered"))
                left = {int(r.row): str(r.recipient) for r in conn.execute(
                    sa.select(st.outbox.c.row, st.outbox.c.recipient)
                    .where(st.outbox.c.row.in_(new), st.outbox.c.status == "pending"))}
            assert couriers._concerned() == {
                to if to in links else min(links) for to in left.values()}
    finally:
        store.dispose()


# ---- the one courier ---------------------------------------------------------------------------


def test_the_courier_waits_once_for_a_partner_that_does_not_answer(
        node_factory: Any, tmp_path: Path) -> None:
    """Notices to a partner that accepts connections and never answers: one timeout per
    pass, not one per notice (the courier also carries the deliveries to everyone else),
    and every notice to it backs off with the one policy."""
    import socket
    import time

    from gsomia.core.audit import AuditKind
    from gsomia.core.outbox import MAX_BACKOFF, NoticeDue
    from gsomia.shell import exchange
    from gsomia.shell.notices import notice_rows

    jpn, kor = node_factory("JPN"), node_factory("KOR")
    hanging = socket.create_server(("127.0.0.1", 0), backlog=16)  # never accepts
    try:
        url = f"https://127.0.0.1:{hanging.getsockname()[1]}"
        peers = {code: exchange.Peer(code, url if code == "KOR" else "https://127.0.0.1:1",
                                     n.keys.public_signing_key(),
                                     n.keys.envelope_key().public_key())
                 for code, n in (("JPN", jpn), ("KOR", kor))}
        exchange.Partners("JPN", "direct", peers, ("KOR",)).write(jpn.folder)
        now = datetime.now(UTC)
        with jpn.uow() as uow:
            event = uow.audit.append(AuditKind.NOTICES_QUEUED, now, "node", details={})
            uow.outbox.add_notices([NoticeDue("incident", "KOR", f"JPN-incident-{i}",
                                              "indicator--x", "{}") for i in range(4)],
                                   now=now, seq=event.seq)
            uow.commit()
        sender = exchange.Sender(jpn, client=exchange.peer_client(jpn.folder, timeout=1.0))
        try:
            started = time.monotonic()
            report = sender.step()
            took = time.monotonic() - started
        finally:
            sender.close()
        assert report.failed == 4 and report.delivered == 0
        assert took < 2.5, f"waited {took:.1f} s: one timeout per notice"
        rows = notice_rows(jpn)
        assert [r["status"] for r in rows] == ["pending"] * 4
        assert all(r["attempts"] == 1 and r["last_error"] for r in rows)
        for r in rows:  # the one backoff, from when the pass began
            wait = (datetime.fromisoformat(r["next_at"]) - now).total_seconds()
            assert 0 < wait <= MAX_BACKOFF + 1
    finally:
        hanging.close()


# ---- the commit signal names the links it concerns ---------------------------------------------


@settings(max_examples=40)
@given(queued=hs.sets(hs.sampled_from(["JPN", "KOR", "USA", "XYZ"])), told=hs.booleans(),
       noise=hs.binary(max_size=300))
def test_a_commit_signal_says_whose_rows_it_queued_or_nothing(
        queued: set[str], told: bool, noise: bytes) -> None:
    """Lose nothing: a signal read back names every recipient its commit queued rows to
    (none once this process's couriers were handed them), and any other datagram (a
    commit that did not say, or bytes from anyone on the machine) reads as one that did
    not say, so the couriers look at the outbox themselves."""
    read = st.read_datagram(st.commit_datagram(queued, told))
    assert read == (frozenset() if told and queued else frozenset(queued))
    assert st.read_datagram(st.commit_datagram(None, told)) is None
    found = st.read_datagram(noise)
    assert found is None or (noise.startswith(b"q") and all(found))


def test_a_commit_tells_the_listening_couriers_whose_rows_it_queued(node_factory: Any) -> None:
    """The datagram each writing commit sends: the recipients of the rows it queued, none
    for a commit that queued nothing, and ``q!`` once the couriers of the committing
    process were handed them (:func:`gsomia.shell.store.on_queued`)."""
    import socket

    from gsomia.core.audit import AuditKind
    from gsomia.core.outbox import NoticeDue

    jpn = node_factory("JPN")
    address = st.commit_signal_address(jpn.store.engine)
    assert address is not None
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(5.0)
    handed: list[frozenset[str]] = []

    def commit(*to: str) -> bytes:
        now = datetime.now(UTC)
        with jpn.uow() as uow:
            event = uow.audit.append(AuditKind.NOTICES_QUEUED, now, "node", details={})
            uow.outbox.add_notices([NoticeDue("incident", r, f"JPN-incident-{uuid.uuid4()}",
                                              "indicator--x", "{}") for r in to],
                                   now=now, seq=event.seq)
            uow.commit()
        return listener.recv(256)

    try:
        assert commit("KOR", "USA") == b"q:KOR,USA"
        assert commit() == b"q:"
        st.on_queued(jpn.store.engine, handed.append)
        assert commit("USA") == b"q!"
        assert handed == [frozenset({"USA"})]
    finally:
        st.on_queued(jpn.store.engine, None)
        listener.close()


@settings(max_examples=30)
@given(links=hs.sets(hs.sampled_from(["JPN", "KOR", "USA"]), min_size=1),
       named=hs.sets(hs.sampled_from(["JPN", "KOR", "USA", "XYZ"])))
def test_a_named_commit_wakes_its_links_without_a_query(
        links: set[str], named: set[str]) -> None:
    """The couriers kick the links a commit signal names (a stray recipient's: the first
    link's) and no other, without asking the store (here one that cannot answer: asking
    it would wake every link)."""
    import threading

    from gsomia.shell import exchange

    node: Any = type("Node", (), {"store": None})()
    couriers = exchange.Couriers(node)
    kicks = {code: threading.Event() for code in links}
    couriers._links = {code: (Any, Any, kicks[code]) for code in links}  # type: ignore[misc]
    couriers._wake_links(frozenset(named))
    assert {code for code, kick in kicks.items() if kick.is_set()} == {
        to if to in links else min(links) for to in named}
    for kick in kicks.values():
        kick.clear()
    couriers._wake_links(None)  # a signal that did not say: the store is asked (it fails)
    assert all(kick.is_set() for kick in kicks.values())


def test_a_small_batchs_answer_is_recorded_on_the_links_own_loop(
        node_factory: Any, make_indicator: Any) -> None:
    """At light load the courier posts a small batch on its loop's thread and records the
    answer there too (no hop to the settling thread, which then never starts): here a
    partner that refuses the connection, whose failure is recorded as a retry."""
    import time

    from gsomia.service import handlers
    from gsomia.shell import exchange

    jpn, kor = node_factory("JPN"), node_factory("KOR")
    peers = {code: exchange.Peer(code, "https://127.0.0.1:1", n.keys.public_signing_key(),
                                 n.keys.envelope_key().public_key())
             for code, n in (("JPN", jpn), ("KOR", kor))}
    exchange.Partners("JPN", "direct", peers, ("KOR",)).write(jpn.folder)
    handlers.publish_many(jpn.uow(), keys=jpn.keys, catalogue=jpn.catalogue,
                          entries=[(make_indicator(0), handlers.LabelRequest(
                              "秘", ("JPN", "KOR"), "dprk-missile"))],
                          now=datetime.now(UTC))
    assert exchange.pending(jpn, "KOR") == 1
    sender = exchange.Sender(jpn, link="KOR",
                             client=exchange.peer_client(jpn.folder, timeout=1.0))
    stop = threading.Event()
    loop = threading.Thread(target=sender.run, args=(stop,), name="link-loop")
    loop.start()
    try:
        end = time.monotonic() + WAIT_S  # a hang guard: the claim is where it is recorded
        while time.monotonic() < end and \
                not any(r["attempts"] for r in exchange.outbox_rows(jpn)):
            time.sleep(0.02)
        rows = exchange.outbox_rows(jpn)
        assert [(r["status"], r["attempts"]) for r in rows] == [("pending", 1)]
        assert rows[0]["last_error"]
        # Recorded on the loop: this sender's settling executor (made on the first answer)
        # never started a thread. Not every thread of the process: another sender in it,
        # a test's before, may have one of its own.
        assert sender._settler is None or not sender._settler._threads
    finally:
        stop.set()
        loop.join(timeout=10)
        sender.close()


def test_a_unit_of_work_at_once_does_not_wait_for_the_write_lock(node_factory: Any) -> None:
    """``Store.uow(at_once=True)`` (the courier recording a small batch's receipts on its
    own loop): another writer holding the lock makes it raise at once, having taken
    nothing, and its connection goes back to the pool synced (``synchronous=FULL``), never
    relaxed for the next commit that must be."""
    import time

    import pytest

    jpn = node_factory("JPN")
    holder = jpn.store.uow()
    holder.__enter__()  # another writer: holds the write lock
    try:
        started = time.monotonic()
        with pytest.raises(st.WriterBusy), jpn.store.uow(synced=False, at_once=True):
            pass
        assert time.monotonic() - started < 2.0  # not the 30 s lock wait
    finally:
        holder.__exit__(None, None, None)
    with jpn.store.engine.connect() as one, jpn.store.engine.connect() as two:
        for conn in (one, two):  # both pooled connections: the holder's and the refused one's
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    with jpn.store.uow(synced=False, at_once=True) as uow:  # the lock free: taken at once
        uow.rollback()


def test_a_refused_batch_posted_again_one_by_one_retries_each_row_on_its_own_answer(
        node_factory: Any, make_indicator: Any) -> None:
    """review20: a batch the partner refused whole (413) goes again envelope by envelope;
    the partner answers one "not now" (429, Retry-After 300), the next is lost to the
    network, the last refused for good. Before, the last 429's status and wait went to
    every row retried, the lost one included (it waited 300 s, not a backoff); each row's
    "not now"s in a row are kept in the outbox."""
    import httpx

    from gsomia.service import handlers
    from gsomia.shell import exchange

    jpn, kor = node_factory("JPN"), node_factory("KOR")
    peers = {code: exchange.Peer(code, "https://kor.invalid", n.keys.public_signing_key(),
                                 n.keys.envelope_key().public_key())
             for code, n in (("JPN", jpn), ("KOR", kor))}
    exchange.Partners("JPN", "direct", peers, ("KOR",)).write(jpn.folder)
    handlers.publish_many(jpn.uow(), keys=jpn.keys, catalogue=jpn.catalogue,
                          entries=[(make_indicator(n), handlers.LabelRequest(
                              "秘", ("JPN", "KOR"), "dprk-missile")) for n in range(3)],
                          now=datetime.now(UTC))
    answers = iter([httpx.Response(413, text="too large"),
                    httpx.Response(429, text="at its bound", headers={"Retry-After": "300"}),
                    None, httpx.Response(413, text="too large")])

    def partner(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        if answer is None:
            raise httpx.ConnectError("connection reset", request=request)
        return answer

    at = datetime.now(UTC)
    one_pass(jpn, partner, link="KOR", clock=lambda: at)
    busy, lost, refused = exchange.outbox_rows(jpn)
    assert (busy["status"], busy["not_now"], busy["next_at"]) == (
        "pending", 1, at + timedelta(seconds=300))
    assert "429" in busy["last_error"]
    assert (lost["status"], lost["not_now"], lost["next_at"]) == (
        "pending", 0, at + timedelta(seconds=0.1))
    assert "connection reset" in lost["last_error"]
    assert refused["status"] == "refused" and "413" in refused["last_error"]


def test_migration_0019_counts_no_not_now_for_rows_queued_before_and_goes_back(
        db_url: str) -> None:
    """Rows queued before 0019 had no count of "not now"s: each starts at none (its next
    429 waits the bound, 60 s), and going back keeps every row. On both backends."""
    engine = at_revision(db_url, "0018")
    try:
        with engine.begin() as conn:
            conn.execute(sa.Table("outbox", sa.MetaData(), autoload_with=engine).insert(),
                         DELIVERIES)
        st.migrate(engine)
        with engine.connect() as conn:
            assert [r.not_now for r in conn.execute(
                sa.select(st.outbox.c.not_now).order_by(st.outbox.c.row))] == [0, 0]
        migrate(engine, command.downgrade, "0018")
        with engine.connect() as conn:
            back = sa.Table("outbox", sa.MetaData(), autoload_with=conn)
            assert "not_now" not in back.c
            assert conn.execute(sa.text("SELECT count(*) FROM outbox")).scalar() == 2
    finally:
        engine.dispose()


def test_migration_0022_keys_the_notices_by_recipient_and_each_loop_reads_its_own(
        db_url: str) -> None:
    """notices26: after 0022 each loop's earliest row is the earliest of those it posts
    (a link: its partner's deliveries and notices; the first link: the notices to anyone
    without a link too; one loop: every delivery named and every notice), on both
    backends, and the first link claims those notices; going back restores 0021's index
    and keeps every row."""
    engine = at_revision(db_url, "0021")
    rows = [(DELIVERY, "JPN", 30, "pending"), (DELIVERY, "USA", 10, "pending"),
            ("incident", "JPN", 40, "pending"), ("incident", "USA", 5, "pending"),
            ("classification-notice", "USA", 6, "pending"), ("incident", "CHN", 20, "pending"),
            ("incident", "CHN", 1, "delivered")]
    try:
        with engine.begin() as conn:
            st.insert_many(conn, st.outbox, [
                {"kind": kind, "item_id": f"indicator--{n}", "recipient": to,
                 "version": "v" if kind == DELIVERY else None,
                 "reference": None if kind == DELIVERY else f"ref-{n}",
                 "body": None if kind == DELIVERY else "{}", "status": status, "attempts": 0,
                 "not_now": 0, "next_at": T0 + timedelta(seconds=s), "queued_at": T0,
                 "delivered_at": None, "last_error": None, "seq": n}
                for n, (kind, to, s, status) in enumerate(rows)])
    finally:
        engine.dispose()
    asks: dict[str, tuple[list[str], str | None, set[str] | None]] = {
        "JPN's link": (["JPN"], "JPN", None), "JPN's notices": ([], "JPN", None),
        "the first link": (["JPN"], "JPN", {"JPN", "USA"}),
        "one loop": (["JPN", "USA"], None, None), "KOR's link": (["KOR"], "KOR", None)}

    def posts(ask: tuple[list[str], str | None, set[str] | None], kind: str,
              to: str) -> bool:
        recipients, notices_to, strays = ask
        return to in recipients or (kind != DELIVERY and (
            notices_to in (None, to) or (strays is not None and to not in strays)))

    store = st.Store(db_url)
    try:
        indexes = {i["name"]: i for i in sa.inspect(store.engine).get_indexes("outbox")}
        assert indexes["ix_outbox_notices"]["column_names"] == ["status", "recipient",
                                                               "next_at"]
        due = {name: store.next_due(recipients=r, notices_to=to, or_not_to=strays)
               for name, (r, to, strays) in asks.items()}
        # The first link's claim: its notices and those to anyone without a link.
        taken = {(r.kind, r.recipient) for r in store.claim(
            deliveries=False, now=T0 + timedelta(hours=1), limit=10, recipient="JPN",
            or_not_to={"JPN", "USA"})}
        migrate(store.engine, command.downgrade, "0021")
        indexes = {i["name"]: i for i in sa.inspect(store.engine).get_indexes("outbox")}
        with store.engine.connect() as conn:
            kept = conn.execute(sa.text("SELECT count(*) FROM outbox")).scalar()
    finally:
        store.dispose()
    assert due == {name: min((T0 + timedelta(seconds=s) for kind, to, s, status in rows
                              if status == "pending" and posts(ask, kind, to)), default=None)
                   for name, ask in asks.items()}
    assert len({*due.values()}) == len(due)  # each ask reads a row of its own
    assert taken == {(kind, to) for kind, to, _, status in rows if status == "pending"
                     and kind != DELIVERY and posts(asks["the first link"], kind, to)}
    assert indexes["ix_outbox_notices"]["column_names"] == ["status", "next_at"]
    assert kept == len(rows)


def test_next_due_reads_past_retyped_rows_to_the_earliest_a_loop_takes(tmp_path: Path) -> None:
    """courier23: each part of the outbox read from its earliest row on, until one passes
    the courier's full check: rows retyped on disk that sort first (a count out of its
    type, a number or a text of another shape for a time, bytes for a body) are read
    past, never returned; each loop's earliest row is, its recipients as it asks them."""
    store = st.Store(f"sqlite:///{tmp_path / 'node.db'}")
    retyped = {1: ("attempts", 1.5), 2: ("next_at", 0), 3: ("next_at", "1999-99-99 09:00"),
               5: ("body", b"{}")}
    rows = [(DELIVERY, "JPN", 10), (DELIVERY, "JPN", 1), (DELIVERY, "JPN", 2),
            (DELIVERY, "JPN", 3), ("incident", "JPN", 20), ("incident", "JPN", 5),
            ("incident", "USA", 6)]
    try:
        with store.engine.begin() as conn:
            st.insert_many(conn, st.outbox, [
                {"kind": kind, "item_id": f"indicator--{n}", "recipient": to,
                 "version": "v" if kind == DELIVERY else None,
                 "reference": None if kind == DELIVERY else f"ref-{n}",
                 "body": None if kind == DELIVERY else "{}", "status": "pending",
                 "attempts": 0, "not_now": 0, "next_at": T0 + timedelta(seconds=s), "queued_at": T0,
                 "delivered_at": None, "last_error": None, "seq": n}
                for n, (kind, to, s) in enumerate(rows)])
            for n, (column, value) in retyped.items():
                conn.exec_driver_sql(f"UPDATE outbox SET {column} = ? WHERE seq = ?",
                                     (value, n))
        due = {ask: store.next_due(recipients=recipients, notices_to=to, or_not_to=strays)
               for ask, (recipients, to, strays) in {
                   "every notice": (["JPN"], None, None), "JPN's": (["JPN"], "JPN", None),
                   "JPN's and strays": (["JPN"], "JPN", {"JPN"}),
                   "JPN's notices": ([], "JPN", None), "KOR's": (["KOR"], "KOR", None),
               }.items()}
    finally:
        store.dispose()
    assert due == {"every notice": T0 + timedelta(seconds=6),
                   "JPN's": T0 + timedelta(seconds=10),
                   "JPN's and strays": T0 + timedelta(seconds=6),
                   "JPN's notices": T0 + timedelta(seconds=20), "KOR's": None}


def test_a_schema_version_rewritten_back_to_0021_does_not_open(tmp_path: Any) -> None:
    """A database at 0022 whose alembic_version was rewritten to 0021 behind the node's
    back: 0022's upgrade would drop and make the index again and the node open as if
    nothing were amiss (CI's property over every table drew it); it refuses instead."""
    url = f"sqlite:///{tmp_path / 'node.db'}"
    st.Store(url).dispose()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0021'"))
    engine.dispose()
    with pytest.raises(MalformedInput, match="0021"):
        st.Store(url)


# Made once and bound at each call (hotpath28): each list from one value to more than a chunk.
SIZES = hs.one_of(hs.integers(0, 12), hs.sampled_from([499, 500, 501, 1001]))


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(queued=SIZES, limit=hs.integers(1, 600), data=hs.data())
def test_a_reports_statements_bind_lists_and_limits_of_any_size(
        db_url: str, queued: int, limit: int, data: hs.DataObject) -> None:
    """The claim (its pages too, read on past rows the courier does not take), and the
    registers a report's publish, receive and settle read and write, are statements made
    once with their lists and limits bound: each answers for its own values, whatever
    their number (across the 500 a chunk binds), on either database."""
    store = st.Store(db_url)  # one per test, emptied each time
    try:
        tag = uuid.uuid4().hex[:8]
        ids = [f"indicator--{tag}-{i}" for i in range(queued)]
        absent = [f"indicator--{tag}-absent-{i}" for i in range(3)]
        # No version: the claim's SQL lets such a row by, the courier's reading does not.
        unread = data.draw(hs.sets(hs.sampled_from(ids)) if ids else hs.just(set()))
        with store.engine.begin() as conn:
            for table in (st.outbox, st.envelopes_seen, st.receipts):
                conn.execute(table.delete())
            st.insert_many(conn, st.outbox, [
                {"kind": DELIVERY, "item_id": i, "version": "" if i in unread else "v",
                 "recipient": "JPN",
                 "reference": None, "body": None, "status": "pending", "attempts": 2,
                 "not_now": 0, "next_at": T0, "queued_at": T0, "delivered_at": None,
                 "last_error": None, "seq": 1} for i in ids])
            row_of = {r.item_id: r.row for r in conn.execute(
                sa.select(st.outbox.c.item_id, st.outbox.c.row)
                .where(st.outbox.c.item_id.like(f"indicator--{tag}-%")))}
            nonce_of = {i: f"{tag}-{n}" for n, i in enumerate(ids)}
            st.insert_many(conn, st.envelopes_seen, [
                {"nonce": n, "sender": "KOR", "item_id": i, "version": "v", "at": T0, "seq": 1}
                for i, n in nonce_of.items()])
        rows = sorted(row_of.values())
        leaving = data.draw(hs.sets(hs.sampled_from(rows)) if rows else hs.just(set()))
        taken = store.claim(deliveries=True, now=T0, limit=limit, recipient="JPN",
                            leaving=leaving)
        unread_rows = {row_of[i] for i in unread}
        assert [r.row for r in taken] == \
            [r for r in rows if r not in leaving and r not in unread_rows][:limit]
        asked = data.draw(hs.sets(hs.sampled_from(ids)) if ids else hs.just(set()))
        receipted = data.draw(hs.sets(hs.sampled_from(ids)) if ids else hs.just(set()))
        delivered = data.draw(hs.sets(hs.sampled_from(rows)) if rows else hs.just(set()))
        retried = data.draw(hs.sets(hs.sampled_from(rows)) if rows else hs.just(set()))
        at = T0 + timedelta(seconds=queued)
        with store.uow() as uow:
            assert uow.outbox.queued_deliveries(
                [(i, "v", "JPN") for i in [*asked, *absent]] + [(i, "v", "USA") for i in asked]
            ) == {(i, "v", "JPN") for i in asked - unread}
            assert uow.repo.seen_nonces([nonce_of[i] for i in asked] + [f"{tag}-absent"]) \
                == {nonce_of[i] for i in asked}
            uow.repo.add_receipts([(ReceiptRecord(i, "v", "JPN", "obtained", {}, T0), 1)
                                   for i in sorted(receipted)])
            assert uow.repo.receipted([*asked, *absent], "JPN", "obtained") == \
                {(i, "v") for i in asked & receipted}
            assert uow.repo.receipted(asked, "USA", "obtained") == set()
            assert uow.repo.receipted(asked, "JPN", "given") == set()
            assert uow.outbox.still_pending([*rows, -1]) == set(rows)
            uow.outbox.mark_delivered([(r, 3) for r in sorted(delivered)], at)
            uow.outbox.mark_refused([(r, 4, f"no {r}") for r in rows
                                     if r not in delivered | retried])
            # A row settled meanwhile is not sent again: only those still pending go back.
            uow.outbox.retry_deliveries([(r, 5, r % 3, at + timedelta(seconds=r), f"down {r}")
                                         for r in sorted(retried)])
            assert uow.outbox.still_pending(rows) == retried - delivered
            uow.commit()
        # Given back (PostgreSQL; SQLite leases nothing): due now, if still pending only.
        store.release(rows, at)
        back = at if store.dialect == "postgresql" else None
        with store.engine.connect() as conn:
            stored = {r.row: (r.status, r.attempts, r.not_now, r.next_at, r.delivered_at,
                              r.last_error)
                      for r in conn.execute(sa.select(st.outbox).where(
                          st.outbox.c.item_id.like(f"indicator--{tag}-%")))}
        # On PostgreSQL the rows claimed are leased (their next try LEASE_S ahead).
        leased = {r.row for r in taken} if store.dialect == "postgresql" else set()
        due = {r: T0 + timedelta(seconds=LEASE_S) if r in leased else T0 for r in rows}
        assert stored == {r: ("delivered", 3, 0, due[r], at, None) if r in delivered else
                          ("pending", 5, r % 3, back or at + timedelta(seconds=r), None,
                           f"down {r}")
                          if r in retried else ("refused", 4, 0, due[r], None, f"no {r}")
                          for r in rows}
    finally:
        store.dispose()
