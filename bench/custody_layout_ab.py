"""A custody record's RFC 8785 bytes laid out by one function (custody26) against the two
layouts before it, in one process: ``core/custody.py`` of REV (default ``main``, read with
``git show``) is A, this tree's is B. For batches of 100 items, A and B in turns: the CPU
per digest of ``CreatedCustody.digests`` (one label, as a TAXII batch), and per record of
``CustodyRecord.canonical`` (a received record: provider, envelope, note); both sides' bytes
are checked equal. Not a test, not part of ``python -m bench``:

    PYTHONPATH=src:. python bench/custody_layout_ab.py [REV] [ROUNDS]   # main 600
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import gsomia.core.custody as this_tree
from gsomia.core.labels import SecurityLabel

LABEL = SecurityLabel("JPN", "秘", frozenset({"KOR", "JPN"}), "dprk-missile",
                      policy="gsomia-2016", created=datetime(2024, 3, 1, tzinfo=UTC))
LABEL_BYTES = this_tree.record_bytes(LABEL.to_json())


def custody_at(rev: str, folder: Path) -> ModuleType:
    """``gsomia.core.custody`` as it was at ``rev``, loaded beside this tree's."""
    path = folder / "custody_at_rev.py"
    path.write_bytes(subprocess.run(["git", "show", f"{rev}:src/gsomia/core/custody.py"],
                                    check=True, capture_output=True).stdout)
    spec = importlib.util.spec_from_file_location("custody_at_rev", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def digests(custody: Any, keys: list[tuple[str, str]], at: datetime) -> tuple[Any, float]:
    batch = custody.CreatedCustody("JPN", at, [(i, v, LABEL, LABEL_BYTES) for i, v in keys])
    started = time.process_time()
    out = batch.digests()
    return out, time.process_time() - started


def canonical(custody: Any, keys: list[tuple[str, str]], at: datetime) -> tuple[Any, float]:
    records = [custody.CustodyRecord(i, v, "received", "KOR", LABEL, LABEL, at, "JPN",
                                     "gsomia-2016", b"e" * 32, "relayed")
               .knowing(LABEL_BYTES) for i, v in keys]
    started = time.process_time()
    out = [r.canonical() for r in records]
    return out, time.process_time() - started


def main(argv: list[str]) -> int:
    rev = argv[0] if argv else "main"
    rounds = int(argv[1]) if len(argv) > 1 else 600
    with tempfile.TemporaryDirectory(prefix="custody-layout-") as tmp:
        sides = {"A": custody_at(rev, Path(tmp)), "B": this_tree}
        for name, way in (("digests", digests), ("canonical", canonical)):
            spent = {"A": 0.0, "B": 0.0}
            for r in range(rounds):
                keys = [(f"indicator--{uuid.uuid4()}", "2024-03-01T08:00:00.000Z")
                        for _ in range(100)]
                at = datetime(2024, 3, 1, tzinfo=UTC) + timedelta(microseconds=r)
                made = {}
                for side in ("A", "B") if r % 2 else ("B", "A"):
                    made[side], took = way(sides[side], keys, at)
                    spent[side] += took
                assert made["A"] == made["B"], f"{name}: the two layouts disagree"
            count = rounds * 100
            print(f"{name}: A ({rev}) {spent['A'] / count * 1e6:.3f} µs, B (this tree) "
                  f"{spent['B'] / count * 1e6:.3f} µs per record; B over A "
                  f"x{spent['B'] / spent['A']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
