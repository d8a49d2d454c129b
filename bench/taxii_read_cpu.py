"""Server CPU per object of a paged TAXII read, in this process, with the read's audit
event sealed (hygiene16) and, as the reference, listing every item read (the form before),
alternated round by round in one process (``TaxiiService.read`` as the API calls it, reads
audited in the call, no HTTP). Not a test, not part of ``python -m bench``:

    python bench/taxii_read_cpu.py [--rounds 8] [--held 2000] [--page 1000]

The reference swaps ``gsomia.service.taxii._append_access`` for the listing form (the
function as it was), so both run over the same node and store.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_taxii import BATCH, _gsomia_node, _indicator


def _listing(uow: Any, record: Any) -> None:
    """``_append_access`` before hygiene16: a read of several items lists them all."""
    from gsomia.core.audit import AuditKind

    kind = AuditKind.ACCESS_GRANTED if record.granted else AuditKind.ACCESS_DENIED
    details: dict[str, Any] = {"via": f"taxii:{record.endpoint}",
                               "clearance": record.person.clearance}
    item_id = item_version = None
    if len(record.granted) == 1:
        item_id, item_version = record.granted[0]
    else:
        details["items"] = [list(g) for g in record.granted]
    uow.audit.append(kind, record.at, record.person.name, item_id=item_id,
                     item_version=item_version, details=details)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--held", type=int, default=2000)
    parser.add_argument("--page", type=int, default=1000)
    args = parser.parse_args()

    from gsomia.bootstrap import collection_id, open_node, taxii_service
    from gsomia.core.taxii import TAXII_MEDIA
    from gsomia.service import taxii

    sealed = taxii._append_access
    figures: dict[str, list[float]] = {"listing": [], "sealed": []}
    with tempfile.TemporaryDirectory(prefix="gsomia-read-cpu-") as tmp:
        folder = Path(tmp) / "jpn"
        token, marking = _gsomia_node(folder)
        node = open_node(folder)
        service, store = taxii_service(node)
        person = service.authenticate(token, "bench")
        assert person is not None
        try:
            objs = [{**_indicator(n, "read"), "object_marking_refs": [marking["id"]]}
                    for n in range(args.held)]
            for i in range(0, len(objs), BATCH):
                status = service.add(person, collection_id("JPN"),
                                     {"objects": [marking, *objs[i:i + BATCH]]}, TAXII_MEDIA,
                                     datetime.now(UTC), str(uuid.uuid4()))
                assert status["failure_count"] == 0, status["failures"]
            for r in range(args.rounds + 1):
                for name, form in (("listing", _listing), ("sealed", sealed)):
                    taxii._append_access = form
                    read, cursor = 0, None
                    started = time.process_time()
                    while True:
                        params = {"limit": [str(args.page)]}
                        if cursor:
                            params["next"] = [cursor]
                        served = service.read(person, collection_id("JPN"), "objects", params,
                                              datetime.now(UTC))
                        read += len(served.rows)
                        if not served.more:
                            break
                        cursor = served.next
                    if r:  # the first round pays for imports and caches
                        figures[name].append((time.process_time() - started) / read * 1e6)
        finally:
            taxii._append_access = sealed
            store.close()
            node.close()
    old, new = statistics.median(figures["listing"]), statistics.median(figures["sealed"])
    print(f"CPU per object read, pages of {args.page}: listing {old:.1f} µs, sealed "
          f"{new:.1f} µs, ratio {new / old:.2f} (rounds: "
          + ", ".join(f"{a:.1f}/{b:.1f}" for a, b in zip(figures["listing"],
                                                           figures["sealed"], strict=True))
          + ")")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
