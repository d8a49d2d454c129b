"""A sensor report's content through the two checks every node runs on it (jpnside28): its
RFC 8785 bytes (``crypto.canonical``: KOR's publish and seal, JPN's screen) and its extension
property's schema (``stix.check_extension_properties``: KOR's intake, JPN's screen). In one
process, interleaved, median thread CPU per report in us: the code of REV (default main, read
with ``git show``) against this tree's.

    PYTHONPATH=src:. python bench/report_checks_ab.py [REV]

Not a test, not part of ``python -m bench``.
"""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.receive_plan_ab import report
from gsomia.core import crypto, stix


def _at(rev: str, name: str, folder: Path) -> ModuleType:
    source = subprocess.run(["git", "show", f"{rev}:src/gsomia/core/{name}.py"],
                            capture_output=True, text=True, check=True).stdout
    path = folder / f"{name}_at_rev.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"{name}_at_rev", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _cpu(check: Callable[[Any], object], objs: list[dict[str, Any]], rounds: int = 20) -> float:
    took = []
    for _ in range(rounds):
        t = time.thread_time()
        for obj in objs:
            check(obj)
        took.append((time.thread_time() - t) / len(objs) * 1e6)
    return statistics.median(took)


def main(rev: str) -> None:
    objs = [report(i) for i in range(50)]
    with tempfile.TemporaryDirectory(prefix="report-checks-ab-") as tmp:
        old_crypto, old_stix = _at(rev, "crypto", Path(tmp)), _at(rev, "stix", Path(tmp))
        assert all(old_crypto.canonical(o) == crypto.canonical(o) for o in objs)
        pairs = [("canonical", old_crypto.canonical, crypto.canonical),
                 ("check_extension_properties", old_stix.check_extension_properties,
                  stix.check_extension_properties)]
        for name, before, after in pairs:
            a, b = [], []
            for _ in range(5):
                a.append(_cpu(before, objs))
                b.append(_cpu(after, objs))
            was, now = statistics.median(a), statistics.median(b)
            print(f"{name:28s} {rev}: {was:7.1f} us CPU  this tree: {now:7.1f} us CPU  "
                  f"{was / now:4.2f}x")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "main")
