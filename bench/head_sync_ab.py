"""A head read (``SqlAuditReader.latest_head``) with the store's memory of the newest head
known on disk (exchange17: no log sync for a head read again) against a sync of the
write-ahead log on every read (as before), side by side in one process: wall and CPU per
read, median of 5 alternated rounds of R reads, on one SQLite node of a direct federation
holding one published item. Not a test, not part of ``python -m bench``:

    PYTHONPATH=src python bench/head_sync_ab.py [R]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from gsomia import bootstrap
from gsomia.core.audit import TreeHead
from gsomia.service import handlers
from gsomia.shell import exchange, federation
from gsomia.shell.store import Store

LABEL = handlers.LabelRequest("極秘", ("JPN",), "dprk-missile")


class _NothingKnown:
    """Every head read syncs the log (main before exchange17)."""

    def holds(self, head: TreeHead) -> bool:
        return False

    def mark(self, head: TreeHead) -> None:
        pass


def _reads(store: Store, n: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        with store.reader() as reader:
            reader.latest_head()
    return ((time.perf_counter() - wall) / n * 1e3, (time.process_time() - cpu) / n * 1e3)


def main(reads: int = 200) -> None:
    with tempfile.TemporaryDirectory(prefix="head-sync-ab-") as tmp:
        folder = Path(tmp)
        federation.configure(folder, "direct", federation.free_base_port())
        node = bootstrap.open_node(folder / "JPN")
        obj: dict[str, Any] = {
            "type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
            "created": "2026-11-01T00:00:00.000Z", "modified": "2026-11-01T00:00:00.000Z",
            "name": "bench", "pattern": "[ipv4-addr:value = '10.0.0.1']",
            "pattern_type": "stix", "valid_from": "2026-11-01T00:00:00Z"}
        exchange.publish(node, entries=[(obj, LABEL)])
        store, known = node.store, node.store._synced_head
        rounds: dict[str, list[tuple[float, float]]] = {"known": [], "sync": []}
        try:
            for _ in range(5):
                store._synced_head = known
                rounds["known"].append(_reads(store, reads))
                store._synced_head = _NothingKnown()  # type: ignore[assignment]
                rounds["sync"].append(_reads(store, reads))
        finally:
            store._synced_head = known
            node.close()
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
           for k, v in rounds.items()}
    for k, (wall, cpu) in med.items():
        print(f"{k:>5}: {wall:.3f} ms wall, {cpu:.3f} ms CPU per head read")
    print(f"sync every read / known head: wall x{med['sync'][0] / med['known'][0]:.2f}, "
          f"CPU x{med['sync'][1] / med['known'][1]:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
