"""TAXII ingest of two trees side by side, request by request: the fair comparison of a
change to the publish path on a shared machine. Not a test, not part of ``python -m bench``.

    python bench/taxii_ingest_pair.py TREE_A TREE_B   (e.g. /work/main .)

Two node servers (``gsomia node serve``, each on its tree's ``src``), the OASIS taxii2-client,
``bench_taxii``'s indicators and label in envelopes of 100: the batches go to A and B in
turns (A B, then B A, ...), so the load others put on the machine weighs on both alike,
which the sequential halves of ``python -m bench --against`` cannot promise (under a load
of 5-16 on 2 CPUs, medallion itself ran twice as fast in one half as in the other). Prints
the ingest rate and the server's CPU per object (its process and its signing process, from
/proc) of each, and B's over A's. AB_N objects per server per round (3000), AB_ROUNDS rounds
(4), the first a warm-up left out.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_taxii import BATCH, _cpu_seconds, _indicator, _port, _process, _wait

N = int(os.environ.get("AB_N", "3000"))
ROUNDS = int(os.environ.get("AB_ROUNDS", "4"))


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@contextlib.contextmanager
def _server(tmp: Path, tree: Path, label: str) -> Iterator[tuple[Any, dict[str, Any], int]]:
    from taxii2client.v21 import Server

    from gsomia.bootstrap import collection_id

    folder = tmp / label
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    # Made by the tree that serves it: a newer tree's schema (a migration the other lacks)
    # would stop the older one from opening the store.
    made = subprocess.run(
        [sys.executable, "-c", "import json, sys; from pathlib import Path; "
         "from bench.bench_taxii import _gsomia_node; "
         "print(json.dumps(_gsomia_node(Path(sys.argv[1]))))", str(folder)],
        env={**env, "PYTHONPATH": f"{tree / 'src'}{os.pathsep}{Path(__file__).parent.parent}"},
        capture_output=True, text=True, check=True)
    token, marking = json.loads(made.stdout)
    port = _port()
    cmd = [sys.executable, "-m", "gsomia", "node", "serve", "--dir", str(folder), "--port",
           str(port)]
    with _process(cmd, tmp, env) as proc:
        ca = str(folder / "tls" / "ca.crt")
        _wait(f"https://127.0.0.1:{port}/openapi.json", ca, proc)
        server = Server(f"https://127.0.0.1:{port}/taxii2/", user="bench", password=token,
                        verify=ca)
        yield (next(c for c in server.api_roots[0].collections
                    if c.id == collection_id("JPN")), marking, proc.pid)


def main(trees: list[Path]) -> int:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # they would override verify=
        os.environ.pop(name, None)
    spent = [[0.0, 0.0, 0.0, 0] for _ in trees]  # seconds, main CPU, signer CPU, objects
    with tempfile.TemporaryDirectory(prefix="gsomia-ingest-pair-") as name, \
            _server(Path(name), trees[0], "a") as a, _server(Path(name), trees[1], "b") as b:
        servers = (a, b)
        for r in range(ROUNDS):
            objs = [[{**_indicator(n, f"r{r}-{k}"), "object_marking_refs": [s[1]["id"]]}
                     for n in range(N)] for k, s in enumerate(servers)]
            for i in range(0, N, BATCH):
                for k in ((0, 1) if (i // BATCH) % 2 == 0 else (1, 0)):
                    coll, marking, pid = servers[k]
                    kids = _children(pid)
                    main_cpu = _cpu_seconds(pid)
                    signer_cpu = sum(_cpu_seconds(c) for c in kids)
                    started = time.perf_counter()
                    status = coll.add_objects({"objects": [marking, *objs[k][i:i + BATCH]]})
                    took = time.perf_counter() - started
                    assert status.success_count == len(objs[k][i:i + BATCH]) + 1, status
                    if r:  # the first round warms both up (imports, compiled schemas)
                        spent[k][0] += took
                        spent[k][1] += _cpu_seconds(pid) - main_cpu
                        spent[k][2] += sum(_cpu_seconds(c) for c in kids) - signer_cpu
                        spent[k][3] += len(objs[k][i:i + BATCH])
    for k, (took, main_cpu, signer_cpu, count) in enumerate(spent):
        print(f"{'AB'[k]} {trees[k]}: ingest {count / took:,.0f} obj/s, server CPU "
              f"{(main_cpu + signer_cpu) / count * 1e6:.1f} µs per object (its process "
              f"{main_cpu / count * 1e6:.1f}, signing {signer_cpu / count * 1e6:.1f})")
    (ta, ma, sa, _), (tb, mb, sb, _) = spent
    print(f"B over A: ingest rate ×{ta / tb:.3f}, server CPU per object "
          f"×{(mb + sb) / (ma + sa):.3f}; load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__.splitlines()[3].strip(), file=sys.stderr)
        sys.exit(2)
    sys.exit(main([Path(p).resolve() for p in sys.argv[1:]]))
