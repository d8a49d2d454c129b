"""More than one process per node (issue 11, part 8), on the real PostgreSQL server.

KOR runs as ``gsomia node run --workers 2`` (two processes, each serving the API and
sending) beside a ``gsomia node serve`` (a third API process) over one PostgreSQL database;
JPN is a node of its own (SQLite, one process). Clients publish many items through the three
API processes at once; every item must reach JPN exactly once (one envelope accepted, one
version stored, one receipt given and obtained), a TAXII cursor from one process must page
on another, and ``audit verify`` must pass at both nodes. A SQLite node refuses ``--workers``
above 1 (exit 2).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from gsomia import bootstrap
from gsomia.bootstrap import collection_id
from gsomia.core.audit import AuditKind
from gsomia.core.labels import SecurityLabel
from gsomia.core.stix import label_marking
from gsomia.service import handlers
from gsomia.shell import exchange, federation
from gsomia.shell import store as st
from gsomia.shell.catalogue import load_catalogue
from gsomia.shell.node import new_token
from starting import wait_started

pytestmark = [pytest.mark.timeout(400), pytest.mark.slow]

CATALOGUE = load_catalogue()
LABEL = SecurityLabel("KOR", "군사II급비밀", frozenset({"KOR", "JPN"}), "dprk-missile")
TAXII = "application/taxii+json;version=2.1"
Run = Callable[..., subprocess.CompletedProcess[str]]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def process(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A ``gsomia`` command in the background for the block; SIGTERM, then SIGKILL."""
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gsomia", *args], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ})
    try:
        yield proc
    finally:
        federation.stop_process(proc)


def wait_answering(url: str, ca: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
    def answers() -> bool:
        try:
            requests.get(url + "taxii2/", verify=str(ca), timeout=5)
            return True
        except (requests.ConnectionError, requests.Timeout):  # the workers' socket is
            return False  # listening (the parent bound it) before they serve it

    # A start judged by the CPU it took (starting.py): KOR with its two workers answered
    # after 4.0 s of CPU, 37 s of wall time at a load of 20.
    wait_started(answers, proc, lambda: log.read_text("utf-8", "replace")[-3000:])


def indicator(n: int, marking_id: str) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
            "created": "2026-11-01T00:00:00.000Z", "modified": "2026-11-01T00:00:00.000Z",
            "name": f"launch preparation {n}", "pattern": "[ipv4-addr:value = '10.0.0.1']",
            "pattern_type": "stix", "valid_from": "2026-11-01T00:00:00Z",
            "object_marking_refs": [marking_id]}


def post(url: str, ca: Path, token: str, objects: list[dict[str, Any]]) -> None:
    response = requests.post(
        url + f"gsomia/collections/{collection_id('KOR')}/objects/", verify=str(ca),
        timeout=60, data=json.dumps({"objects": objects}),
        headers={"Authorization": f"Bearer {token}", "Content-Type": TAXII, "Accept": TAXII})
    assert response.status_code == 202, response.text
    status = response.json()
    # Every indicator stored; the label marking each post carries is stored once (after
    # that it is "already held", as TAXII says of a version posted again).
    failed = {f["id"] for f in status.get("failures") or []}
    assert failed <= {objects[0]["id"]}, status.get("failures")
    assert status["success_count"] == len(objects) - len(failed), status


def get_page(url: str, ca: Path, token: str, **params: str) -> dict[str, Any]:
    response = requests.get(
        url + f"gsomia/collections/{collection_id('KOR')}/objects/", verify=str(ca),
        timeout=60, params=params, headers={"Authorization": f"Bearer {token}",
                                            "Accept": TAXII})
    assert response.status_code == 200, response.text
    doc: dict[str, Any] = response.json()
    return doc


def count(node: Any, query: Any) -> int:
    with node.store.engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def test_three_api_processes_and_two_senders_deliver_each_item_once(
        pg_cluster: str, tmp_path: Path, gsomia: Run) -> None:
    from pgdb import fresh_pg_database

    folder = tmp_path / "federation"
    kor_dir, jpn_dir = folder / "KOR", folder / "JPN"
    made = bootstrap.init_node(kor_dir, "KOR", db_url=fresh_pg_database(pg_cluster))
    token = new_token()
    handlers.add_user(made.uow(), keys=made.keys, schemes=CATALOGUE.schemes, name="kim",
                      clearance="군사II급비밀", need_to_know=["dprk-missile"], token=token,
                      now=datetime.now(UTC))
    made.close()
    base = federation.free_base_port()
    doc = federation.configure(folder, "direct", base)
    kor_port, serve_port = doc["nodes"]["KOR"]["port"], free_port()
    workers_url = f"https://127.0.0.1:{kor_port}/"
    serve_url = f"https://127.0.0.1:{serve_port}/"
    ca = kor_dir / "tls" / "ca.crt"
    marking = label_marking(LABEL, LABEL.english_marking(CATALOGUE.schemes),
                            created=datetime(2026, 11, 1, tzinfo=UTC))
    batches = [[indicator(b * 10 + i, marking["id"]) for i in range(10)] for b in range(24)]
    ids = {o["id"] for batch in batches for o in batch}
    jpn_args = ["node", "run", "--dir", str(jpn_dir), "--port", str(doc["nodes"]["JPN"]["port"])]
    with process(jpn_args, tmp_path / "jpn.log") as jpn_proc, \
            process(["node", "run", "--dir", str(kor_dir), "--port", str(kor_port),
                     "--workers", "2"], tmp_path / "kor.log") as kor_proc, \
            process(["node", "serve", "--dir", str(kor_dir), "--port", str(serve_port)],
                    tmp_path / "serve.log") as serve_proc:
        wait_answering(f"https://127.0.0.1:{doc['nodes']['JPN']['port']}/",
                       jpn_dir / "tls" / "ca.crt", jpn_proc, tmp_path / "jpn.log")
        wait_answering(workers_url, ca, kor_proc, tmp_path / "kor.log")
        wait_answering(serve_url, ca, serve_proc, tmp_path / "serve.log")
        # Publish through all three API processes at once (the workers' shared socket hands
        # each connection to one of its two processes).
        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(lambda b: post(workers_url if b[0] % 3 else serve_url, ca, token,
                                         [marking, *b[1]]), enumerate(batches)))
        kor, jpn = bootstrap.open_node(kor_dir), bootstrap.open_node(jpn_dir)
        try:
            def at_jpn() -> int:
                with jpn.store.repository() as repo:
                    return len(repo.held_versions([(i, "2026-11-01T00:00:00.000Z")
                                                   for i in sorted(ids)]))

            assert exchange.wait_until(
                lambda: at_jpn() == len(ids) and exchange.pending(kor) == 0, 120), \
                (at_jpn(), exchange.pending(kor), (tmp_path / "kor.log").read_text())
            # A cursor made by one process pages on another (keyed by the node's key).
            first = get_page(workers_url, ca, token, limit="5")
            assert first.get("more") is True and first.get("next"), first
            second = get_page(serve_url, ca, token, limit="5", next=first["next"])
            assert {o["id"] for o in second["objects"]}.isdisjoint(
                {o["id"] for o in first["objects"]})
            assert kor_proc.poll() is None and serve_proc.poll() is None
            # Each worker stops with its ``node run`` (GSOMIA_STOP_WITH, its pid), so none
            # serves or sends on if that one is killed and cannot stop it.
            workers = Path(f"/proc/{kor_proc.pid}/task/{kor_proc.pid}/children").read_text()
            assert len(workers.split()) == 2, workers
            for worker in workers.split():
                environ = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
                assert f"GSOMIA_STOP_WITH={kor_proc.pid}".encode() in environ, worker
        finally:
            kor.close()
            jpn.close()
    assert kor_proc.returncode == 0, (tmp_path / "kor.log").read_text()
    with bootstrap.open_node(kor_dir) as kor, bootstrap.open_node(jpn_dir) as jpn:
        # The indicators and the label marking they were posted with, each an item.
        n = count(kor, sa.select(sa.func.count()).select_from(st.items))
        assert n == len(ids) + 1
        # Sent once: JPN accepted one envelope per item (a resend would be a second nonce).
        seen = st.envelopes_seen
        assert count(jpn, sa.select(sa.func.count()).select_from(seen).where(
            seen.c.sender == "KOR")) == n
        assert count(jpn, sa.select(sa.func.count(sa.distinct(st.items.c.id))).where(
            st.items.c.originator == "KOR")) == n
        r = st.receipts
        for node, direction in ((kor, "obtained"), (jpn, "given")):
            assert count(node, sa.select(sa.func.count()).select_from(r).where(
                r.c.direction == direction)) == n
        o = st.outbox
        assert count(kor, sa.select(sa.func.count()).select_from(o).where(
            o.c.status == "delivered", o.c.recipient == "JPN")) == n
        with kor.store.reader() as reader:
            kinds = [row["kind"] for row in reader.rows()]
        assert AuditKind.DELIVERY_REFUSED.value not in kinds
    for home in (kor_dir, jpn_dir):
        verified = gsomia("audit", "verify", "--node", str(home))
        assert verified.returncode == 0, verified.stdout + verified.stderr


def test_workers_on_sqlite_are_refused_with_exit_2(tmp_path: Path, gsomia: Run) -> None:
    bootstrap.init_node(tmp_path / "JPN", "JPN").close()
    refused = gsomia("node", "run", "--dir", str(tmp_path / "JPN"), "--port", "1",
                     "--workers", "2")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "--workers" in refused.stderr and "PostgreSQL" in refused.stderr
    assert "Traceback" not in refused.stderr
