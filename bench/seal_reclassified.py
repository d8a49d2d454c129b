"""What withdraw29 adds to every seal and every publish of the warning centre, in thread
CPU on one SQLite node store: the seal's probe of the classification notices for a batch's
ids (256 ids; withdraw29's ``Repository.reclassified``, which stop 29's merge of hunt29
replaced by hunt29's ``Repository.notices_of``, the probe timed here since) and the centre's
read of the notes it fed that a notice re-marked (``Repository.reclassified_up_to``), with
no notice held (as in nearly every run) and with one.

    PYTHONPATH=$PWD/src:$PWD python -m bench.seal_reclassified
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gsomia.shell.catalogue import load_catalogue
from gsomia.shell.node import init_node

RUNS = 2000


def _ms(call: Callable[[], Any]) -> float:
    for _ in range(50):
        call()
    start = time.thread_time()
    for _ in range(RUNS):
        call()
    return (time.thread_time() - start) / RUNS * 1e3


def main() -> None:
    ids = [f"note--{i:08d}-0000-4000-8000-000000000000" for i in range(256)]
    with tempfile.TemporaryDirectory() as d:
        node = init_node(Path(d) / "jpn", "JPN", catalogue=load_catalogue(),
                         now=datetime(2024, 3, 1, tzinfo=UTC))
        try:
            with node.store.repository() as repo:
                seal = _ms(lambda: repo.notices_of(ids))
                publish = _ms(lambda: repo.reclassified_up_to(10**9, stix_type="note"))
        finally:
            node.close()
    print(f"seal's probe (256 ids, no notice held): {seal:.3f} ms CPU a batch")
    print(f"centre's read at publish (no notice held): {publish:.3f} ms CPU a publish")


if __name__ == "__main__":
    main()
