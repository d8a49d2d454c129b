"""What checking the binding at the seal costs (sealsig26): ``Sender._seal``'s CPU per item
with :func:`gsomia.service.outbox.unbound_at_seal` as it is (each version's binding of label
and content as stored verified against the originator's key) against the seal without it
(a stand-in doing what main's seal did with the binding: read its JSON, nothing verified),
in one process, alternated, median of the rounds (``after_again``: the same versions
sealed once more with the checks that said yes remembered, as for a second partner;
``here`` (sealfast26): the seal as a node's courier makes it of items its own process has
just published, the checks through the node's keeping, which the publish path filled; the
others each seal with a keeping of their own, as for items published by another process);
on one SQLite node KOR federated with JPN, N items published REL TO KOR, JPN and queued. The
checks made in this process (every CPU second counted here) and, for batches, on the node's
signature worker (``--worker``: this process's CPU and the wall time). Not a test, not part of
``python -m bench``:

    PYTHONPATH=src:. python bench/seal_binding_ab.py [N ...] [--rounds R] [--worker] [--save]

``--save``: the figures go to bench/results/latest.json under ``sealfast26_ab``
(``sealsig26_ab`` before the ``here`` side was measured).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.seal_recheck_ab import kor_federated_with_jpn, publish_indicators
from gsomia.service import outbox as service_outbox
from gsomia.shell import exchange
from gsomia.shell.signatures import RememberingChecks

LATEST = Path(__file__).parent / "results" / "latest.json"
REAL = service_outbox.unbound_at_seal


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
    with kor_federated_with_jpn("sealsig26-") as (kor, peers, now):
        publish_indicators(kor, n, now)
        if not worker:  # every batch verified in this process
            kor.signatures.in_process_below = sys.maxsize
        sender = exchange.Sender(kor, batch=n)

        def seal(checks: RememberingChecks) -> tuple[float, float]:
            sender.seal_checks = checks
            wall, cpu = time.perf_counter(), time.process_time()
            batch = sender._seal(peers["JPN"])
            took = (time.perf_counter() - wall, time.process_time() - cpu)
            assert batch is not None and len(batch.bodies) == n, "all sealed"
            kor.store.release([r.row for r, _ in batch.sealed], datetime.now(UTC))
            return took

        def fresh() -> RememberingChecks:  # nothing verified before (another process)
            return RememberingChecks(kor.signatures)

        # The node's keeping, as its couriers see it: the publish above filled it.
        node_keeping = kor.store.remembered.through(kor.signatures)
        seal(fresh())  # warm: keys loaded, partners read, the worker started
        sides: dict[str, list[tuple[float, float]]] = {
            "before": [], "after": [], "after_again": [], "here": []}
        turns = ("before", "after", "here")
        for k in range(rounds):
            for side in turns[k % 3:] + turns[:k % 3]:
                service_outbox.unbound_at_seal = unchecked if side == "before" \
                    else REAL  # type: ignore[assignment]
                try:
                    checks = node_keeping if side == "here" else fresh()
                    sides[side].append(seal(checks))
                    if side == "after":  # the same versions to a second partner
                        sides["after_again"].append(seal(checks))
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
        here = [a[1] / b[1] for a, b in zip(sides["here"], sides["before"], strict=True)
                if b[1]]
        out["here_cpu_ratio_to_before_median"] = round(statistics.median(here), 3)
        out["here_cpu_ratio_to_before_min_max"] = [round(min(here), 3),
                                                   round(max(here), 3)]
        here_now = [a[1] / b[1] for a, b in zip(sides["here"], sides["after"],
                                                strict=True) if b[1]]
        out["here_cpu_ratio_to_after_median"] = round(statistics.median(here_now), 3)
        out["here_cpu_ratio_to_after_min_max"] = [round(min(here_now), 3),
                                                  round(max(here_now), 3)]
        return out


def main(argv: list[str]) -> int:
    sizes = [int(a) for a in argv if a.isdigit() and argv[argv.index(a) - 1] != "--rounds"]
    rounds = int(argv[argv.index("--rounds") + 1]) if "--rounds" in argv else 9
    worker = "--worker" in argv
    results = [measure(n, rounds, worker) for n in sizes or [256]]
    print(json.dumps(results, indent=1))
    if "--save" in argv:
        latest = json.loads(LATEST.read_text("utf-8"))
        entry = latest.setdefault("sealfast26_ab", {})
        entry["worker" if worker else "in_process"] = {
            "command": "PYTHONPATH=src:. python bench/seal_binding_ab.py "
                       + " ".join(argv).replace("--save", "").strip(),
            "note": "Sender._seal CPU (this process) and wall per item, the binding of each "
                    "version verified at the seal (after: main at 9df665c, sealsig26, for "
                    "items another process published) against main's unchecked read of "
                    "the binding (before: main at 6c08bcd, before sealsig26), and the seal "
                    "of items this process published, found in the node's keeping (here: "
                    "sealfast26), alternated in one process, ratios the median of the "
                    "rounds' pairs; under the other helpers' load (compare CPU and ratio)",
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "results": results}
        LATEST.write_text(json.dumps(latest, indent=2) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
