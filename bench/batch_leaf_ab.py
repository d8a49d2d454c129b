"""The two forms of a TAXII batch leaf side by side, in one process: the leaf listing every
item (written before hygiene15, still read and verified) and the sealed leaf (its entries'
Merkle root, the entries beside it). CPU per item to build the event and its stored text,
and to verify the row, over 15 alternated rounds of 100-item batches. Not a test, not part
of ``python -m bench``:

    PYTHONPATH=src python bench/batch_leaf_ab.py
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

from gsomia.core.audit import (
    AuditEvent,
    AuditKind,
    AuditRecord,
    leaf_details,
    stored_details,
    verify_log,
)
from gsomia.core.labels import SecurityLabel

N = 100
NOW = datetime(2024, 3, 1, 9, tzinfo=UTC)
LABEL = SecurityLabel("JPN", "秘", frozenset({"JPN", "KOR"}), "dprk-missile").to_json()
IDS = [f"indicator--{n:08d}-0000-4000-8000-000000000000" for n in range(N)]
HASHES = [os.urandom(32).hex() for _ in range(N)]
CUSTODY = [os.urandom(32).hex() for _ in range(N)]
VERSION = "2024-03-01T08:00:00.000Z"
Form = Callable[[], tuple[AuditEvent, str]]


def listing() -> tuple[AuditEvent, str]:
    entries = [{"id": IDS[n], "version": VERSION, "type": "indicator",
                "content_hash": HASHES[n], "label": 0} for n in range(N)]
    event = AuditEvent(7, AuditKind.ITEMS_PUBLISHED, NOW, "operator", details={
        "originator": "JPN", "added_at": "x", "key": "k" * 64,
        "labels": [{"label": LABEL, "marking": "SECRET//REL TO JPN, KOR",
                    "national_marking": "秘"}],
        "items": entries, "records": {"custody": CUSTODY}})
    return event, leaf_details(event)


def sealed() -> tuple[AuditEvent, str]:
    salts = os.urandom(16 * N).hex()
    entries = [{"id": IDS[n], "version": VERSION, "type": "indicator",
                "content_hash": HASHES[n], "custody": CUSTODY[n],
                "salt": salts[32 * n:32 * n + 32]} for n in range(N)]
    event = AuditEvent(7, AuditKind.ITEMS_PUBLISHED, NOW, "operator", details={
        "originator": "JPN", "added_at": "x", "key": "k" * 64, "entries": entries})
    return event, stored_details(event)


def build_us(form: Form, reps: int = 50) -> float:
    started = time.process_time()
    for _ in range(reps):
        form()
    return (time.process_time() - started) / reps / N * 1e6


def verify_us(form: Form, reps: int = 50) -> float:
    event, text = form()
    row = AuditRecord.of(AuditEvent(0, event.kind, event.at, event.actor,
                                    details=json.loads(text))).to_json()
    row["details"] = json.loads(text)
    assert verify_log([row]).ok
    started = time.process_time()
    for _ in range(reps):
        verify_log([row])
    return (time.process_time() - started) / reps / N * 1e6


def main() -> None:
    figures: dict[str, list[float]] = {"build listing": [], "build sealed": [],
                                       "verify listing": [], "verify sealed": []}
    for _ in range(15):
        figures["build listing"].append(build_us(listing))
        figures["build sealed"].append(build_us(sealed))
        figures["verify listing"].append(verify_us(listing))
        figures["verify sealed"].append(verify_us(sealed))
    for what in ("build", "verify"):
        old = statistics.median(figures[f"{what} listing"])
        new = statistics.median(figures[f"{what} sealed"])
        print(f"{what} per item: listing {old:.2f} µs, sealed {new:.2f} µs, "
              f"ratio {new / old:.2f}")


if __name__ == "__main__":
    main()
