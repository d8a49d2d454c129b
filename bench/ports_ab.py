"""The shell's reads moved behind the repository port (ports16), side by side in one process
with the same reads as main ran them (each module's own statements, copied here): CPU per
call, best of 9 alternated rounds, on one SQLite node store of N items (custody, receipts
and deliveries for each) and 2N audit events, one in ten a partner's head. Not a test, not
part of ``python -m bench``:

    PYTHONPATH=src python bench/ports_ab.py [N [NAME,NAME...]]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from gsomia.core.audit import AuditKind
from gsomia.core.outbox import DELIVERY
from gsomia.shell import notices, web
from gsomia.shell import store as st
from gsomia.shell.federated_scenario import Held, _received_since

HEAD_KINDS = (AuditKind.TREE_HEAD_EXCHANGED.value, AuditKind.PARTNER_LOG_INCONSISTENT.value)


def filled(path: str, n: int) -> st.Store:
    store = st.Store("sqlite:///" + path)
    now = datetime.now(UTC)
    items, custody, receipts, outbox, events = [], [], [], [], []
    for i in range(n):
        iid = f"note--{uuid.uuid4()}"
        items.append({"id": iid, "version": "v", "type": "note" if i % 3 else "indicator",
                      "originator": "KOR", "content": b'{"x":1}', "label": b"{}",
                      "binding": b"", "added_at": now, "seq": i + 1})
        custody.append({"item_id": iid, "version": "v",
                        "event": "received" if i % 2 else "stored", "holder": "JPN",
                        "provider": "KOR", "agreement": None,
                        "original_label": b'{"originator":"KOR","rel_to":["JPN"]}',
                        "national_label": b"{}", "at": now, "envelope_digest": None,
                        "note": "", "seq": i + 1})
        receipts.append({"item_id": iid, "version": "v", "peer": "KOR", "direction": "given",
                         "document": "{}", "at": now, "seq": i + 1})
        outbox.append({"item_id": iid, "version": "v", "recipient": "USA",
                       "status": "delivered" if i % 5 else "pending", "attempts": 1,
                       "next_at": now, "queued_at": now, "delivered_at": now,
                       "last_error": None, "seq": i + 1, "kind": DELIVERY})
    for s in range(1, 2 * n + 1):
        head = s % 10 == 0
        events.append({"seq": s, "kind": HEAD_KINDS[0] if head else "item-stored",
                       "at": "2026-12-07T00:00:00Z", "actor": "x", "item_id": None,
                       "item_version": None, "content_hash": None,
                       # As the log writes details: canonical JSON (RFC 8785).
                       "details": json.dumps({"consistent": True, "head": {"size": s},
                                              "partner": "KOR"},
                                             separators=(",", ":")) if head else "{}",
                       "leaf_hash": os.urandom(32)})
    with store.engine.connect().execution_options(gsomia_write=True) as conn, conn.begin():
        for table, rows in ((st.items, items), (st.custody, custody), (st.receipts, receipts),
                            (st.outbox, outbox), (st.audit_events, events)):
            conn.execute(table.insert(), rows)
    return store


# ---- as main read them ------------------------------------------------------------------

def main_fingerprint(node: Any) -> tuple[int, ...]:
    with node.store.engine.connect() as conn:
        row = conn.execute(sa.text(
            'SELECT (SELECT count(*) FROM items), (SELECT coalesce(max("row"), 0) FROM custody),'
            ' (SELECT count(*) FROM receipts), (SELECT count(*) FROM tree_heads)')).one()
    return tuple(int(v) for v in row)


def main_web_partner_heads(node: Any) -> list[dict[str, Any]]:
    with node.store.engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT at, details FROM audit_events WHERE kind = 'tree-head-exchanged' "
            "ORDER BY seq DESC LIMIT 200")).all()
    latest: dict[str, dict[str, Any]] = {}  # web.latest_partner_heads as main had it
    for at, details in rows:
        doc = json.loads(details)
        partner, head = doc.get("partner"), doc.get("head")
        if isinstance(partner, str) and isinstance(head, dict) and partner not in latest:
            flag = doc.get("consistent")
            latest[partner] = {"partner": partner, "received_at": at, "head": head,
                               "consistent": flag if isinstance(flag, bool) else None}
    return [latest[p] for p in sorted(latest)]


def main_partner_heads(node: Any) -> list[dict[str, Any]]:
    # notices.partner_heads as main ran it: every head event of the log, then per partner.
    return notices._partner_heads(main_head_events(node))


def main_head_events(node: Any) -> list[Any]:
    t = st.audit_events
    with node.store.engine.connect() as conn:
        return list(conn.execute(sa.select(t.c.seq, t.c.kind, t.c.at, t.c.details)
                                 .where(t.c.kind.in_(HEAD_KINDS))
                                 .order_by(t.c.seq.desc())).all())


def main_own_mark(node: Any) -> int | None:
    t = st.audit_events
    with node.store.engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.seq, t.c.kind)
                            .order_by(t.c.seq.desc()).limit(64)).all()
    return next((int(r.seq) for r in rows if r.kind not in HEAD_KINDS), None)


def main_centre(node: Any, mark: int) -> list[tuple[str, bytes, int]]:
    c = st.items.c
    with node.store.engine.connect() as conn:
        rows = conn.execute(sa.select(c.seq, c.originator, c.content)
                            .where(c.seq > mark, c.type == "note")
                            .order_by(c.seq).limit(64)).all()
        conn.rollback()
    return [(str(r.originator), bytes(r.content), int(r.seq)) for r in rows]


def branch_centre(node: Any, mark: int) -> list[tuple[str, bytes, int]]:
    # warning_centre.CentreWorker.pass_once's read
    with node.store.repository() as repo:
        rows = repo.contents_stored_after(mark, stix_type="note", limit=64)
    return [(str(originator), bytes(content), int(seq))
            for seq, originator, content, _held_at, *_ in rows]


def main_pending(node: Any) -> int:
    o = st.outbox
    with node.store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(o)
                                .where(o.c.kind != DELIVERY, o.c.status == "pending"))
                   .scalar() or 0)


def main_received_since(node: Any, last_row: int) -> tuple[list[Held], int]:
    c = st.custody.c
    with node.store.engine.connect() as conn:
        rows = conn.execute(sa.select(c.row, c.item_id, c.provider, c.original_label)
                            .where(c.row > last_row, c.event == "received")
                            .order_by(c.row)).all()
    out = []
    for r in rows:
        label = json.loads(bytes(r.original_label))
        out.append(Held(r.item_id, r.provider or "", str(label.get("originator", "")),
                        tuple(str(p) for p in label.get("rel_to", ()))))
    return out, (rows[-1].row if rows else last_row)



def alternated(name: str, before: Callable[[], Any], after: Callable[[], Any],
               calls: int) -> dict[str, float]:
    """CPU ms per call of main's read and the branch's, best of 9 rounds taken in turns
    (the order swapped each round, so neither side always runs on a warmer cache)."""
    best = {"main": 1e9, "branch": 1e9}
    for rnd in range(9):
        order = [("main", before), ("branch", after)]
        for tag, f in (order if rnd % 2 else order[::-1]):
            began = time.process_time()
            for _ in range(calls):
                f()
            best[tag] = min(best[tag], (time.process_time() - began) / calls * 1e3)
    print(f"  {name:28s} main {best['main']:.3f}  branch {best['branch']:.3f}  "
          f"branch/main {best['branch'] / best['main']:.2f}")
    return {k: round(v, 4) for k, v in best.items()} | {
        "branch/main": round(best["branch"] / best["main"], 3)}

def run(n: int, only: set[str] | None = None) -> dict[str, dict[str, float]]:
    folder = tempfile.mkdtemp(prefix="ports16-ab-")
    store = filled(os.path.join(folder, "node.db"), n)
    from gsomia.shell.catalogue import load_catalogue

    # A node with only what these reads use: Any, as it stands for both a NodeView and a Node.
    node: Any = SimpleNamespace(store=store, party="JPN", folder=folder,
                                catalogue=load_catalogue())
    sender = notices.NoticeSender(node)
    mark = n - 100

    def branch_head_events() -> list[Any]:
        with store.repository() as repo:
            return notices.head_events(repo)

    pairs: list[tuple[str, Callable[[], Any], Callable[[], Any], int]] = [
        ("web.fingerprint", lambda: main_fingerprint(node),
         lambda: web.fingerprint(node), 300),
        ("web.partner_heads", lambda: main_web_partner_heads(node),
         lambda: web.partner_heads(node), 100),
        ("notices head events", lambda: main_head_events(node), branch_head_events, 10),
        ("notices.partner_heads", lambda: main_partner_heads(node),
         lambda: notices.partner_heads(node), 10),
        ("NoticeSender._own_mark", lambda: main_own_mark(node), sender._own_mark, 300),
        ("centre pass read", lambda: main_centre(node, mark),
         lambda: branch_centre(node, mark), 200),
        ("notices.pending", lambda: main_pending(node),
         lambda: notices.pending(node), 50),
        ("_received_since", lambda: main_received_since(node, n - 400)[0],
         lambda: _received_since(node, n - 400)[0], 100)]
    print(f"{n} items, {2 * n} audit events; CPU ms per call, best of 9 alternated rounds")
    out: dict[str, dict[str, float]] = {}
    for name, before, after, calls in pairs:
        if only and name not in only:
            continue
        a, b = before(), after()
        assert (len(a) == len(b)) if isinstance(a, list | tuple) else a == b, name
        out[name] = alternated(name, before, after, calls)
    store.dispose()
    return out


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 20000,
                         set(sys.argv[2].split(",")) if len(sys.argv) > 2 else None)))
