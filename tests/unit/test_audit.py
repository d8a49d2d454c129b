"""The audit log: hashes, proofs, tree heads, events, and catching every kind of tampering.

The named fixtures in tests/assets/audit_*.json are small logs, each tampered one way; they
are made by ``build_fixtures`` below (run this file with python to rewrite them) and a test
checks the committed files are what it makes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.core import audit
from gsomia.core.audit import (
    EMPTY_ROOT,
    AuditEvent,
    AuditKind,
    AuditRecord,
    MerkleAccumulator,
    TreeHead,
    canonical_leaf,
    consistency_proof,
    content_hash,
    event_leaf_hash,
    hashes_from_json,
    hashes_to_json,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    sign_tree_head,
    verify_consistency,
    verify_inclusion,
    verify_log,
    verify_tree_head,
)
from gsomia.core.crypto import raw_public
from gsomia.core.errors import MalformedInput, ProofInvalid
from gsomia.core.types import iso

ASSETS = Path(__file__).resolve().parents[1] / "assets"
NODE = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
OTHER = Ed25519PrivateKey.from_private_bytes(b"\x08" * 32)
T0 = datetime(2017, 3, 1, tzinfo=UTC)

# ---- RFC 6962 / 9162 known answers (the Certificate Transparency test vectors) ----------

CT_LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243",
                                        "5051525354555657",
                                        "606162636465666768696a6b6c6d6e6f")]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (0, 1, []),
]
CT_CONSISTENCY = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
CT_HASHES = [leaf_hash(x) for x in CT_LEAVES]


def test_ct_roots() -> None:
    assert root([]) == EMPTY_ROOT
    assert [root(CT_HASHES[:n]).hex() for n in range(1, 9)] == CT_ROOTS
    assert leaf_hash(b"") == bytes.fromhex(CT_ROOTS[0])
    assert node_hash(CT_HASHES[0], CT_HASHES[1]).hex() == CT_ROOTS[1]


@pytest.mark.parametrize("index,size,path", CT_INCLUSION)
def test_ct_inclusion_proofs(index: int, size: int, path: list[str]) -> None:
    proof = inclusion_proof(CT_HASHES, index, size)
    assert hashes_to_json(proof) == path
    verify_inclusion(CT_HASHES[index], index, size, proof, bytes.fromhex(CT_ROOTS[size - 1]))


@pytest.mark.parametrize("old,new,path", CT_CONSISTENCY)
def test_ct_consistency_proofs(old: int, new: int, path: list[str]) -> None:
    proof = consistency_proof(CT_HASHES, old, new)
    assert hashes_to_json(proof) == path
    verify_consistency(old, new, bytes.fromhex(CT_ROOTS[old - 1]),
                       bytes.fromhex(CT_ROOTS[new - 1]), hashes_from_json(path))


def test_proof_requests_outside_the_log_are_malformed() -> None:
    calls: list[Callable[[], object]] = [lambda: inclusion_proof(CT_HASHES, 8, 8),
                 lambda: inclusion_proof(CT_HASHES, 0, 9),
                 lambda: consistency_proof(CT_HASHES, 5, 4),
                 lambda: consistency_proof(CT_HASHES, 1, 9),
                 lambda: hashes_from_json(["00"]),
                 lambda: hashes_from_json("ab" * 32)]
    for call in calls:
        with pytest.raises(MalformedInput):
            call()


# ---- accumulator ------------------------------------------------------------------------


def test_accumulator_json_and_bad_frontiers() -> None:
    acc = MerkleAccumulator.of(CT_HASHES[:6])
    data = acc.to_json()
    assert data["size"] == 6 and len(data["frontier"]) == 2
    assert json.loads(json.dumps(data)) == data
    assert MerkleAccumulator.from_json(data).root().hex() == CT_ROOTS[5]
    with pytest.raises(MalformedInput):
        MerkleAccumulator.from_json({"size": 7, "frontier": data["frontier"]})
    with pytest.raises(MalformedInput):
        MerkleAccumulator.from_json({"size": 6, "frontier": ["00", "11"]})
    with pytest.raises(MalformedInput):
        MerkleAccumulator.from_json({"size": -1, "frontier": []})
    copy = acc.copy()
    copy.append(CT_HASHES[6])
    assert acc.size == 6 and copy.root().hex() == CT_ROOTS[6]


# ---- tree heads -------------------------------------------------------------------------


def test_tree_head_signed_and_checked() -> None:
    r = bytes.fromhex(CT_ROOTS[7])
    head = sign_tree_head(8, r, T0 + timedelta(microseconds=1500), NODE)
    assert head.timestamp == T0 + timedelta(milliseconds=1)
    verify_tree_head(head, NODE.public_key())
    again = TreeHead.from_json(json.loads(json.dumps(head.to_json())))
    assert again == head
    verify_tree_head(again, NODE.public_key())
    for bad in (replace(head, size=9), replace(head, root=bytes(32)),
                replace(head, timestamp=T0), replace(head, signature=bytes(64))):
        with pytest.raises(ProofInvalid):
            verify_tree_head(bad, NODE.public_key())
    with pytest.raises(ProofInvalid, match="names key"):
        verify_tree_head(head, OTHER.public_key())
    with pytest.raises(MalformedInput):
        TreeHead.from_json({**head.to_json(), "size": "8"})
    with pytest.raises(MalformedInput):
        sign_tree_head(1, b"short", T0, NODE)


# ---- events -----------------------------------------------------------------------------


def test_event_kinds_are_closed() -> None:
    assert {"item-created", "label-bound", "release-decided", "sent", "received", "receipt",
            "access-granted", "access-denied", "consent", "classification-changed", "incident",
            "agreement-state-changed", "envelope-refused"} <= {k.value for k in AuditKind}
    with pytest.raises(MalformedInput, match="kind"):
        AuditEvent(0, "item-eaten", T0, "KOR")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [
    dict(seq=-1), dict(seq=True), dict(seq=2**53), dict(actor=""), dict(item_id=""),
    dict(item_version="v1"), dict(item_id="x", content_hash="ABC"),
    dict(details={"x": float("nan")}), dict(details=[1]), dict(at="yesterday"),
    dict(details={"x": "\ud800"}), dict(actor="\ud800"),
])
def test_event_refuses_bad_fields(bad: dict[str, Any]) -> None:
    args: dict[str, Any] = dict(seq=0, kind="item-created", at=T0, actor="KOR")
    args.update(bad)
    with pytest.raises(MalformedInput):
        AuditEvent(**args)


def test_event_is_frozen_including_its_details() -> None:
    details = {"reasons": ["a"]}
    e = AuditEvent(0, AuditKind.RELEASE_DECIDED, T0, "KOR", details=details)
    details["reasons"] = ["changed"]
    assert e.details["reasons"] == ["a"]
    with pytest.raises(TypeError):
        e.details["x"] = 1  # type: ignore[index]


texts = st.text(min_size=1, max_size=12)
details_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                  max_size=3),
    max_leaves=10,
)
events = st.builds(
    AuditEvent,
    seq=st.integers(0, 2**53 - 1),
    kind=st.sampled_from(list(AuditKind)),
    at=st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 1, 1),
                    timezones=st.just(UTC)),
    actor=texts,
    item_id=st.none() | texts,
    details=st.dictionaries(st.text(max_size=6), details_values, max_size=4),
).flatmap(lambda e: st.just(e) if e.item_id is None else st.builds(
    replace, st.just(e), item_version=st.none() | texts,
    content_hash=st.none() | st.binary(min_size=32, max_size=32).map(bytes.hex)))


@settings(max_examples=300, deadline=None)
@given(events)
def test_leaf_bytes_are_rfc8785_of_the_event(e: AuditEvent) -> None:
    obj = {**e.to_json(), "v": audit.EVENT_VERSION}
    assert canonical_leaf(e) == rfc8785.dumps(obj)
    assert obj["at"] == iso(e.at)
    # The store's row form recomputes to the same leaf, and back to the same event.
    row = AuditRecord.of(e).to_json()
    assert audit._row(json.loads(json.dumps(row))).leaf == e.leaf
    assert AuditEvent.from_json(json.loads(json.dumps(row))) == e
    assert event_leaf_hash(e) == leaf_hash(rfc8785.dumps(obj))


def test_content_hash_of_bytes_and_mappings() -> None:
    item = {"type": "indicator", "name": "x"}
    assert content_hash(item) == content_hash(b'{"name":"x","type":"indicator"}')
    assert content_hash(item) != content_hash({**item, "name": "y"})


# ---- a small node log, and every way to tamper with it ------------------------------------

ITEMS: dict[tuple[str, str], dict[str, Any]] = {
    ("indicator--0001", "2017-03-01T00:00:00.000Z"): {
        "object": {"type": "indicator", "id": "indicator--0001", "name": "TEL at Sohae",
                   "modified": "2017-03-01T00:00:00.000Z"},
        "label": {"originator": "KOR", "level": "군사II급비밀", "rel_to": ["KOR", "JPN"]},
    },
    ("report--0002", "2017-03-06T00:00:00.000Z"): {
        "object": {"type": "report", "id": "report--0002", "name": "Four missiles, Tongchang-ri",
                   "modified": "2017-03-06T00:00:00.000Z"},
        "label": {"originator": "KOR", "level": "군사III급비밀", "rel_to": ["KOR", "JPN", "USA"]},
    },
}


def node_log() -> list[AuditEvent]:
    (i1, v1), (i2, v2) = ITEMS
    h1, h2 = content_hash(ITEMS[i1, v1]), content_hash(ITEMS[i2, v2])
    plan: list[tuple[AuditKind, str, str | None, str | None, str | None, dict[str, Any]]] = [
        (AuditKind.NODE_INITIALISED, "node", None, None, None, {"party": "KOR"}),
        (AuditKind.ITEM_CREATED, "analyst-kim", i1, v1, h1, {}),
        (AuditKind.LABEL_BOUND, "node", i1, v1, h1, {"key": "kor-2017"}),
        (AuditKind.RELEASE_DECIDED, "node", i1, v1, h1,
         {"recipient": "JPN", "permit": True, "agreement": "jpn-kor-gsomia-2016"}),
        (AuditKind.RELEASE_DECIDED, "node", i1, v1, h1,
         {"recipient": "USA", "permit": False, "reasons": ["USA not in REL TO"]}),
        (AuditKind.SENT, "node", i1, v1, h1, {"recipient": "JPN"}),
        (AuditKind.RECEIPT, "JPN", i1, v1, h1, {"from": "JPN"}),
        (AuditKind.ITEM_CREATED, "analyst-lee", i2, v2, h2, {}),
        (AuditKind.ACCESS_DENIED, "sgt-park", i2, v2, h2, {"reason": "no need-to-know"}),
        (AuditKind.ACCESS_GRANTED, "analyst-kim", i2, v2, h2, {}),
        (AuditKind.CONSENT, "node", i1, v1, h1, {"recipient": "USA", "decision": "granted"}),
        (AuditKind.INCIDENT, "node", None, None, None, {"summary": "drill"}),
    ]
    return [AuditEvent(seq, kind, T0 + timedelta(minutes=seq), actor, item, version, chash,
                       details)
            for seq, (kind, actor, item, version, chash, details) in enumerate(plan)]


def rows_of(log: list[AuditEvent]) -> list[dict[str, Any]]:
    return [AuditRecord.of(e).to_json() for e in log]


def fixture(attack: str, description: str, rows: list[dict[str, Any]],
            items: dict[tuple[str, str], dict[str, Any]], expect: dict[str, Any],
            head: TreeHead | None = None) -> dict[str, Any]:
    log = node_log()
    head = head or sign_tree_head(len(log), root([event_leaf_hash(e) for e in log]),
                                  T0 + timedelta(hours=1), NODE)
    return {
        "attack": attack,
        "description": description,
        "node_public_key": raw_public(NODE).hex(),
        "head": head.to_json(),
        "rows": rows,
        "items": [{"id": i, "version": v, "content": c} for (i, v), c in items.items()],
        "expect": expect,
    }


def build_fixtures() -> dict[str, dict[str, Any]]:
    log = node_log()
    good = rows_of(log)
    out: dict[str, dict[str, Any]] = {}

    out["audit_intact"] = fixture("none", "An untouched log of 12 events and its signed head.",
                                  good, ITEMS, {"ok": True})

    rows = [r for r in good if r["seq"] != 4]
    out["audit_removed_row"] = fixture(
        "removed row", "The USA release denial (seq 4) was deleted.", rows, ITEMS,
        {"ok": False, "what": "removed", "where": "seq 4"})

    rows = list(good)
    rows[5], rows[6] = rows[6], rows[5]
    out["audit_swapped_rows"] = fixture(
        "swapped rows", "Rows seq 5 (sent) and seq 6 (receipt) were swapped in place.", rows,
        ITEMS, {"ok": False, "what": "reordered", "where": "seq 5"})

    rows = list(good)
    a, b = dict(rows[5]), dict(rows[6])
    rows[5] = {**b, "seq": 5}
    rows[6] = {**a, "seq": 6}
    out["audit_swapped_events"] = fixture(
        "swapped events", "The contents of seq 5 and seq 6 were exchanged, seq numbers kept.",
        rows, ITEMS, {"ok": False, "what": "modified", "where": "seq 5"})

    rows = list(good)
    rows[4] = {**rows[4], "details": {**rows[4]["details"], "permit": True, "reasons": []}}
    out["audit_modified_event"] = fixture(
        "modified event", "The denial at seq 4 was turned into a permit.", rows, ITEMS,
        {"ok": False, "what": "modified", "where": "seq 4"})

    forged = replace(log[4], details={"recipient": "USA", "permit": True})
    rows = list(good)
    rows[4] = AuditRecord.of(forged).to_json()
    out["audit_rewritten_event"] = fixture(
        "rewritten event", "Seq 4 was changed and its leaf hash recomputed to match; only the "
        "signed head shows it.", rows, ITEMS,
        {"ok": False, "what": "forked", "where": "tree head size 12"})

    items = dict(ITEMS)
    key = next(iter(ITEMS))
    items[key] = {**ITEMS[key], "object": {**ITEMS[key]["object"], "name": "TEL at Sohaf"}}
    out["audit_modified_item"] = fixture(
        "modified item", "One byte of the stored indicator was changed.", good, items,
        {"ok": False, "what": "item-modified",
         "where": "item indicator--0001@2017-03-01T00:00:00.000Z"})

    out["audit_rolled_back"] = fixture(
        "rolled back", "The last three events were cut off after the head was signed.",
        good[:9], ITEMS, {"ok": False, "what": "rolled-back", "where": "tree head size 12"})

    rows = [*good[:4], good[3], *good[4:]]
    out["audit_inserted_row"] = fixture(
        "inserted row", "A second copy of seq 3 (a JPN permit) was inserted.", rows, ITEMS,
        {"ok": False, "what": "inserted", "where": "seq 3"})

    items = {**ITEMS, ("indicator--9999", "2017-03-09T00:00:00.000Z"): {
        "object": {"type": "indicator", "id": "indicator--9999", "name": "planted"},
        "label": {"originator": "KOR", "level": "군사III급비밀", "rel_to": ["KOR"]}}}
    out["audit_unlogged_item"] = fixture(
        "unlogged item", "An item was put in the store with no audit event.", good, items,
        {"ok": False, "what": "item-unlogged",
         "where": "item indicator--9999@2017-03-09T00:00:00.000Z"})

    head = sign_tree_head(12, root([event_leaf_hash(e) for e in log]), T0 + timedelta(hours=1),
                          OTHER)
    out["audit_foreign_head"] = fixture(
        "foreign head", "The signed head was replaced by one signed with another key.", good,
        ITEMS, {"ok": False, "what": "head-signature", "where": "tree head size 12"}, head)
    return out


def run_fixture(data: dict[str, Any]) -> audit.LogVerdict:
    from gsomia.core.crypto import ed25519_public_from_raw

    items = {(i["id"], i["version"]): i["content"] for i in data["items"]}
    return verify_log(
        data["rows"], TreeHead.from_json(data["head"]),
        lambda item_id, version: items.get((item_id, version)),
        public_key=ed25519_public_from_raw(bytes.fromhex(data["node_public_key"])),
        stored_items=list(items),
    )


def test_committed_fixtures_are_what_build_fixtures_makes() -> None:
    built = build_fixtures()
    on_disk = {p.stem: json.loads(p.read_text("utf-8")) for p in ASSETS.glob("audit_*.json")}
    assert on_disk == built, "run `python tests/unit/test_audit.py` to rewrite tests/assets"


@pytest.mark.parametrize("name", sorted(build_fixtures()))
def test_each_named_attack_is_reported_first_and_precisely(name: str) -> None:
    data = json.loads((ASSETS / f"{name}.json").read_text("utf-8"))
    verdict = run_fixture(data)
    expect = data["expect"]
    assert verdict.ok is expect["ok"], verdict.problems
    if expect["ok"]:
        assert verdict.problems == ()
        assert verdict.root.hex() == data["head"]["root"] and verdict.size == 12
    else:
        first = verdict.problems[0]
        assert (first.what, first.where) == (expect["what"], expect["where"]), verdict.problems
        assert expect["where"].split()[-1] in first.message
    assert json.loads(json.dumps(verdict.to_json()))["ok"] is expect["ok"]


def test_records_and_rows_verify_alike() -> None:
    log = node_log()
    records = [AuditRecord.of(e) for e in log]
    a = verify_log(records)
    b = verify_log(rows_of(log))
    assert a.ok and b.ok and a.root == b.root == root([r.leaf_hash for r in records])


def test_every_head_along_the_way_is_checked() -> None:
    log = node_log()
    hashes = [event_leaf_hash(e) for e in log]
    heads = [sign_tree_head(n, root(hashes[:n]), T0, NODE) for n in (0, 3, 7, 12)]
    assert verify_log(rows_of(log), heads, public_key=NODE.public_key()).ok
    # A forged head at size 7 (as from a fork shown to a partner) is named.
    bad = sign_tree_head(7, root([*hashes[:6], hashes[0]]), T0, NODE)
    v = verify_log(rows_of(log), [*heads, bad])
    assert [(p.what, p.where) for p in v.problems] == [("forked", "tree head size 7")]


def test_malformed_rows_and_missing_items_are_reported_not_raised() -> None:
    rows = rows_of(node_log())
    rows[2] = {**rows[2], "seq": "two"}
    rows[3] = {k: v for k, v in rows[3].items() if k != "actor"}
    v = verify_log(rows, None, lambda i, ver: None)
    whats = [(p.what, p.where) for p in v.problems]
    assert ("malformed", "a row") in whats and ("malformed", "seq 3") in whats
    assert ("item-missing", "item indicator--0001@2017-03-01T00:00:00.000Z") in whats
    # Each missing item is named once, not once per event.
    assert sum(w == "item-missing" for w, _ in whats) == 2
    assert not v.ok


def test_problem_lists_are_capped() -> None:
    rows = [{**r, "leaf_hash": "00" * 32} for r in rows_of(node_log())]
    v = verify_log(rows, max_problems=3)
    assert len(v.problems) == 3 and v.truncated and not v.ok
    assert [p.where for p in v.problems] == ["seq 0", "seq 1", "seq 2"]


def test_a_large_gap_is_one_problem() -> None:
    rows = rows_of(node_log())
    v = verify_log(rows[:2] + rows[9:])
    assert [(p.what, p.where) for p in v.problems] == [("removed", "seq 2-8")]


def test_log_and_consistency_between_two_heads() -> None:
    """A node's old and new heads are linked by a consistency proof; a fork is not."""
    log = node_log()
    hashes = [event_leaf_hash(e) for e in log]
    old = sign_tree_head(5, root(hashes[:5]), T0, NODE)
    new = sign_tree_head(12, root(hashes), T0 + timedelta(hours=1), NODE)
    proof = consistency_proof(hashes, 5, 12)
    verify_consistency(old.size, new.size, old.root, new.root, proof)
    fork = list(hashes)
    fork[2] = event_leaf_hash(replace(log[2], actor="someone"))
    forked = sign_tree_head(12, root(fork), T0 + timedelta(hours=1), NODE)
    with pytest.raises(ProofInvalid):
        verify_consistency(old.size, forked.size, old.root, forked.root,
                           consistency_proof(fork, 5, 12))
    # An event's inclusion under the signed head.
    verify_inclusion(hashes[7], 7, 12, inclusion_proof(hashes, 7, 12), new.root)


if __name__ == "__main__":  # python tests/unit/test_audit.py rewrites the fixtures
    ASSETS.mkdir(exist_ok=True)
    for stem, data in build_fixtures().items():
        (ASSETS / f"{stem}.json").write_text(
            json.dumps(data, ensure_ascii=False, indent=1) + "\n", "utf-8")
        print(f"wrote tests/assets/{stem}.json", file=sys.stderr)


# ---- sealed batch leaves --------------------------------------------------------------------


def _entry(n: int, salt: int) -> dict[str, str]:
    return {"id": f"indicator--{n:036d}", "version": "2024-03-01T08:00:00.000Z",
            "type": "indicator", "content_hash": f"{n:064x}", "custody": f"{n + 7:064x}",
            "salt": f"{salt:032x}"}


@settings(max_examples=30, deadline=None)
@given(size=st.integers(1, 40), data=st.data())
def test_a_sealed_batch_proves_each_entry_alone_and_nothing_else(size: int,
                                                                 data: st.DataObject) -> None:
    entries = [_entry(n, data.draw(st.integers(0, 2**128 - 1))) for n in range(size)]
    event = AuditEvent(0, AuditKind.ITEMS_PUBLISHED, T0, "operator",
                       details={"originator": "JPN", "entries": entries})
    # Each entry's bytes are its RFC 8785 form (written out for speed).
    assert audit.entry_texts(entries) == [rfc8785.dumps(e) for e in entries]
    # The leaf commits to the root only; the row keeps the entries, and verifies as stored.
    assert b"indicator--" not in event.leaf and event.details["entries_root"].encode() in event.leaf
    row = {**event.to_json(), "leaf_hash": event_leaf_hash(event).hex()}
    stored = json.loads(audit.stored_details(event))
    assert stored == json.loads(json.dumps(dict(event.details)))
    assert audit._row({**row, "details": stored}).leaf == event.leaf
    place = data.draw(st.integers(0, size - 1))
    path = audit.entry_path(event.details, place)
    root_hex, count = event.details["entries_root"], event.details["entry_count"]
    assert count == size
    audit.verify_entry(entries[place], place, size, path, root_hex, count)
    # The path shows no other entry's values, and fits no other entry or place.
    shown = json.dumps(hashes_to_json(path))
    for other in entries[:place] + entries[place + 1:]:
        assert not any(v in shown for v in other.values())
    if size > 1:
        elsewhere = data.draw(st.integers(0, size - 1).filter(lambda p: p != place))
        with pytest.raises(ProofInvalid):
            audit.verify_entry(entries[elsewhere], place, size, path, root_hex, count)
        with pytest.raises(ProofInvalid):
            audit.verify_entry(entries[place], elsewhere, size, path, root_hex, count)
    member = data.draw(st.sampled_from(sorted(entries[place])))
    forged = {**entries[place], member: entries[place][member][:-1] + (
        "0" if entries[place][member][-1] != "0" else "1")}
    with pytest.raises(ProofInvalid):
        audit.verify_entry(forged, place, size, path, root_hex, count)
    # A stored entry rewritten is caught by verify_log, as a modification.
    rewritten = {**stored, "entries": [forged if n == place else e
                                       for n, e in enumerate(entries)]}
    verdict = verify_log([{**row, "details": rewritten}])
    assert [p.what for p in verdict.problems] == ["modified"]
    assert verify_log([row]).ok


# ---- sealed reads (hygiene16) ---------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(size=st.integers(2, 30), data=st.data())
def test_a_sealed_read_proves_one_item_read_and_nothing_else(size: int,
                                                              data: st.DataObject) -> None:
    """A granted read of a page commits to the items read by a root of salted entries: the
    path of one item read shows no other item's id or salt, fits no other place, and an
    entry rewritten in the row is caught. The earlier form (``items``) still verifies."""
    entries = [{"id": f"indicator--{n:036d}", "version": f"2024-03-01T08:00:{n % 60:02d}.000Z",
                "salt": f"{data.draw(st.integers(0, 2**128 - 1)):032x}"} for n in range(size)]
    event = AuditEvent(0, AuditKind.ACCESS_GRANTED, T0, "kenji",
                       details={"via": "taxii:objects", "clearance": "機密",
                                "entries": entries})
    assert audit.entry_texts(entries, "access-granted") == [rfc8785.dumps(e) for e in entries]
    assert b"indicator--" not in event.leaf and event.details["entry_count"] == size
    row = {**event.to_json(), "leaf_hash": event_leaf_hash(event).hex()}
    stored = json.loads(audit.stored_details(event))
    assert verify_log([{**row, "details": stored}]).ok
    place = data.draw(st.integers(0, size - 1))
    path = audit.entry_path(event.details, place, "access-granted")
    root_hex = event.details["entries_root"]
    audit.verify_entry(entries[place], place, size, path, root_hex, size, "access-granted")
    shown = json.dumps(hashes_to_json(path))
    for other in entries[:place] + entries[place + 1:]:
        assert other["id"] not in shown and other["salt"] not in shown
    elsewhere = data.draw(st.integers(0, size - 1).filter(lambda p: p != place))
    with pytest.raises(ProofInvalid):
        audit.verify_entry(entries[elsewhere], place, size, path, root_hex, size,
                           "access-granted")
    with pytest.raises(ProofInvalid):
        audit.verify_entry(entries[place], elsewhere, size, path, root_hex, size,
                           "access-granted")
    dropped = {**stored, "entries": entries[:place] + entries[place + 1:]}
    assert [p.what for p in verify_log([{**row, "details": dropped}]).problems] == ["modified"]
    listed = AuditEvent(0, AuditKind.ACCESS_GRANTED, T0, "kenji",
                        details={"via": "taxii:objects",
                                 "items": [[e["id"], e["version"]] for e in entries]})
    assert verify_log([AuditRecord.of(listed)]).ok
