"""The warning centre's read of the notes after its mark, A/B in one process (thread CPU,
median of 7): as 3fbc650's parent wrote it (``type = ?``: SQLite, with no statistics, reads
it by ix_items_type, every note held, then sorts) and as now (``+type``: ix_items_seq's
range after the mark), on a store's own schema holding N items, half of them notes.

    PYTHONPATH=$PWD/src:$PWD python -m bench.centre_read_ab [N ...]
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench.type_reads_ab import alternated_ms
from gsomia.shell import store as st

COLUMNS = "seq, originator, content, added_at, label"


def _store(path: Path, n: int) -> None:
    store = st.Store(f"sqlite:///{path}")
    with store.engine.begin() as conn:
        conn.execute(st.items.insert(), [{
            "id": f"note--{i}", "version": "v", "type": "note" if i % 2 else "indicator",
            "originator": "KOR", "content": b"x" * 1500, "label": b"{}", "binding": b"b",
            "added_at": datetime.now(UTC), "seq": i} for i in range(n)])
        conn.exec_driver_sql(
            f"INSERT INTO audit_state (id, size, frontier) VALUES (1, {n + 5}, x'00')")
    store.dispose()


def main(sizes: list[int]) -> None:
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="centre-read-ab-") as folder:
            path = Path(folder) / "node.db"
            _store(path, n)
            db = sqlite3.connect(path)
            for mark in (n - 10, n // 2, 0):
                where = f"seq > {mark} AND CAST(seq AS BIGINT) = seq"
                ways = {
                    "before": f"SELECT {COLUMNS} FROM items WHERE {where} AND type = 'note' "
                              "ORDER BY seq LIMIT 500",
                    "after": f"SELECT {COLUMNS} FROM items WHERE {where} AND seq < (SELECT "
                             "size FROM audit_state WHERE id = 1) AND +type = 'note' "
                             "ORDER BY seq LIMIT 500"}
                took = alternated_ms(db, ways)
                a, b = took["before"], took["after"]
                rows = len(db.execute(ways["after"]).fetchall())  # untimed: the count only
                print(f"items {n}, mark {mark}: {rows} rows, "
                      f"before {a:.3f} ms, after {b:.3f} ms, x{b / a:.3f}")
            db.close()


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [2000, 20000])
