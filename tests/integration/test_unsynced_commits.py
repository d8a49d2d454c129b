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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gsomia.service import handlers
from gsomia.shell.node import Node
from gsomia.shell.store import read_external_head

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


def test_an_unsynced_commit_is_not_copied_and_leaves_its_connection_synced(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]],
        now: datetime, monkeypatch: pytest.MonkeyPatch) -> None:
    node = node_factory("JPN")
    synced = _publish(node, make_indicator(0), now, synced=True)
    assert _copy_size(node) == synced
    unsynced = _publish(node, make_indicator(1), now, synced=False)
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
    monkeypatch.undo()

    after = _publish(node, make_indicator(2), now, synced=True)
    assert _copy_size(node) == after
    last = _publish(node, make_indicator(3), now, synced=False)
    assert _copy_size(node) == after
    node.close()  # a node stopped leaves the copy at its newest head, the log synced
    assert _copy_size(node) == last
    with node.store.reader() as reader:
        verdict = handlers.verify_audit(reader, public_key=node.keys.public_signing_key())
    assert verdict.ok, verdict.problems


_SERIAL = itertools.count(100)  # an indicator of its own for every commit of every example
_NODES: dict[int, Node] = {}


def _node(node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]],
          now: datetime) -> Node:
    """One node for every example of a test (the factory is the test's own): the invariant
    holds at each commit, whatever came before."""
    key = id(node_factory)
    if key not in _NODES:
        _NODES.clear()
        _NODES[key] = node = node_factory("JPN")
        _publish(node, make_indicator(next(_SERIAL)), now, synced=True)
    return _NODES[key]


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.booleans(), min_size=1, max_size=5))
def test_the_copy_is_never_ahead_of_the_last_synced_commit(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]],
        now: datetime, synced: list[bool]) -> None:
    node = _node(node_factory, make_indicator, now)
    last_synced = _copy_size(node)
    for sync in synced:
        size = _publish(node, make_indicator(next(_SERIAL)), now, synced=sync)
        if sync:
            last_synced = size
        assert _copy_size(node) == last_synced
        assert _synchronous(node) == {2}
