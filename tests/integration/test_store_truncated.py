"""The host's disk is not trusted: a database file cut short under a running store must not
kill the node's process.

A store that maps its SQLite file into memory (``PRAGMA mmap_size``) dies by SIGBUS when it
touches a mapped page the file no longer has (SQLite's documentation says so): no error to
answer with, no audit of what happened, every request in flight lost with the process. The
store's connections read through system calls instead, where a short file is an I/O error
that SQLite reports and the caller turns into a refusal.

The read runs in a child process, which is what a SIGBUS would end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

# The child: a store's engine (its connections' settings as a node's) over a file of a few
# megabytes, a read begun, the file cut to two pages by someone else, the read continued.
CHILD = textwrap.dedent("""
    import os, sys
    import sqlalchemy as sa
    from gsomia.shell import store

    path = sys.argv[1]
    engine = store.make_engine("sqlite:///" + path)
    with engine.connect().execution_options(gsomia_write=True) as conn:
        conn.exec_driver_sql("CREATE TABLE items (n INTEGER PRIMARY KEY, content BLOB)")
        conn.exec_driver_sql("INSERT INTO items (content) SELECT randomblob(3000) FROM "
                             "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 "
                             "FROM c WHERE x < 1500) SELECT x FROM c)")
        conn.commit()
    raw = engine.raw_connection()  # out of any transaction: the rows into the file itself
    raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw.close()
    engine.dispose()  # a connection whose page cache holds none of the rows: it reads them
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT n, content FROM items ORDER BY n")
        first = rows.fetchmany(10)
        os.truncate(path, 8192)
        try:
            rest = rows.fetchall()
        except sa.exc.DatabaseError as exc:
            print("refused:", type(exc.orig).__name__, exc.orig)
        else:
            print("read", len(first) + len(rest), "rows")
    engine.dispose()
""")


def test_a_database_file_cut_short_under_a_read_is_an_error_not_a_crash(
        tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[2] / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "node.db")], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != -signal.SIGBUS, "the store's process died by SIGBUS"
    assert done.returncode == 0, done.stderr
    # Fail closed: the rows the file no longer holds are an error, never a short answer.
    assert done.stdout.startswith("refused:"), done.stdout
