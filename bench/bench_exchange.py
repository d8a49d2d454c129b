"""End-to-end delivery between real node processes (``gsomia federation up``).

direct: KOR publishes, JPN receives (2016 GSOMIA). hub: KOR publishes, USA receives, and
relays to JPN once KOR's consent reaches it (TISA). Figures: items/s from the first publish
until the last signed receipt is recorded at the sender, and publish-to-receipt latency
(p50/p99) one item at a time (light load). The issue's aim: ≥ 1,000 items/s, p99 < 50 ms.
"""

from __future__ import annotations

import json
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

N_BULK = 2000
N_LATENCY = 60
AIM_RATE, AIM_P99_MS = 1000.0, 50.0


def _base() -> int:
    for base in range(21000, 60000, 97):
        try:
            for i in range(3):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
    raise RuntimeError("no free ports")


def _obj(i: int) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
            "created": "2026-11-01T00:00:00.000Z", "modified": "2026-11-01T00:00:00.000Z",
            "name": f"bench {i}", "pattern": "[ipv4-addr:value = '10.0.0.1']",
            "pattern_type": "stix", "valid_from": "2026-11-01T00:00:00Z"}


def _delivered(node: Any, recipient: str, ids: set[str]) -> int:
    """How many of ``ids`` have a receipt from ``recipient`` recorded at ``node``."""
    import sqlalchemy as sa

    from gsomia.shell.store import outbox

    count = 0
    with node.store.engine.connect() as conn:
        chunk = sorted(ids)
        for i in range(0, len(chunk), 500):
            count += int(conn.execute(
                sa.select(sa.func.count()).select_from(outbox).where(
                    outbox.c.recipient == recipient, outbox.c.status == "delivered",
                    outbox.c.item_id.in_(chunk[i:i + 500]))).scalar() or 0)
    return count


def _relay_consents(kor: Any, usa_url: str, ids: list[str]) -> None:
    """KOR's operator consents to USA passing each item to JPN; the consents go to USA."""
    from gsomia.service import handlers
    from gsomia.shell import exchange
    from gsomia.shell.store import now_utc

    with exchange.peer_client(kor.folder) as client:
        for item in ids:
            consent = handlers.grant_consent(kor.uow(), keys=kor.keys, item_id=item,
                                             recipient="JPN", now=now_utc())
            r = client.post(usa_url + "/peer/v1/consents/replies/",
                            content=json.dumps({"granted": True, "consent": consent.to_json()}))
            r.raise_for_status()


def _measure(folder: Path, topology: str) -> dict[str, Any]:
    from gsomia import bootstrap
    from gsomia.service import handlers
    from gsomia.shell import exchange
    from gsomia.shell.commands import federation

    doc = federation.up(folder, topology, _base())
    nodes = {c: bootstrap.open_node(folder / c) for c in ("KOR", "USA")}
    kor, usa = nodes["KOR"], nodes["USA"]
    # Whose outbox records JPN's receipt: KOR directly, or USA as the relay.
    last, hub = (kor, False) if topology == "direct" else (usa, True)
    # direct: between two nodes only (USA is not in REL TO); hub: USA must be, to relay.
    rel_to = ("KOR", "JPN") if topology == "direct" else ("KOR", "JPN", "USA")
    label = handlers.LabelRequest("군사III급비밀", rel_to, "dprk-missile")
    try:
        # Light load: one item at a time, publish to JPN's receipt.
        latencies = []
        for i in range(N_LATENCY):
            obj = _obj(i)
            start = time.perf_counter()
            exchange.publish(kor, entries=[(obj, label)])
            if hub:
                _relay_consents(kor, doc["nodes"]["USA"]["url"], [obj["id"]])
            ok = exchange.wait_until(lambda o=obj: _delivered(last, "JPN", {o["id"]}) == 1,
                                     30, interval=0.002)
            if not ok:
                raise RuntimeError(f"{topology}: item {i} not delivered within 30 s")
            latencies.append((time.perf_counter() - start) * 1000)
        # Bulk: batches of 100 published as fast as the publisher goes.
        n = N_BULK if not hub else N_BULK // 4
        ids: list[str] = []
        start = time.perf_counter()
        for b in range(0, n, 100):
            batch = [_obj(b + i) for i in range(100)]
            exchange.publish(kor, entries=[(o, label) for o in batch])
            ids += [o["id"] for o in batch]
            if hub:
                _relay_consents(kor, doc["nodes"]["USA"]["url"], [o["id"] for o in batch])
        wanted = set(ids)
        if not exchange.wait_until(lambda: _delivered(last, "JPN", wanted) == n, 300,
                                   interval=0.1):
            raise RuntimeError(f"{topology}: bulk not delivered within 300 s")
        elapsed = time.perf_counter() - start
    finally:
        for node in nodes.values():
            node.close()
        federation.down(folder)
    lat = np.array(latencies)
    return {"items": n, "items_per_s": round(n / elapsed, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "latency_samples": len(latencies),
            "includes_consent_round_trip": hub}


def run() -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="gsomia-bench-exchange-") as tmp:
        for topology in ("direct", "hub"):
            out[topology] = _measure(Path(tmp) / topology, topology)
            r = out[topology]
            print(f"exchange {topology:6s}: {r['items_per_s']:8.1f} items/s "
                  f"({r['items_per_s'] / AIM_RATE:.2f}× aim {AIM_RATE:.0f}); "
                  f"publish→receipt p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms "
                  f"(aim p99 < {AIM_P99_MS:.0f} ms)")
    out["hub_over_direct_p50"] = round(out["hub"]["p50_ms"] / out["direct"]["p50_ms"], 2)
    print(f"hub/direct p50 latency: {out['hub_over_direct_p50']}×")
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
