"""The dashboard's answer costs the same whatever the node holds that its user may not read.

``state`` read every holding and asked the policy about each (dashsql29): its work, and so
the time a low-cleared user waits for ``/dashboard/state`` or a push of the event stream,
grew with the items above their clearance, so they could count them and see when one came.
It now seeks in ``item_audience`` the versions whose current label fits the person, then
asks the policy about those alone. What is checked here is the work itself, not a clock:
the SQLite VM's instructions run for one answer, the same with 0 or 60 hidden items.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from gsomia.core.agreements import Catalogue
from gsomia.core.custody import CreatedCustody, CustodyRecord, StoredItem, record_bytes
from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import Person
from gsomia.service import access, handlers
from gsomia.service.handlers import LabelRequest
from gsomia.shell import store as st
from gsomia.shell.node import Node, new_token
from gsomia.shell.web import NodeView, Session, readable_holdings, state

_NAMES = itertools.count()


def _vm_steps(node: Node, call: Callable[[], Any]) -> tuple[Any, int]:
    """What ``call`` answers, and how many SQLite VM instructions it ran on the
    node's store: a count of rows and index entries touched that no other load moves."""
    steps = [0]
    hooked: list[sqlite3.Connection] = []

    def tick() -> int:
        steps[0] += 1
        return 0

    def hook(conn: Any, *_: object) -> None:
        raw = conn.connection.dbapi_connection
        if raw not in hooked:
            raw.set_progress_handler(tick, 1)
            hooked.append(raw)

    sa.event.listen(node.store.engine, "before_cursor_execute", hook)
    try:
        return call(), steps[0]
    finally:
        sa.event.remove(node.store.engine, "before_cursor_execute", hook)
        for raw in hooked:
            raw.set_progress_handler(None, 0)


def _publish(node: Node, make: Callable[..., dict[str, Any]], level: str, purpose: str,
             count: int, now: datetime) -> None:
    handlers.publish_many(node.uow(), keys=node.keys, catalogue=node.catalogue, entries=[
        (make(next(_NAMES)), LabelRequest(level, ("JPN", "KOR"), purpose))
        for _ in range(count)], now=now)


def test_items_a_user_may_not_read_add_no_work_to_their_state(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]]
) -> None:
    """A user cleared 秘 for dprk-missile: items above their clearance or for another
    purpose leave the work of their state unchanged (before the fix it grew with each:
    every item and custody record was read and decided on). From none to 60 hidden, at
    most one instruction for each of the two lookups of what they read by id (SQLite steps
    once more past the last entry found when it has a neighbour in the index); from 60 to
    120, none at all. The
    state shows the same three items throughout."""
    now = datetime.now(UTC)
    node = node_factory("JPN", now=now)
    name, token = "analyst", new_token()
    handlers.add_user(node.uow(), keys=node.keys, schemes=node.catalogue.schemes, name=name,
                      clearance="秘", need_to_know=["dprk-missile"], token=token, now=now)
    _publish(node, make_indicator, "秘", "dprk-missile", 3, now)
    view = NodeView(node.store, node.keys, node.catalogue, "JPN")
    session = Session(name, token, now + timedelta(hours=1))
    state(view, session, now)  # the first answer audits the reads; the next ones only read
    answers, work = [], []
    for _ in range(3):
        answer, steps = _vm_steps(node, lambda: state(view, session, now))
        answers.append([i["id"] for i in answer["items"]])
        work.append(steps)
        _publish(node, make_indicator, "機密", "dprk-missile", 30, now)
        _publish(node, make_indicator, "秘", "regional-security", 30, now)
    assert answers[0] == answers[1] == answers[2] and len(answers[0]) == 3
    assert work[0] > 0
    assert abs(work[1] - work[0]) <= 2, work  # items and custody looked up by id: 2 scans
    assert work[2] == work[1], work


# ---- the narrowing loses nothing the person may read and adds nothing else --------------

_PARTIES = ("JPN", "KOR", "USA")


def _labels(catalogue: Catalogue) -> hs.SearchStrategy[SecurityLabel]:
    schemes = catalogue.schemes

    @hs.composite
    def label(draw: hs.DrawFn) -> SecurityLabel:
        scheme = draw(hs.sampled_from(_PARTIES))
        level = draw(hs.sampled_from([lv.name for lv in schemes[scheme].levels] + ["NOPE"]))
        return SecurityLabel(
            draw(hs.sampled_from(_PARTIES)), level,
            frozenset(draw(hs.sets(hs.sampled_from(_PARTIES), min_size=1))),
            draw(hs.sampled_from(("dprk-missile", "regional-security", "maritime-security"))),
            frozenset(draw(hs.sets(hs.sampled_from(("NOFORN", "ORCON"))))), scheme=scheme)

    return label()


def _persons(catalogue: Catalogue) -> hs.SearchStrategy[Person]:
    @hs.composite
    def person(draw: hs.DrawFn) -> Person:
        party = draw(hs.sampled_from(_PARTIES))
        levels = [lv.name for lv in catalogue.schemes[party].levels]
        return Person("someone", party, draw(hs.sampled_from([*levels, None, "NOPE"])),
                      frozenset(draw(hs.sets(hs.sampled_from(
                          ("dprk-missile", "regional-security", "maritime-security"))))))

    return person()


_STORES: dict[str, st.Store] = {}


def _emptied_store(tmp_path_factory: Any, name: str) -> st.Store:
    """One SQLite store of ``name`` for the whole run (Hypothesis draws many examples on it),
    its items, custody records and audience rows deleted: each example starts from none."""
    if name not in _STORES:
        folder: Path = tmp_path_factory.mktemp(name)
        _STORES[name] = st.Store(f"sqlite:///{folder / 'store.db'}")
    store = _STORES[name]
    with store.engine.begin() as conn:
        conn.execute(st.items.delete())
        conn.execute(st.custody.delete())
        conn.execute(sa.text("DELETE FROM item_audience"))
    return store


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=hs.data())
def test_the_narrowed_read_is_the_policy_over_every_holding(
        shipped: Catalogue, tmp_path_factory: Any, data: hs.DataObject) -> None:
    """Versions stored with random labels (created, received, and some re-marked after),
    any person: the versions the store seeks, and the holdings ``state`` shows, are
    exactly those the policy lets the person read among every holding."""
    store = _emptied_store(tmp_path_factory, "db")
    schemes = shipped.schemes
    at = datetime(2024, 3, 1, tzinfo=UTC)
    labels = data.draw(hs.lists(_labels(shipped), min_size=1, max_size=8), label="labels")
    with store.engine.begin() as conn:
        repo = st.SqlRepository(conn)
        created, received = [], []
        for n, label in enumerate(labels):
            item = StoredItem(f"indicator--{n}", "v1", "indicator", label.originator, b"{}",
                              record_bytes(label.to_json()), b"", at)
            repo.add_items([(item, n)])
            if data.draw(hs.booleans(), label=f"received {n}"):
                received.append((CustodyRecord(item.item_id, "v1", "received", "JPN", label,
                                               label, at), n))
            else:
                created.append((item.item_id, "v1", label, record_bytes(label.to_json())))
        repo.add_created_custody(CreatedCustody("JPN", at, created), seq=0)
        repo.add_custody_many(received)
        for n, _ in enumerate(labels):
            if data.draw(hs.booleans(), label=f"remarked {n}"):
                new = data.draw(_labels(shipped), label=f"new label {n}")
                repo.add_custody(CustodyRecord(f"indicator--{n}", "v1", "remarked", "JPN",
                                               new, new, at), seq=n)
        person = data.draw(_persons(shipped), label="person")
        everything = {(h.item.item_id, h.item.version) for h in repo.holdings()
                      if access.may_read(person, h.current.national_label, schemes)}
        sought = set(repo.readable_versions(*access.reading_keys(person, schemes)))
        shown = {(h.item.item_id, h.item.version)
                 for h in readable_holdings(repo, person, schemes)}
    assert shown == everything
    assert sought == everything


def test_migration_0023_fills_the_audience_of_each_versions_latest_label(
        db_url: str) -> None:
    """A store at 0022 holding two versions, one re-marked since and one whose label does
    not parse: after 0023 each has the rows of its latest label's audience (the re-marked
    one's new level, NOFORN's originator alone), the unparsable none; on SQLite and
    PostgreSQL."""
    from test_one_outbox import at_revision

    at = datetime(2024, 3, 1, tzinfo=UTC)
    old = SecurityLabel("KOR", "군사II급비밀", frozenset({"KOR", "JPN"}), "dprk-missile")
    new = SecurityLabel("KOR", "군사I급비밀", frozenset({"KOR", "JPN"}), "dprk-missile",
                        frozenset({"NOFORN"}))
    plain = SecurityLabel("JPN", "秘", frozenset({"JPN", "USA"}), "regional-security")

    def row(item_id: str, label: bytes, seq: int) -> dict[str, Any]:
        return {"item_id": item_id, "version": "v1", "event": "created", "holder": "KOR",
                "provider": None, "agreement": None, "original_label": label,
                "national_label": label, "at": at, "envelope_digest": None, "note": "",
                "seq": seq}

    engine = at_revision(db_url, "0022")
    try:
        table = sa.Table("custody", sa.MetaData(), autoload_with=engine)
        with engine.begin() as conn:
            conn.execute(table.insert(), [
                row("a", record_bytes(old.to_json()), 1),
                row("b", record_bytes(plain.to_json()), 2),
                row("c", b"not json", 3),
                row("a", record_bytes(new.to_json()), 4)])
        st.migrate(engine)
        with engine.connect() as conn:
            found = sorted(tuple(r) for r in conn.execute(sa.text(
                "SELECT item_id, version, party, purpose, scheme, level FROM item_audience")))
    finally:
        engine.dispose()
    assert found == [("a", "v1", "KOR", "dprk-missile", "KOR", "군사I급비밀"),
                     ("b", "v1", "JPN", "regional-security", "JPN", "秘"),
                     ("b", "v1", "USA", "regional-security", "JPN", "秘")]


def test_audit_verify_names_audience_rows_written_behind_the_nodes_back(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]]
) -> None:
    """A re-marked item's rows follow its new label, and verify is clean; a row deleted
    (which hides a version from its readers), added or edited is named by verify."""
    now = datetime.now(UTC)
    node = node_factory("JPN", now=now)
    _publish(node, make_indicator, "秘", "dprk-missile", 2, now)
    with node.store.repository() as repo:
        held = [h.item.item_id for h in repo.holdings()]
    handlers.change_classification(node.uow(), keys=node.keys, schemes=node.catalogue.schemes,
                                   item_id=held[0], new_level="極秘", now=now)

    def verdict() -> Any:
        with node.store.reader() as reader:
            return handlers.verify_audit(reader, public_key=node.keys.public_signing_key())

    db = sqlite3.connect(node.store.engine.url.database or "")
    try:
        levels = {r[0]: r[1] for r in db.execute("SELECT item_id, level FROM item_audience")}
        assert levels == {held[0]: "極秘", held[1]: "秘"}
        assert verdict().ok
        for change in ("DELETE FROM item_audience WHERE item_id = ?",
                       "INSERT INTO item_audience (item_id, version, party, purpose, scheme, "
                       "level) SELECT item_id, version, 'USA', purpose, scheme, level "
                       "FROM item_audience WHERE item_id = ?",
                       "UPDATE item_audience SET level = '秘' WHERE item_id = ?"):
            saved = db.execute("SELECT * FROM item_audience").fetchall()
            db.execute(change, (held[0],))
            db.commit()
            result = verdict()
            assert not result.ok, change
            assert any("item_audience" in p.where and held[0] in p.where
                       for p in result.problems), (change, result.problems)
            db.execute("DELETE FROM item_audience")
            db.executemany("INSERT INTO item_audience VALUES (?, ?, ?, ?, ?, ?, ?)", saved)
            db.commit()
            assert verdict().ok
    finally:
        db.close()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=hs.data())
def test_audience_rows_forged_on_disk_show_nothing_the_policy_does_not(
        shipped: Catalogue, tmp_path_factory: Any, data: hs.DataObject) -> None:
    """secreview29, an adversary with the host's disk: ``item_audience`` (which no digest
    covers) rewritten at will, rows added for any party, purpose, scheme and level, and
    some versions' rows deleted. What ``state`` shows is still only what the policy lets
    the person read by each version's custody label, and what it no longer shows is
    exactly the readable versions whose rows were deleted (which audit verify names:
    test_audit_verify_names_audience_rows_written_behind_the_nodes_back)."""
    store = _emptied_store(tmp_path_factory, "forged")
    schemes = shipped.schemes
    at = datetime(2024, 3, 1, tzinfo=UTC)
    labels = data.draw(hs.lists(_labels(shipped), min_size=1, max_size=6), label="labels")
    purposes = ("dprk-missile", "regional-security", "maritime-security")
    with store.engine.begin() as conn:
        repo = st.SqlRepository(conn)
        created = []
        for n, label in enumerate(labels):
            item = StoredItem(f"indicator--{n}", "v1", "indicator", label.originator, b"{}",
                              record_bytes(label.to_json()), b"", at)
            repo.add_items([(item, n)])
            created.append((item.item_id, "v1", label, record_bytes(label.to_json())))
        repo.add_created_custody(CreatedCustody("JPN", at, created), seq=0)
        deleted = {f"indicator--{n}" for n in range(len(labels))
                   if data.draw(hs.booleans(), label=f"rows of {n} deleted")}
        for item_id in deleted:
            conn.execute(sa.text("DELETE FROM item_audience WHERE item_id = :i"),
                         {"i": item_id})
        for n in range(len(labels)):
            forged = data.draw(hs.lists(hs.tuples(
                hs.sampled_from(_PARTIES), hs.sampled_from(purposes),
                hs.sampled_from(_PARTIES), hs.sampled_from(
                    [lv.name for s in _PARTIES for lv in schemes[s].levels])),
                max_size=4), label=f"rows forged for {n}")
            for party, purpose, scheme, level in forged:
                conn.execute(sa.text(
                    "INSERT INTO item_audience (item_id, version, party, purpose, scheme, "
                    "level) VALUES (:i, 'v1', :p, :u, :s, :l)"),
                    {"i": f"indicator--{n}", "p": party, "u": purpose, "s": scheme,
                     "l": level})
        person = data.draw(_persons(shipped), label="person")
        allowed = {(h.item.item_id, h.item.version) for h in repo.holdings()
                   if access.may_read(person, h.current.national_label, schemes)}
        shown = {(h.item.item_id, h.item.version)
                 for h in readable_holdings(repo, person, schemes)}
    assert shown <= allowed
    hidden = allowed - shown
    assert {item_id for item_id, _ in hidden} <= deleted
