"""The two forms of a TAXII read's audit event side by side, in one process: the event
listing every item read (written before hygiene16, still verified) and the sealed one (the
Merkle root of salted entries, the entries beside it in the row). CPU per item read to
build the event and its stored text, and to verify the row, over 15 alternated rounds, for
pages of 10 and 1,000. Not a test, not part of ``python -m bench``:

    PYTHONPATH=src python bench/read_leaf_ab.py
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

from gsomia.core.audit import AuditEvent, AuditKind, AuditRecord, stored_details, verify_log

NOW = datetime(2024, 3, 1, 9, tzinfo=UTC)
VERSION = "2024-03-01T08:00:00.000Z"
Form = Callable[[list[tuple[str, str]]], tuple[AuditEvent, str]]


def listing(page: list[tuple[str, str]]) -> tuple[AuditEvent, str]:
    event = AuditEvent(0, AuditKind.ACCESS_GRANTED, NOW, "kim", details={
        "via": "taxii:objects", "clearance": "秘", "items": [list(g) for g in page]})
    return event, stored_details(event)


def sealed(page: list[tuple[str, str]]) -> tuple[AuditEvent, str]:
    salts = os.urandom(16 * len(page)).hex()  # as service.taxii writes it
    event = AuditEvent(0, AuditKind.ACCESS_GRANTED, NOW, "kim", details={
        "via": "taxii:objects", "clearance": "秘",
        "entries": [{"id": i, "version": v, "salt": salts[32 * n:32 * n + 32]}
                    for n, (i, v) in enumerate(page)]})
    return event, stored_details(event)


def build_us(form: Form, page: list[tuple[str, str]], reps: int) -> float:
    started = time.process_time()
    for _ in range(reps):
        form(page)
    return (time.process_time() - started) / reps / len(page) * 1e6


def verify_us(form: Form, page: list[tuple[str, str]], reps: int) -> float:
    event, text = form(page)
    row = {**AuditRecord.of(event).to_json(), "details": json.loads(text)}
    assert verify_log([row]).ok
    started = time.process_time()
    for _ in range(reps):
        verify_log([row])
    return (time.process_time() - started) / reps / len(page) * 1e6


def main() -> None:
    for size in (10, 1000):
        page = [(f"indicator--{n:08d}-0000-4000-8000-000000000000", VERSION)
                for n in range(size)]
        reps = max(5, 5000 // size)
        figures: dict[str, list[float]] = {}
        for _ in range(15):
            for name, form in (("listing", listing), ("sealed", sealed)):
                figures.setdefault(f"build {name}", []).append(build_us(form, page, reps))
                figures.setdefault(f"verify {name}", []).append(verify_us(form, page, reps))
        for what in ("build", "verify"):
            old = statistics.median(figures[f"{what} listing"])
            new = statistics.median(figures[f"{what} sealed"])
            print(f"page of {size}, {what} per item read: listing {old:.2f} µs, sealed "
                  f"{new:.2f} µs, ratio {new / old:.2f}")


if __name__ == "__main__":
    main()
