"""Tampering with a node's stored log, items or registers is caught, and said precisely.

Each attack edits the database the way someone with write access to it would, then runs the
verification ``gsomia audit verify`` runs. The property test applies any single edit to any
stored row of a populated node and checks that verification fails.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as hs

from gsomia.core.agreements import Catalogue
from gsomia.core.audit import (
    AuditEvent,
    AuditKind,
    AuditRecord,
    consistency_proof,
    verify_consistency,
)
from gsomia.core.errors import PolicyDenied, ProofInvalid
from gsomia.service import handlers
from gsomia.service.handlers import Incoming, LabelRequest
from gsomia.shell import store as st
from gsomia.shell.node import Node, init_node, open_node
from tampering import edit_value, node_copy

Factory = Callable[..., Node]
SECRET_KOR = LabelRequest("군사II급비밀", ("KOR", "JPN"), "dprk-missile")
SECRET_JPN = LabelRequest("極秘", ("JPN", "KOR"), "dprk-missile")


def populate(kor: Node, jpn: Node, make: Callable[..., Any], now: datetime,
             first: int = 0) -> None:
    """Users, five items published, one received, reads granted and denied, an incident."""
    for name, clearance in (("kim", "군사II급비밀"), ("lee", "군사III급비밀")):
        handlers.add_user(kor.uow(), keys=kor.keys, schemes=kor.catalogue.schemes, name=name,
                          clearance=clearance, need_to_know=["dprk-missile"],
                          token=f"gs_{name}_" + "t" * 40, now=now)
    for i in range(5):
        handlers.publish(kor.uow(), keys=kor.keys, catalogue=kor.catalogue,
                         obj=make(first + i), label=SECRET_KOR, now=now + timedelta(seconds=i))
    received = make(first + 90)
    handlers.publish(jpn.uow(), keys=jpn.keys, catalogue=jpn.catalogue, obj=received,
                     label=SECRET_JPN, now=now)
    with jpn.store.repository() as repo:
        item = repo.get_item(received["id"])
    assert item is not None
    handlers.ingest(kor.uow(), keys=kor.keys, catalogue=kor.catalogue,
                    batch=[Incoming(item.object(), item.security_label(), item.bound(), "JPN")],
                    originator_keys={"JPN": jpn.keys.public_signing_key()}, now=now)
    for name in ("kim", "lee"):
        with contextlib.suppress(PolicyDenied):  # lee is denied: that is on record too
            handlers.read_item(kor.uow(), schemes=kor.catalogue.schemes,
                               token=f"gs_{name}_" + "t" * 40, item_id=make(first)["id"],
                               now=now)
    handlers.report_incident(kor.uow(), keys=kor.keys, kind="loss",
                             description="a printed copy is missing", item_id=received["id"],
                             now=now)


def verdict(node: Node) -> Any:
    with node.store.reader() as reader:
        return handlers.verify_audit(reader, public_key=node.keys.public_signing_key())


def problems(node: Node) -> list[tuple[str, str]]:
    result = verdict(node)
    assert not result.ok
    return [(p.what, p.where) for p in result.problems]


def sql(node: Node, statement: str, **params: Any) -> None:
    with node.store.engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def one(node: Node, statement: str, **params: Any) -> Any:
    with node.store.engine.connect() as conn:
        return conn.execute(sa.text(statement), params).first()


@pytest.fixture
def pair(db_url: str, node_factory: Factory, make_indicator: Callable[..., Any],
         now: datetime) -> tuple[Node, Node]:
    kor, jpn = node_factory("KOR", db_url), node_factory("JPN")
    populate(kor, jpn, make_indicator, now)
    assert verdict(kor).ok
    return kor, jpn


def test_a_flipped_byte_in_a_stored_item_is_named(pair: tuple[Node, Node],
                                                  make_indicator: Callable[..., Any]) -> None:
    kor, _ = pair
    target = make_indicator(2)
    row = one(kor, "SELECT content FROM items WHERE id = :id", id=target["id"])
    content = bytearray(row.content)
    content[content.index(b"Sunan")] ^= 0x01
    sql(kor, "UPDATE items SET content = :c WHERE id = :id", c=bytes(content), id=target["id"])
    found = problems(kor)
    assert found == [("item-modified", f"item {target['id']}@{target['modified']}")]
    message = verdict(kor).problems[0].message
    assert "was modified" in message and "event seq" in message


def test_a_changed_label_is_caught_even_if_the_binding_is_left_alone(
        pair: tuple[Node, Node], make_indicator: Callable[..., Any]) -> None:
    kor, _ = pair
    target = make_indicator(3)
    row = one(kor, "SELECT label FROM items WHERE id = :id", id=target["id"])
    lowered = bytes(row.label).replace("군사II급비밀".encode(), "군사III급비밀".encode())
    sql(kor, "UPDATE items SET label = :l WHERE id = :id", l=lowered, id=target["id"])
    assert ("item-modified", f"item {target['id']}@{target['modified']}") in problems(kor)


def test_a_deleted_audit_row_is_named(pair: tuple[Node, Node]) -> None:
    kor, _ = pair
    sql(kor, "DELETE FROM audit_events WHERE seq = 6")
    found = problems(kor)
    assert ("removed", "seq 6") in found
    # The signed heads after it no longer match, and the latest is out of reach.
    assert {what for what, _ in found} == {"removed", "forked", "rolled-back", "frontier"}


def test_two_swapped_rows_read_as_reordered(pair: tuple[Node, Node]) -> None:
    kor, _ = pair
    a = one(kor, "SELECT position FROM audit_events WHERE seq = 4").position
    b = one(kor, "SELECT position FROM audit_events WHERE seq = 7").position
    sql(kor, "UPDATE audit_events SET position = -1 WHERE position = :a", a=a)
    sql(kor, "UPDATE audit_events SET position = :a WHERE position = :b", a=a, b=b)
    sql(kor, "UPDATE audit_events SET position = :b WHERE position = -1", b=b)
    found = problems(kor)
    assert ("reordered", "seq 4") in found
    assert {what for what, _ in found} <= {"reordered", "forked", "frontier"}


def test_two_swapped_events_read_as_modified(pair: tuple[Node, Node]) -> None:
    kor, _ = pair
    cols = "kind, at, actor, item_id, item_version, content_hash, details, leaf_hash"
    a = one(kor, f"SELECT {cols} FROM audit_events WHERE seq = 5")
    b = one(kor, f"SELECT {cols} FROM audit_events WHERE seq = 6")
    sets = ", ".join(f"{c} = :{c}" for c in cols.split(", "))
    sql(kor, f"UPDATE audit_events SET {sets} WHERE seq = 5", **b._mapping)
    sql(kor, f"UPDATE audit_events SET {sets} WHERE seq = 6", **a._mapping)
    found = problems(kor)
    assert ("modified", "seq 5") in found and ("modified", "seq 6") in found


def test_an_event_rewritten_with_its_leaf_hash_recomputed_breaks_the_signed_heads(
        pair: tuple[Node, Node]) -> None:
    kor, _ = pair
    seq = one(kor, "SELECT seq FROM audit_events WHERE kind = 'access-denied'").seq
    with kor.store.reader() as reader:
        original = reader.event(seq)
    assert original is not None
    forged = AuditEvent(seq, AuditKind.ACCESS_GRANTED, original["at"], original["actor"],
                        original["item_id"], original["item_version"], None,
                        {"reasons": ["made up"]})
    record = AuditRecord.of(forged)
    import json

    sql(kor, "UPDATE audit_events SET kind = :k, details = :d, leaf_hash = :h WHERE seq = :s",
        k=forged.kind.value, d=json.dumps(dict(forged.details), sort_keys=True),
        h=record.leaf_hash, s=seq)
    found = problems(kor)
    # The leaf hash matches the forged event, but not the heads the node signed over it.
    assert {what for what, _ in found} == {"forked", "frontier"}
    first_head = one(kor, "SELECT min(size) AS n FROM tree_heads WHERE size > :s", s=seq).n
    assert found[0] == ("forked", f"tree head size {first_head}")


def test_a_log_truncated_by_a_careful_attacker_is_caught_by_the_head_kept_outside(
        pair: tuple[Node, Node]) -> None:
    kor, _ = pair
    with kor.store.reader() as reader:
        size = reader.size()
        keep = next(h for h in reversed(reader.tree_heads()) if h.size <= size - 3)
        leaves = reader.leaf_hashes()[:keep.size]
    from gsomia.core.audit import MerkleAccumulator

    acc = MerkleAccumulator.of(leaves)
    # Remove the tail, its heads, and rewind the frontier: the database is consistent again.
    sql(kor, "DELETE FROM audit_events WHERE seq >= :n", n=keep.size)
    sql(kor, "DELETE FROM tree_heads WHERE size > :n", n=keep.size)
    sql(kor, "UPDATE audit_state SET size = :n, frontier = :f", n=keep.size,
        f=b"".join(acc.frontier))
    sql(kor, "DELETE FROM incidents")
    found = problems(kor)
    assert ("rolled-back", f"tree head size {size}") in found
    assert "rolled back" in verdict(kor).problems[0].message


def test_a_truncated_tail_is_caught_by_the_signed_head_and_the_frontier(
        pair: tuple[Node, Node]) -> None:
    kor, _ = pair
    with kor.store.reader() as reader:
        size = reader.size()
    sql(kor, "DELETE FROM audit_events WHERE seq = :n", n=size - 1)
    found = problems(kor)
    assert ("rolled-back", f"tree head size {size}") in found
    assert ("frontier", "audit_state") in found


def test_an_event_appended_behind_the_nodes_back_is_unsigned(pair: tuple[Node, Node],
                                                             now: datetime) -> None:
    kor, _ = pair
    with kor.store.reader() as reader:
        size = reader.size()
    forged = AuditRecord.of(AuditEvent(size, AuditKind.CONSENT, now, "operator"))
    sql(kor, "INSERT INTO audit_events (seq, kind, at, actor, details, leaf_hash) "
             "VALUES (:s, 'consent', :at, 'operator', '{}', :h)",
        s=size, at=forged.event.to_json()["at"], h=forged.leaf_hash)
    found = problems(kor)
    assert ("unsigned", f"seq {size}-{size}") in found


def test_an_item_slipped_into_the_store_is_unlogged(pair: tuple[Node, Node],
                                                    make_indicator: Callable[..., Any],
                                                    now: datetime) -> None:
    kor, _ = pair
    row = one(kor, "SELECT * FROM items WHERE id = :id", id=make_indicator(1)["id"])
    values = dict(row._mapping)
    values.pop("row")
    values["version"] = "2030-01-01T00:00:00.000Z"
    sql(kor, "INSERT INTO items (id, version, type, originator, content, label, binding, "
             "added_at, seq) VALUES (:id, :version, :type, :originator, :content, :label, "
             ":binding, :added_at, :seq)", **values)
    found = problems(kor)
    assert ("item-unlogged", f"item {values['id']}@2030-01-01T00:00:00.000Z") in found


def test_a_raised_clearance_and_a_deleted_custody_row_are_named(
        pair: tuple[Node, Node], make_indicator: Callable[..., Any]) -> None:
    kor, _ = pair
    sql(kor, "UPDATE users SET clearance = '군사I급비밀' WHERE name = 'lee'")
    target = make_indicator(4)
    sql(kor, "DELETE FROM custody WHERE item_id = :id", id=target["id"])
    found = problems(kor)
    assert ("record-modified", "users name=lee") in found
    assert any(what == "record-missing" and where.startswith("custody recorded by seq")
               for what, where in found)


def test_a_role_raised_behind_the_log_is_caught(pair: tuple[Node, Node]) -> None:
    """Issue 14: a reader made admin in the database, not through ``user add``, is named."""
    kor, _ = pair
    sql(kor, "UPDATE users SET role = 'admin' WHERE name = 'lee'")
    assert ("record-modified", "users name=lee") in problems(kor)


def test_a_changed_time_added_is_caught(pair: tuple[Node, Node],
                                        make_indicator: Callable[..., Any]) -> None:
    kor, _ = pair
    target = make_indicator(0)
    items = st.items
    with kor.store.engine.begin() as conn:
        added = conn.execute(sa.select(items.c.added_at).where(items.c.id == target["id"]))
        conn.execute(items.update().where(items.c.id == target["id"]).values(
            added_at=added.scalar_one() + timedelta(microseconds=1)))
    assert problems(kor) == [("item-modified", f"item {target['id']}@{target['modified']}")]


def test_a_forged_head_signature_is_named(pair: tuple[Node, Node]) -> None:
    kor, _ = pair
    row = one(kor, "SELECT size, signature FROM tree_heads ORDER BY size LIMIT 1 OFFSET 2")
    signature = bytearray(row.signature)
    signature[0] ^= 0x80
    sql(kor, "UPDATE tree_heads SET signature = :s WHERE size = :n", s=bytes(signature),
        n=row.size)
    assert problems(kor) == [("head-signature", f"tree head size {row.size}")]


def test_restoring_an_older_copy_of_the_database_is_a_roll_back(
        node_factory: Factory, make_indicator: Callable[..., Any], now: datetime) -> None:
    kor, jpn = node_factory("KOR"), node_factory("JPN")
    populate(kor, jpn, make_indicator, now)
    kor.close()
    db = kor.folder / "node.db"
    backup = kor.folder.parent / "backup.db"
    shutil.copyfile(db, backup)
    with open_node(kor.folder, catalogue=kor.catalogue) as again:
        handlers.publish(again.uow(), keys=again.keys, catalogue=again.catalogue,
                         obj=make_indicator(70), label=SECRET_KOR, now=now)
        with again.store.reader() as reader:
            size = reader.size()
    shutil.copyfile(backup, db)
    with open_node(kor.folder, catalogue=kor.catalogue) as restored:
        result = verdict(restored)
    assert not result.ok
    assert [(p.what, p.where) for p in result.problems] == [
        ("rolled-back", f"tree head size {size}")]


def test_consistency_between_heads_verifies_and_a_forked_log_does_not(
        node_factory: Factory, make_indicator: Callable[..., Any], now: datetime,
        tmp_path: Path, shipped: Catalogue) -> None:
    kor, jpn = node_factory("KOR"), node_factory("JPN")
    populate(kor, jpn, make_indicator, now)
    kor.close()
    fork_dir = tmp_path / "fork"
    shutil.copytree(kor.folder, fork_dir)  # same keys, same log so far
    original = open_node(kor.folder, catalogue=shipped)
    fork = open_node(fork_dir, catalogue=shipped)
    try:
        with original.store.reader() as reader:
            base = reader.size()
        for node, offset in ((original, 200), (fork, 300)):
            for i in range(3):
                handlers.publish(node.uow(), keys=node.keys, catalogue=node.catalogue,
                                 obj=make_indicator(offset + i), label=SECRET_KOR, now=now)
        with original.store.reader() as reader:
            mid = reader.latest_head()
        assert mid is not None and mid.size > base
        handlers.publish(original.uow(), keys=original.keys, catalogue=original.catalogue,
                         obj=make_indicator(210), label=SECRET_KOR, now=now)
        with original.store.reader() as reader:
            doc = handlers.prove(reader, public_key=original.keys.public_signing_key(),
                                 event=base + 1, against=mid.size)
        public = original.keys.public_signing_key()
        checked = handlers.check_proof(doc, public)
        assert checked.old_size == mid.size and checked.event == base + 1
        # The fork signed heads with the same key, but its history after `base` differs.
        with fork.store.reader() as reader:
            fork_head = reader.latest_head()
            fork_leaves = reader.leaf_hashes()
        assert fork_head is not None and fork_head.size >= mid.size
        path = consistency_proof(fork_leaves, mid.size, fork_head.size)
        with pytest.raises(ProofInvalid):
            verify_consistency(mid.size, fork_head.size, mid.root, fork_head.root, path)
        forged = {**doc, "head": fork_head.to_json(), "inclusion": None,
                  "consistency": {"old_head": mid.to_json(),
                                  "path": [h.hex() for h in path]}}
        with pytest.raises(ProofInvalid):
            handlers.check_proof(forged, public)
        # An inclusion proof does not survive a changed event either.
        tampered = {**doc, "inclusion": {**doc["inclusion"],
                                         "event": {**doc["inclusion"]["event"],
                                                   "actor": "someone else"},
                                         "leaf_hash": None}}
        with pytest.raises(ProofInvalid):
            handlers.check_proof(tampered, public)
    finally:
        original.close()
        fork.close()


# ---- any single edit of any stored row is detected ------------------------------------------

# Columns an edit may touch. ``audit_events.position`` is only the storage order (moving rows
# is the swap attack below); earlier tree heads are checkpoints whose loss hides nothing.
TABLES = {
    "items": ["id", "version", "type", "originator", "content", "label", "binding",
              "added_at", "seq"],
    "custody": ["item_id", "version", "event", "holder", "provider", "agreement",
                "original_label", "national_label", "at", "envelope_digest", "note", "seq"],
    "users": ["name", "party", "clearance", "need_to_know", "token_hash", "created_at", "seq",
              "role"],
    "incidents": ["reference", "kind", "item_id", "description", "reported_by", "notify",
                  "at", "seq"],
    "audit_events": ["seq", "kind", "at", "actor", "item_id", "item_version", "content_hash",
                     "details", "leaf_hash"],
    "tree_heads": ["size", "root", "timestamp", "key", "signature"],
    "audit_state": ["size", "frontier"],
}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, shipped: Catalogue) -> Path:
    import uuid
    from datetime import UTC

    now = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)

    def make(n: int) -> dict[str, Any]:
        return {"type": "indicator", "spec_version": "2.1",
                "id": f"indicator--{uuid.UUID(int=n + 1)}",
                "created": "2024-03-01T08:00:00.000Z", "modified": "2024-03-01T08:00:00.000Z",
                "name": f"TEL {n}", "pattern": "[x-site:name = 'Sunan']",
                "pattern_type": "stix", "valid_from": "2024-03-01T08:00:00Z"}

    base = tmp_path_factory.mktemp("tamper")
    kor = init_node(base / "kor", "KOR", catalogue=shipped, now=now)
    jpn = init_node(base / "jpn", "JPN", catalogue=shipped, now=now)
    populate(kor, jpn, make, now)
    kor.close()
    jpn.close()
    return base / "kor"




@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=hs.data())
def test_any_single_edit_of_the_stored_log_is_detected(template: Path, tmp_path: Path,
                                                       shipped: Catalogue,
                                                       data: hs.DataObject) -> None:
    folder = node_copy(template, tmp_path)
    db = sqlite3.connect(folder / "node.db")
    op = data.draw(hs.sampled_from(["edit", "edit", "edit", "delete", "swap"]))
    try:
        if op == "swap":
            positions = [r[0] for r in db.execute("SELECT position FROM audit_events")]
            a, b = data.draw(hs.lists(hs.sampled_from(positions), min_size=2, max_size=2,
                                      unique=True))
            db.execute("UPDATE audit_events SET position = -1 WHERE position = ?", (a,))
            db.execute("UPDATE audit_events SET position = ? WHERE position = ?", (a, b))
            db.execute("UPDATE audit_events SET position = ? WHERE position = -1", (b,))
        else:
            table = data.draw(hs.sampled_from(sorted(TABLES)))
            rowids = [r[0] for r in db.execute(f"SELECT rowid FROM {table}")]
            if op == "delete" and table == "tree_heads":
                rowids = [r[0] for r in db.execute(
                    "SELECT rowid FROM tree_heads ORDER BY size DESC LIMIT 1")]
            rowid = data.draw(hs.sampled_from(rowids))
            if op == "delete":
                db.execute(f"DELETE FROM {table} WHERE rowid = ?", (rowid,))
            else:
                column = data.draw(hs.sampled_from(TABLES[table]))
                (value,) = db.execute(f"SELECT {column} FROM {table} WHERE rowid = ?",
                                      (rowid,)).fetchone()
                edited = edit_value(value, data.draw(hs.integers(0, 10**6)), data)
                assume(edited != value)
                db.execute(f"UPDATE {table} SET {column} = ? WHERE rowid = ?",
                           (edited, rowid))
        db.commit()
    except sqlite3.IntegrityError:
        assume(False)  # the schema itself refused the edit
    finally:
        db.close()
    with open_node(folder, catalogue=shipped) as node:
        result = verdict(node)
    assert not result.ok, f"undetected: {op}"


# ---- values of the wrong kind in the events, found by the one pass over them ----------------

# Each column rewritten in another storage class (``seq``, of INTEGER affinity, would turn
# back into an integer: SQLite converts numeric text on the way in).
_KINDS_OF = {"text": "CAST({c} AS BLOB)", "blob": "CAST({c} AS TEXT)"}
_EVENT_COLUMNS = {"kind": "text", "at": "text", "actor": "text", "item_id": "text",
                  "item_version": "text", "content_hash": "text", "details": "text",
                  "leaf_hash": "blob"}


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=hs.data())
def test_an_event_value_of_the_wrong_kind_is_named_with_its_row(template: Path,
                                                                 tmp_path: Path,
                                                                 shipped: Catalogue,
                                                                 data: hs.DataObject) -> None:
    """Whichever rows of the log hold a value of another storage class, ``audit verify``
    names each of them as ``column-type`` with its row (the pass over the events finds
    them; only those rows are read again)."""
    folder = node_copy(template, tmp_path)
    db = sqlite3.connect(folder / "node.db")
    try:
        column = data.draw(hs.sampled_from(sorted(_EVENT_COLUMNS)))
        rowids = [r[0] for r in db.execute(
            f"SELECT rowid FROM audit_events WHERE {column} IS NOT NULL")]
        chosen = data.draw(hs.lists(hs.sampled_from(rowids), min_size=1, max_size=3,
                                    unique=True))
        cast = _KINDS_OF[_EVENT_COLUMNS[column]].format(c=column)
        db.executemany(f"UPDATE audit_events SET {column} = {cast} WHERE rowid = ?",
                       [(r,) for r in chosen])
        db.commit()
    finally:
        db.close()
    with open_node(folder, catalogue=shipped) as node, \
            node.store.reader(tolerant=True) as reader:  # as `gsomia audit verify` reads
        result = handlers.verify_audit(reader, public_key=node.keys.public_signing_key())
    named = {p.where for p in result.problems if p.what == "column-type"}
    assert not result.ok
    assert named == {f"audit_events.{column} rowid {r}" for r in chosen}


def test_audit_verify_reads_the_log_once(template: Path, tmp_path: Path,
                                          shipped: Catalogue) -> None:
    """The events table, the largest by far, is scanned once by ``audit verify``: the values
    of the wrong kind are picked out in the same pass (a second scan cost about a tenth of
    verifying a million events)."""
    folder = tmp_path / "kor"
    shutil.copytree(template, folder)
    statements: list[str] = []
    with open_node(folder, catalogue=shipped) as node, node.store.reader() as reader:
        raw = reader.conn.connection.dbapi_connection
        assert raw is not None
        raw.set_trace_callback(statements.append)
        result = handlers.verify_audit(reader, public_key=node.keys.public_signing_key())
        raw.set_trace_callback(None)
    assert result.ok and result.size > 10
    scans = [s for s in statements if "audit_events" in s.replace('"', "")
             and "rowid IN" not in s]
    assert len(scans) == 1, scans
