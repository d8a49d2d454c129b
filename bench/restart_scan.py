"""The scan a node's courier runs when the node starts again (deliver18): a fresh direct
federation's KOR opened here, its courier's first scan of the empty store, N items published
(federated: each publish queues its deliveries), then the scan of a restart. Its CPU, and how
many stored items it read again to plan their deliveries anew (all of them while the scan
watermark was never set). Not part of ``python -m bench``; run on each tree's sources:

    PYTHONPATH=/path/to/tree/src python bench/restart_scan.py [items]
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from gsomia import bootstrap
from gsomia.service import handlers
from gsomia.service import outbox as outbox_handlers
from gsomia.shell import exchange, federation
from gsomia.shell.store import now_utc

LABEL = handlers.LabelRequest("군사III급비밀", ("KOR", "JPN"), "dprk-missile")


def _indicator(n: int) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
            "created": "2026-11-01T00:00:00.000Z", "modified": "2026-11-01T00:00:00.000Z",
            "name": f"restart {n}", "pattern": "[ipv4-addr:value = '10.0.0.1']",
            "pattern_type": "stix", "valid_from": "2026-11-01T00:00:00Z"}


def main(n: int = 2000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="gsomia-restart-scan-") as tmp:
        return _measure(Path(tmp), n)


def _measure(folder: Path, n: int) -> dict[str, Any]:
    federation.configure(folder, "direct", federation.free_base_port())
    kor = bootstrap.open_node(folder / "KOR")
    try:
        partners = exchange.require_partners(kor)
        exchange.scan(kor, partners, now_utc())  # the courier's first pass: nothing stored
        for first in range(0, n, 100):
            exchange.publish(kor, entries=[(_indicator(first + i), LABEL)
                                           for i in range(min(100, n - first))])
        read: list[int] = []
        held = outbox_handlers._stored_as_held

        def counted(uow: Any, keys: Any) -> Any:
            read.append(len(keys))
            return held(uow, keys)

        outbox_handlers._stored_as_held = counted
        cpu = time.process_time()
        exchange.scan(kor, partners, now_utc())
        cpu = time.process_time() - cpu
    finally:
        kor.close()
    out = {"items": n, "restart_scan_cpu_ms": round(cpu * 1000, 1), "items_read_again": sum(read)}
    print(f"restart scan after {n} items published: {out['restart_scan_cpu_ms']} ms of CPU, "
          f"{out['items_read_again']} items read again")
    return out


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
