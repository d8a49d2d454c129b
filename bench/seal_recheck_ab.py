"""What the release policy asked again at the seal costs (sealcheck23): per item, the CPU of
the recheck (the stored label parsed, :func:`gsomia.service.outbox.refused_at_seal`) against
the CPU of the whole seal of a batch (claim, read, recheck, HPKE and signature,
``Sender._seal``, whose items share one label, as published together), on one SQLite
node KOR federated with JPN, N items published REL TO KOR, JPN and queued. Median of 5
alternated rounds, under whatever else the machine runs (compare CPU, and the ratio). Not a
test, not part of ``python -m bench``:

    PYTHONPATH=src:. python bench/seal_recheck_ab.py [N] [--save]   # default N 256

``--save``: the figures go to bench/results/latest.json under ``sealcheck23_ab``.
``--seal-only``: the whole seal's CPU per item alone, which runs on main's code too (the
before side: ``PYTHONPATH=MAIN/src:. python bench/seal_recheck_ab.py --seal-only``,
alternated with this tree's).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from gsomia.core.labels import SecurityLabel
from gsomia.core.outbox import Routing
from gsomia.service import handlers
from gsomia.shell import exchange
from gsomia.shell.catalogue import load_catalogue
from gsomia.shell.node import Node, init_node

LATEST = Path(__file__).parent / "results" / "latest.json"


def indicator(n: int) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1",
            "id": f"indicator--00000000-0000-4000-8000-{n:012d}",
            "created": "2024-03-01T08:00:00.000Z", "modified": "2024-03-01T08:00:00.000Z",
            "name": f"launch site {n}", "pattern": "[ipv4-addr:value = '198.51.100.7']",
            "pattern_type": "stix", "valid_from": "2024-03-01T08:00:00Z"}


@contextmanager
def kor_federated_with_jpn(prefix: str
                           ) -> Iterator[tuple[Node, dict[str, exchange.Peer], datetime]]:
    """Two SQLite nodes in a temporary folder, KOR's partners naming JPN (a direct link):
    (KOR, the peers, the instant they were made). The seal benches' common ground."""
    catalogue = load_catalogue()
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        kor = init_node(Path(tmp) / "kor", "KOR", catalogue=catalogue, now=now)
        jpn = init_node(Path(tmp) / "jpn", "JPN", catalogue=catalogue, now=now)
        try:
            peers = {p.party: exchange.Peer(p.party, f"https://{p.party.lower()}.test",
                                            p.keys.public_signing_key(),
                                            p.keys.envelope_key().public_key())
                     for p in (kor, jpn)}
            exchange.Partners("KOR", "direct", peers, ("JPN",)).write(kor.folder)
            yield kor, peers, now
        finally:
            kor.close()
            jpn.close()


def publish_indicators(node: Node, n: int, now: datetime) -> None:
    """``n`` indicators published at ``node`` in one batch, REL TO KOR, JPN (queued to JPN)."""
    handlers.publish_many(
        node.uow(), keys=node.keys, catalogue=node.catalogue, now=now,
        entries=[(indicator(i), handlers.LabelRequest("군사II급비밀", ("KOR", "JPN"),
                                                     "dprk-missile"))
                 for i in range(n)])


def timed(call: Callable[[], Any], repeat: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeat):
        call()
    return ((time.perf_counter() - wall) / repeat, (time.process_time() - cpu) / repeat)


def measure(n: int, seal_only: bool = False) -> dict[str, Any]:
    with kor_federated_with_jpn("sealcheck23-") as (kor, peers, now):
        publish_indicators(kor, n, now)
        routing = Routing("KOR", ("JPN",), kor.catalogue)
        with kor.store.repository() as repo:
            rows = list(repo.bound_versions([indicator(i)["id"] for i in range(n)]))
            keys = [(r[0], r[1]) for r in rows]
            labels = [r[3] for r in rows]
            consents = repo.consents_of([k[0] for k in keys])

        def recheck() -> None:
            from gsomia.service.outbox import refused_at_seal

            # Each label distinct (its ``created``), as items published one by one:
            # the worst case, nothing taken once for the batch.
            labelled = [(i, v, dataclasses.replace(
                SecurityLabel.from_stored(orjson.loads(lb)),
                created=now + timedelta(microseconds=k)))
                        for k, ((i, v), lb) in enumerate(zip(keys, labels, strict=True))]
            refused = refused_at_seal(routing, "JPN", datetime.now(UTC), labelled,
                                      consents, [])
            assert not refused

        sender = exchange.Sender(kor, batch=n)
        sender._deliver_to = ("JPN",)

        def seal() -> None:
            batch = sender._seal(peers["JPN"])
            assert batch is not None and len(batch.bodies) == n, "all sealed"
            kor.store.release([r.row for r, _ in batch.sealed], datetime.now(UTC))

        if seal_only:
            cpu = statistics.median(timed(seal, 1)[1] for _ in range(7))
            sender.close()
            return {"items": n, "seal_cpu_us_per_item": round(cpu / n * 1e6, 1)}
        rounds = [timed(recheck, 10) + timed(seal, 2) for _ in range(5)]
        rw, rc, sw, sc = (statistics.median(r[k] for r in rounds) for k in range(4))
        sender.close()
        return {"items": n,
                "recheck_cpu_us_per_item": round(rc / n * 1e6, 1),
                "recheck_wall_us_per_item": round(rw / n * 1e6, 1),
                "seal_cpu_us_per_item": round(sc / n * 1e6, 1),
                "seal_wall_us_per_item": round(sw / n * 1e6, 1),
                "recheck_share_of_seal_cpu": round(rc / sc, 4) if sc else None,
                "recheck_items_per_cpu_s": round(n / rc) if rc else None}


def main(argv: list[str]) -> int:
    sizes = [int(a) for a in argv if a.isdigit()] or [256]
    results = [measure(n, "--seal-only" in argv) for n in sizes]
    print(json.dumps(results, indent=1))
    if "--save" in argv and "--seal-only" not in argv:
        latest = json.loads(LATEST.read_text("utf-8"))
        kept = latest.get("sealcheck23_ab", {}).get("seal_ab_vs_main")
        latest["sealcheck23_ab"] = {
            "command": "PYTHONPATH=src:. python bench/seal_recheck_ab.py 256 --save",
            "note": "CPU per item of the release policy asked again at the seal (label "
                    "parsed + refused_at_seal, every label distinct: the worst case) "
                    "against the whole Sender._seal (claim, read, recheck, HPKE, "
                    "signature) of one batch, its items sharing one label; median of 5 "
                    "alternated rounds, under the other helpers' load (compare CPU)",
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "results": results}
        if kept is not None:  # the side-by-side runs against main, written by hand
            latest["sealcheck23_ab"]["seal_ab_vs_main"] = kept
        LATEST.write_text(json.dumps(latest, indent=2) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
