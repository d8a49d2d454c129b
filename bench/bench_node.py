"""The node: publish and verified-ingest throughput, and ``audit verify`` over a million events.

Verified ingest cannot beat the single-core Ed25519 verify rate (each item carries one
originator signature to check), so both throughputs are printed beside that rate, measured
in the same run, as ratios. The million-event log is built with bulk inserts (the same rows,
leaves, frontier and signed heads a node writes, just not one commit at a time), then
verified exactly as ``gsomia audit verify`` does.
"""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gsomia.core import crypto
from gsomia.core.audit import (
    AuditEvent,
    AuditKind,
    AuditRecord,
    MerkleAccumulator,
    sign_tree_head,
)
from gsomia.core.custody import CustodyRecord, NodeUser, StoredItem, records_detail, stamp
from gsomia.service import handlers
from gsomia.service.handlers import Incoming, LabelRequest
from gsomia.shell.catalogue import load_catalogue
from gsomia.shell.node import Node, init_node, open_node, validate_stix

NOW = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
KOR_LABEL = LabelRequest("군사II급비밀", ("KOR", "JPN"), "dprk-missile")
JPN_LABEL = LabelRequest("極秘", ("JPN", "KOR"), "dprk-missile")


def indicator(n: int) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1",
            "id": f"indicator--{uuid.UUID(int=n + 1, version=4)}",
            "created": "2024-03-01T08:00:00.000Z", "modified": "2024-03-01T08:00:00.000Z",
            "name": f"TEL activity {n} at Sunan",
            "description": "Transporter-erector-launcher out of its shelter.",
            "pattern": f"[x-dprk-site:name = 'Sunan-{n}']", "pattern_type": "stix",
            "valid_from": "2024-03-01T08:00:00Z"}


def ed25519_verify_rate(seconds: float = 1.5) -> float:
    """Single-core Ed25519 verifications per second of CPU time (a binding's message).

    CPU time, like the ingest figures: on a shared machine the wall clock also counts the
    time spent waiting for a core.
    """
    key = crypto.new_signing_key()
    public = key.public_key()
    message = crypto.signed_message(crypto.BINDING_CONTEXT, b"\x01" * 32)
    signature = key.sign(message)
    count, started = 0, time.process_time()
    while time.process_time() - started < seconds:
        for _ in range(200):
            public.verify(signature, message)
        count += 200
    return count / (time.process_time() - started)


def publish_rate(node: Node, first: int, count: int, batch: int) -> float:
    """Items/s through validate + label + bind + store + audit, ``batch`` per commit."""
    started = time.perf_counter()
    for start in range(0, count, batch):
        entries = [(indicator(first + i), KOR_LABEL) for i in range(start, start + batch)]
        handlers.publish_many(node.uow(), keys=node.keys, catalogue=node.catalogue,
                              entries=entries, now=NOW, validate=validate_stix)
    return count / (time.perf_counter() - started)


def ingest_rate(base: Path, count: int, batch: int) -> dict[str, float]:
    """A KOR node receives ``count`` JPN items, ``batch`` per commit, checking each binding.

    Each batch is timed beside the bare Ed25519 verification of its own signatures (CPU time
    of this process, interleaved, so both see the same machine): the ratio of the two is how
    close ingest comes to the verify limit.
    """
    import statistics

    catalogue = load_catalogue()
    jpn = init_node(base / "jpn", "JPN", catalogue=catalogue, now=NOW)
    kor = init_node(base / "kor-ingest", "KOR", catalogue=catalogue, now=NOW)
    try:
        for start in range(0, count + batch, 500):
            handlers.publish_many(jpn.uow(), keys=jpn.keys, catalogue=jpn.catalogue,
                                  entries=[(indicator(10**6 + i), JPN_LABEL)
                                           for i in range(start, min(count + batch,
                                                                     start + 500))],
                                  now=NOW)
        with jpn.store.repository() as repo:
            sent = [Incoming(h.item.object(), h.item.security_label(), h.item.bound(), "JPN")
                    for h in repo.holdings()]
        keys = {"JPN": jpn.keys.public_signing_key()}
        public = keys["JPN"]
        # A running node has its statements compiled: the first batch warms up, untimed.
        handlers.ingest(kor.uow(), keys=kor.keys, catalogue=kor.catalogue,
                        batch=sent[:batch], originator_keys=keys, now=NOW)
        sent = sent[batch:]
        verify_s: list[float] = []
        ingest_s: list[float] = []
        stored = 0
        wall = time.perf_counter()
        for start in range(0, len(sent), batch):
            part = sent[start:start + batch]
            began = time.process_time()
            for incoming in part:
                public.verify(incoming.binding.signature, crypto.signed_message(
                    crypto.BINDING_CONTEXT, incoming.binding.digest))
            verify_s.append(time.process_time() - began)
            began = time.process_time()
            results = handlers.ingest(kor.uow(), keys=kor.keys, catalogue=kor.catalogue,
                                      batch=part, originator_keys=keys, now=NOW)
            ingest_s.append(time.process_time() - began)
            stored += sum(r.status == "stored" for r in results)
        wall = time.perf_counter() - wall
        assert stored == len(sent), stored
        verify_med, ingest_med = statistics.median(verify_s), statistics.median(ingest_s)
        return {"ingest_per_s": batch / ingest_med, "verify_per_s": batch / verify_med,
                "ratio": verify_med / ingest_med, "best_ratio": min(verify_s) / min(ingest_s),
                "items": len(sent), "wall_s": wall}
    finally:
        jpn.close()
        kor.close()


def build_log(node: Node, events: int, n_items: int, head_every: int = 10_000) -> float:
    """Fill ``node`` (SQLite) with ``events`` audit events in bulk; return the seconds taken.

    The log holds what a busy node's would: users, items published (item-created and
    label-bound, with custody records) and, for the rest, reads granted and denied. Every
    event is a real ``AuditEvent`` with its leaf hash; rows go in by plain ``executemany``.
    """
    from gsomia.shell import store as st

    started = time.perf_counter()
    key = node.keys.signing_key()
    with node.store.reader() as reader:
        base = reader.size()
        acc = MerkleAccumulator.of(reader.leaf_hashes())
    users = [NodeUser(f"analyst{u}", "KOR", "군사II급비밀", frozenset({"dprk-missile"}),
                      bytes([u]) * 32, NOW) for u in range(50)]
    label = handlers.make_label(KOR_LABEL, originator="KOR", catalogue=node.catalogue,
                                now=NOW)
    label_json = label.to_json()
    held: list[tuple[str, str, str]] = []
    events_rows: list[tuple[Any, ...]] = []
    heads: list[tuple[Any, ...]] = []
    items_rows: list[dict[str, Any]] = []
    custody_rows: list[dict[str, Any]] = []
    every = max(1, (events - base - len(users)) // max(1, n_items))
    granted = {"reasons": ["clearance covers the level", "need-to-know for dprk-missile"]}
    denied = {"reasons": ["analyst has no need-to-know for regional-security"]}
    texts = {id(granted): crypto.canonical(granted).decode(),
             id(denied): crypto.canonical(denied).decode()}

    def append(kind: AuditKind, actor: str, details: dict[str, Any],
               **kw: Any) -> AuditEvent:
        at = NOW + timedelta(seconds=acc.size // 1000)
        event = AuditEvent(acc.size, kind, at, actor, details=details, **kw)
        leaf = AuditRecord.of(event).leaf_hash
        acc.append(leaf)
        text = texts.get(id(details)) or crypto.canonical(details).decode()
        events_rows.append((event.seq, kind.value, _at_text(at), actor, event.item_id,
                            event.item_version, event.content_hash, text, leaf))
        if acc.size % head_every == 0:
            head = sign_tree_head(acc.size, acc.root(), at, key)
            heads.append((head.size, head.root, head.to_json()["timestamp"], head.key,
                          head.signature))
        return event

    insert_events = ("INSERT INTO audit_events (seq, kind, at, actor, item_id, item_version, "
                     "content_hash, details, leaf_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
    insert_heads = "INSERT INTO tree_heads (size, root, timestamp, key, signature) " \
                   "VALUES (?, ?, ?, ?, ?)"
    with node.store.engine.connect().execution_options(gsomia_write=True) as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None

        def flush() -> None:
            with conn.begin():
                raw.cursor().executemany(insert_events, events_rows)
                raw.cursor().executemany(insert_heads, heads)
                if items_rows:
                    conn.execute(st.items.insert(), items_rows)
                    conn.execute(st.custody.insert(), custody_rows)
            for rows in (events_rows, heads, items_rows, custody_rows):
                rows.clear()

        with conn.begin():
            for user in users:
                e = append(AuditKind.USER_ADDED, "operator", {
                    **user.public_json(), "records": records_detail(users=[user.digest()])})
                conn.execute(st.users.insert(), {
                    "name": user.name, "party": "KOR", "clearance": user.clearance,
                    "need_to_know": json.dumps(sorted(user.need_to_know)),
                    "token_hash": user.token_hash, "created_at": NOW, "seq": e.seq})
        i = 0
        while acc.size < events:
            if i < n_items and (acc.size - base) % every == 0:
                parsed = indicator(i)
                binding = crypto.bind(label_json, parsed, key)
                item = StoredItem.of(parsed, label, binding, NOW)
                custody = CustodyRecord(item.item_id, item.version, "created", "KOR", label,
                                        label, NOW)
                chash = item.content_hash()
                e = append(AuditKind.ITEM_CREATED, "operator",
                           {"type": "indicator", "originator": "KOR",
                            "added_at": stamp(item.added_at),
                            "records": records_detail(custody=[custody.digest()])},
                           item_id=item.item_id, item_version=item.version,
                           content_hash=chash)
                append(AuditKind.LABEL_BOUND, "node",
                       {"key": binding.key, "digest": crypto.b64u(binding.digest)},
                       item_id=item.item_id, item_version=item.version, content_hash=chash)
                items_rows.append(st._mapping._item_values(item, e.seq))
                custody_rows.append(st._mapping._custody_values(custody, e.seq))
                held.append((item.item_id, item.version, chash))
                i += 1
            elif held:
                item_id, version, chash = held[acc.size % len(held)]
                name = users[acc.size % len(users)].name
                if acc.size % 5:
                    append(AuditKind.ACCESS_GRANTED, name, granted, item_id=item_id,
                           item_version=version, content_hash=chash)
                else:
                    append(AuditKind.ACCESS_DENIED, name, denied, item_id=item_id,
                           item_version=version)
            else:
                append(AuditKind.INCIDENT, "operator", {"note": "filler"})
            if len(events_rows) >= 50_000:
                flush()
        if acc.size % head_every:
            head = sign_tree_head(acc.size, acc.root(), NOW + timedelta(days=1), key)
            heads.append((head.size, head.root, head.to_json()["timestamp"], head.key,
                          head.signature))
        flush()
        with conn.begin():
            conn.execute(st.audit_state.update().values(size=acc.size,
                                                        frontier=b"".join(acc.frontier)))
            latest = conn.execute(st.tree_heads.select().order_by(
                st.tree_heads.c.size.desc()).limit(1)).first()
    assert latest is not None
    node.store.write_external_head(st._mapping._head(latest))
    return time.perf_counter() - started


@functools.lru_cache(maxsize=4)
def _at_text(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")  # whole seconds, as audit renders them


def run(events: int = 1_000_000, publish_items: int = 300,
        ingest_items: int = 5000) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="gsomia-bench-node-"))
    catalogue = load_catalogue()
    try:
        verify_rate = ed25519_verify_rate()
        print(f"Ed25519 verify, one core              {verify_rate:>10,.0f} /s CPU  (the limit "
              "of verified ingest)")
        kor = init_node(base / "kor", "KOR", catalogue=catalogue, now=NOW)
        validate_stix(indicator(0))  # import the validator outside the timings
        began = time.perf_counter()
        for i in range(50):
            validate_stix(indicator(i))
        validator = 50 / (time.perf_counter() - began)
        single = publish_rate(kor, 0, publish_items // 3, batch=1)
        batched = publish_rate(kor, 10_000, publish_items, batch=100)
        kor.close()
        print(f"stix2-validator alone                 {validator:>10,.0f} objects/s")
        print(f"publish, one commit per item          {single:>10,.0f} items/s  "
              f"({single / verify_rate:.3f}x verify rate)")
        print(f"publish, 100 per commit               {batched:>10,.0f} items/s  "
              f"({batched / verify_rate:.3f}x verify rate; the validator is the bound)")
        ingest = ingest_rate(base, ingest_items, batch=500)
        print(f"verified ingest, 500 per commit       {ingest['ingest_per_s']:>10,.0f} items/s  "
              f"({ingest['ratio']:.2f}x the verify rate of the same batches, "
              f"{ingest['verify_per_s']:,.0f}/s; best batch {ingest['best_ratio']:.2f}x; "
              "aim >= 0.50)")

        big = init_node(base / "big", "KOR", catalogue=catalogue, now=NOW)
        built = build_log(big, events, n_items=20_000)
        big.close()
        db_mb = (base / "big" / "node.db").stat().st_size / 1e6
        print(f"built a {events:,}-event log in {built:.1f} s ({db_mb:,.0f} MB)")
        cpu, started = time.process_time(), time.perf_counter()
        with open_node(base / "big", catalogue=catalogue) as node, \
                node.store.reader() as reader:
            verdict = handlers.verify_audit(reader, public_key=node.keys.public_signing_key())
        verify_s, verify_cpu = time.perf_counter() - started, time.process_time() - cpu
        assert verdict.ok and verdict.size == events, [p.to_json() for p in verdict.problems]
        print(f"audit verify, {events:,} events        {verify_s:>10.1f} s wall, "
              f"{verify_cpu:.1f} s CPU ({events / verify_s:,.0f} events/s; aim < 30 s)")
        return {
            "ed25519_verify_per_s": round(verify_rate),
            "stix_validator_per_s": round(validator, 1),
            "publish_single_commit_items_per_s": round(single, 1),
            "publish_batch_100_items_per_s": round(batched, 1),
            "publish_batch_vs_verify": round(batched / verify_rate, 4),
            "ingest_verified_batch_500_items_per_s": round(ingest["ingest_per_s"], 1),
            "ingest_same_batches_verify_per_s": round(ingest["verify_per_s"]),
            "ingest_vs_verify": round(ingest["ratio"], 3),
            "ingest_vs_verify_best_batch": round(ingest["best_ratio"], 3),
            "audit_verify_events": events,
            "audit_verify_seconds": round(verify_s, 2),
            "audit_verify_cpu_seconds": round(verify_cpu, 2),
            "audit_verify_events_per_s": round(events / verify_s),
            "audit_log_build_seconds": round(built, 1),
            "audit_log_db_mb": round(db_mb),
        }
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    run()
