"""What noticeflight29 adds to the settle of a partner's receipts, side by side in one
process: KOR and JPN of a direct federation opened here, KOR's sender posting batches of
items to JPN's receive through an in-process transport (no HTTP, no TLS), the forms
alternated batch by batch:

- ``before``: the settle without the step (``_queue_held_notices`` a no-op), as before;
- ``after``: the settle as it is, no notice held for any item of the batch (the common case:
  one IN query on ``ix_notices_item``);
- ``after_held``: every item of the batch re-classified by KOR after JPN stored it and before
  KOR settled JPN's answer, so the settle queues a notice per item (read and plan);
- ``before_held``: the same held notices, without the step (it queued nothing).

The settle handler's own thread CPU and wall time per batch (timed around
``gsomia.service.exchange.settle``; the receipts' signatures are checked half in another
process, as in a node), mean and p50. Measured (noticeflight29, 30 batches of 16 per form,
2 shared cores, the unit tests running beside): no notice held, after/before CPU p50 x1.025
(5.76 -> 5.90 ms a batch), wall p50 x0.995; every item's notice held, x1.94 CPU (+5.3 ms a
batch of 16, a notice queued per item). Not a test, not part of ``python -m bench``:

    PYTHONPATH=src:. python bench/settle_notices_ab.py [batches per form] [items per batch]
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from gsomia import bootstrap
from gsomia.core import crypto
from gsomia.service import exchange as exchange_handlers
from gsomia.service import handlers
from gsomia.service import outbox as service_outbox
from gsomia.shell import exchange, federation
from gsomia.shell.store import now_utc, outbox

LABEL = handlers.LabelRequest("군사II급비밀", ("KOR", "JPN"), "dprk-missile")
FORMS = ("before", "after", "before_held", "after_held")


def _indicator(n: int) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
            "created": "2026-11-01T00:00:00.000Z", "modified": "2026-11-01T00:00:00.000Z",
            "name": f"ab {n}", "pattern": "[ipv4-addr:value = '10.0.0.1']",
            "pattern_type": "stix", "valid_from": "2026-11-01T00:00:00Z"}


def _pending(node: Any) -> int:
    with node.store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(outbox).where(
            outbox.c.status == exchange.PENDING, outbox.c.kind == "delivery")).scalar() or 0)


def main(batches: int = 20, size: int = 16) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="noticeflight29-ab-", dir="/tmp"))
    federation.configure(folder, "direct", federation.free_base_port())
    kor, jpn = bootstrap.open_node(folder / "KOR"), bootstrap.open_node(folder / "JPN")
    partners = exchange.require_partners(jpn)
    form = {"name": "before"}
    received: list[str] = []

    def link(request: Any) -> Any:
        if not str(request.url).endswith("/peer/v1/envelopes/"):
            return httpx.Response(202, json={"accepted": True})  # the notices queued
        body = json.loads(request.content)
        envelopes = [crypto.Envelope.from_json(e) for e in body["envelopes"]]
        results = exchange.receive(jpn, partners, envelopes, "KOR", now_utc())
        if form["name"].endswith("_held"):
            # The answer held: KOR lowers each item before it settles JPN's receipts.
            for e in envelopes:
                handlers.change_classification(
                    kor.uow(), keys=kor.keys, schemes=kor.catalogue.schemes,
                    item_id=e.item_id, new_level="군사III급비밀", now=now_utc())
        received.extend(e.item_id for e in envelopes)
        return httpx.Response(202, json={"results": [r.to_json() for r in results]})

    settle = exchange_handlers.settle
    timed: dict[str, list[tuple[float, float]]] = {f: [] for f in FORMS}

    def timed_settle(*args: Any, **kwargs: Any) -> tuple[int, int]:
        c0, t0 = time.thread_time(), time.perf_counter()
        out = settle(*args, **kwargs)
        t1, c1 = time.perf_counter(), time.thread_time()
        timed.setdefault(form["name"], []).append(((c1 - c0) * 1e3, (t1 - t0) * 1e3))
        return out

    exchange_handlers.settle = timed_settle
    queue_held = service_outbox._queue_held_notices
    skipped: Callable[..., None] = lambda *_a, **_k: None  # noqa: E731
    sender = exchange.Sender(kor, batch=size,
                             client=httpx.Client(transport=httpx.MockTransport(link)))
    n = 0
    try:
        for b in range(len(FORMS) * (batches + 2)):
            name = FORMS[b % len(FORMS)]
            form["name"] = name if b >= 2 * len(FORMS) else "warm-up"
            service_outbox._queue_held_notices = (
                queue_held if name.startswith("after") else skipped)
            if form["name"] == "warm-up" and name.endswith("_held"):
                form["name"] = "warm-up_held"
            exchange.publish(kor, entries=[(_indicator(n + k), LABEL) for k in range(size)])
            n += size
            while _pending(kor):
                sender.step()
    finally:
        service_outbox._queue_held_notices = queue_held
        exchange_handlers.settle = settle
        sender.close()
        with kor.store.engine.connect() as conn:
            queued = int(conn.execute(sa.select(sa.func.count()).select_from(outbox).where(
                outbox.c.kind == "classification-notice")).scalar() or 0)
        kor.close()
        jpn.close()
    out: dict[str, Any] = {"batches_per_form": batches, "items_per_batch": size,
                           "notices_queued_by_receipts": queued}
    for name in FORMS:
        cpu = [c for c, _ in timed[name]]
        wall = [w for _, w in timed[name]]
        out[name] = {"settles": len(cpu),
                     "cpu_ms_mean": round(statistics.fmean(cpu), 3),
                     "cpu_ms_p50": round(statistics.median(cpu), 3),
                     "wall_ms_p50": round(statistics.median(wall), 3)}
    out["after_over_before"] = {k: round(out["after"][k] / out["before"][k], 3)
                                for k in ("cpu_ms_mean", "cpu_ms_p50", "wall_ms_p50")}
    out["after_held_over_before_held"] = {
        k: round(out["after_held"][k] / out["before_held"][k], 3)
        for k in ("cpu_ms_mean", "cpu_ms_p50", "wall_ms_p50")}
    return out


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    print(json.dumps(main(*args), indent=1))
