"""The operator desk and the event stream's change check cost the same whatever the node
holds that their user may not read (desk29).

The desk read every holding and asked the policy about each, and read every consent request
and incident (and every notice of the outbox) before keeping those about items its user may
read: the time an operator waits for ``/desk/state`` grew with what lies above them, so they
could count it and see when more came. The event stream's check (``fingerprint``) counted
every item and receipt twice a second, for everyone. What is checked here is the work, not
a clock: the SQLite VM's instructions (dashsql29's counter), the same with 0 or 60 hidden
items.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from test_dashboard_hidden_cost import _emptied_store, _labels, _persons, _vm_steps

from gsomia.core.agreements import Catalogue
from gsomia.core.custody import CreatedCustody, CustodyRecord, NodeUser, StoredItem, record_bytes
from gsomia.core.errors import MalformedInput
from gsomia.service import access, handlers
from gsomia.service.handlers import LabelRequest
from gsomia.shell import desk
from gsomia.shell import store as st
from gsomia.shell.exchange import record_request
from gsomia.shell.node import Node, new_token
from gsomia.shell.web import NodeView, fingerprint

_NAMES = itertools.count(10_000)


def _publish(node: Node, make: Callable[..., dict[str, Any]], level: str, purpose: str,
             count: int, now: datetime) -> list[str]:
    objs = [make(next(_NAMES)) for _ in range(count)]
    handlers.publish_many(node.uow(), keys=node.keys, catalogue=node.catalogue, entries=[
        (obj, LabelRequest(level, ("JPN", "KOR"), purpose)) for obj in objs], now=now)
    return [str(obj["id"]) for obj in objs]


def _about(node: Node, item_ids: list[str], now: datetime) -> None:
    """A partner's consent request and an incident report about each item."""
    for item_id in item_ids:
        record_request(node, request_id=f"req-{next(_NAMES)}", item_id=item_id, holder="KOR",
                       recipient="USA", reason="relay", direction="incoming", now=now,
                       actor="KOR")
        handlers.report_incident(node.uow(), keys=node.keys, kind="loss", description="lost",
                                 now=now, item_id=item_id)


def _operator(node: Node, now: datetime) -> NodeUser:
    handlers.add_user(node.uow(), keys=node.keys, schemes=node.catalogue.schemes,
                      name="op", clearance="秘", need_to_know=["dprk-missile"],
                      token=new_token(), now=now, role="operator")
    with node.store.repository() as repo:
        user = repo.user_named("op")
    assert user is not None
    return user


def test_what_an_operator_may_not_read_adds_no_work_to_their_desk(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]]
) -> None:
    """An operator cleared 秘 for dprk-missile: items above their clearance or for another
    purpose, each with a consent request and an incident about it, leave the work of their
    desk unchanged (before the fix it grew with each: every holding, request, incident and
    notice was read). From none to 60 hidden at most one instruction for each lookup by id
    (SQLite steps once past the last entry found when it has a neighbour in the index);
    from 60 to 120, none. The desk shows the same items, requests and incidents throughout."""
    now = datetime.now(UTC)
    node = node_factory("JPN", now=now)
    user = _operator(node, now)
    _about(node, _publish(node, make_indicator, "秘", "dprk-missile", 3, now), now)
    desk.desk_state(node, user, now)
    answers, work = [], []
    for _ in range(3):
        doc, steps = _vm_steps(node, lambda: desk.desk_state(node, user, now))
        answers.append(([i["id"] for i in doc["items"]], [c["id"] for c in doc["consents"]],
                        [r["reference"] for r in doc["incidents"]]))
        work.append(steps)
        _about(node, _publish(node, make_indicator, "機密", "dprk-missile", 30, now), now)
        _about(node, _publish(node, make_indicator, "秘", "regional-security", 30, now), now)
    assert answers[0] == answers[1] == answers[2], answers
    assert [len(a) for a in answers[0]] == [3, 3, 3]
    assert work[0] > 0
    assert abs(work[1] - work[0]) <= 6, work
    assert work[2] == work[1], work


def test_the_event_streams_change_check_does_not_count_what_is_held(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]]
) -> None:
    """``fingerprint``, run twice a second for every open dashboard, scans no table: each
    part is sought at one end of an index (before: ``count(*)`` over items, receipts and
    tree heads, which SQLite runs as one VM instruction that walks every page of the table,
    so the VM counter alone missed it: the plan says SCAN). It still moves when an item
    comes, and its VM work is the same with 3 items held or 123."""
    now = datetime.now(UTC)
    node = node_factory("JPN", now=now)
    view = NodeView(node.store, node.keys, node.catalogue, "JPN")
    _publish(node, make_indicator, "秘", "dprk-missile", 3, now)
    run: list[str] = []

    def statement(_conn: Any, _cursor: Any, sql: str, *_: object) -> None:
        run.append(sql)

    sa.event.listen(node.store.engine, "before_cursor_execute", statement)
    try:
        fingerprint(view)
    finally:
        sa.event.remove(node.store.engine, "before_cursor_execute", statement)
    assert run
    with node.store.engine.connect() as conn:
        plans = [(sql, [str(r[-1]) for r in conn.exec_driver_sql(
            f"EXPLAIN QUERY PLAN {sql}").all()]) for sql in run]
    scans = [step for _, plan in plans for step in plan
             if step.startswith("SCAN") and step != "SCAN CONSTANT ROW"]
    assert not scans, plans
    marks, work = [], []
    for _ in range(3):
        mark, steps = _vm_steps(node, lambda: fingerprint(view))
        marks.append(mark)
        work.append(steps)
        _publish(node, make_indicator, "機密", "dprk-missile", 60, now)
    assert len(set(marks)) == 3, marks
    assert work[0] > 0
    assert work[0] == work[1] == work[2], work


# ---- the narrowing loses nothing the operator may read and adds nothing else ------------

@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=hs.data())
def test_the_desks_narrowed_read_is_the_policy_over_every_holding(
        shipped: Catalogue, tmp_path_factory: Any, data: hs.DataObject) -> None:
    """Items of one or two versions stored with random labels (created or received, some
    re-marked after, so that an item's versions may differ), any person: the items the desk
    finds readable are exactly ``access.readable_items`` over every holding, with the same
    holding and label for each (an item is readable only if every version held is)."""
    from gsomia.shell.desk import readable_items_here

    store = _emptied_store(tmp_path_factory, "desk")
    schemes = shipped.schemes
    at = datetime(2024, 3, 1, tzinfo=UTC)
    labels = data.draw(hs.lists(_labels(shipped), min_size=1, max_size=8), label="labels")
    with store.engine.begin() as conn:
        repo = st.SqlRepository(conn)
        created, received = [], []
        n = 0
        for k, label in enumerate(labels):
            versions = data.draw(hs.sampled_from((1, 2)), label=f"versions {k}")
            for v in range(versions):
                item = StoredItem(f"indicator--{k}", f"v{v}", "indicator", label.originator,
                                  b"{}", record_bytes(label.to_json()), b"", at)
                repo.add_items([(item, n)])
                n += 1
                if data.draw(hs.booleans(), label=f"received {k}/{v}"):
                    received.append((CustodyRecord(item.item_id, item.version, "received",
                                                   "JPN", label, label, at), n))
                else:
                    created.append((item.item_id, item.version, label,
                                    record_bytes(label.to_json())))
        repo.add_created_custody(CreatedCustody("JPN", at, created), seq=0)
        repo.add_custody_many(received)
        for k, _ in enumerate(labels):
            if data.draw(hs.booleans(), label=f"remarked {k}"):
                new = data.draw(_labels(shipped), label=f"new label {k}")
                repo.add_custody(CustodyRecord(f"indicator--{k}", "v0", "remarked", "JPN",
                                               new, new, at), seq=k)
        person = data.draw(_persons(shipped), label="person")
        everything = access.readable_items(person, repo.holdings(), schemes)
        narrowed = readable_items_here(repo, person, schemes)
    assert {k: (h.item.version, lab) for k, (h, lab) in narrowed.items()} \
        == {k: (h.item.version, lab) for k, (h, lab) in everything.items()}
    assert list(narrowed) == list(everything)


def test_migration_0024_indexes_requests_and_incidents_by_item(db_url: str) -> None:
    """A store at 0023 holding consent requests, incidents and their notices: after 0024 the
    two indexes exist, the rows are kept, and the desk's reads by item find those about the
    items asked for (and the incidents about none), in order, and nothing else; on SQLite and
    PostgreSQL."""
    from test_one_outbox import at_revision

    at = datetime(2024, 3, 1, tzinfo=UTC)
    engine = at_revision(db_url, "0023")
    try:
        meta = sa.MetaData()
        requests = sa.Table("consent_requests", meta, autoload_with=engine)
        incidents = sa.Table("incidents", meta, autoload_with=engine)
        outbox = sa.Table("outbox", meta, autoload_with=engine)
        with engine.begin() as conn:
            conn.execute(requests.insert(), [
                {"id": f"r{n}", "item_id": item, "holder": "KOR", "recipient": "USA",
                 "reason": "", "status": "pending", "direction": "incoming",
                 "at": at + timedelta(minutes=10 - n), "decided_at": None, "seq": n}
                for n, item in enumerate(("a", "b", "a"))])
            conn.execute(incidents.insert(), [
                {"reference": f"JPN-incident-{n}", "kind": "loss", "item_id": item,
                 "description": "", "reported_by": "operator", "notify": "KOR", "at": at,
                 "seq": 10 - n} for n, item in enumerate(("a", "b", None, "a"))])
            conn.execute(outbox.insert(), [
                {"kind": kind, "reference": ref, "recipient": "KOR", "item_id": None,
                 "version": None, "status": "pending", "attempts": 0, "next_at": at,
                 "queued_at": at, "body": "{}", "seq": n}
                for n, (kind, ref) in enumerate((
                    ("incident", "JPN-incident-3"), ("incident", "JPN-incident-1"),
                    ("classification-notice", "JPN-incident-0"),
                    ("incident", "JPN-incident-0")))])
        st.migrate(engine)
        found = {i["name"] for t in ("consent_requests", "incidents")
                 for i in sa.inspect(engine).get_indexes(t)}
        with engine.connect() as conn:
            repo = st.SqlRepository(conn)
            asked = [r["id"] for r in repo.consent_request_rows(["a", "c"])]
            told = [r["reference"] for r in repo.incident_records(["a"])]
            sent = [r["reference"] for r in repo.notice_rows("incident", told)]
            every = [r["id"] for r in repo.consent_request_rows()]
    finally:
        engine.dispose()
    assert {"ix_consent_requests_item", "ix_incidents_item"} <= found
    assert asked == ["r2", "r0"]
    assert every == ["r2", "r1", "r0"]
    assert told == ["JPN-incident-3", "JPN-incident-2", "JPN-incident-0"]
    assert sent == ["JPN-incident-3", "JPN-incident-0"]


def test_a_consent_answer_finds_its_request_by_id_and_refuses_a_hidden_one_as_absent(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]]
) -> None:
    """The desk's grant seeks the request by its id: it read the whole register, so its
    answer's work grew with the requests about items the operator may not read (the refusal
    of an unknown id: before, 40 more such requests added VM instructions; now none). One
    about an item the operator may read goes on to be answered; one about an item above
    them, an outgoing one, an unknown id and an id that is not text are all refused with
    the same 404 answer."""
    from gsomia.core.errors import ActionRefused

    now = datetime.now(UTC)
    node = node_factory("JPN", now=now)
    user = _operator(node, now)
    seen = _publish(node, make_indicator, "秘", "dprk-missile", 1, now)
    above = _publish(node, make_indicator, "機密", "dprk-missile", 1, now)
    for request_id, item_id, direction in (("req-seen", seen[0], "incoming"),
                                           ("req-above", above[0], "incoming"),
                                           ("req-out", seen[0], "outgoing")):
        record_request(node, request_id=request_id, item_id=item_id, holder="KOR",
                       recipient="USA", reason="relay", direction=direction, now=now,
                       actor="KOR")
    answers = {}
    for asked in ("req-above", "req-out", "req-none", 7):
        try:
            desk.act(node, user, "grant", {"request": asked}, now, lambda _: None)
        except ActionRefused as exc:
            answers[asked] = (exc.status, exc.public.replace(repr(str(asked)), "ID"))
    assert set(answers.values()) == {(404, "no consent request ID that you may answer is "
                                           "held here")}, answers
    assert len(answers) == 4

    def refused() -> None:
        with pytest.raises(ActionRefused):
            desk.act(node, user, "grant", {"request": "req-none"}, now, lambda _: None)

    work = [_vm_steps(node, refused)[1]]
    for n in range(40):
        record_request(node, request_id=f"req-above-{n}", item_id=above[0], holder="KOR",
                       recipient="USA", reason="relay", direction="incoming", now=now,
                       actor="KOR")
    work.append(_vm_steps(node, refused)[1])
    assert work[0] > 0 and work[0] == work[1], work
    # The readable one gets past the desk to the answer to the partner (this node, made
    # alone, has no partners to send it to).
    with pytest.raises(MalformedInput, match=r"partners\.json"):
        desk.act(node, user, "grant", {"request": "req-seen"}, now, lambda _: None)
