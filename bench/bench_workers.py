"""Ingest and delivery with one and with two processes of a node (issue 11, part 8).

KOR's database is on PostgreSQL (a throwaway cluster, ``tools/pg-test-cluster.sh``); it runs
as ``gsomia node run --workers W`` (W processes, each serving the API on one shared socket
and sending), W = 1 then 2, in the same run; JPN (SQLite, one process) receives. Clients post
batches of items over TAXII (HTTPS, a bearer token, label marking), several at once:
- ingest: objects/s from the first post until the last is answered (bound, stored, audited);
- delivery, end to end: items/s from the first post until JPN's last receipt is recorded
  at KOR (envelopes sealed, verified, stored and receipted at JPN).
Compare the ratio of the two runs, never figures across runs: the machine is shared.
Every write of KOR appends to its one log, one writer at a time (an advisory lock), and JPN
receives alone in both runs: what a second process can add is the work outside the lock
(TLS, parsing, validation, sealing), and only with cores to spare (PostgreSQL, JPN and the
clients run on the same ones here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

N_ITEMS = 2000
BATCH = 100
CLIENTS = 8
ROOT = Path(__file__).resolve().parents[1]
TAXII = "application/taxii+json;version=2.1"


def _schema(cluster_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(cluster_url.replace("postgresql+psycopg://", "postgresql://"),
                         autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        conn.execute(f"CREATE SCHEMA {name}")
    return f"{cluster_url}?options=-csearch_path%3D{name}"


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "gsomia", *args], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _answering(url: str, ca: Path, proc: subprocess.Popen[bytes]) -> None:
    import requests

    end = time.monotonic() + 120
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the node exited with {proc.returncode}")
        try:
            requests.get(url + "taxii2/", verify=str(ca), timeout=5)
            return
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def _measure(cluster_url: str, workers: int, work: Path) -> dict[str, Any]:
    import requests
    import sqlalchemy as sa

    from gsomia import bootstrap
    from gsomia.bootstrap import collection_id
    from gsomia.core.labels import SecurityLabel
    from gsomia.core.stix import label_marking
    from gsomia.service import handlers
    from gsomia.shell import federation
    from gsomia.shell.catalogue import load_catalogue
    from gsomia.shell.node import new_token
    from gsomia.shell.store import outbox

    catalogue = load_catalogue()
    folder = work / f"workers-{workers}"
    kor_dir = folder / "KOR"
    made = bootstrap.init_node(kor_dir, "KOR",
                               db_url=_schema(cluster_url, f"bench_workers_{workers}"))
    token = new_token()
    handlers.add_user(made.uow(), keys=made.keys, schemes=catalogue.schemes, name="kim",
                      clearance="군사II급비밀", need_to_know=["dprk-missile"], token=token,
                      now=datetime.now(UTC))
    made.close()
    doc = federation.configure(folder, "direct", federation.free_base_port())
    label = SecurityLabel("KOR", "군사II급비밀", frozenset({"KOR", "JPN"}), "dprk-missile")
    marking = label_marking(label, label.english_marking(catalogue.schemes),
                            created=datetime(2026, 11, 1, tzinfo=UTC))
    batches = [[{"type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
                 "created": "2026-11-01T00:00:00.000Z", "modified": "2026-11-01T00:00:00.000Z",
                 "name": f"bench {b}-{i}", "pattern": "[ipv4-addr:value = '10.0.0.1']",
                 "pattern_type": "stix", "valid_from": "2026-11-01T00:00:00Z",
                 "object_marking_refs": [marking["id"]]} for i in range(BATCH)]
               for b in range(N_ITEMS // BATCH)]
    ca = kor_dir / "tls" / "ca.crt"
    kor_url = doc["nodes"]["KOR"]["url"] + "/"
    jpn = _start(["node", "run", "--dir", str(folder / "JPN"), "--port",
                  str(doc["nodes"]["JPN"]["port"])], folder / "jpn.log")
    kor = _start(["node", "run", "--dir", str(kor_dir), "--port",
                  str(doc["nodes"]["KOR"]["port"]), "--workers", str(workers)],
                 folder / "kor.log")
    node = None
    try:
        _answering(doc["nodes"]["JPN"]["url"] + "/", folder / "JPN" / "tls" / "ca.crt", jpn)
        _answering(kor_url, ca, kor)
        node = bootstrap.open_node(kor_dir)
        target = f"{kor_url}gsomia/collections/{collection_id('KOR')}/objects/"

        def post(batch: list[dict[str, Any]]) -> None:
            response = requests.post(target, verify=str(ca), timeout=120,
                                     data=json.dumps({"objects": [marking, *batch]}),
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": TAXII, "Accept": TAXII})
            if response.status_code != 202:
                raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            list(pool.map(post, batches))
        ingested = time.perf_counter()
        query = sa.select(sa.func.count()).select_from(outbox).where(
            outbox.c.recipient == "JPN", outbox.c.status == "delivered")
        while True:
            with node.store.engine.connect() as conn:
                if int(conn.execute(query).scalar() or 0) >= N_ITEMS:
                    break
            if time.perf_counter() - started > 600:
                raise RuntimeError("the items were not delivered within 10 minutes")
            time.sleep(0.02)
        delivered = time.perf_counter()
    finally:
        if node is not None:
            node.close()
        federation.stop_process(kor)
        federation.stop_process(jpn)
    return {"workers": workers, "items": N_ITEMS,
            "ingest_objects_per_s": round(N_ITEMS / (ingested - started), 1),
            "delivery_items_per_s_end_to_end": round(N_ITEMS / (delivered - started), 1)}


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="gsomia-bench-workers-") as tmp:
        work = Path(tmp)
        state = work / "postgresql"
        started = subprocess.run([str(ROOT / "tools" / "pg-test-cluster.sh"), "start",
                                  str(state)], capture_output=True, text=True, timeout=900,
                                 check=False)
        if started.returncode != 0:
            raise RuntimeError(f"the PostgreSQL cluster did not start: {started.stderr}")
        cluster = started.stdout.strip().splitlines()[-1]
        try:
            one = _measure(cluster, 1, work)
            print(f"  1 process:   {one}", flush=True)
            two = _measure(cluster, 2, work)
            print(f"  2 processes: {two}", flush=True)
        finally:
            subprocess.run([str(ROOT / "tools" / "pg-test-cluster.sh"), "stop", str(state)],
                           capture_output=True, timeout=120, check=False)
    return {
        "one_process": one, "two_processes": two,
        "ingest_ratio_2_to_1": round(two["ingest_objects_per_s"]
                                     / one["ingest_objects_per_s"], 2),
        "delivery_ratio_2_to_1": round(two["delivery_items_per_s_end_to_end"]
                                       / one["delivery_items_per_s_end_to_end"], 2),
        "cpus": os.cpu_count(),
        "note": "same run, same machine; PostgreSQL on the same cores as the node",
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
