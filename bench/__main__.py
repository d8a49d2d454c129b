"""Run every benchmark module (or those named on the command line) and write the figures.

    python -m bench [policy audit ...]
    python -m bench --against REV [--pairs N] [--same-bench] [policy audit ...]
                                   # before/after, side by side (bench/before_after.py)


Each ``bench/bench_<name>.py`` has ``run() -> dict``; results go to bench/results/latest.json
together with the machine they were measured on.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    against = None
    if argv[:1] == ["--against"]:
        if len(argv) < 2:
            print("usage: python -m bench --against REV [names ...]", file=sys.stderr)
            return 2
        against, argv = argv[1], argv[2:]
    pairs = 1
    if against is not None and argv[:1] == ["--pairs"]:
        if len(argv) < 2 or not argv[1].isdigit() or int(argv[1]) < 1:
            print("usage: python -m bench --against REV --pairs N [names ...] (N >= 1)",
                  file=sys.stderr)
            return 2
        pairs, argv = int(argv[1]), argv[2:]
    same_bench = against is not None and argv[:1] == ["--same-bench"]
    if same_bench:
        argv = argv[1:]
    names = argv or sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    out_path = HERE / "results" / "latest.json"
    previous = json.loads(out_path.read_text()) if out_path.exists() else {}
    if against is not None:
        from bench.before_after import run as before_after

        def save(doc: dict[str, object]) -> None:
            previous["before_after"] = doc
            out_path.write_text(json.dumps(previous, indent=2, ensure_ascii=False) + "\n")

        save(before_after(against, names, save, pairs, same_bench))
        print(f"\nwrote {out_path} (before_after)")
        return 0
    results = dict(previous.get("results", {}))
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        started = time.perf_counter()
        results[name] = importlib.import_module(f"bench.bench_{name}").run()
        results[name]["_seconds"] = round(time.perf_counter() - started, 1)
    # Everything recorded earlier stays (other benchmarks, kept side-by-side runs): running one
    # benchmark had dropped every top-level record but `results` and `before_after`.
    doc = {
        **previous,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": results,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
