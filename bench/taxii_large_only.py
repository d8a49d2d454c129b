"""Only the second half of ``bench_taxii``: the same workload on a node holding 5,000 and on
one pre-filled with ``GSOMIA_BENCH_TAXII_LARGE`` items (default 1,000,000), both serving at
once, in turns (``bench_taxii._gsomia_large``), without the medallion and sync/batched phases
before it (about 4-6 minutes at 1,000,000, most of it the fill). Prints the figures and writes
them as JSON to the file named (``million20`` in bench/results/latest.json holds three runs).
Not part of ``python -m bench``:

    GSOMIA_BENCH_TAXII_LARGE=1000000 PYTHONPATH=src:. python bench/taxii_large_only.py OUT.json
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import bench_taxii as b


def main(out: Path) -> dict[str, Any]:
    saved = b._client_env()
    started = time.time()
    try:
        with tempfile.TemporaryDirectory(prefix="gsomia-bench-taxii-large-") as name:
            base, large = b._gsomia_large(Path(name))
    finally:
        for key, value in saved.items():
            if value is not None:
                os.environ[key] = value
    # rates: the large store's over the small one's; latencies and CPU: the small one's over
    # the large one's (1.0 = as fast or as cheap), as bench_taxii reports them
    held = {k: round(large[k] / base[k], 2) for k in ("ingest_per_s", "read_per_s")}
    held["get_p50"] = round(base["get_p50_ms"] / large["get_p50_ms"], 2)
    held["get_p99"] = round(base["get_p99_ms"] / large["get_p99_ms"], 2)
    held.update({k: round(base[k] / large[k], 2) for k in (
        "cpu_ms_per_item_ingest", "cpu_ms_per_item_read", "cpu_ms_per_get")})
    large["base"] = base
    large["rate_vs_empty"] = held
    large["load_average"] = round(os.getloadavg()[0], 1)
    large["_seconds"] = round(time.time() - started, 1)
    b._line(f"gsomia {b.N:,}", base)
    b._line(f"gsomia {b.LARGE:,}", large)
    print(json.dumps(held), flush=True)
    out.write_text(json.dumps(large, indent=1) + "\n")
    return large


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python bench/taxii_large_only.py OUT.json")
    main(Path(sys.argv[1]))
