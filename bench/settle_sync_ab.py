"""The settle of a partner's receipts synced to disk or not, side by side in one process
(deliver16): KOR and JPN of a direct federation opened here, KOR's sender posting to JPN's
receive through an in-process transport (no HTTP, no TLS), one item at a time, the two
forms alternated item by item. Publish-to-receipt latency (the publish, JPN's store and
receipt, KOR's settle: three commits, the last of them the one that differs), p50 and p99,
and the CPU of the process per item. Not a test, not part of ``python -m bench``:

    PYTHONPATH=src:. python bench/settle_sync_ab.py [items per form]
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import sqlalchemy as sa

from gsomia import bootstrap
from gsomia.core import crypto
from gsomia.service import handlers
from gsomia.shell import exchange, federation
from gsomia.shell.store import SqlUnitOfWork, now_utc, outbox

LABEL = handlers.LabelRequest("군사III급비밀", ("KOR", "JPN"), "dprk-missile")


def _indicator(n: int) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
            "created": "2026-11-01T00:00:00.000Z", "modified": "2026-11-01T00:00:00.000Z",
            "name": f"ab {n}", "pattern": "[ipv4-addr:value = '10.0.0.1']",
            "pattern_type": "stix", "valid_from": "2026-11-01T00:00:00Z"}


def _pending(node: Any) -> int:
    with node.store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(outbox).where(
            outbox.c.status == exchange.PENDING)).scalar() or 0)


def main(n: int = 60) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="deliver16-ab-", dir="/tmp"))
    federation.configure(folder, "direct", federation.free_base_port())
    kor, jpn = bootstrap.open_node(folder / "KOR"), bootstrap.open_node(folder / "JPN")
    partners = exchange.require_partners(jpn)

    def link(request: Any) -> Any:
        body = json.loads(request.content)
        envelopes = [crypto.Envelope.from_json(e) for e in body["envelopes"]]
        results = exchange.receive(jpn, partners, envelopes, "KOR", now_utc())
        return httpx.Response(202, json={"results": [r.to_json() for r in results]})

    form = {"synced": True}
    store = kor.store

    def uow(*, synced: bool = True, at_once: bool = False,
            sync_outside: bool = False) -> SqlUnitOfWork:
        # "synced": the settle as before deliver16 (every commit synced).
        return SqlUnitOfWork(store, synced=synced or form["synced"], at_once=at_once,
                             sync_outside=sync_outside)

    store.uow = uow  # type: ignore[method-assign]
    sender = exchange.Sender(kor, batch=16,
                             client=httpx.Client(transport=httpx.MockTransport(link)))
    latency: dict[str, list[float]] = {"synced": [], "unsynced": []}
    cpu: dict[str, float] = {"synced": 0.0, "unsynced": 0.0}
    try:
        for i in range(2 * n + 10):
            name = "synced" if i % 2 == 0 else "unsynced"
            form["synced"] = name == "synced"
            c0, t0 = time.process_time(), time.perf_counter()
            exchange.publish(kor, entries=[(_indicator(i), LABEL)])
            while True:
                sender.step()
                if _pending(kor) == 0:
                    break
            t1, c1 = time.perf_counter(), time.process_time()
            if i >= 10:  # warm-up
                latency[name].append((t1 - t0) * 1000)
                cpu[name] += (c1 - c0) * 1000
    finally:
        sender.close()
        kor.close()
        jpn.close()
    out: dict[str, Any] = {"items_per_form": n}
    for name, values in latency.items():
        out[name] = {"p50_ms": round(float(np.percentile(values, 50)), 2),
                     "p99_ms": round(float(np.percentile(values, 99)), 2),
                     "mean_ms": round(statistics.fmean(values), 2),
                     "cpu_ms_per_item": round(cpu[name] / n, 3)}
    out["unsynced_over_synced"] = {
        k: round(out["unsynced"][k] / out["synced"][k], 3)
        for k in ("p50_ms", "p99_ms", "mean_ms", "cpu_ms_per_item")}
    return out


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 60), indent=1))
