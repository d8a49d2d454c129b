"""What checking the binding at the seal costs (sealsig26): ``Sender._seal``'s CPU per item
with :func:`gsomia.service.outbox.unbound_at_seal` as it is (each version's binding of label
and content as stored verified against the originator's key) against the seal without it
(a stand-in doing what main's seal did with the binding: read its JSON, nothing verified),
in one process, alternated, median of the rounds (``after_again``: the same versions
sealed once more with the checks that said yes remembered, as for a second partner); on
one SQLite node KOR federated with JPN, N items published REL TO KOR, JPN and queued. The
checks made in this process (every CPU second counted here) and, for batches, on the node's
signature worker (``--worker``: this process's CPU and the wall time). Not a test, not part of
``python -m bench``:

    PYTHONPATH=src:. python bench/seal_binding_ab.py [N ...] [--rounds R] [--worker] [--save]

``--save``: the figures go to bench/results/latest.json under ``sealsig26_ab``.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gsomia.service import handlers
from gsomia.service import outbox as service_outbox
from gsomia.shell import exchange
from gsomia.shell.catalogue import load_catalogue
from gsomia.shell.node import init_node

LATEST = Path(__file__).parent / "results" / "latest.json"
REAL = service_outbox.unbound_at_seal


def indicator(n: int) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1",
            "id": f"indicator--00000000-0000-4000-8000-{n:012d}",
            "created": "2024-03-01T08:00:00.000Z", "modified": "2024-03-01T08:00:00.000Z",
            "name": f"launch site {n}", "pattern": "[ipv4-addr:value = '198.51.100.7']",
            "pattern_type": "stix", "valid_from": "2024-03-01T08:00:00Z"}


class _Read:
    """The binding as main's seal shipped it: its stored JSON as orjson read it (the seal
    now reads it before this call, as main did after), nothing checked."""

    __slots__ = ("doc",)

    def __init__(self, doc: Any) -> None:
        self.doc = doc

    def to_json(self) -> Any:
        return self.doc


def unchecked(stored: Iterable[tuple[str, str, bytes, bytes, Any, str]], *_: Any
              ) -> tuple[dict[tuple[str, str], Any], Callable[[], dict[tuple[str, str], str]]]:
    return {(i, v): _Read(b) for i, v, _c, _l, b, _o in stored}, dict


def measure(n: int, rounds: int, worker: bool) -> dict[str, Any]:
    catalogue = load_catalogue()
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="sealsig26-") as tmp:
        kor = init_node(Path(tmp) / "kor", "KOR", catalogue=catalogue, now=now)
        jpn = init_node(Path(tmp) / "jpn", "JPN", catalogue=catalogue, now=now)
        try:
            peers = {p.party: exchange.Peer(p.party, f"https://{p.party.lower()}.test",
                                            p.keys.public_signing_key(),
                                            p.keys.envelope_key().public_key())
                     for p in (kor, jpn)}
            exchange.Partners("KOR", "direct", peers, ("JPN",)).write(kor.folder)
            handlers.publish_many(
                kor.uow(), keys=kor.keys, catalogue=kor.catalogue, now=now,
                entries=[(indicator(i), handlers.LabelRequest("군사II급비밀", ("KOR", "JPN"),
                                                             "dprk-missile"))
                         for i in range(n)])
            if not worker:  # every batch verified in this process
                kor.signatures.in_process_below = sys.maxsize
            sender = exchange.Sender(kor, batch=n)

            def seal(remembered: bool = False) -> tuple[float, float]:
                if not remembered:  # the first partner's seal: nothing verified before
                    sender.seal_checks = None
                wall, cpu = time.perf_counter(), time.process_time()
                batch = sender._seal(peers["JPN"])
                took = (time.perf_counter() - wall, time.process_time() - cpu)
                assert batch is not None and len(batch.bodies) == n, "all sealed"
                kor.store.release([r.row for r, _ in batch.sealed], datetime.now(UTC))
                return took

            seal()  # warm: keys loaded, partners read, the worker started
            sides: dict[str, list[tuple[float, float]]] = {
                "before": [], "after": [], "after_again": []}
            for k in range(rounds):
                order = ("before", "after") if k % 2 == 0 else ("after", "before")
                for side in order:
                    service_outbox.unbound_at_seal = unchecked if side == "before" \
                        else REAL  # type: ignore[assignment]
                    try:
                        sides[side].append(seal())
                        if side == "after":  # the same versions to a second partner
                            sides["after_again"].append(seal(remembered=True))
                    finally:
                        service_outbox.unbound_at_seal = REAL
            sender.close()
            out: dict[str, Any] = {"items": n, "rounds": rounds,
                                   "checks": "signature worker" if worker else "in process"}
            for side, got in sides.items():
                out[f"{side}_cpu_us_per_item"] = round(
                    statistics.median(c for _, c in got) / n * 1e6, 1)
                out[f"{side}_wall_us_per_item"] = round(
                    statistics.median(w for w, _ in got) / n * 1e6, 1)
            ratios = [a[1] / b[1] for a, b in zip(sides["after"], sides["before"],
                                                  strict=True) if b[1]]
            out["cpu_ratio_median_of_pairs"] = round(statistics.median(ratios), 3)
            out["cpu_ratio_min_max"] = [round(min(ratios), 3), round(max(ratios), 3)]
            again = [a[1] / b[1] for a, b in zip(sides["after_again"], sides["before"],
                                                 strict=True) if b[1]]
            out["cpu_ratio_second_partner_median"] = round(statistics.median(again), 3)
            return out
        finally:
            kor.close()
            jpn.close()


def main(argv: list[str]) -> int:
    sizes = [int(a) for a in argv if a.isdigit() and argv[argv.index(a) - 1] != "--rounds"]
    rounds = int(argv[argv.index("--rounds") + 1]) if "--rounds" in argv else 9
    worker = "--worker" in argv
    results = [measure(n, rounds, worker) for n in sizes or [256]]
    print(json.dumps(results, indent=1))
    if "--save" in argv:
        latest = json.loads(LATEST.read_text("utf-8"))
        entry = latest.setdefault("sealsig26_ab", {})
        entry["worker" if worker else "in_process"] = {
            "command": "PYTHONPATH=src:. python bench/seal_binding_ab.py "
                       + " ".join(argv).replace("--save", "").strip(),
            "note": "Sender._seal CPU (this process) and wall per item, the binding of each "
                    "version verified at the seal (after) against main's unchecked read of "
                    "the binding (before), alternated in one process, median of the rounds; "
                    "under the other helpers' load (compare CPU and the ratio)",
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "results": results}
        LATEST.write_text(json.dumps(latest, indent=2) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
