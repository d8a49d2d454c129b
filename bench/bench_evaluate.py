"""``gsomia evaluate`` wall time: every launch with apogee and distance under the four regimes.

What is timed: the real command, ``python -m gsomia evaluate --out DIR --jobs 2`` (2 worker
processes, the target machine's 2 cores), from start to exit, plots included.

- ``full``: all 216 launches, one seed (issue 13's target: at most 2 minutes);
- ``sample``: every 8th launch (27), the figure issue 13 quoted for the code before
  (144 s), with the code before and the present code run one after the other on the same
  machine, so the two are comparable. The code before is commit ``BEFORE``, exported with
  ``git archive`` into a temporary folder; set ``BENCH_EVALUATE_BEFORE=0`` to skip it (it
  takes a few minutes), or ``BENCH_EVALUATE_FULL_BEFORE=1`` to also time the code before on
  the full set (about 20 minutes).

The machine's load is recorded with the figures: the same command takes several times longer
on a machine shared with other work.
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
BEFORE = "e1d1abf"          # the last commit before issue 13's speed-up
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
    out: dict[str, Any] = {"jobs": JOBS, "load_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        now_src = ROOT / "src"
        out["full_now_s"] = _evaluate(now_src, t / "full")
        print(f"full set, present code: {out['full_now_s']} s", flush=True)
        out["sample_now_s"] = _evaluate(now_src, t / "sample", "--every", "8")
        print(f"every 8th launch, present code: {out['sample_now_s']} s", flush=True)
        if os.environ.get("BENCH_EVALUATE_BEFORE", "1") != "0":
            before = _export_before(t / "before")
            if before is not None:
                out["sample_before_s"] = _evaluate(before, t / "sample-before", "--every", "8")
                print(f"every 8th launch, code before ({BEFORE}): {out['sample_before_s']} s",
                      flush=True)
                out["sample_speedup"] = round(out["sample_before_s"] / out["sample_now_s"], 1)
                if os.environ.get("BENCH_EVALUATE_FULL_BEFORE") == "1":
                    out["full_before_s"] = _evaluate(before, t / "full-before")
                    print(f"full set, code before: {out['full_before_s']} s", flush=True)
    out["load_after"] = os.getloadavg()[0]
    return out
