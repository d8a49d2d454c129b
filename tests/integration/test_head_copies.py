"""The tree head's copy beside the database, written behind the commits by a node process
(``Store.copy_heads_behind``): whatever order committers hand their heads in, from however
many threads, the copy never goes back to an older head, and once flushed (the node stops)
it is the newest head committed. On a real node: every commit's head reaches the file."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.core.audit import TreeHead
from gsomia.shell.node import Node
from gsomia.shell.store import read_external_head
from gsomia.shell.store._store import _HeadCopier
from starting import WAIT_S

pytestmark = pytest.mark.timeout(120)  # a copier that never finishes hangs a node's stop


def head(size: int) -> TreeHead:
    """A head of ``size``, unsigned: the copier reads nothing else of it."""
    return TreeHead(size, bytes(32), datetime(2026, 1, 1, tzinfo=UTC), "test", b"")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 10_000), st.booleans()), min_size=1, max_size=40),
       st.integers(1, 4), st.floats(0, 0.002), st.floats(0, 0.003))
def test_the_copy_never_goes_back_and_ends_at_the_newest(
        commits: list[tuple[int, bool]], threads: int, pause: float, hold: float) -> None:
    """Heads of synced commits (put) and of unsynced ones (held, copied once the log is
    synced), in any order, from any number of threads."""
    written: list[int] = []

    def write(copied: TreeHead, *, sync: bool) -> None:
        time.sleep(pause)  # a disk sync: heads come in meanwhile
        written.append(copied.size)

    def copy_held(copied: TreeHead) -> None:
        time.sleep(pause)  # the log's sync
        write(copied, sync=True)

    copier = _HeadCopier(write, copy_held=copy_held, hold=hold)
    sizes = [n for n, _ in commits]
    share = [commits[i::threads] for i in range(threads)]
    def put_all(part: list[tuple[int, bool]]) -> None:
        for n, synced in part:
            if synced:
                copier.put(head(n), True)
            else:
                copier.hold(head(n))

    workers = [threading.Thread(target=put_all, args=(part,)) for part in share]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    copier.close()
    assert written == sorted(written), "an older head replaced a newer one"
    assert written[-1] == max(sizes)
    copier.put(head(max(sizes) + 1), True)  # after close: written at once
    assert written[-1] == max(sizes) + 1


def test_a_node_copies_every_commit_s_head_before_it_closes(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]],
        now: datetime) -> None:
    from gsomia.service import handlers

    node = node_factory("JPN")
    node.store.copy_heads_behind()
    label = handlers.LabelRequest("極秘", ("JPN",), "dprk-missile")
    for n in range(5):
        handlers.publish_many(node.uow(), keys=node.keys, catalogue=node.catalogue,
                              entries=[(make_indicator(n), label)],
                              now=now)
    node.close()
    with node.store.reader() as reader:
        assert read_external_head(node.folder / "tree-head.json") == reader.latest_head()


class Clock:
    """The copier's time, moved on by the test and by nothing else: an interval the copier
    waits out after a write lasts until it is hurried (a flush, a close) or the test has
    moved the time past its end. Nothing then depends on how soon a loaded machine wakes
    the copier's thread: a head written "at once" is one written with no interval ending,
    and one coalesced is one the copier could not have written yet."""

    def __init__(self) -> None:
        self.now = 0.0
        self.resting = False  # the copier is waiting out an interval
        self._cond: threading.Condition | None = None

    def time(self) -> float:
        """The copier's clock, for the bound of a held head (``_HeadCopier(clock=...)``)."""
        return self.now

    def wait(self, cond: threading.Condition, over: Callable[[], bool], seconds: float) -> None:
        self._cond = cond
        until = self.now + seconds
        self.resting = True
        try:
            cond.wait_for(lambda: over() or self.now >= until)
        finally:
            self.resting = False

    def advance(self, seconds: float) -> None:
        assert self._cond is not None, "the copier has waited out no interval yet"
        with self._cond:
            self.now += seconds
            self._cond.notify_all()


def test_a_run_of_commits_is_copied_once_per_interval_and_a_flush_waits_for_none() -> None:
    written: list[int] = []

    def write(copied: TreeHead, *, sync: bool) -> None:
        written.append(copied.size)

    clock = Clock()
    copier = _HeadCopier(write, every=0.5, wait=clock.wait)
    flusher = threading.Thread(target=copier.flush, daemon=True)
    try:
        copier.put(head(1), False)
        # After a quiet spell: at once (no interval has ended, and none will until told).
        _wait_for(lambda: written == [1], "the first head waited for an interval")
        _wait_for(lambda: clock.resting, "the copier waited out no interval after a write")
        for n in range(2, 40):  # a run of commits within the interval
            copier.put(head(n), False)
        clock.advance(0.25)  # half the interval: still within it
        assert written == [1], "each head of the run was copied"
        flusher.start()  # a node stopping waits out no interval
        flusher.join(WAIT_S)
        assert not flusher.is_alive(), "the flush waited for the interval to end"
        assert written == [1, 39], "the run was not coalesced"
        copier.put(head(40), True)  # the flush cut the interval short: at once
        _wait_for(lambda: written == [1, 39, 40], "a head after a flush waited for an interval")
        _wait_for(lambda: clock.resting, "the copier waited out no interval after a write")
        copier.put(head(41), False)
        clock.advance(0.25)
        assert written == [1, 39, 40], "a head within the interval was copied"
        clock.advance(0.25)  # the interval ends: the head due is copied
        _wait_for(lambda: written == [1, 39, 40, 41], "the interval ended and nothing was copied")
        _wait_for(lambda: clock.resting, "the copier waited out no interval after a write")
        clock.advance(0.6)  # a quiet spell: the interval after 41 ends with nothing due
        _wait_for(lambda: not clock.resting, "the interval did not end")
        copier.put(head(42), True)
        _wait_for(lambda: written == [1, 39, 40, 41, 42],
                  "after a quiet spell the head waited for an interval")
    finally:
        with suppress(AssertionError):  # no interval began: nothing to end
            clock.advance(3600)  # a copier still in an interval (the test failed) goes on
        copier.close()


def test_an_unsynced_commit_s_head_is_copied_within_the_hold_once_for_a_run() -> None:
    """A head held (an unsynced commit's) is copied, its log synced first, once its bound is
    over, with nothing after it: not only when a synced commit comes or the node stops. A
    run of them within the bound costs one sync and one write (the newest); a synced
    commit's head that covers a held one takes its place; one that does not leaves the held
    head's bound as it was (the bound runs from the oldest head held)."""
    copied: list[tuple[str, int]] = []

    def write(done: TreeHead, *, sync: bool) -> None:
        copied.append(("written", done.size))

    def copy_held(done: TreeHead) -> None:
        copied.append(("log synced, then written", done.size))

    clock = Clock()
    copier = _HeadCopier(write, every=0.5, wait=clock.wait, copy_held=copy_held, hold=1.0,
                         clock=clock.time)
    flusher = threading.Thread(target=copier.flush, daemon=True)
    try:
        copier.hold(head(5))
        _wait_for(lambda: clock.resting, "the copier did not wait out the held head's bound")
        copier.hold(head(6))
        copier.hold(head(7))  # a run of unsynced commits within the bound
        clock.advance(0.5)
        assert copied == [], "a held head was copied before its bound"
        clock.advance(0.5)  # the bound of the first head held is over
        _wait_for(lambda: copied == [("log synced, then written", 7)],
                  "the held heads were not copied once their bound was over")
        _wait_for(lambda: clock.resting, "the copier waited out no interval after a write")
        clock.advance(0.5)
        _wait_for(lambda: not clock.resting, "the interval did not end")
        assert copied == [("log synced, then written", 7)], "the run cost more than one copy"

        # Covered by a synced commit's head: that one is written, and nothing else.
        copier.hold(head(8))
        copier.put(head(9), True)
        _wait_for(lambda: copied[-1] == ("written", 9), "the synced commit's head waited")
        _wait_for(lambda: clock.resting, "the copier waited out no interval after a write")
        clock.advance(2.0)
        _wait_for(lambda: not clock.resting, "the interval did not end")
        assert copied == [("log synced, then written", 7), ("written", 9)], \
            "a held head covered by a synced commit's head was synced and copied again"

        # A synced commit's head older than the one held (put late by a slower committer):
        # written, and the held head still copied at the end of its own bound.
        copier.hold(head(12))  # its bound ends at now + 1.0
        copier.put(head(11), True)
        _wait_for(lambda: copied[-1] == ("written", 11), "the synced commit's head waited")
        _wait_for(lambda: clock.resting, "the copier waited out no interval after a write")
        clock.advance(0.5)  # the interval is over, the held head's bound is not
        _wait_for(lambda: clock.resting, "the copier did not wait out the held head's bound")
        assert copied[-1] == ("written", 11), "a held head was copied before its bound"
        clock.advance(0.5)
        _wait_for(lambda: copied[-1] == ("log synced, then written", 12),
                  "the put of an older head put the held head's bound off")

        # A node stopping waits out no bound.
        _wait_for(lambda: clock.resting, "the copier waited out no interval after a write")
        clock.advance(0.5)
        copier.hold(head(13))
        _wait_for(lambda: clock.resting, "the copier did not wait out the held head's bound")
        flusher.start()
        flusher.join(WAIT_S)
        assert not flusher.is_alive(), "the flush waited for the held head's bound to end"
        assert copied[-1] == ("log synced, then written", 13)
    finally:
        with suppress(AssertionError):
            clock.advance(3600)
        copier.close()


def test_an_idle_node_copies_its_last_unsynced_commit_s_head_after_syncing_the_log(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]],
        now: datetime, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node process's last commit unsynced (a partner's receipts settled, a partner's
    head recorded), then nothing: its head reaches the copy within the copier's bound, not
    only when the node stops, and the log is synced before the copy is written (a copy
    ahead of the disk would show a rollback that never happened after a power cut)."""
    import os

    from gsomia.service import handlers

    node = node_factory("JPN")
    node.store.copy_heads_behind()
    label = handlers.LabelRequest("極秘", ("JPN",), "dprk-missile")
    copy = node.folder / "tree-head.json"

    def publish(n: int, *, synced: bool) -> int:
        handlers.publish_many(node.store.uow(synced=synced), keys=node.keys,
                              catalogue=node.catalogue, entries=[(make_indicator(n), label)],
                              now=now)
        with node.store.reader() as reader:
            return reader.size()

    def copied() -> int:
        found = read_external_head(copy)
        return -1 if found is None else found.size

    first = publish(0, synced=True)
    _wait_for(lambda: copied() == first, "a synced commit's head was not copied")
    syncs: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        real_fsync(fd)
        what = "log" if path.endswith("-wal") else \
            "copy" if path.startswith(str(copy)) else path
        syncs.append(f"{what} by {threading.current_thread().name}")

    monkeypatch.setattr(os, "fsync", fsync)
    last = publish(1, synced=False)
    assert last > first
    _wait_for(lambda: copied() == last, "an unsynced commit's head was never copied")
    # Both on the copier's thread: the unsynced commit itself waited for no sync.
    assert syncs == ["log by gsomia-head-copy", "copy by gsomia-head-copy"], \
        "the copy was not written once, after the log's sync, off the commit's way"
    node.close()
    assert copied() == last


def test_no_copy_is_ever_ahead_of_the_synced_log(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]],
        now: datetime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the run of synced and unsynced commits on a node process, each head written
    to the copy is of a commit the disk holds: a synced one's, or one at most as large as
    the log was when its write-ahead file was last synced (read just before that sync).
    Held heads are copied at once here (``HOLD`` 0), so copies and commits interleave."""
    import os
    import sqlite3

    from gsomia.service import handlers
    from gsomia.shell.store._store import Store

    monkeypatch.setattr(_HeadCopier, "HOLD", 0.0)
    node = node_factory("JPN")
    node.store.copy_heads_behind()
    label = handlers.LabelRequest("極秘", ("JPN",), "dprk-missile")
    copy = node.folder / "tree-head.json"
    database = str(node.store.engine.url.database)
    synced = [0]  # the newest size the disk is known to hold
    ahead: list[tuple[int, int]] = []  # (size copied, size synced) of each copy ahead
    lock = threading.Lock()
    real_fsync, real_replace = os.fsync, os.replace
    real_write = Store.write_external_head

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith("-wal"):
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
                size = int(conn.execute("SELECT max(size) FROM tree_heads").fetchone()[0])
            real_fsync(fd)
            with lock:
                synced[0] = max(synced[0], size)
            return
        real_fsync(fd)

    def write_external_head(store: Store, head: TreeHead, **kw: Any) -> None:
        # A synced commit's head, handed over after its commit synced (or the first copy).
        with lock:
            synced[0] = max(synced[0], head.size)
        real_write(store, head, **kw)

    def replace(src: Any, dst: Any) -> None:
        if str(dst) == str(copy):
            import json

            with open(src, encoding="utf-8") as f:
                size = int(json.load(f)["size"])
            with lock:
                if size > synced[0]:
                    ahead.append((size, synced[0]))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(Store, "write_external_head", write_external_head)
    serial = itertools.count()

    @settings(max_examples=10, deadline=None)
    @given(st.lists(st.booleans(), min_size=1, max_size=6))
    def any_run(run: list[bool]) -> None:
        for sync in run:
            handlers.publish_many(node.store.uow(synced=sync), keys=node.keys,
                                  catalogue=node.catalogue,
                                  entries=[(make_indicator(next(serial)), label)], now=now)
        with node.store.engine.connect() as conn:
            last = int(conn.exec_driver_sql("SELECT max(size) FROM tree_heads").scalar() or 0)
        _wait_for(lambda: (found := read_external_head(copy)) is not None and
                  found.size == last, "the run's newest head was never copied")
        assert ahead == [], "a head was copied ahead of what the disk held"

    any_run()
    node.close()


def test_a_node_stopping_copies_a_held_head_at_once(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]],
        now: datetime, monkeypatch: pytest.MonkeyPatch) -> None:
    from gsomia.service import handlers

    monkeypatch.setattr(_HeadCopier, "HOLD", 3600.0)  # only the stop copies it
    node = node_factory("JPN")
    node.store.copy_heads_behind()
    label = handlers.LabelRequest("極秘", ("JPN",), "dprk-missile")
    handlers.publish_many(node.store.uow(synced=False), keys=node.keys,
                          catalogue=node.catalogue, entries=[(make_indicator(0), label)],
                          now=now)
    node.close()
    with node.store.reader() as reader:
        assert read_external_head(node.folder / "tree-head.json") == reader.latest_head()


def _wait_for(done: Callable[[], bool], failure: str) -> None:
    """A hang guard (starting.WAIT_S), not a measure: the copier does it, or never does."""
    deadline = time.monotonic() + WAIT_S
    while not done():
        assert time.monotonic() < deadline, failure
        time.sleep(0.002)


def test_a_copy_that_cannot_be_read_is_malformed_input_naming_the_file(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy that is there but cannot be read (permissions, the disk) is reported as
    unreadable, as a damaged one is (``audit verify``, the dashboard's audit panel), not an
    OSError that takes a request down; a missing one is no copy yet."""
    from pathlib import Path

    from gsomia.core.errors import MalformedInput

    copy = tmp_path / "tree-head.json"
    assert read_external_head(copy) is None
    copy.write_text("{}", "utf-8")

    def refused(self: Path, *args: Any, **kwargs: Any) -> str:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", refused)
    with pytest.raises(MalformedInput, match="unreadable") as caught:
        read_external_head(copy)
    assert caught.value.where == str(copy)


def test_a_copy_that_fails_with_any_error_leaves_the_copier_copying() -> None:
    # Only OSError was caught: anything else (the log's sync refused by the database
    # driver, say) ended the copier's thread, and with it every later copy and the flush a
    # node's stop waits for.
    written: list[int] = []

    def write(head: TreeHead, *, sync: bool = True) -> None:
        if head.size == 1:
            raise RuntimeError("the driver refused")
        written.append(head.size)

    copier = _HeadCopier(write, every=0.0)
    try:
        copier.put(head(1), True)
        copier.flush()
        copier.put(head(2), True)
        finished = threading.Thread(target=copier.flush, daemon=True)
        finished.start()
        finished.join(WAIT_S)
        assert not finished.is_alive(), "the copier's thread died with the first error"
        assert written == [2]
    finally:
        copier.close()
