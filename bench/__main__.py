"""Run every benchmark module (or those named on the command line) and write the figures.

    python -m bench [policy audit sensors:report_to_partner ...]
    python -m bench --against REV [--pairs N] [--same-bench] [--save-as KEY] [policy ...]
                                   # before/after, side by side (bench/before_after.py),
                                   # kept as before_after and under KEY (default: one
                                   # named from REV's commit and the benchmarks)


Each ``bench/bench_<name>.py`` has ``run() -> dict``; results go to bench/results/latest.json
together with the machine they were measured on. ``NAME:PART`` runs one part of a module that
lists its parts in ``PARTS`` (its figures replace that part's alone).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

from bench import figures_of, known, unknown

HERE = Path(__file__).resolve().parent


USAGE = ("usage: python -m bench --against REV [--pairs N] [--same-bench] [--save-as KEY] "
         "[names ...]")
# Top-level records of latest.json that a side-by-side run must never be saved over.
RESERVED = {"machine", "measured_at", "results", "before_after"}


def main(argv: list[str]) -> int:
    if argv[:1] in (["-h"], ["--help"]):
        print((__doc__ or "").strip())
        return 0
    against = None
    if argv[:1] == ["--against"]:
        if len(argv) < 2:
            print(USAGE, file=sys.stderr)
            return 2
        against, argv = argv[1], argv[2:]
    pairs, same_bench, save_as = 1, False, None
    while against is not None and argv[:1] in (["--pairs"], ["--same-bench"], ["--save-as"]):
        if argv[0] == "--same-bench":
            same_bench, argv = True, argv[1:]
        elif argv[0] == "--pairs":
            if len(argv) < 2 or not argv[1].isdigit() or int(argv[1]) < 1:
                print(USAGE + " (N >= 1)", file=sys.stderr)
                return 2
            pairs, argv = int(argv[1]), argv[2:]
        else:
            if len(argv) < 2 or not argv[1] or argv[1] in RESERVED:
                print(USAGE + f" (KEY: a new name, not one of {sorted(RESERVED)})",
                      file=sys.stderr)
                return 2
            save_as, argv = argv[1], argv[2:]
    names = argv or known()
    for name in names:
        why = unknown(name)
        if why is not None:
            print(f"{USAGE}\n{why}", file=sys.stderr)
            return 2
    out_path = HERE / "results" / "latest.json"
    previous = json.loads(out_path.read_text()) if out_path.exists() else {}
    if against is not None:
        from bench.before_after import run as before_after

        keys: list[str] = []

        def save(doc: dict[str, object]) -> None:
            # The newest run is ``before_after``, and it is kept under a key of its own too
            # (``--save-as KEY``, or one named from the reference and the benchmarks), so a
            # later run does not lose a quiet comparison.
            key = save_as or f"before_after_{str(doc['against'])[:10]}_{'+'.join(names)}"
            previous["before_after"] = previous[key] = doc
            keys[:] = ["before_after", key]
            out_path.write_text(json.dumps(previous, indent=2, ensure_ascii=False) + "\n")

        save(before_after(against, names, save, pairs, same_bench))
        print(f"\nwrote {out_path} ({' and '.join(keys)})")
        return 0
    results = dict(previous.get("results", {}))
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        started = time.perf_counter()
        figures = figures_of(name)
        module, _, part = name.partition(":")
        # A part's figures replace that part's alone: the module's other parts stay.
        results[module] = {**results.get(module, {}), **figures} if part else figures
        results[module]["_seconds" if not part else f"_seconds_{part}"] = round(
            time.perf_counter() - started, 1)
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
