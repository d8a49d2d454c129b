"""``GSOMIA_STOP_WITH``'s value: unset or empty is no process, a process id (ASCII digits,
within Linux's largest pid) is that process, anything else is refused naming the variable,
never taken for another number nor let through as another error. The watch of that process
ends when it ends (a pidfd, or polled where there is none), and one already ended is refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gsomia.core.errors import MalformedInput
from gsomia.shell.stop_with import STOP_WITH_ENV, stop_with_pid


@given(st.one_of(st.text(max_size=12), st.integers(-5, 2**23).map(str),
                 st.integers(1, 2**22).map(lambda n: f" {n}\n")))
def test_a_value_is_a_process_id_or_refused(value: str) -> None:
    try:
        pid = stop_with_pid({STOP_WITH_ENV: value})
    except MalformedInput as refused:
        assert STOP_WITH_ENV in str(refused) and value.strip() != ""
        return
    if value.strip() == "":
        assert pid is None
    else:
        assert pid is not None and str(pid) == value.strip().lstrip("0") and 0 < pid <= 2**22


@pytest.mark.parametrize("value", ["\u00b2", "\u0661\u0662", "12a", "+5", "0", "4194305"])
def test_what_only_looks_like_a_number_is_refused(value: str) -> None:
    with pytest.raises(MalformedInput, match=STOP_WITH_ENV):
        stop_with_pid({STOP_WITH_ENV: value})


def test_unset_is_no_process() -> None:
    assert stop_with_pid({}) is None


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "polled"])
def test_the_watch_ends_when_the_process_ends_and_refuses_one_ended(
        pidfd: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import subprocess
    import sys
    import threading

    from gsomia.shell.stop_with import _ended_watcher

    if not pidfd:   # a system without pidfd_open (not Linux, or an old kernel)
        monkeypatch.delattr(os, "pidfd_open", raising=False)
    else:   # the tests run on Linux (they read /proc): it has pidfd_open since 5.3
        assert hasattr(os, "pidfd_open"), "os.pidfd_open is missing: Python >= 3.9 on Linux"
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    gone = _ended_watcher(child.pid)
    # The way asked for is the way watched (a kernel refusing pidfds would fall back to polls).
    assert (gone.__name__ == "by_pidfd") == pidfd, gone.__name__
    watch = threading.Thread(target=gone, daemon=True)
    watch.start()
    watch.join(0.3)
    assert watch.is_alive(), "the watch ended while the process ran"
    assert child.stdin is not None
    child.stdin.close()     # it ends; not reaped yet: a zombie has ended too
    watch.join(30)
    assert not watch.is_alive(), "the watch did not end with the process"
    child.wait()
    with pytest.raises(MalformedInput, match=f"process {child.pid} is not running"):
        _ended_watcher(child.pid)


def test_a_process_named_to_stop_with_itself_watches_nothing() -> None:
    """A command run inside the process that named itself (the tests run ``replay``'s
    refusals so) ends with it anyway: no thread, no pidfd held for each run."""
    import os
    import threading

    from gsomia.shell.stop_with import stop_with_named_process

    def watches() -> int:
        return sum(t.name == "gsomia-stop-with" for t in threading.enumerate())

    before = watches()
    stop_with_named_process({STOP_WITH_ENV: str(os.getpid())})
    assert watches() == before
