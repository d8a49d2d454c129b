"""A batch's ``created`` custody, main's way against taxii22's, in one process: a
``CustodyRecord`` per item, its digest and ``add_custody_many`` (A), against one
``CreatedCustody``, its digests and ``add_created_custody`` (B). Batches of 100 into an
in-memory SQLite store, A and B in turns; prints the CPU per item of each and B over A. Not a
test, not part of ``python -m bench``.

    PYTHONPATH=src python bench/created_custody_ab.py
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa

from gsomia.core.custody import CreatedCustody, CustodyRecord, record_bytes
from gsomia.core.labels import SecurityLabel
from gsomia.shell.store import SqlRepository
from gsomia.shell.store._tables import metadata

LABEL = SecurityLabel("JPN", "秘", frozenset({"KOR", "JPN"}), "dprk-missile",
                      policy="gsomia-2016", created=datetime.now(UTC))
LABEL_BYTES = record_bytes(LABEL.to_json())


def _records(repo: SqlRepository, keys: list[tuple[str, str]], now: datetime) -> list[str]:
    records = [CustodyRecord(i, v, "created", "JPN", LABEL, LABEL, now,
                             agreement=LABEL.policy).knowing(LABEL_BYTES) for i, v in keys]
    digests = [r.digest() for r in records]
    repo.add_custody_many([(r, 5) for r in records])
    return digests


def _created(repo: SqlRepository, keys: list[tuple[str, str]], now: datetime) -> list[str]:
    batch = CreatedCustody("JPN", now, [(i, v, LABEL, LABEL_BYTES) for i, v in keys])
    digests = batch.digests()
    repo.add_created_custody(batch, seq=5)
    return digests


def main() -> None:
    engine = sa.create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.connect() as conn:
        repo = SqlRepository(conn)
        spent = {"A": 0.0, "B": 0.0}
        count = 0
        for r in range(300):
            ways = (("A", _records), ("B", _created))
            for name, way in ways if r % 2 else ways[::-1]:
                keys = [(f"indicator--{uuid.uuid4()}", "2024-03-01T00:00:00.000Z")
                        for _ in range(100)]
                started = time.process_time()
                way(repo, keys, datetime.now(UTC))
                spent[name] += time.process_time() - started
            count += 100
        same = [("indicator--1", "2024-03-01T00:00:00.000Z")]
        at = datetime(2024, 3, 1, tzinfo=UTC)
        assert _records(repo, same, at) == _created(repo, same, at)
    print(f"A {spent['A'] / count * 1e6:.2f} µs per item, B {spent['B'] / count * 1e6:.2f}; "
          f"B over A ×{spent['B'] / spent['A']:.3f}")


if __name__ == "__main__":
    main()
