"""The cost of TAXII's look-up for new versions of items the node's own tools made
(``kept_as_is``, asked in the batch's transaction of the ids held: redteam16, moved into the
transaction by taxii18), side by side in one process: a real JPN node, 500-note envelopes
posted with and without the look-up, alternated over 6 rounds; CPU per item (median). Not a
test, not part of ``python -m bench``:

    PYTHONPATH=src python bench/taxii_node_made_ab.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gsomia.bootstrap import taxii_service
from gsomia.core import stix
from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import Person
from gsomia.service import taxii
from gsomia.shell.catalogue import load_catalogue
from gsomia.shell.node import init_node

N, ROUNDS = 500, 6
TAXII = "application/taxii+json;version=2.1"


def main() -> None:
    shipped = load_catalogue()
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="node-made-ab-") as tmp:
        node = init_node(Path(tmp) / "jpn", "JPN", catalogue=shipped, now=now)
        service, store = taxii_service(node)
        label = SecurityLabel("JPN", "秘", frozenset({"JPN", "KOR", "USA"}), "dprk-missile")
        mark = stix.label_marking(label, label.english_marking(shipped.schemes), created=now)
        poster = Person("aiko", "JPN", "機密", frozenset({"dprk-missile"}))
        stamp = now.strftime("%Y-%m-%dT%H:%M:%S.000Z")

        def envelope() -> dict[str, Any]:
            return {"objects": [mark] + [
                {"type": "note", "spec_version": "2.1", "id": f"note--{uuid.uuid4()}",
                 "created": stamp, "modified": stamp, "content": "x",
                 "object_refs": [stix.IDENTITY_ID], "object_marking_refs": [mark["id"]]}
                for _ in range(N)]}

        looked_up = taxii._node_made_kept
        cpu: dict[str, list[float]] = {"with": [], "without": []}
        try:
            for n in range(ROUNDS):
                for arm in ("with", "without"):
                    # None: the store asks nothing (the look-up's whole cost)
                    kept = looked_up if arm == "with" else None
                    taxii._node_made_kept = kept  # type: ignore[assignment]
                    body = envelope()
                    began = time.process_time()
                    out = service.add(poster, service.collection_id, body, TAXII, now,
                                      f"ab-{n}-{arm}")
                    cpu[arm].append((time.process_time() - began) / N * 1000)
                    assert out["success_count"] == N + 1, out["failures"][:1]
        finally:
            taxii._node_made_kept = looked_up
            store.close()
            node.close()
    for arm, values in cpu.items():
        print(f"{arm:8s} CPU ms/item (median of {ROUNDS}): {statistics.median(values):.4f}")
    ratio = statistics.median(cpu["with"]) / statistics.median(cpu["without"])
    print(f"ratio with/without: {ratio:.3f}")


if __name__ == "__main__":
    main()
