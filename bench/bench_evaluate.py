"""``gsomia evaluate`` wall time, the code before and the present code back to back.

What is timed: the real command, ``python -m gsomia evaluate --out DIR --jobs 2`` (2 worker
processes, the target machine's 2 cores), from start to exit, plots included, under the four
regimes with one seed: first with the code before (commit ``BEFORE``, exported with
``git archive`` into a temporary folder), then with the present code, one after the other in
the same run, so that both see the same machine.

- ``BENCH_EVALUATE_EVERY=K`` (default 1: all 216 launches, issue 13's target of 2 minutes):
  every Kth launch only, when the full set before is too slow for the machine's load;
- ``BENCH_EVALUATE_BEFORE=0``: the present code only.

The machine's load is recorded with the figures: the same command takes several times longer
on a machine shared with other work, so only the ratio of one run means much.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "bdc8eba"          # the last commit before the second speed-up (issue 13)
JOBS = 2


def _evaluate(src: Path, out: Path, *extra: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gsomia", "evaluate", "--out", str(out),
                    "--jobs", str(JOBS), "--json", *extra], env=env, check=True,
                   capture_output=True, text=True)
    return round(time.perf_counter() - started, 1)


def _export_before(into: Path) -> Path | None:
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", BEFORE, "src"],
                                 check=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def run() -> dict[str, Any]:
    every = int(os.environ.get("BENCH_EVALUATE_EVERY", "1"))
    extra = ("--every", str(every)) if every > 1 else ()
    what = "full set" if every == 1 else f"every {every}th launch"
    out: dict[str, Any] = {"jobs": JOBS, "every": every, "before": BEFORE,
                           "load_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        if os.environ.get("BENCH_EVALUATE_BEFORE", "1") != "0":
            before = _export_before(t / "before")
            if before is not None:
                out["before_s"] = _evaluate(before, t / "before-out", *extra)
                print(f"{what}, code before ({BEFORE}): {out['before_s']} s", flush=True)
        out["now_s"] = _evaluate(ROOT / "src", t / "now-out", *extra)
        print(f"{what}, present code: {out['now_s']} s", flush=True)
        if "before_s" in out:
            out["speedup"] = round(out["before_s"] / out["now_s"], 2)
    out["load_after"] = os.getloadavg()[0]
    return out
