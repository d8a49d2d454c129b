"""A node process's start beside its own writers, and its stop (test_sensor_partner_down's
failures under load, partnerdown23): the statuses table is made under the write lock, the
background loops are told to stop all at once, and as the server begins to stop."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from gsomia.shell.store import make_engine
from gsomia.shell.taxii_store import create_statuses


def test_the_statuses_table_is_made_while_another_connection_writes(tmp_path: Path) -> None:
    """``node run``'s sender and centre write before its API makes the table: made in a read
    transaction, the CREATE was refused at once (``database is locked``), and the node
    exited at its first start."""
    path = tmp_path / "node.db"
    engine = make_engine(f"sqlite:///{path}")
    holding = threading.Event()

    def writer() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE outbox_like (x)")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO outbox_like VALUES (1)")
        holding.set()
        time.sleep(0.5)
        conn.execute("COMMIT")
        conn.close()

    other = threading.Thread(target=writer)
    other.start()
    try:
        assert holding.wait(30)
        create_statuses(engine)
    finally:
        other.join()
    with engine.connect() as conn:
        assert sa.inspect(conn).has_table("taxii_statuses")
        assert conn.exec_driver_sql("SELECT x FROM outbox_like").scalar() == 1
    create_statuses(engine)  # made once: a restart finds it
    engine.dispose()
