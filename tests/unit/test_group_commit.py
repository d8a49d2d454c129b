"""The group commit of read audits (``taxii_store.GroupCommit``): whatever the interleaving
and whichever commits fail, a caller returns only once a successful write held its record,
or raises the error of the write that held it; no record is lost or written twice. A caller
that first tries to commit without waiting (``commit_unless_busy``, a lone reader on the
event loop) and is turned away has queued nothing: its commit from a thread writes it once."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.core.policy import Person
from gsomia.service.taxii_ports import AccessRecord
from gsomia.shell.taxii_store import GroupCommit

WHO = Person("kim", "KOR", "군사II급비밀", frozenset({"dprk-missile"}))


class DiskFull(Exception):
    pass


@settings(max_examples=60, deadline=None)
@given(callers=st.integers(1, 12), failing=st.sets(st.integers(0, 11), max_size=4),
       pause_ms=st.integers(0, 3), at_once=st.sets(st.integers(0, 11)))
def test_each_caller_returns_only_after_a_write_that_held_its_record(
        callers: int, failing: set[int], pause_ms: int, at_once: set[int]) -> None:
    written: list[list[str]] = []  # the records of each successful write, in order
    writes = 0
    lock = threading.Lock()

    def write(batch: list[AccessRecord]) -> None:
        nonlocal writes
        with lock:
            n = writes
            writes += 1
        time.sleep(pause_ms / 1000)  # a disk sync, during which others queue
        if n in failing:
            raise DiskFull(f"write {n}")
        with lock:
            written.append([r.endpoint for r in batch])

    group = GroupCommit(write)
    outcome: dict[str, str] = {}
    start = threading.Barrier(callers)

    def caller(n: int) -> None:
        name = f"read-{n}"
        start.wait()
        record = AccessRecord(WHO, name, [(f"indicator--{n}", "v")], (),
                              datetime(2024, 3, 1, tzinfo=UTC))
        try:
            if not (n in at_once and group.commit_unless_busy(record)):
                group.commit(record)
        except DiskFull:
            outcome[name] = "refused"
            return
        # Returned: its record must be in a write that succeeded, already.
        with lock:
            outcome[name] = "served" if any(name in w for w in written) else "unaudited"

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [r for w in written for r in w]
    assert len(flat) == len(set(flat))  # no record written twice
    assert "unaudited" not in outcome.values()
    assert sorted(outcome) == sorted(f"read-{n}" for n in range(callers))
    # Every record written belongs to a caller that was served, and every served caller's
    # record was written: a refused caller's record is in no successful write.
    assert sorted(flat) == sorted(k for k, v in outcome.items() if v == "served")
    assert writes <= callers  # never more commits than readers


def test_a_lone_caller_commits_its_own_record_at_once() -> None:
    batches: list[int] = []
    group = GroupCommit(lambda batch: batches.append(len(batch)))
    for n in range(3):
        group.commit(AccessRecord(WHO, "objects", [(f"indicator--{n}", "v")], (),
                                  datetime(2024, 3, 1, tzinfo=UTC)))
    assert batches == [1, 1, 1]


def test_a_caller_that_would_wait_is_turned_away_and_queues_nothing() -> None:
    writing, release = threading.Event(), threading.Event()
    batches: list[list[str]] = []

    def write(batch: list[AccessRecord]) -> None:
        writing.set()
        release.wait(5)  # a disk sync under way
        batches.append([r.endpoint for r in batch])

    group = GroupCommit(write)

    def record(name: str) -> AccessRecord:
        return AccessRecord(WHO, name, [("indicator--1", "v")], (),
                            datetime(2024, 3, 1, tzinfo=UTC))

    first = threading.Thread(target=group.commit, args=(record("first"),))
    first.start()
    assert writing.wait(5)
    assert group.commit_unless_busy(record("turned-away")) is False
    release.set()
    first.join()
    assert group.commit_unless_busy(record("alone")) is True  # idle: written at once
    assert batches == [["first"], ["alone"]]


def test_a_failed_write_fails_the_caller_that_committed_at_once() -> None:
    failing = [True]
    written: list[str] = []

    def write(batch: list[AccessRecord]) -> None:
        if failing.pop(0):
            raise DiskFull("no space")
        written.extend(r.endpoint for r in batch)

    group = GroupCommit(write)

    def record(name: str) -> AccessRecord:
        return AccessRecord(WHO, name, [("indicator--1", "v")], (),
                            datetime(2024, 3, 1, tzinfo=UTC))

    failing.append(False)
    with pytest.raises(DiskFull):
        group.commit_unless_busy(record("refused"))
    # The failure left no commit under way and nothing queued: the next is written alone.
    assert group.commit_unless_busy(record("served")) is True
    assert written == ["served"]
