"""Run benchmarks on two revisions side by side in one run: the reference and this tree.

    python -m bench --against REV [--pairs N] [names ...]

The reference revision is checked out with ``git worktree`` into a temporary folder; each
benchmark module then runs in a child process, on the reference's sources and on this
tree's, one after the other, so that both see the same machine load. Each numeric figure is
compared as after/before; figures whose name says which way is better (``*_per_s`` up,
``*_ms`` and ``*_seconds`` down) are flagged when they are more than ``TOLERANCE`` worse.

On a shared machine one pair says more about the load than about the code (the load moves
between the two halves, and the second half always ran second): ``--pairs N`` runs N pairs,
alternating which tree goes first, and compares the median of the N after/before ratios of
each figure (``before`` and ``after`` are then the medians of each tree's N values).

``--same-bench`` runs this tree's benchmark modules on both trees' sources (the reference's
``src`` first on the path): a benchmark changed since the reference then measures both the
same way. Without it each tree runs its own.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TOLERANCE = 0.10
# Figures of the references measured beside ours (other libraries, offered load, ratios to
# them): they are compared and shown, but they are not ours to keep from getting worse.
# Nor is a ratio of two of our own figures (``hub_over_direct_p50``): each of the two is
# compared on its own, and their quotient moves by the sum of both moves.
REFERENCE_PARTS = ("cedarpy", "medallion", "ratios", "rate_vs_empty", "offered",
                   "rfc8785_library", "stix_validator", "ed25519_", "_over_")

# A reference older than ``bench.figures_of`` runs its modules whole (``--same-bench`` gives
# it this tree's, parts included).
_CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
import importlib
try:
    from bench import figures_of
except ImportError:
    def figures_of(name):
        return importlib.import_module("bench.bench_" + name).run()
figures = figures_of(sys.argv[2])
open(sys.argv[3], "w").write(json.dumps(figures, ensure_ascii=False))
"""


def _run_in(tree: Path, name: str, bench_from: Path | None = None) -> dict[str, Any]:
    """The figures of ``bench_<name>`` on ``tree``'s sources; the module is ``bench_from``'s
    (``tree``'s own by default)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    try:
        env = {**os.environ, "PYTHONPATH": str(tree / "src")}
        subprocess.run([sys.executable, "-c", _CHILD, str(bench_from or tree), name,
                        str(out)], cwd=tree, env=env, check=True)
        figures: dict[str, Any] = json.loads(out.read_text())
        return figures
    finally:
        out.unlink(missing_ok=True)


def _compile_kernels(tree: Path) -> None:
    """Fill ``tree``'s numba cache before anything is measured there. It is not in git, so
    a fresh reference tree compiled the tracker's kernels inside its first run's nodes (~30 s
    of CPU in the measured window): its sensors figures came out 2-3 times worse for that
    alone. A short model run compiles them, as ``make kernels`` does for this tree."""
    print(f"\n=== compiling the tracker's kernels in {tree} (numba cache) ===", flush=True)
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    done = subprocess.run([sys.executable, "-m", "gsomia", "scenario", "run", "--launch",
                           "2017-08-29", "--regime", "none", "--json"], cwd=tree, env=env,
                          stdout=subprocess.DEVNULL, check=False)
    if done.returncode != 0:  # a reference without this command: its runs compile them
        print(f"  (the model run ended {done.returncode}: the kernels compile in the "
              f"measured runs)", flush=True)


def _leaves(doc: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(doc, int | float) and not isinstance(doc, bool):
        yield prefix, float(doc)


def better_when(path: str) -> str | None:
    """'up' or 'down' for our figures whose name says so; None for counts, settings and
    references."""
    last = path.rsplit(".", 1)[-1]
    if last.startswith("_") or any(part in path for part in REFERENCE_PARTS):
        return None
    if last.endswith("_per_s") or last.endswith("per_s"):
        return "up"
    # CPU per item (``cpu_ms_per_item_*``): the figure least moved by others' load.
    if last.endswith(("_ms", "_seconds", "_s")) or "_p50" in last or "_p99" in last \
            or last.startswith("cpu_ms_per_"):
        return "down"
    return None


def compare(before: dict[str, Any] | list[dict[str, Any]],
            after: dict[str, Any] | list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure of ``after`` over the same in ``before``; with lists (pairs, in order),
    the median of the pairs' ratios, so that one loaded half cannot flag or hide a figure."""
    befores = before if isinstance(before, list) else [before]
    afters = after if isinstance(after, list) else [after]
    olds = [dict(_leaves(b)) for b in befores]
    news = [dict(_leaves(a)) for a in afters]
    rows: dict[str, Any] = {}
    worse: list[str] = []
    for path in news[0]:
        way = better_when(path)
        pairs = [(o[path], n[path]) for o, n in zip(olds, news, strict=True)
                 if path in o and path in n and o[path] != 0]
        if way is None or not pairs:
            continue
        ratio = statistics.median(n / o for o, n in pairs)
        rows[path] = {"before": statistics.median(o for o, _ in pairs),
                      "after": statistics.median(n for _, n in pairs),
                      "after_over_before": round(ratio, 3)}
        if len(pairs) > 1:
            rows[path]["ratios"] = [round(n / o, 3) for o, n in pairs]
        if (way == "up" and ratio < 1 - TOLERANCE) or (way == "down" and ratio > 1 + TOLERANCE):
            worse.append(path)
    return {"figures": rows, "worse_than_tolerance": worse}


def run(against: str, names: list[str],
        save: Callable[[dict[str, Any]], None] = lambda doc: None,
        pairs: int = 1, same_bench: bool = False) -> dict[str, Any]:
    """Each benchmark on both trees, ``pairs`` times (the first tree of each pair
    alternating); ``save`` gets the document after each benchmark, so a benchmark that
    fails later loses nothing measured before it. ``same_bench``: this tree's benchmark
    modules on both."""
    with tempfile.TemporaryDirectory(prefix="gsomia-bench-ref-") as tmp:
        ref = Path(tmp) / "ref"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(ref),
                        against], check=True)
        try:
            commit = subprocess.run(["git", "-C", str(ref), "rev-parse", "HEAD"], check=True,
                                    capture_output=True, text=True).stdout.strip()
            _compile_kernels(ref)
            doc: dict[str, Any] = {"against": commit, "tolerance": TOLERANCE, "pairs": pairs,
                                   "same_bench": same_bench, "benchmarks": {}}
            for name in names:
                before: list[dict[str, Any]] = []
                after: list[dict[str, Any]] = []
                for pair in range(pairs):
                    order = [(ref, before), (ROOT, after)]
                    for tree, out in order if pair % 2 == 0 else order[::-1]:
                        which = f"reference {commit[:10]}" if tree == ref else "this tree"
                        print(f"\n=== {name}: {which} (pair {pair + 1}/{pairs}) ===",
                              flush=True)
                        out.append(_run_in(tree, name, ROOT if same_bench else None))
                doc["benchmarks"][name] = compare(before, after)
                save(doc)
                for path in doc["benchmarks"][name]["worse_than_tolerance"]:
                    row = doc["benchmarks"][name]["figures"][path]
                    print(f"  worse: {name}.{path} {row['before']} -> {row['after']}")
            return doc
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(ref)],
                           check=False)
