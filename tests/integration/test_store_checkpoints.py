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
from gsomia.shell.store._store import _Checkpointer

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
