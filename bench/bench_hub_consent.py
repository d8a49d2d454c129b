"""The TISA hub's cost both ways: a relay KOR → USA → JPN under a standing consent (a machine
relay) against per-item consent answered at KOR's consent desk.

Three real node processes (``gsomia federation up --topology hub``). KOR publishes items
marked for JPN and the USA at light load (OFFERED_PER_S, one at a time); the figure is the
hub relay time, from KOR's publish call until JPN's signed receipt for USA's relay is recorded
at USA (a thread watches USA's outbox). Modes, each in its own federation:

- standing: KOR granted USA a standing consent (category sensor-report, dprk-missile, to JPN)
  before the items; USA relays each as it arrives, with no request;
- per-item, desk delay 0: USA's operator asks KOR for each item over the peer API as soon as
  USA holds it, and KOR's operator answers at once (``consent request`` / ``consent grant``);
- per-item, desk delay DESK_DELAY_S: the same, KOR's operator answering DESK_DELAY_S seconds
  after the request (a stated parameter: people read the request and decide; the demo's
  ``--desk-delay`` sets it in flight seconds).

The per-item figures include the request and the answer, each a round trip over mutual TLS.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from bench.bench_exchange import _Watch

N_ITEMS = 40
OFFERED_PER_S = 5.0
DESK_DELAY_S = 2.0
CATEGORY = "sensor-report"


def _obj(i: int) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
            "created": "2026-11-01T00:00:00.000Z", "modified": "2026-11-01T00:00:00.000Z",
            "name": f"hub bench {i}", "pattern": "[ipv4-addr:value = '10.0.0.1']",
            "pattern_type": "stix", "valid_from": "2026-11-01T00:00:00Z"}


def _held(node: Any, item_id: str) -> bool:
    with node.store.repository() as repo:
        return repo.get_item(item_id) is not None


def _measure(folder: Path, mode: str, desk_delay: float) -> dict[str, Any]:
    from gsomia import bootstrap
    from gsomia.service import handlers
    from gsomia.shell import consents, exchange, federation

    federation.up(folder, "hub", federation.free_base_port())
    nodes = {c: bootstrap.open_node(folder / c) for c in ("KOR", "USA")}
    kor, usa = nodes["KOR"], nodes["USA"]
    label = handlers.LabelRequest("군사II급비밀", ("KOR", "JPN", "USA"), "dprk-missile",
                                  category=CATEGORY)
    desk = ThreadPoolExecutor(max_workers=N_ITEMS, thread_name_prefix="desk")
    clients = {c: exchange.peer_client(n.folder) for c, n in nodes.items()}
    failures: list[str] = []

    def ask_and_answer(item_id: str) -> None:
        # USA's operator asks once USA holds the item; KOR's answers after the desk delay.
        try:
            if not exchange.wait_until(lambda: _held(usa, item_id), 30, interval=0.002):
                raise RuntimeError("USA never held it")
            asked = consents.consent_request(usa, item_id, "JPN", "TISA relay",
                                             client=clients["USA"])
            time.sleep(desk_delay)
            consents.answer_consent(kor, asked["request"], True, "TISA",
                                    client=clients["KOR"])
        except Exception as exc:  # counted and reported: the relay then does not happen
            failures.append(f"{item_id}: {exc}")

    try:
        if mode == "standing":
            consent = consents.standing_grant(
                kor, to="JPN", categories=[CATEGORY], purpose="dprk-missile",
                until=(datetime.now(UTC) + timedelta(days=1)).isoformat())
            if not exchange.wait_until(lambda: consent["id"] in {
                    c["id"] for c in consents.standing_list(usa)}, 30):
                raise RuntimeError("the hub did not obtain the standing consent")
        watch = _Watch(usa, "JPN")
        watch.start()
        started: dict[str, float] = {}
        gap = 1.0 / OFFERED_PER_S
        t0 = time.perf_counter()
        for i in range(N_ITEMS):
            time.sleep(max(0.0, t0 + i * gap - time.perf_counter()))
            obj = _obj(i)
            started[obj["id"]] = time.perf_counter()
            exchange.publish(kor, entries=[(obj, label)])
            if mode == "per-item":
                desk.submit(ask_and_answer, obj["id"])
        done = exchange.wait_until(lambda: set(started) <= set(watch.seen),
                                   60 + N_ITEMS * desk_delay)
        watch.halt.set()
        watch.join()
        if not done:
            raise RuntimeError(f"{mode}: relays not all receipted ({len(failures)} desk "
                               f"failures: {failures[:3]})")
        latencies = np.array([(watch.seen[i] - s) * 1000 for i, s in started.items()])
        requests = len(exchange.consent_rows(usa))
    finally:
        desk.shutdown(wait=True)
        for client in clients.values():
            client.close()
        for node in nodes.values():
            node.close()
        federation.down(folder)
    return {"mode": mode, "desk_delay_s": desk_delay, "items": N_ITEMS,
            "offered_per_s": OFFERED_PER_S, "consent_requests": requests,
            "p50_ms": round(float(np.percentile(latencies, 50)), 1),
            "p99_ms": round(float(np.percentile(latencies, 99)), 1),
            "max_ms": round(float(latencies.max()), 1)}


def run() -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="gsomia-bench-hub-") as tmp:
        for key, mode, delay in (("standing", "standing", 0.0),
                                 ("per_item_desk_0s", "per-item", 0.0),
                                 (f"per_item_desk_{DESK_DELAY_S:g}s", "per-item",
                                  DESK_DELAY_S)):
            out[key] = r = _measure(Path(tmp) / key, mode, delay)
            print(f"hub relay {key:18s}: publish at KOR → JPN's receipt at USA p50 "
                  f"{r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms "
                  f"({r['consent_requests']} consent requests)")
    standing = out["standing"]["p50_ms"]
    out["per_item_desk_0s_over_standing_p50"] = round(out["per_item_desk_0s"]["p50_ms"]
                                                      / standing, 2)
    delayed = out[f"per_item_desk_{DESK_DELAY_S:g}s"]["p50_ms"]
    out["per_item_desk_delay_over_standing_p50"] = round(delayed / standing, 2)
    out["per_item_overhead_beyond_desk_delay_ms"] = round(delayed - DESK_DELAY_S * 1000
                                                          - standing, 1)
    print(f"per item (desk 0 s) / standing p50: {out['per_item_desk_0s_over_standing_p50']}×; "
          f"per item (desk {DESK_DELAY_S:g} s) / standing: "
          f"{out['per_item_desk_delay_over_standing_p50']}×")
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
