"""TAXII 2.1 ingest, paged read and GET-by-id through the OASIS taxii2-client, gsomia beside
medallion (the OASIS reference server, memory backend) in the same run and workload.

gsomia runs as a real node process (`gsomia node serve`: uvicorn, HTTPS, SQLite in WAL mode
with synchronous=FULL), and does on every request what medallion does not: authentication
against the node's users, Art. 7 access filtering, STIX validation, label binding (Ed25519),
audit events in the Merkle log with a signed tree head per commit (every read is audited).
medallion runs its own Flask server over plain HTTP.

Then the same workload on two more nodes serving at once, in turns, request by request: one
that holds nothing else (N objects stored at the end) and one pre-filled with ``LARGE`` items,
to show whether the rates hold as the store grows (the issue's target is 1,000,000; see
LARGE), both measured under the same load of a shared machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

N = 5000  # objects ingested and then read
BATCH = 100  # objects per add_objects request (the workload)
PAGE = 1000  # objects per read request (per_request)
GETS = 600  # GET-by-id requests
READ_PASSES = 5  # paged reads of the N objects (gsomia: one pass is ~0.15 s, too short alone)
LARGE = int(os.environ.get("GSOMIA_BENCH_TAXII_LARGE", "1000000"))  # pre-filled store size
MEDALLION_BUDGET = 30.0  # seconds per medallion phase (it slows quadratically)
READERS = 4  # clients paging through the N objects at the same time (gsomia only)



def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, verify: Any, process: subprocess.Popen[bytes], auth: Any = None) -> None:
    import requests

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stdout.read().decode()[-2000:]}"
                               if process.stdout else "server exited")
        try:
            requests.get(url, verify=verify, timeout=2, auth=auth)
            return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def _process(cmd: list[str], cwd: Path,
             env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _indicator(n: int, run: str) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1",
            "id": f"indicator--{uuid.uuid5(uuid.NAMESPACE_URL, f'{run}/{n}')}",
            "created": "2024-03-01T08:00:00.000Z", "modified": "2024-03-01T08:00:00.000Z",
            "name": f"TEL activity {n}", "description": "Launcher movement at the site.",
            "pattern": f"[x-dprk-site:name = 'site-{n}']", "pattern_type": "stix",
            "valid_from": "2024-03-01T08:00:00Z", "indicator_types": ["malicious-activity"]}


def _workload(coll: Any, run: str, marking: dict[str, Any] | None, budget: float | None,
              cpu: Callable[[], float] | None = None) -> dict[str, Any]:
    """Ingest N objects in batches, page through them, GET some by id; ``cpu`` gives the
    server's CPU seconds so far (for the CPU per object ingested)."""
    steps = _workload_steps(coll, run, marking, budget, cpu)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return dict(done.value)


def _workload_steps(coll: Any, run: str, marking: dict[str, Any] | None,
                    budget: float | None, cpu: Callable[[], float] | None = None
                    ) -> Generator[None, None, dict[str, Any]]:
    """:func:`_workload`, yielding between requests (batches, read passes, GETs) so that two
    servers can take turns (:func:`_paired`); the figures count only this server's own
    requests, and the generator returns them."""
    from taxii2client.v21 import as_pages

    def now_cpu() -> float:
        return cpu() if cpu is not None else 0.0

    objs = [_indicator(n, run) for n in range(N)]
    if marking is not None:
        objs = [{**o, "object_marking_refs": [marking["id"]]} for o in objs]
    ingest_s = cpu_ingest = 0.0
    stored = 0
    for i in range(0, N, BATCH):
        head = [marking] if marking is not None else []
        started, cpu_started = time.perf_counter(), now_cpu()
        status = coll.add_objects({"objects": head + objs[i:i + BATCH]})
        ingest_s += time.perf_counter() - started
        cpu_ingest += now_cpu() - cpu_started
        stored += status.success_count - len(head)
        if budget is not None and ingest_s > budget:
            break
        yield
    ids = [o["id"] for o in objs[:stored]]
    complete = True
    # Several passes, the median rate and CPU: one pass right after the ingest lasts ~0.15 s,
    # which one scheduling hiccup of a shared machine moves by a third.
    rates: list[float] = []
    cpu_reads: list[float] = []
    for _ in range(READ_PASSES if budget is None else 1):
        started, cpu_started = time.perf_counter(), now_cpu()
        read = 0
        for envelope in as_pages(coll.get_objects, per_request=PAGE,
                                 **{"match[type]": "indicator"}):
            read += len(envelope.get("objects", []))
            if read >= N:
                break
            if budget is not None and time.perf_counter() - started > budget:
                complete = False
                break
        rates.append(read / (time.perf_counter() - started))
        cpu_reads.append((now_cpu() - cpu_started) * 1e3 / max(read, 1))
        yield
    rng = random.Random(7)
    lat = []
    cpu_gets = 0.0
    for object_id in (rng.choice(ids) for _ in range(GETS)):
        cpu_started = now_cpu()
        t = time.perf_counter()
        found = coll.get_object(object_id)["objects"]
        lat.append(time.perf_counter() - t)
        cpu_gets += now_cpu() - cpu_started
        assert found and found[0]["id"] == object_id
        if budget is not None and sum(lat) > budget:
            break
        yield
    lat.sort()
    return {
        "ingested": stored, "ingest_per_s": round(stored / ingest_s, 1),
        **({} if cpu is None else
           {"cpu_ms_per_item_ingest": round(cpu_ingest * 1e3 / max(stored, 1), 3),
            "cpu_ms_per_item_read": round(statistics.median(cpu_reads), 4),
            "cpu_ms_per_get": round(cpu_gets * 1e3 / max(len(lat), 1), 3)}),
        "read": read, "read_complete": complete, "read_per_s": round(statistics.median(rates), 1),
        "gets": len(lat), "get_p50_ms": round(lat[len(lat) // 2] * 1e3, 2),
        "get_p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3, 2),
    }


def _paired(*runs: Generator[None, None, dict[str, Any]]) -> list[dict[str, Any]]:
    """Run workloads (:func:`_workload_steps`) in turns, one request each: the machine's
    load, which others' work moves from one minute to the next, then weighs on each alike,
    and their ratios are measured under one load."""
    out: list[dict[str, Any] | None] = [None] * len(runs)
    while any(o is None for o in out):
        for n, steps in enumerate(runs):
            if out[n] is None:
                try:
                    next(steps)
                except StopIteration as done:
                    out[n] = dict(done.value)
    return [o for o in out if o is not None]


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _server_cpu_seconds(pid: int) -> float:
    """:func:`_cpu_seconds` of the server and of its live children (the process signing
    its label bindings): the server's CPU, wherever it is spent."""
    total = _cpu_seconds(pid)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    for child in children:
        with contextlib.suppress(OSError):  # ended meanwhile
            total += _cpu_seconds(int(child))
    return total


def _concurrent_reads(url: str, user: str, token: str, ca: str) -> dict[str, Any]:
    """READERS clients page through the N objects at the same time (pages of PAGE): with
    reads audited in the request, what their audit commits cost when they may share them."""
    import requests

    def page_all(counts: list[int]) -> None:
        session = requests.Session()
        params: dict[str, Any] = {"limit": PAGE, "match[type]": "indicator"}
        while True:
            r = session.get(url, params=params, auth=(user, token), verify=ca, timeout=60,
                            headers={"Accept": "application/taxii+json;version=2.1"})
            r.raise_for_status()
            body = r.json()
            counts.append(len(body.get("objects", [])))
            if not body.get("more"):
                return
            params = {**params, "next": body["next"]}

    counts: list[list[int]] = [[] for _ in range(READERS)]
    threads = [threading.Thread(target=page_all, args=(c,)) for c in counts]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    read = sum(sum(c) for c in counts)
    return {"readers": READERS, "read": read,
            "read_concurrent_per_s": round(read / (time.perf_counter() - started), 1)}


def _gsomia_node(folder: Path) -> tuple[str, dict[str, Any]]:
    from gsomia.core.labels import SecurityLabel
    from gsomia.core.stix import label_marking
    from gsomia.service import handlers
    from gsomia.shell.catalogue import load_catalogue
    from gsomia.shell.node import init_node, new_token

    catalogue = load_catalogue()
    now = datetime.now(UTC)
    node = init_node(folder, "JPN", catalogue=catalogue, now=now)
    token = new_token()
    handlers.add_user(node.uow(), keys=node.keys, schemes=catalogue.schemes, name="bench",
                      clearance="極秘", need_to_know=["dprk-missile"], token=token, now=now)
    node.close()
    label = SecurityLabel("JPN", "秘", frozenset({"JPN", "KOR"}), "dprk-missile")
    return token, label_marking(label, label.english_marking(catalogue.schemes), created=now)


def _prefill(folder: Path, count: int) -> tuple[float, float]:
    """Fill the node's store with ``count`` items: (rows/s, ms of this process's CPU per
    row). A bench-only shortcut: one item is published properly, then its rows are copied
    under new ids straight into ``items`` and ``custody`` (no audit events, so ``audit
    verify`` would flag them); what the large run measures is the API over big tables and
    indexes, which these rows make. As TAXII stores them, every 100 items share an
    ``added_at`` (one batch), later batches later, all before the run's own objects.

    The log is left as one leaf, where a node that took the same items over TAXII would hold
    one per batch (10,000, ``items-published``, no item id): what a commit does to the log
    is the same at either size (a row appended at the end of its indexes by position and
    seq, the Merkle frontier's one row read and rewritten, never the leaves), so the store's
    size is in the items and custody tables and their indexes, which these rows make. The
    log grows with the node's reads (a GET by id appends a leaf naming the item, into the
    log's index by item id), whatever the number of items stored.

    One transaction through SQLite itself, rollback journal, no syncs, a page cache that
    holds the indexes: a node's commits (WAL, a sync each, 64 MB of cache) filled 1,000,000
    rows at 5,000-12,000 a second; the node is closed meanwhile, and the folder is synced
    and back in WAL mode before the server opens it."""
    import sqlite3
    from datetime import timedelta

    from gsomia.core.labels import SecurityLabel
    from gsomia.core.policy import Person
    from gsomia.service.taxii_ports import Submission
    from gsomia.shell.catalogue import load_catalogue
    from gsomia.shell.node import open_node
    from gsomia.shell.store import custody, items
    from gsomia.shell.taxii_store import SqlObjectStore

    node = open_node(folder, catalogue=load_catalogue())
    store = SqlObjectStore(node.store, keys=node.keys, catalogue=node.catalogue, validate=None)
    label = SecurityLabel("JPN", "秘", frozenset({"JPN", "KOR"}), "dprk-missile")
    person = Person("bench", "JPN", "極秘", frozenset({"dprk-missile"}))
    # The earlier runs' writes still in the page cache are written out first: the fill
    # is otherwise timed against the kernel's writeback of them.
    os.sync()
    started = time.perf_counter()
    cpu_started = time.process_time()
    store.add_objects([Submission(_indicator(0, "prefill"), label)], person, datetime.now(UTC))
    getattr(store, "close", lambda: None)()  # sources before its queue had none (--same-bench)
    node.close()
    item_cols = [c.name for c in items.columns if c.name != "row"]
    cust_cols = [c.name for c in custody.columns if c.name != "row"]
    db = sqlite3.connect(folder / "node.db", isolation_level=None)
    try:
        item = dict(zip(item_cols, db.execute(
            f"SELECT {', '.join(item_cols)} FROM items").fetchone(), strict=True))
        record = dict(zip(cust_cols, db.execute(
            f"SELECT {', '.join(cust_cols)} FROM custody").fetchone(), strict=True))
        template_id = item["id"].encode()
        content = bytes(item["content"])
        newest = datetime.fromisoformat(item["added_at"])
        db.execute("PRAGMA journal_mode=DELETE")
        db.execute("PRAGMA synchronous=OFF")
        db.execute(f"PRAGMA cache_size={-(2 << 20)}")  # KiB: 2 GB, more than the indexes

        def ids() -> Iterator[tuple[int, str]]:
            # Version 5 UUIDs, laid out by hand: uuid.uuid5 was half the fill's CPU.
            for n in range(1, count):
                h = hashlib.sha1(b"prefill/%d" % n).hexdigest()
                yield n, (f"indicator--{h[:8]}-{h[8:12]}-5{h[13:16]}-"
                          f"{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}")

        batches = [(newest - timedelta(milliseconds=k + 1)).strftime("%Y-%m-%d %H:%M:%S.%f")
                   for k in range(count // BATCH + 1)]

        def added(n: int) -> str:
            return batches[(count - n) // BATCH]

        db.execute("BEGIN")
        db.executemany(
            f"INSERT INTO items ({', '.join(item_cols)}) VALUES "
            f"({', '.join('?' * len(item_cols))})",
            ((*(new_id if c == "id" else added(n) if c == "added_at"
                 else content.replace(template_id, new_id.encode()) if c == "content"
                 else item[c] for c in item_cols),) for n, new_id in ids()))
        db.executemany(
            f"INSERT INTO custody ({', '.join(cust_cols)}) VALUES "
            f"({', '.join('?' * len(cust_cols))})",
            ((*(new_id if c == "item_id" else record[c] for c in cust_cols),)
             for _, new_id in ids()))
        db.execute("COMMIT")
        db.execute("PRAGMA journal_mode=WAL")
    finally:
        db.close()
    rate = count / (time.perf_counter() - started)
    cpu_per_row = (time.process_time() - cpu_started) * 1e3 / count
    os.sync()  # the fill's 1.7 GB on disk before the server's first synced commit
    return rate, cpu_per_row


def _medallion_data(port: int) -> dict[str, Any]:
    return {
        "/discovery": {"title": "bench", "description": "medallion", "contact": "",
                       "default": f"http://127.0.0.1:{port}/api1/",
                       "api_roots": [f"http://127.0.0.1:{port}/api1/"]},
        "api1": {"information": {"title": "api1", "description": "", "versions": [
            "application/taxii+json;version=2.1"], "max_content_length": 100_000_000},
            "status": [], "collections": [{
                "id": "91a7b528-80eb-42ed-a74d-c6fbd5a26116", "title": "bench",
                "description": "", "can_read": True, "can_write": True,
                "media_types": ["application/stix+json;version=2.1"],
                "objects": [], "manifest": []}]},
    }


def _client_env() -> dict[str, str | None]:
    # requests lets these override a session's own CA bundle (taxii2-client's verify=).
    saved = {k: os.environ.pop(k, None) for k in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    return saved


@contextmanager
def _gsomia_server(tmp: Path, label: str, prefill: int, audit_reads: str = "sync"
                   ) -> Iterator[tuple[Any, dict[str, Any], Callable[[], float],
                                       Callable[[], dict[str, Any]]]]:
    """A node serving over HTTPS, its store pre-filled with ``prefill`` items: (its
    collection, the figures so far, the server's CPU seconds, concurrent readers)."""
    from taxii2client.v21 import Server

    try:
        from gsomia.bootstrap import collection_id
    except ImportError:  # sources older than the bootstrap module's (``--same-bench``)
        from gsomia.shell.commands.serve import collection_id  # type: ignore[attr-defined,no-redef]

    folder = tmp / f"gsomia-{label}"
    token, marking = _gsomia_node(folder)
    out: dict[str, Any] = {"marking": marking}
    if prefill:
        out["prefill_items"] = prefill
        rate, cpu_per_row = _prefill(folder, prefill)
        out["prefill_per_s"] = round(rate, 1)
        out["cpu_ms_per_item_prefill"] = round(cpu_per_row, 4)
    port = _port()
    cmd = [sys.executable, "-m", "gsomia", "node", "serve", "--dir", str(folder), "--port",
           str(port), "--audit-reads", audit_reads]
    out["audit_reads"] = audit_reads
    with _process(cmd, tmp) as proc:
        ca = str(folder / "tls" / "ca.crt")
        _wait(f"https://127.0.0.1:{port}/openapi.json", ca, proc)
        server = Server(f"https://127.0.0.1:{port}/taxii2/", user="bench", password=token,
                        verify=ca)
        coll = next(c for c in server.api_roots[0].collections
                    if c.id == collection_id("JPN"))
        yield coll, out, partial(_server_cpu_seconds, proc.pid), partial(
            _concurrent_reads, f"https://127.0.0.1:{port}/gsomia/collections/"
            f"{collection_id('JPN')}/objects/", "bench", token, ca)


def _gsomia_run(tmp: Path, label: str, prefill: int, audit_reads: str = "sync"
                ) -> dict[str, Any]:
    with _gsomia_server(tmp, label, prefill, audit_reads) as (coll, out, cpu, concurrent):
        marking = out.pop("marking")
        # The server's CPU per object ingested: the figure others' load moves least.
        out.update(_workload(coll, f"gsomia-{label}", marking, None, cpu))
        if not prefill:
            out["concurrent"] = concurrent()
    return out


def _gsomia_large(tmp: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The same workload on a node that holds nothing but it (N objects stored at the end)
    and on one pre-filled with LARGE items, both serving at once, in turns (:func:`_paired`):
    (the small store's figures, the large one's)."""
    with _gsomia_server(tmp, "base", 0) as (coll, base, cpu, _), \
            _gsomia_server(tmp, "large", LARGE) as (big_coll, large, big_cpu, _):
        marking, big_marking = base.pop("marking"), large.pop("marking")
        small_run, large_run = _paired(
            _workload_steps(coll, "gsomia-base", marking, None, cpu),
            _workload_steps(big_coll, "gsomia-large", big_marking, None, big_cpu))
    return {**base, **small_run}, {**large, **large_run}


def _medallion_run(tmp: Path) -> dict[str, Any]:
    from taxii2client.v21 import Server

    port = _port()
    data = tmp / "medallion-data.json"
    data.write_text(json.dumps(_medallion_data(port)))
    config = tmp / "medallion.json"
    config.write_text(json.dumps({
        "backend": {"module": "medallion.backends.memory_backend",
                    "module_class": "MemoryBackend", "filename": str(data)},
        "users": {"bench": "bench"}, "taxii": {"max_page_size": PAGE}}))
    medallion = Path(sys.executable).parent / "medallion"
    cmd = [str(medallion), "--host", "127.0.0.1", "--port", str(port), "--log-level",
           "ERROR", str(config)]
    with _process(cmd, tmp) as proc:
        _wait(f"http://127.0.0.1:{port}/taxii2/", None, proc, auth=("bench", "bench"))
        server = Server(f"http://127.0.0.1:{port}/taxii2/", user="bench", password="bench")
        coll = server.api_roots[0].collections[0]
        return _workload(coll, "medallion", None, MEDALLION_BUDGET)


def _line(name: str, r: dict[str, Any]) -> None:
    print(f"{name:<17} ingest {r['ingest_per_s']:>8,.0f} obj/s   read {r['read_per_s']:>8,.0f} "
          f"obj/s   GET p50 {r['get_p50_ms']} ms p99 {r['get_p99_ms']} ms"
          + ("" if r["read_complete"] else "  (read cut at the time budget)"), flush=True)
    if "concurrent" in r:
        print(f"{'':<17} server CPU {r['cpu_ms_per_item_ingest']} ms per object ingested, "
              f"{r['cpu_ms_per_item_read'] * 1e3:.1f} us per object read, "
              f"{r['cpu_ms_per_get']} ms per GET; "
              f"{r['concurrent']['readers']} readers paging at once "
              f"{r['concurrent']['read_concurrent_per_s']:,.0f} obj/s", flush=True)


def run() -> dict[str, Any]:
    saved = _client_env()
    try:
        with tempfile.TemporaryDirectory(prefix="gsomia-bench-taxii-") as name:
            tmp = Path(name)
            ours = _gsomia_run(tmp, "empty", 0)
            _line("gsomia (sync)", ours)
            batched = _gsomia_run(tmp, "batched", 0, "batched")
            _line("gsomia (batched)", batched)
            theirs = _medallion_run(tmp)
            _line("medallion", theirs)
            ratios = {
                "ingest": round(ours["ingest_per_s"] / theirs["ingest_per_s"], 2),
                "read": round(ours["read_per_s"] / theirs["read_per_s"], 2),
                "get_p50": round(theirs["get_p50_ms"] / ours["get_p50_ms"], 2),
                "get_p99": round(theirs["get_p99_ms"] / ours["get_p99_ms"], 2),
                "batched_ingest": round(batched["ingest_per_s"] / theirs["ingest_per_s"], 2),
                "batched_read": round(batched["read_per_s"] / theirs["read_per_s"], 2),
                "batched_get_p50": round(theirs["get_p50_ms"] / batched["get_p50_ms"], 2),
            }
            print(f"gsomia / medallion (sync audit): ingest ×{ratios['ingest']}, read "
                  f"×{ratios['read']}, GET p50 ×{ratios['get_p50']} p99 ×{ratios['get_p99']} "
                  f"faster; batched audit: ingest ×{ratios['batched_ingest']}, read "
                  f"×{ratios['batched_read']}, GET p50 ×{ratios['batched_get_p50']}",
                  flush=True)
            large: dict[str, Any] = {}
            if LARGE:
                base, large = _gsomia_large(tmp)
                held = {k: round(large[k] / base[k], 2)
                        for k in ("ingest_per_s", "read_per_s")}
                # latency: the small store's over the large one's (1.0 = as fast)
                held["get_p50"] = round(base["get_p50_ms"] / large["get_p50_ms"], 2)
                held["get_p99"] = round(base["get_p99_ms"] / large["get_p99_ms"], 2)
                # server CPU: the small store's over the large one's (1.0 = as cheap)
                held.update({k: round(base[k] / large[k], 2) for k in (
                    "cpu_ms_per_item_ingest", "cpu_ms_per_item_read", "cpu_ms_per_get")})
                large["base"] = base
                large["rate_vs_empty"] = held
                _line(f"gsomia {N:,} stored", base)
                _line(f"gsomia {LARGE:,}", large)
                print(f"gsomia at {LARGE:,} stored against {N:,}, in turns: ingest "
                      f"{held['ingest_per_s']:.0%}, read {held['read_per_s']:.0%}, GET p50 "
                      f"{held['get_p50']:.0%} p99 {held['get_p99']:.0%} (of the small store's "
                      f"rate or speed); server CPU per object ingested "
                      f"{held['cpu_ms_per_item_ingest']:.0%}, read "
                      f"{held['cpu_ms_per_item_read']:.0%}, per GET {held['cpu_ms_per_get']:.0%}"
                      f" (prefill {large['prefill_per_s']:,.0f} items/s)", flush=True)
            load = os.getloadavg()[0]
            print(f"load average at the end: {load:.1f} on {os.cpu_count()} CPUs (the client, "
                  "the server and anything else running share them)", flush=True)
            return {"gsomia": ours, "gsomia_batched_audit": batched, "medallion": theirs,
                    "load_average": round(load, 1),
                    "ratios": ratios,
                    "gsomia_large": large, "workload": {"objects": N, "batch": BATCH,
                                                        "page": PAGE, "gets": GETS,
                                                        "read_passes": READ_PASSES}}
    finally:
        for key, value in saved.items():
            if value is not None:
                os.environ[key] = value


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
