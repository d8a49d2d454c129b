"""The store's other reads of items by type in seq order, A/B in one process (thread CPU,
median of 7), on a store's own schema holding N items of mixed types (a quarter notes):

- ``items_stored_after`` (the sensor player's read of its centre's warnings after a mark):
  ``type = ?`` (SQLite, with no statistics, reads it by ix_items_type: every note held,
  then sorts) against ``+type`` (ix_items_seq's range after the mark), as the centre's read
  (finalreview28b, bench/centre_read_ab.py);
- ``contents_held`` (every note, once at the end of a federated scenario): ``type = ?``
  against ``+type`` (every item by ix_items_seq) and against ``type = ?`` with an index on
  (type, seq) made for the comparison only (no sort): whether a migration would pay.

    PYTHONPATH=$PWD/src:$PWD python -m bench.type_reads_ab [N ...]
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from gsomia.shell import store as st

TYPES = ("note", "indicator", "sighting", "report")


def _store(path: Path, n: int) -> None:
    store = st.Store(f"sqlite:///{path}")
    with store.engine.begin() as conn:
        conn.execute(st.items.insert(), [{
            "id": f"x--{i}", "version": "v", "type": TYPES[i % 4],
            "originator": "KOR" if i % 3 else "JPN", "content": b"x" * 1500, "label": b"{}",
            "binding": b"b", "added_at": datetime.now(UTC), "seq": i} for i in range(n)])
        conn.exec_driver_sql(
            f"INSERT INTO audit_state (id, size, frontier) VALUES (1, {n + 5}, x'00')")
    store.dispose()


def alternated_ms(db: sqlite3.Connection, ways: dict[str, str]) -> dict[str, float]:
    """Each way's thread CPU in ms, the median of 7 rounds in which the ways take turns;
    every way must answer the same rows (centre_read_ab's reads too)."""
    took: dict[str, list[float]] = {k: [] for k in ways}
    rows: dict[str, list[object]] = {}
    for _ in range(7):
        for way, sql in ways.items():
            start = time.thread_time_ns()
            rows[way] = db.execute(sql).fetchall()
            took[way].append((time.thread_time_ns() - start) / 1e6)
    first = next(iter(rows.values()))
    assert all(r == first for r in rows.values())
    return {k: sorted(v)[3] for k, v in took.items()}


def _plan(db: sqlite3.Connection, sql: str) -> str:
    return " | ".join(str(r[-1]) for r in db.execute("EXPLAIN QUERY PLAN " + sql))


def main(sizes: list[int]) -> None:
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="type-reads-ab-") as folder:
            path = Path(folder) / "node.db"
            _store(path, n)
            db = sqlite3.connect(path)
            for mark in (n - 10, n - 400, n // 2):
                where = f"seq > {mark} AND originator = 'KOR'"
                ways = {
                    "before": f"SELECT id, content FROM items WHERE {where} AND type = 'note' "
                              "ORDER BY seq",
                    "after": f"SELECT id, content FROM items WHERE {where} AND +type = 'note' "
                             "ORDER BY seq"}
                t = alternated_ms(db, ways)
                print(f"items_stored_after, items {n}, mark {mark}: before {t['before']:.3f} "
                      f"ms, after {t['after']:.3f} ms, x{t['after'] / t['before']:.3f}")
                for way, sql in ways.items():
                    print(f"  {way}: {_plan(db, sql)}")
            held = {"before": "SELECT originator, content, added_at FROM items WHERE "
                              "type = 'note' ORDER BY seq",
                    "plus": "SELECT originator, content, added_at FROM items WHERE "
                            "+type = 'note' ORDER BY seq"}
            t = alternated_ms(db, held)
            db.execute("CREATE INDEX ix_bench_type_seq ON items (type, seq)")
            t["index"] = alternated_ms(db, {"index": held["before"]})["index"]
            print(f"contents_held, items {n}: type = ? {t['before']:.3f} ms, +type "
                  f"{t['plus']:.3f} ms (x{t['plus'] / t['before']:.3f}), (type, seq) index "
                  f"{t['index']:.3f} ms (x{t['index'] / t['before']:.3f})")
            print(f"  index: {_plan(db, held['before'])}")
            db.close()


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [2000, 20000])
