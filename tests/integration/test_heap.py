"""A process that opens a node takes its start-up objects out of full garbage collections.

A full collection walks every object the collector tracks: with the imported stack and an
open node that is about 100,000 objects, ≈50 ms during which every thread of the process
stands still (a delivery waiting on it waits too: the tail of the exchange bench's light
load). Opened in a fresh process, as ``gsomia node run`` or a publishing tool opens it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

PROBE = """
import gc, json, sys
from gsomia import bootstrap
node = bootstrap.open_node(sys.argv[1])
print(json.dumps({"frozen": gc.get_freeze_count(), "walked": len(gc.get_objects())}))
node.close()
"""


def test_a_full_collection_after_opening_a_node_walks_only_what_came_after(
        tmp_path: Path, gsomia: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    folder = tmp_path / "jpn"
    made = gsomia("node", "init", "--party", "JPN", "--dir", str(folder))
    assert made.returncode == 0, made.stderr
    probe = subprocess.run([sys.executable, "-c", PROBE, str(folder)], capture_output=True,
                           text=True, timeout=120, check=False)
    assert probe.returncode == 0, probe.stderr
    heap = json.loads(probe.stdout)
    # Frozen: the modules and the open node, out of the collector's reach; what a full
    # collection still walks is a small part of that.
    assert heap["frozen"] > 10 * heap["walked"], heap
