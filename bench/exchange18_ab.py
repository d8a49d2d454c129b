"""The exchange's reads moved behind the repository port (exchange18), side by side in one
process with the same reads as main ran them (main's code, copied here): CPU per call, best
of 9 alternated rounds, on one SQLite node store of N items (ports_ab's filler: a delivery
each, one in five pending). The sender's read of what a batch's envelopes carry
(``payloads_of``, once per batch sealed) is the one on the delivery path; the scan's and the
pending counts are read by every crash-recovery pass and by the tests' waits (the branch's
``payloads_of`` now also asks the policy again and verifies each binding, in this process:
its "after" is the seal's read as it is, not the same work as main's). Not a test,
not part of ``python -m bench``:

    PYTHONPATH=src:. python bench/exchange18_ab.py [N [BATCH]]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from bench.ports_ab import alternated, filled
from gsomia.core import crypto
from gsomia.core.custody import record_bytes
from gsomia.core.outbox import DELIVERY, Routing
from gsomia.service import handlers
from gsomia.shell import exchange
from gsomia.shell import store as st
from gsomia.shell.catalogue import load_catalogue

# ---- as main read them ------------------------------------------------------------------


def main_payloads_of(conn: sa.Connection, keys: Sequence[tuple[str, str]],
                     recipient: str, now: datetime) -> dict[tuple[str, str], dict[str, Any]]:
    from gsomia.core.labels import SecurityLabel
    from gsomia.service.standing import with_documents

    items = st.items
    ids = sorted({k[0] for k in keys})
    wanted = set(keys)
    repo = st.SqlRepository(conn)
    consents = repo.consents_of(ids)
    standing = [(c, doc) for c, doc in with_documents(
        r for r in repo.standing_consents() if r.direction == "obtained" or r.kind == "revoke")
        if c.recipient == recipient and not c.revoked]
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for i in range(0, len(ids), 500):
        for row in conn.execute(sa.select(items.c.id, items.c.version, items.c.content,
                                          items.c.label, items.c.binding)
                                .where(items.c.id.in_(ids[i:i + 500]))):
            if (row.id, row.version) not in wanted:
                continue
            label_doc = json.loads(row.label)
            payload: dict[str, Any] = {
                "object": json.loads(row.content), "label": label_doc,
                "binding": json.loads(row.binding),
                "consents": [dict(c.document) for c in consents.get(row.id, [])
                             if c.recipient == recipient]}
            if standing:
                label = SecurityLabel.from_stored(label_doc, where="label")
                covering = [dict(doc) for c, doc in standing
                            if c.covers(label, recipient, now)]
                if covering:
                    payload["standing_consents"] = covering
            out[(row.id, row.version)] = payload
    return out


def main_seal_read(node: Any, keys: Sequence[tuple[str, str]], now: datetime) -> int:
    with node.store.engine.connect() as conn:
        return len(main_payloads_of(conn, keys, "USA", now))


def main_scan_read(node: Any) -> int:
    items = st.items
    with node.store.engine.connect() as conn:
        mark = conn.execute(sa.select(st.exchange_state.c.scanned_seq)
                            .where(st.exchange_state.c.id == 1)).scalar()
        newest = conn.execute(sa.select(sa.func.max(items.c.seq))).scalar()
        conn.rollback()
    return 0 if newest is None or (mark is not None and newest <= mark) else 1


def main_pending(node: Any, recipient: str | None = None) -> int:
    o = st.outbox
    query = sa.select(sa.func.count()).select_from(o).where(o.c.kind == DELIVERY,
                                                            o.c.status == "pending")
    if recipient is not None:
        query = query.where(o.c.recipient == recipient)
    with node.store.engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def run(n: int, batch: int) -> dict[str, dict[str, float]]:
    folder = tempfile.mkdtemp(prefix="exchange18-ab-")
    store = filled(os.path.join(folder, "node.db"), n)
    now = datetime.now(UTC)
    # Every item KOR's own, under a label that releases it to USA and bound by KOR's key
    # (the filler's items share their content, so one binding binds them all): the seal
    # reads the label, asks the policy again (sealcheck23) and verifies the binding
    # (sealsig26, each check in this process) before it carries anything.
    catalogue = load_catalogue()
    key = crypto.new_signing_key()
    label = record_bytes(handlers.make_label(
        handlers.LabelRequest("군사II급비밀", ("KOR", "JPN", "USA"), "dprk-missile"),
        originator="KOR", catalogue=catalogue, now=now).to_json())
    binding = crypto.Binding(crypto.SIGNATURE_ALGORITHM, crypto.fingerprint(key), b"", b"")
    with store.engine.connect() as conn:
        content = conn.execute(sa.select(st.items.c.content).limit(1)).scalar_one()
    digest = crypto.binding_digest_of(label, bytes(content))
    binding = crypto.Binding(binding.algorithm, binding.key, crypto.sign(
        key, crypto.signed_message(crypto.BINDING_CONTEXT, digest)), digest)
    with store.engine.connect().execution_options(gsomia_write=True) as conn, conn.begin():
        conn.execute(st.items.update().values(binding=crypto.canonical(binding.to_json()),
                                              label=label))
        conn.execute(st.exchange_state.insert(), {"id": 1, "scanned_seq": n})
        keys = [(str(r.id), str(r.version)) for r in conn.execute(
            sa.select(st.items.c.id, st.items.c.version).order_by(st.items.c.seq)
            .limit(batch).offset(n // 2))]
    node = SimpleNamespace(store=store, party="KOR", folder=folder)
    routing = Routing("KOR", ("USA",), catalogue)
    originators = {"KOR": key.public_key()}

    def branch_seal_read() -> int:
        with store.repository() as repo:  # as Sender._seal
            payloads, refused = exchange.payloads_of(repo, keys, "USA", now, routing,
                                                     originators)
        assert not refused, refused
        return len(payloads)

    pairs: list[tuple[str, Callable[[], Any], Callable[[], Any], int]] = [
        (f"_seal read ({batch} envelopes)", lambda: main_seal_read(node, keys, now),
         branch_seal_read, 20),
        ("scan read (nothing new)", lambda: main_scan_read(node),
         # No partners: a scan that finds nothing new never reaches them.
         lambda: exchange.scan(node, None, now), 300),  # type: ignore[arg-type]
        ("pending", lambda: main_pending(node), lambda: exchange.pending(node), 50),
        ("pending to USA", lambda: main_pending(node, "USA"),
         lambda: exchange.pending(node, "USA"), 50)]
    print(f"{n} items; CPU ms per call, best of 9 alternated rounds")
    out: dict[str, dict[str, float]] = {}
    for name, before, after, calls in pairs:
        assert before() == after(), name
        out[name] = alternated(name, before, after, calls)
    store.dispose()
    return out


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 20000,
                         int(sys.argv[2]) if len(sys.argv) > 2 else 100)))
