"""CPU of one KOR sensor report's way through the store, in one process, A/B (hotpath28): the
store methods that build their statements (a reference tree's ``_repository.py`` and
``_store.py``, loaded beside this tree's) and this tree's, which bind their values into
statements made once, swapped in turn every K reports over the same two nodes of a
``direct`` federation opened here (not started, no HTTP): publish at KOR (the intake's commit,
its deliveries queued), KOR's claim and seal, JPN's receive, KOR's settle. Per stage, the
median thread CPU of each side and their ratio; the first round warms both. With ``same``,
both sides are this tree's (the noise floor: a ratio near 1.0).

    PYTHONPATH=src:. python bench/report_statements_ab.py REF_TREE [ROUNDS K] [same]

Not a test, not part of ``python -m bench``.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.receive_plan_ab import SENSOR_REPORT, direct_pair, envelopes_of, report
from gsomia.shell import exchange
from gsomia.shell.store import _repository, _store, now_utc

# The methods whose statements hotpath28 made once, by the class that holds them.
SWAPPED = {("SqlOutbox", "_repository"): ("queued_deliveries", "still_pending",
                                          "mark_delivered", "mark_refused"),
           ("SqlRepository", "_repository"): ("seen_nonces", "receipted"),
           ("Store", "_store"): ("claim", "_claim_query")}


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sides(ref: Path, same: bool) -> dict[str, dict[tuple[str, str], Any]]:
    here = {"_repository": _repository, "_store": _store}
    there = here if same else {
        name: _load(f"reference{name}", ref / "src/gsomia/shell/store" / f"{name}.py")
        for name in here}
    return {side: {(cls, m): vars(getattr(mods[module], cls))[m]
                   for (cls, module), methods in SWAPPED.items() for m in methods}
            for side, mods in (("ref", there), ("here", here))}


def _use(methods: dict[tuple[str, str], Any], stores: list[Any]) -> None:
    here = {"_repository": _repository, "_store": _store}
    for (cls, module), names in SWAPPED.items():
        for m in names:
            setattr(getattr(here[module], cls), m, methods[(cls, m)])
    for store in stores:
        store._claims.clear()  # each side keeps its own kind of claim statement there


def main(ref: Path, rounds: int, k: int, same: bool) -> dict[str, Any]:
    sides = _sides(ref, same)
    took: dict[str, dict[str, list[float]]] = {s: defaultdict(list) for s in sides}
    with direct_pair("gsomia-report-statements-") as (kor, jpn, sender, inbox):
        peer = exchange.require_partners(kor).peer("JPN")
        n = 0
        try:
            for r in range(rounds + 1):
                for side in (("ref", "here") if r % 2 else ("here", "ref")):
                    _use(sides[side], [kor.store, jpn.store])
                    for _ in range(k):
                        n += 1
                        t: dict[str, float] = {}
                        c = time.thread_time()
                        exchange.publish(kor, entries=[(report(n), SENSOR_REPORT)])
                        t["publish"] = time.thread_time() - c
                        c = time.thread_time()
                        batch = sender._seal(peer)
                        t["claim_seal"] = time.thread_time() - c
                        envelopes = envelopes_of(batch)
                        c = time.thread_time()
                        results = inbox.deliver_many(envelopes, "KOR", now_utc())
                        t["receive"] = time.thread_time() - c
                        if len(results) != 1 or results[0].receipt is None:
                            raise RuntimeError(f"not receipted: {results}")
                        answer = json.loads(json.dumps(
                            {"results": [x.to_json() for x in results]}))
                        c = time.thread_time()
                        sender._settle(peer, batch.sealed, answer["results"],
                                       exchange.SendReport(), batch.unsent, batch.digests)
                        t["settle"] = time.thread_time() - c
                        if r > 0:
                            for key, value in t.items():
                                took[side][key].append(value)
                            took[side]["all"].append(sum(t.values()))
        finally:
            _use(sides["here"], [kor.store, jpn.store])
    out: dict[str, Any] = {}
    for key in took["ref"]:
        a, b = (statistics.median(took[s][key]) * 1e3 for s in ("ref", "here"))
        out[key] = {"ref_ms": round(a, 3), "here_ms": round(b, 3), "ratio": round(b / a, 3)}
    out["reports_each"] = len(took["ref"]["all"])
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "same"]
    main(Path(args[0]), int(args[1]) if len(args) > 1 else 30,
         int(args[2]) if len(args) > 2 else 10, "same" in sys.argv)
