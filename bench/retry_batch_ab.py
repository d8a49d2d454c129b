"""A batch of N deliveries sent back for a retry (a partner down), A/B in one process
(hotpath28): a reference tree's ``SqlOutbox.retry_deliveries`` (an update built and run per
row) and this tree's (one statement made once, run over the batch), alternated 40 times on
one SQLite store; the median thread CPU of each.

    PYTHONPATH=src:. python bench/retry_batch_ab.py REF_TREE [N]

Not a test, not part of ``python -m bench``.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from gsomia.core.outbox import DELIVERY
from gsomia.shell import store as st
from gsomia.shell.store import _repository

T0 = datetime(2024, 3, 1, 9, tzinfo=UTC)


def main(ref: Path, n: int) -> None:
    spec = importlib.util.spec_from_file_location(
        "reference_repository", ref / "src/gsomia/shell/store/_repository.py")
    assert spec is not None and spec.loader is not None
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    sides = {"ref": reference.SqlOutbox, "here": _repository.SqlOutbox}
    took: dict[str, list[float]] = {"ref": [], "here": []}
    with tempfile.TemporaryDirectory(prefix="gsomia-retry-batch-") as tmp:
        store = st.Store(f"sqlite:///{tmp}/node.db")
        try:
            with store.engine.begin() as conn:
                st.insert_many(conn, st.outbox, [
                    {"kind": DELIVERY, "item_id": f"indicator--{i}", "version": "v",
                     "recipient": "JPN", "reference": None, "body": None, "status": "pending",
                     "attempts": 0, "not_now": 0, "next_at": T0, "queued_at": T0,
                     "delivered_at": None, "last_error": None, "seq": 1} for i in range(n)])
                rows = list(conn.execute(sa.select(st.outbox.c.row)).scalars())
            for r in range(40):
                for side in (("ref", "here") if r % 2 else ("here", "ref")):
                    with store.engine.begin() as conn:
                        outbox = sides[side](conn)
                        c = time.thread_time()
                        outbox.retry_deliveries([(row, r, 0, T0 + timedelta(seconds=r), "down")
                                                 for row in rows])
                        if r >= 4:
                            took[side].append(time.thread_time() - c)
        finally:
            store.dispose()
    a, b = (statistics.median(took[s]) * 1e3 for s in ("ref", "here"))
    print(f"retry of {n} rows: reference {a:.2f} ms, this tree {b:.2f} ms of CPU, x{b / a:.2f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 100)
