"""``gsomia evaluate`` wall time, the code before and the present code back to back.

What is timed: the real command, ``python -m gsomia evaluate --out DIR --jobs 2`` (2 worker
processes, the target machine's 2 cores), from start to exit, plots included, under the four
regimes with one seed: first with the code before (commit ``BEFORE``, exported with
``git archive`` into a temporary folder), then with the present code, one after the other in
the same run, so that both see the same machine.

- ``BENCH_EVALUATE_EVERY=K`` (default 1: all 216 launches, issue 13's target of 2 minutes):
  every Kth launch only, when the full set before is too slow for the machine's load;
- ``BENCH_EVALUATE_BEFORE=0``: the present code only.

Wall time and CPU time (user + system of the command and its worker processes) are both
recorded. The present code's compiled kernels (numba) are cached beside their source after the
first run; ``BENCH_EVALUATE_COLD=1`` gives the present run an empty numba cache, so that its
figures include compiling them.

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
BEFORE = "875abb0"          # the last commit before the compiled kernels (issue 13, part 6)
JOBS = 2


def _evaluate(src: Path, out: Path, *extra: str, env_extra: dict[str, str] | None = None
              ) -> tuple[float, float]:
    """Wall and CPU seconds of one ``evaluate`` (CPU: its own and its workers')."""
    env = {**os.environ, "PYTHONPATH": str(src), **(env_extra or {})}
    before = os.times()
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gsomia", "evaluate", "--out", str(out),
                    "--jobs", str(JOBS), "--json", *extra], env=env, check=True,
                   capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = os.times()
    cpu = (after.children_user - before.children_user
           + after.children_system - before.children_system)
    return round(wall, 1), round(cpu, 1)


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
                out["before_s"], out["before_cpu_s"] = _evaluate(before, t / "before-out",
                                                                 *extra)
                print(f"{what}, code before ({BEFORE}): {out['before_s']} s wall, "
                      f"{out['before_cpu_s']} s CPU", flush=True)
        cold = os.environ.get("BENCH_EVALUATE_COLD") == "1"
        out["numba_cache"] = "cold" if cold else "warm"
        out["now_s"], out["now_cpu_s"] = _evaluate(
            ROOT / "src", t / "now-out", *extra,
            env_extra={"NUMBA_CACHE_DIR": str(t / "numba-cache")} if cold else None)
        print(f"{what}, present code: {out['now_s']} s wall, {out['now_cpu_s']} s CPU",
              flush=True)
        if "before_s" in out:
            out["speedup"] = round(out["before_s"] / out["now_s"], 2)
            out["cpu_speedup"] = round(out["before_cpu_s"] / out["now_cpu_s"], 2)
    out["load_after"] = os.getloadavg()[0]
    return out
