"""SQLite's checkpoint behind the commits (``Store.checkpoint_behind``, a long-running node
process): a commit no longer copies the write-ahead log into the database file itself, and
the checkpointer's thread does, so that the file alone holds what was committed."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gsomia.shell.node import Node
from gsomia.shell.store import _Checkpointer

pytestmark = pytest.mark.timeout(60)  # a checkpointer that never finishes hangs the close


def test_the_commits_pages_reach_the_database_file_behind_the_commit(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]],
        now: datetime, tmp_path: Path) -> None:
    from gsomia.service import handlers

    node = node_factory("JPN")
    node.store.checkpoint_behind()
    with node.store.engine.connect() as conn:  # the commit's own checkpoint is the backstop
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == \
            _Checkpointer.BACKSTOP
    label = handlers.LabelRequest("極秘", ("JPN",), "dprk-missile")
    published = handlers.publish_many(
        node.uow(), keys=node.keys, catalogue=node.catalogue,
        entries=[(make_indicator(n), label) for n in range(20)], now=now)
    checkpointer = node.store._checkpointer
    assert checkpointer is not None
    checkpointer.flush()
    assert checkpointer.last is not None
    busy, logged, copied = checkpointer.last
    assert busy == 0 and logged > 0 and copied == logged
    # The database file alone, without its log, holds the commit.
    alone = tmp_path / "alone.db"
    shutil.copyfile(node.folder / "node.db", alone)
    db = sqlite3.connect(alone)
    try:
        ids = {row[0] for row in db.execute("SELECT id FROM items")}
    finally:
        db.close()
    assert {p.item_id for p in published} <= ids
    node.close()
    assert not checkpointer._thread.is_alive()


def test_the_next_checkpoint_waits_for_about_a_checkpoints_worth_of_pages() -> None:
    checkpointer = _Checkpointer.__new__(_Checkpointer)  # the arithmetic alone, no thread
    checkpointer._every, checkpointer._quiet = 0.5, 5.0
    # A light load (100 pages in a second): at most QUIET apart, not every 0.5 s.
    assert checkpointer._pause(100, 1.0) == 5.0
    # PAGES pages in 2 s: the next in about 2 s.
    assert checkpointer._pause(_Checkpointer.PAGES, 2.0) == pytest.approx(2.0)
    # An ingest (10,000 pages a second): as often as before, never more.
    assert checkpointer._pause(10_000, 1.0) == 0.5
    assert checkpointer._pause(0, 1.0) == 5.0


def test_a_flush_waits_out_no_pause_between_checkpoints(tmp_path: Path) -> None:
    import time

    path = tmp_path / "wal.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (v INTEGER)")
    checkpointer = _Checkpointer(str(path), every=30.0, quiet=30.0)
    try:
        db.execute("INSERT INTO t VALUES (1)")
        checkpointer.committed()
        checkpointer.flush()  # the first: at once
        db.execute("INSERT INTO t VALUES (2)")
        checkpointer.committed()
        start = time.monotonic()
        checkpointer.flush()  # the thread sits in its 30 s pause: the flush cuts it short
        assert time.monotonic() - start < 10.0
        assert checkpointer.last is not None and checkpointer.last[0] == 0
    finally:
        checkpointer.close()
        db.close()
    assert not checkpointer._thread.is_alive()
