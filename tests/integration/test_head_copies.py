"""The tree head's copy beside the database, written behind the commits by a node process
(``Store.copy_heads_behind``): whatever order committers hand their heads in, from however
many threads, the copy never goes back to an older head, and once flushed (the node stops)
it is the newest head committed. On a real node: every commit's head reaches the file."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.shell.node import Node
from gsomia.shell.store import read_external_head
from gsomia.shell.store._store import _HeadCopier

pytestmark = pytest.mark.timeout(120)  # a copier that never finishes hangs a node's stop


@dataclass(frozen=True)
class Head:
    size: int


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 10_000), min_size=1, max_size=40),
       st.integers(1, 4), st.floats(0, 0.002))
def test_the_copy_never_goes_back_and_ends_at_the_newest(sizes: list[int], threads: int,
                                                         pause: float) -> None:
    written: list[int] = []

    def write(head: Any, *, sync: bool) -> None:
        time.sleep(pause)  # a disk sync: heads come in meanwhile
        written.append(head.size)

    copier = _HeadCopier(write)
    share = [sizes[i::threads] for i in range(threads)]
    workers = [threading.Thread(target=lambda part=part: [copier.put(Head(n), True)
                                                          for n in part])
               for part in share]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    copier.close()
    assert written == sorted(written), "an older head replaced a newer one"
    assert written[-1] == max(sizes)
    copier.put(Head(max(sizes) + 1), True)  # after close: written at once
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


def test_a_run_of_commits_is_copied_once_per_interval_and_a_flush_waits_for_none() -> None:
    written: list[tuple[int, float]] = []

    def write(head: Any, *, sync: bool) -> None:
        written.append((head.size, time.monotonic()))

    copier = _HeadCopier(write, every=0.5)
    try:
        copier.put(Head(1), False)
        _wait_for(lambda: len(written) == 1)  # after a quiet spell: at once
        for n in range(2, 40):  # a run of commits within the interval
            copier.put(Head(n), False)
        time.sleep(0.05)
        assert [size for size, _ in written] == [1], "each head of the run was copied"
        started = time.monotonic()
        copier.flush()  # a node stopping waits out no interval
        assert time.monotonic() - started < 0.4
        assert [size for size, _ in written] == [1, 39], "the run was not coalesced"
        time.sleep(0.6)
        copier.put(Head(40), True)
        _wait_for(lambda: len(written) == 3)  # after a quiet spell: at once again
        assert written[2][0] == 40
    finally:
        copier.close()


def _wait_for(done: Callable[[], bool], limit: float = 0.4) -> None:
    deadline = time.monotonic() + limit
    while not done():
        assert time.monotonic() < deadline, "the copier did not write in time"
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
