"""A TAXII envelope is stored as one audit leaf (``items-published``) listing every item:
each item is still checked by ``audit verify`` and proved alone, and any single change to
one item of a batch, to its custody row or to the leaf is caught.

The batch is posted through the node's ASGI app (the TAXII API), mixing two labels; the
tamper property edits a copy of that node folder the way someone with the disk would."""

from __future__ import annotations

import json
import sqlite3
import uuid
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as hs

from gsomia.bootstrap import app_for_node, collection_id
from gsomia.core.agreements import Catalogue
from gsomia.core.audit import AuditKind, batch_entries, content_hash
from gsomia.core.custody import item_version
from gsomia.core.errors import PolicyDenied, ProofInvalid
from gsomia.core.labels import SecurityLabel
from gsomia.core.stix import label_marking
from gsomia.core.taxii import TAXII_MEDIA
from gsomia.service import handlers
from gsomia.shell.node import Node, init_node, new_token, open_node
from tampering import edit_value, node_copy

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

NOW = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
CONF = SecurityLabel("JPN", "秘", frozenset({"JPN", "KOR"}), "dprk-missile")
SECRET = SecurityLabel("JPN", "極秘", frozenset({"JPN", "KOR", "USA"}), "dprk-missile")
OBJECTS = f"/gsomia/collections/{collection_id('JPN')}/objects/"


def _indicator(n: int, marking: dict[str, Any]) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1",
            "id": f"indicator--{uuid.UUID(int=n, version=4)}",
            "created": "2024-03-01T08:00:00.000Z", "modified": "2024-03-01T08:00:00.000Z",
            "name": f"TEL activity {n}", "pattern": f"[x-dprk-site:name = 'Sunan-{n}']",
            "pattern_type": "stix", "valid_from": "2024-03-01T08:00:00Z",
            "object_marking_refs": [marking["id"]]}


@pytest.fixture(scope="module")
def batch_node(tmp_path_factory: pytest.TempPathFactory, shipped: Catalogue) -> Path:
    folder = tmp_path_factory.mktemp("batch-leaf") / "jpn"
    node = init_node(folder, "JPN", catalogue=shipped, now=NOW)
    token = new_token()
    handlers.add_user(node.uow(), keys=node.keys, schemes=shipped.schemes, name="kenji",
                      clearance="機密", need_to_know=["dprk-missile"], token=token, now=NOW)
    marks = [label_marking(label, label.english_marking(shipped.schemes), created=NOW)
             for label in (CONF, SECRET)]
    objs = [_indicator(n, marks[n % 2]) for n in range(1, 7)]
    client = TestClient(app_for_node(node))
    r = client.post(OBJECTS, content=json.dumps({"objects": [*marks, *objs]}),
                    headers={"Authorization": f"Bearer {token}", "Accept": TAXII_MEDIA,
                             "Content-Type": TAXII_MEDIA})
    assert r.status_code == 202 and r.json()["success_count"] == 8, r.text
    client.close()
    node.close()
    return folder


def _batch(node: Node) -> list[Any]:
    with node.store.reader() as reader:
        return [row for row in reader.rows() if row["kind"] == AuditKind.ITEMS_PUBLISHED.value]


def test_an_envelope_is_one_leaf_and_each_of_its_items_is_proved_alone(
        batch_node: Path, shipped: Catalogue) -> None:
    with open_node(batch_node, catalogue=shipped) as node:
        (leaf,) = _batch(node)
        entries = batch_entries(leaf["kind"], leaf["details"])
        with node.store.reader() as reader:
            verdict = handlers.verify_audit(reader, public_key=node.keys.public_signing_key())
            assert verdict.ok, verdict.to_json()
            # Two markings and six indicators, and no item-created or label-bound leaves.
            assert len(entries) == 8
            kinds = {row["kind"] for row in reader.rows()}
            assert not kinds & {AuditKind.ITEM_CREATED.value, AuditKind.LABEL_BOUND.value}
            public = node.keys.public_signing_key()
            for entry in entries:
                doc = handlers.prove(reader, public_key=public,
                                     item=(entry.item_id, entry.version))
                checked = handlers.check_proof(doc, public)
                assert checked.event == leaf["seq"]
                assert checked.item == f"{entry.item_id}@{entry.version}"
                assert doc["inclusion"]["item"]["place"] == entry.place
                # Its content hash is what the item holds now (no stale proof).
                record = reader.item_record(entry.item_id, entry.version)
                assert record is not None
                assert doc["inclusion"]["item"]["content_hash"] == content_hash(record)
            # A proof cannot be moved to another item of the batch, nor claim another hash.
            first, second = entries[0], entries[1]
            doc = handlers.prove(reader, public_key=public, item=(first.item_id, first.version))
            claim = doc["inclusion"]["item"]
            for forged in ({**claim, "place": second.place},
                           {**claim, "id": second.item_id, "version": second.version},
                           {**claim, "content_hash": second.content_hash}):
                with pytest.raises(ProofInvalid):
                    handlers.check_proof({**doc, "inclusion": {**doc["inclusion"],
                                                               "item": forged}}, public)
            # Nor survive its entry rewritten.
            rewritten = dict(claim["entry"])
            rewritten["content_hash"] = second.content_hash
            with pytest.raises(ProofInvalid):
                handlers.check_proof({**doc, "inclusion": {
                    **doc["inclusion"],
                    "item": {**claim, "entry": rewritten, "content_hash": second.content_hash}}},
                    public)


@pytest.fixture(scope="module")
def item_proofs(batch_node: Path, shipped: Catalogue) -> tuple[list[dict[str, Any]], Any]:
    """A proof of each item of the batch, in the batch's order, and the node's key."""
    with open_node(batch_node, catalogue=shipped) as node, node.store.reader() as reader:
        (leaf,) = _batch(node)
        public = node.keys.public_signing_key()
        return [handlers.prove(reader, public_key=public, item=(e.item_id, e.version))
                for e in batch_entries(leaf["kind"], leaf["details"])], public


@settings(max_examples=40, deadline=None)
@given(place=hs.integers(0, 7), count=hs.integers(0, 64) | hs.integers(65, 2**63))
@example(place=2, count=5)  # entry 2 of 8 has the path of entry 2 of 5, 6 or 7
def test_a_proof_of_one_item_does_not_verify_with_another_batch_size(
        item_proofs: tuple[list[dict[str, Any]], Any], place: int, count: int) -> None:
    """The count of entries is the leaf's (entry_count), not the proof's: a Merkle path of
    one entry fits several tree sizes, so an unbound count could be any of them."""
    assume(count != 8)
    docs, public = item_proofs
    doc = docs[place]
    assert doc["inclusion"]["item"]["entries"] == 8
    handlers.check_proof(doc, public)
    forged = {**doc["inclusion"]["item"], "entries": count}
    with pytest.raises(ProofInvalid):
        handlers.check_proof({**doc, "inclusion": {**doc["inclusion"], "item": forged}},
                             public)


def test_a_proof_of_one_item_shows_none_of_its_batch_mates(batch_node: Path,
                                                           shipped: Catalogue) -> None:
    """Handed to a partner or auditor, a proof of custody of one item of a TAXII batch
    names no other item of the batch, nor its hash, custody record or salt; the leaf it
    proves commits to the batch by one root. Fails on a leaf listing the whole batch."""
    with open_node(batch_node, catalogue=shipped) as node, node.store.reader() as reader:
        (leaf,) = _batch(node)
        entries = leaf["details"]["entries"]
        public = node.keys.public_signing_key()
        for n, entry in enumerate(entries):
            doc = handlers.prove(reader, public_key=public,
                                 item=(entry["id"], entry["version"]))
            text = json.dumps(doc)
            for other in entries[:n] + entries[n + 1:]:
                for value in (other["id"], other["content_hash"], other["custody"],
                              other["salt"]):
                    assert value not in text
            assert "labels" not in doc["inclusion"]["event"]["details"]
            assert handlers.check_proof(doc, public).item == f"{entry['id']}@{entry['version']}"
        # A proof of the event alone shows the leaf as it is hashed: the root, no entry.
        doc = handlers.prove(reader, public_key=public, event=leaf["seq"])
        assert "entries" not in doc["inclusion"]["event"]["details"]
        assert not any(e["id"] in json.dumps(doc) for e in entries)
        handlers.check_proof(doc, public)


def test_audit_prove_item_on_the_command_line(batch_node: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The command line itself, run in this process (a child process each costs seconds)."""
    from gsomia.shell.cli import main

    target = _indicator(3, {"id": "x"})
    item = f"{target['id']}@{item_version(target)}"
    proof = tmp_path / "proof.json"
    assert main(["audit", "prove", "--node", str(batch_node), "--item", item,
                 "--out", str(proof)]) == 0
    capsys.readouterr()
    assert main(["audit", "check-proof", "--file", str(proof), "--public-key",
                 str(batch_node / "keys" / "signing.pub"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["item"] == item
    absent = f"indicator--{uuid.UUID(int=99, version=4)}"
    assert main(["audit", "prove", "--node", str(batch_node), "--item", absent]) == 2
    assert "--item" in capsys.readouterr().err
    assert main(["audit", "events", "--node", str(batch_node), "--item", target["id"],
                 "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["events"]
    assert [e["kind"] for e in listed] == ["items-published"]


def test_a_proof_that_one_item_was_read_shows_nothing_else_the_reader_was_granted(
        batch_node: Path, tmp_path: Path, shipped: Catalogue) -> None:
    """A TAXII page read by one person is one access-granted leaf, sealed like a batch
    (hygiene16): the proof that they read one item names none of the page's other items,
    nor their salts, and the event alone shows only the root and count. Fails on a read
    event that lists every item of the page (``details.items``)."""
    folder = node_copy(batch_node, tmp_path)
    with open_node(folder, catalogue=shipped) as node:
        token = new_token()
        handlers.add_user(node.uow(), keys=node.keys, schemes=shipped.schemes, name="mina",
                          clearance="機密", need_to_know=["dprk-missile"], token=token, now=NOW)
        app = app_for_node(node)
        with TestClient(app) as client:
            r = client.get(OBJECTS, headers={"Authorization": f"Bearer {token}",
                                             "Accept": TAXII_MEDIA})
            assert r.status_code == 200 and len(r.json()["objects"]) > 1, r.text
            app.state.taxii_store.flush_access()
        page = {o["id"] for o in r.json()["objects"]}
        with node.store.reader() as reader:
            (read,) = [row for row in reader.rows() if row["kind"] == "access-granted"
                       and row["actor"] == "mina"]
            entries = read["details"]["entries"]
            assert {e["id"] for e in entries} == page and "items" not in read["details"]
            assert handlers.verify_audit(reader, public_key=node.keys.public_signing_key()).ok
            public = node.keys.public_signing_key()
            for n, entry in enumerate(entries):
                doc = handlers.prove(reader, public_key=public, event=read["seq"],
                                     item=(entry["id"], None))
                text = json.dumps(doc)
                for other in entries[:n] + entries[n + 1:]:
                    assert other["id"] not in text and other["salt"] not in text
                checked = handlers.check_proof(doc, public)
                assert checked.item == f"{entry['id']}@{entry['version']}"
                # Moved to another entry's place, or naming another item, it fails.
                other = entries[(n + 1) % len(entries)]
                claim = doc["inclusion"]["item"]
                for forged in ({**claim, "place": (n + 1) % len(entries)},
                               {**claim, "id": other["id"],
                                "entry": {**claim["entry"], "id": other["id"]}}):
                    with pytest.raises(ProofInvalid):
                        handlers.check_proof({**doc, "inclusion": {**doc["inclusion"],
                                                                   "item": forged}}, public)
            doc = handlers.prove(reader, public_key=public, event=read["seq"])
            assert not any(e["id"] in json.dumps(doc) for e in entries)
            assert doc["inclusion"]["event"]["details"]["entry_count"] == len(entries)
            handlers.check_proof(doc, public)


# Columns of one batch item's rows, and of the leaf, an edit may touch.
_ITEM_COLUMNS = ["id", "version", "type", "originator", "content", "label", "binding",
                 "added_at", "seq"]
_CUSTODY_COLUMNS = ["item_id", "version", "event", "holder", "provider", "agreement",
                    "original_label", "national_label", "at", "note", "seq"]
_LEAF_COLUMNS = ["details", "leaf_hash", "at", "actor", "kind"]


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=hs.data())
def test_any_change_to_one_item_of_a_batch_is_detected(batch_node: Path, tmp_path: Path,
                                                        shipped: Catalogue,
                                                        data: hs.DataObject) -> None:
    folder = node_copy(batch_node, tmp_path)
    db = sqlite3.connect(folder / "node.db")
    try:
        (seq,) = db.execute("SELECT seq FROM audit_events WHERE kind = 'items-published'"
                            ).fetchone()
        where, table, columns = data.draw(hs.sampled_from([
            ("seq = ?", "items", _ITEM_COLUMNS), ("seq = ?", "custody", _CUSTODY_COLUMNS),
            ("seq = ?", "audit_events", _LEAF_COLUMNS)]))
        rowids = [r[0] for r in db.execute(f"SELECT rowid FROM {table} WHERE {where}", (seq,))]
        rowid = data.draw(hs.sampled_from(rowids))
        if data.draw(hs.integers(0, 3)) == 0:
            db.execute(f"DELETE FROM {table} WHERE rowid = ?", (rowid,))
            column = "the row"
        else:
            column = data.draw(hs.sampled_from(columns))
            (value,) = db.execute(f"SELECT {column} FROM {table} WHERE rowid = ?",
                                  (rowid,)).fetchone()
            edited = edit_value(value, data.draw(hs.integers(0, 10**6)), data)
            assume(edited != value)
            db.execute(f"UPDATE {table} SET {column} = ? WHERE rowid = ?", (edited, rowid))
        db.commit()
    except sqlite3.IntegrityError:
        assume(False)  # the schema itself refused the edit
    finally:
        db.close()
    with open_node(folder, catalogue=shipped) as node, node.store.reader() as reader:
        result = handlers.verify_audit(reader, public_key=node.keys.public_signing_key())
    assert not result.ok, f"undetected: {table}.{column}"


def _publish_listed(uow: Any, prepared: Any, digests: Any, party: Any, actor: str,
                    now: datetime, added_at: str, stored: list[Any], seq: int) -> list[Any]:
    """The batch leaf as nodes wrote it before it was sealed: every item listed in the leaf
    (its custody rows are written before, under ``seq``, as for the sealed leaf)."""
    from gsomia.core.custody import records_detail
    from gsomia.core.outbox import ItemStored

    labels: list[dict[str, Any]] = []
    entries = []
    for item, form, _ in prepared:
        if not labels:
            labels.append({"label": form.json, "marking": form.english,
                           "national_marking": form.national})
        entries.append({"id": item.item_id, "version": item.version, "type": item.stix_type,
                        "content_hash": item.content_hash(), "label": 0})
    event = uow.audit.append(
        AuditKind.ITEMS_PUBLISHED, now, actor,
        details={"originator": party, "added_at": added_at, "key": prepared[0][2].key,
                 "labels": labels, "items": entries,
                 "records": records_detail(custody=digests)})
    assert event.seq == seq
    out = []
    for item, form, binding in prepared:
        stored.append((item, event.seq))
        uow.events.append(ItemStored(item.item_id, item.version, form.label))
        out.append(handlers.Published(item.item_id, item.version, event.seq, form.english,
                                      form.national, binding.key))
    return out


def test_a_log_with_batch_leaves_of_both_forms_verifies_and_an_old_one_is_proved_only_whole(
        batch_node: Path, tmp_path: Path, shipped: Catalogue,
        monkeypatch: pytest.MonkeyPatch) -> None:
    folder = node_copy(batch_node, tmp_path)
    label = handlers.LabelRequest("秘", ("JPN", "KOR"), "dprk-missile")
    objs = [_indicator(n, {"id": "x"}) for n in (20, 21)]
    for obj in objs:
        obj.pop("object_marking_refs")
    with open_node(folder, catalogue=shipped) as node:
        with monkeypatch.context() as patched:
            patched.setattr(handlers._publishing, "_publish_one_leaf", _publish_listed)
            handlers.publish_many(node.uow(), keys=node.keys, catalogue=shipped,
                                  entries=[(o, label) for o in objs], now=NOW, one_leaf=True)
        public = node.keys.public_signing_key()
        with node.store.reader() as reader:
            old, new = sorted(_batch(node), key=lambda r: "items" in r["details"])[::-1]
            assert "items" in old["details"] and "entries" in new["details"]
            verdict = handlers.verify_audit(reader, public_key=public)
            assert verdict.ok, verdict.to_json()
            wanted = (objs[0]["id"], item_version(objs[0]))
            with pytest.raises(PolicyDenied, match="--whole-batch"):
                handlers.prove(reader, public_key=public, item=wanted)
            doc = handlers.prove(reader, public_key=public, item=wanted, whole_batch=True)
            assert handlers.check_proof(doc, public).item == "@".join(wanted)
            assert objs[1]["id"] in json.dumps(doc)  # the whole batch, as asked
