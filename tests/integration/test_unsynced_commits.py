"""Commits that wait for no disk sync (``Store.uow(synced=False)``, the sender's settle of
a partner's receipts): the connection goes back to ``synchronous=FULL`` for the commits
after; no copy of a head beside the database, and no head read from it, is ever ahead of
what the disk holds (after a power cut, the copy or a partner would show a rollback that
never happened)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.service import handlers
from gsomia.shell.node import Node
from gsomia.shell.store import Store, read_external_head

LABEL = handlers.LabelRequest("極秘", ("JPN",), "dprk-missile")


def _publish(node: Node, obj: dict[str, Any], now: datetime, *, synced: bool) -> int:
    """Publish ``obj`` in a unit of work synced or not; the log's size after it."""
    handlers.publish_many(node.store.uow(synced=synced), keys=node.keys,
                          catalogue=node.catalogue, entries=[(obj, LABEL)], now=now)
    with node.store.engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT max(size) FROM tree_heads").scalar() or 0)


def _copy_size(node: Node) -> int:
    head = read_external_head(node.folder / "tree-head.json")
    return -1 if head is None else head.size


def _synchronous(node: Node) -> set[int]:
    """The ``synchronous`` level of the connections the pool hands out first (the last
    used first: the unit of work's)."""
    conns = [node.store.engine.connect() for _ in range(3)]
    try:
        return {int(c.exec_driver_sql("PRAGMA synchronous").scalar() or 0) for c in conns}
    finally:
        for c in conns:
            c.close()


def test_no_head_is_copied_or_handed_out_ahead_of_the_disk(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]],
        now: datetime, monkeypatch: pytest.MonkeyPatch) -> None:
    # One node for all of it (a node's start is most of the cost).
    node = node_factory("JPN")
    serial = itertools.count()
    synced = _publish(node, make_indicator(next(serial)), now, synced=True)
    assert _copy_size(node) == synced
    unsynced = _publish(node, make_indicator(next(serial)), now, synced=False)
    assert unsynced > synced
    assert _copy_size(node) == synced, "a head over pages not yet synced was copied"
    assert _synchronous(node) == {2}, "a connection went back to the pool unsynced"

    synced_paths: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced_paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with node.store.reader() as reader:
        head = reader.latest_head()
    assert head is not None and head.size == unsynced
    assert any(p.endswith("-wal") for p in synced_paths), \
        "the head of an unsynced commit was handed out before the log was synced"

    def head_read_syncs() -> bool:
        synced_paths.clear()
        with node.store.reader() as reader:
            assert reader.latest_head() is not None
        return any(p.endswith("-wal") for p in synced_paths)

    # The dashboard polls: a head this process knows is on disk is not synced again.
    assert not head_read_syncs(), "the log was synced again for a head already synced"
    _publish(node, make_indicator(next(serial)), now, synced=True)
    assert not head_read_syncs(), "the head of a synced commit was synced again"
    # Another process's commit (its own store; this one cannot know whether it was
    # synced): synced before its head is handed out.
    other = Store(node.store.url, signer=node.store.signer, head_file=node.store.head_file,
                  migrate_schema=False)
    other.routing = node.store.routing
    try:
        handlers.publish_many(other.uow(synced=False), keys=node.keys,
                              catalogue=node.catalogue,
                              entries=[(make_indicator(next(serial)), LABEL)], now=now)
    finally:
        other.engine.dispose()  # not dispose(): that would sync the log and copy the head
    assert head_read_syncs(), "another process's unsynced head was handed out unsynced"
    monkeypatch.undo()

    @settings(max_examples=12, deadline=None)
    @given(st.lists(st.booleans(), min_size=1, max_size=5))
    def any_run(run: list[bool]) -> None:
        # Whatever came before (earlier examples on the same node), at each commit.
        last_synced = _copy_size(node)
        for sync in run:
            size = _publish(node, make_indicator(next(serial)), now, synced=sync)
            if sync:
                last_synced = size
            assert _copy_size(node) == last_synced
            assert _synchronous(node) == {2}

    any_run()

    last = _publish(node, make_indicator(next(serial)), now, synced=False)
    assert _copy_size(node) < last
    node.close()  # a node stopped leaves the copy at its newest head, the log synced
    assert _copy_size(node) == last
    with node.store.reader() as reader:
        verdict = handlers.verify_audit(reader, public_key=node.keys.public_signing_key())
    assert verdict.ok, verdict.problems
