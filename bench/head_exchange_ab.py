"""The tree-head exchange's own disk syncs (syncs20), two trees side by side: JPN asks KOR,
both nodes opened in one child process per tree (the in-process peer API, no HTTP, no TLS),
their head copies written behind as in a node process; before each exchange each node
commits once (synced, as a delivery's store does), so every exchange has a new head to post
and record. Per exchange: wall and CPU; the units of work it opened synced (SQLite's own
sync of the write-ahead log at commit, not seen as ``os.fsync``), and the ``fsync`` calls
it caused on both nodes (of the write-ahead logs by a head read, of the head copies: the
copier is flushed before they are counted).
The trees alternate, ``rounds`` each. Not a test, not part of ``python -m bench``:

    PYTHONPATH=src:. python bench/head_exchange_ab.py REF_SRC [exchanges per round] [rounds]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

_CHILD = r"""
import json, os, sys, tempfile, time, warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gsomia.bootstrap import app_for_node
from gsomia.service import handlers
from gsomia.shell import notices
from gsomia.shell.catalogue import load_catalogue
from gsomia.shell.exchange import Peer
from gsomia.shell.node import init_node

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

n = int(sys.argv[1])
now = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
catalogue = load_catalogue()
tmp = Path(tempfile.mkdtemp(prefix="syncs20-ab-"))
jpn = init_node(tmp / "jpn", "JPN", catalogue=catalogue, now=now)
kor = init_node(tmp / "kor", "KOR", catalogue=catalogue, now=now)
for node in (jpn, kor):
    node.store.copy_heads_behind()
app = app_for_node(kor, partner_keys={"JPN": jpn.keys.public_signing_key()},
                   peer_identity=lambda scope: "JPN")
sender = notices.NoticeSender(jpn, client=TestClient(app, base_url="https://kor.test"))
peer = Peer("KOR", "https://kor.test", kor.keys.public_signing_key(),
            kor.keys.envelope_key().public_key())
synced = []
real = os.fsync
def fsync(fd):
    synced.append(os.readlink(f"/proc/self/fd/{fd}"))
    real(fd)
os.fsync = fsync
from gsomia.shell.store import Store
units = []
plain_uow = Store.uow
def uow(self, *, synced=True, at_once=False):
    units.append(synced)
    return plain_uow(self, synced=synced, at_once=at_once)
Store.uow = uow
walls, cpus, wal, copies, commits = [], [], [], [], []
for i in range(n + 5):
    at = now + timedelta(seconds=i)
    for node in (jpn, kor):
        handlers.report_incident(node.uow(), keys=node.keys, kind="investigation-result",
                                 description=f"grow {i}", now=at)
        node.store._copier.flush()
    synced.clear(); units.clear()
    w, c = time.perf_counter(), time.process_time()
    verdict = sender.exchange_with(peer)
    w, c = time.perf_counter() - w, time.process_time() - c
    for node in (jpn, kor):
        node.store._copier.flush()
    assert verdict is not None and verdict.consistent
    if i >= 5:  # the first few warm the caches
        walls.append(w * 1000); cpus.append(c * 1000)
        wal.append(sum(p.endswith("-wal") for p in synced))
        copies.append(sum(".tmp" in p or p.endswith("tree-head.json") for p in synced))
        commits.append(sum(units))
jpn.close(); kor.close()
print(json.dumps({"wall_ms": walls, "cpu_ms": cpus, "wal_syncs": wal, "copy_syncs": copies,
                  "synced_units": commits}))
"""


def _run(src: Path, n: int) -> dict[str, list[float]]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, "-c", _CHILD, str(n)], env=env, check=True,
                         capture_output=True, text=True)
    result: dict[str, list[float]] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str]) -> dict[str, Any]:
    ref = Path(argv[0])
    n = int(argv[1]) if len(argv) > 1 else 40
    rounds = int(argv[2]) if len(argv) > 2 else 3
    trees = {"before": ref, "after": HERE.parent / "src"}
    got: dict[str, dict[str, list[float]]] = {k: {} for k in trees}
    for r in range(rounds):
        for name in (("before", "after") if r % 2 == 0 else ("after", "before")):
            for key, values in _run(trees[name], n).items():
                got[name].setdefault(key, []).extend(values)
    figures: dict[str, Any] = {}
    for name, series in got.items():
        figures[name] = {
            "exchanges": len(series["wall_ms"]),
            "wall_ms_p50": round(statistics.median(series["wall_ms"]), 2),
            "cpu_ms_p50": round(statistics.median(series["cpu_ms"]), 2),
            "wal_syncs_per_exchange": round(statistics.mean(series["wal_syncs"]), 2),
            "copy_syncs_per_exchange": round(statistics.mean(series["copy_syncs"]), 2),
            "synced_commits_per_exchange": round(statistics.mean(series["synced_units"]), 2)}
    b, a = figures["before"], figures["after"]
    figures["after_over_before"] = {k: round(a[k] / b[k], 2) if b[k] else None
                                    for k in b if k != "exchanges"}
    return figures


if __name__ == "__main__":
    with tempfile.TemporaryDirectory():
        print(json.dumps(main(sys.argv[1:]), indent=1))
