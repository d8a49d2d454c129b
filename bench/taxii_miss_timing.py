"""How long a real node takes to answer a TAXII GET by id for an item the reader may not see,
and for an id it does not hold (issue 10, finding 3b). Not a test, not part of ``python -m
bench``: run it by hand, it prints the medians of both.

    python bench/taxii_miss_timing.py [--requests 400] [--items 2000]

One KOR node in a temporary folder, ``gsomia node serve`` over HTTPS on loopback, one
reader cleared to 군사III급비밀; the hidden items are 군사II급비밀. Requests alternate
between a hidden id and an absent id (each a different id every time), on one keep-alive
connection, so both kinds meet the same server state.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    import requests

    from gsomia.bootstrap import collection_id
    from gsomia.service import handlers
    from gsomia.shell.catalogue import load_catalogue
    from gsomia.shell.node import init_node, new_token

    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--requests", type=int, default=400)
    args.add_argument("--items", type=int, default=2000)
    opts = args.parse_args(argv)
    catalogue = load_catalogue()
    with tempfile.TemporaryDirectory(prefix="gsomia-miss-") as tmp:
        folder = Path(tmp) / "kor"
        now = datetime.now(UTC)
        node = init_node(folder, "KOR", catalogue=catalogue, now=now)
        token = new_token()
        handlers.add_user(node.uow(), keys=node.keys, schemes=catalogue.schemes, name="lee",
                          clearance="군사III급비밀", need_to_know=["dprk-missile"], token=token,
                          now=now)
        hidden = [f"indicator--{uuid.uuid4()}" for _ in range(opts.items)]
        label = handlers.LabelRequest("군사II급비밀", ("KOR", "JPN"), "dprk-missile")
        handlers.publish_many(node.uow(), keys=node.keys, catalogue=catalogue, now=now, entries=[
            ({"type": "indicator", "spec_version": "2.1", "id": oid,
              "created": "2024-03-01T08:00:00.000Z", "modified": "2024-03-01T08:00:00.000Z",
              "name": "TEL", "pattern": "[x-dprk-site:name = 'Sinpo']",
              "pattern_type": "stix", "valid_from": "2024-03-01T08:00:00Z"}, label)
            for oid in hidden])
        node.close()
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "gsomia", "node", "serve", "--dir", str(folder),
             "--host", "127.0.0.1", "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
        url = f"https://127.0.0.1:{port}/gsomia/collections/{collection_id('KOR')}/objects/"
        session = requests.Session()
        session.trust_env = False  # the node's own CA, whatever REQUESTS_CA_BUNDLE says
        session.verify = str(folder / "tls" / "ca.crt")
        session.headers["Authorization"] = f"Bearer {token}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    session.get(url, timeout=2)
                    break
                except requests.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            times: dict[str, list[float]] = {"hidden": [], "absent": []}
            for n in range(opts.requests + 20):
                for kind in (("hidden", "absent") if n % 2 else ("absent", "hidden")):
                    oid = hidden[n % len(hidden)] if kind == "hidden" \
                        else f"indicator--{uuid.uuid4()}"
                    started = time.perf_counter()
                    r = session.get(url + oid + "/", timeout=10)
                    spent = time.perf_counter() - started
                    assert r.status_code == 404, r.text
                    if n >= 20:  # the first ones warm the server up
                        times[kind].append(spent * 1000)
        finally:
            server.terminate()
            server.wait(timeout=20)
    for kind, values in times.items():
        values.sort()
        print(f"{kind:>6}: median {statistics.median(values):.2f} ms, "
              f"p10 {values[len(values) // 10]:.2f} ms, p90 {values[len(values) * 9 // 10]:.2f}"
              f" ms over {len(values)} requests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
