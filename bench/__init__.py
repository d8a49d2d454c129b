"""Benchmarks: ``make bench`` runs every ``bench_*.py`` module's ``run()``.

A benchmark is named by its module (``sensors`` for ``bench_sensors.py``), or by one part of
it (``sensors:report_to_partner``) when the module lists its parts in ``PARTS``.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# Every node a benchmark starts stops when the process running it ends, even killed: a bench
# stopped mid-run left its federation serving (and loading the machine for the next one).
# Named here, not imported: side by side, a reference older than it runs these modules.
os.environ["GSOMIA_STOP_WITH"] = str(os.getpid())


def known() -> list[str]:
    """The modules that can be named."""
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def unknown(name: str) -> str | None:
    """Why ``name`` names no benchmark here (with what would), or None when it does."""
    module, _, part = name.partition(":")
    if module not in known():
        return f"no benchmark {module!r}; known: {', '.join(known())}"
    if not part:
        return None
    parts = getattr(importlib.import_module(f"bench.bench_{module}"), "PARTS", {})
    if part not in parts:
        return (f"{module!r} has no part {part!r}; "
                + (f"its parts: {', '.join(parts)}" if parts else "it runs only whole"))
    return None


def figures_of(name: str) -> dict[str, Any]:
    """Run the benchmark ``name`` (a module, or ``module:part``) and give its figures; a
    part's figures are given under the part's name, as the whole module gives them."""
    module, _, part = name.partition(":")
    bench = importlib.import_module(f"bench.bench_{module}")
    if not part:
        figures: dict[str, Any] = bench.run()
        return figures
    figures = {part: bench.PARTS[part]()}
    print(part, json.dumps(figures[part]), flush=True)  # as the whole module prints each part
    return figures


def save_record(key: str, record: dict[str, Any]) -> None:
    """Keep ``record`` under ``key`` in ``results/latest.json``, stamped with the time (an A/B
    script's figures beside the benchmarks'); the file's own records are refused."""
    from datetime import UTC, datetime

    if key in {"machine", "measured_at", "results", "before_after"}:
        raise SystemExit(f"{key}: a reserved record of latest.json")
    path = HERE / "results" / "latest.json"
    saved = json.loads(path.read_text())
    saved[key] = {"measured_at": datetime.now(UTC).isoformat(timespec="seconds"), **record}
    path.write_text(json.dumps(saved, indent=2, ensure_ascii=False) + "\n")
