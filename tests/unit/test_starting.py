"""The tests' judge of a start (tests/starting.py): by the CPU the process took, the wall
clock only as a hang guard."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from starting import cpu_s, piped, thread_cpu_s, wait_in_thread, wait_started, waited


@contextmanager
def python(code: str) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def test_a_start_that_spins_is_stuck_after_its_cpu_not_its_wall_time() -> None:
    with python("while 1: pass") as spinning, \
            pytest.raises(AssertionError, match=r"after 0.3 s of CPU"):
        wait_started(lambda: False, spinning, lambda: piped(spinning), cpu_limit=0.3)
    assert cpu_s(spinning.pid) == 0.0   # gone: a pid no longer counted


def test_a_start_that_takes_no_cpu_is_a_hang_after_the_guard() -> None:
    with python("import time; time.sleep(60)") as sleeping, \
            pytest.raises(AssertionError, match=r"0.5 s of wall time .* \(a hang\)"):
        wait_started(lambda: False, sleeping, lambda: piped(sleeping), hang_s=0.5)


def test_a_process_that_ends_before_answering_is_shown_with_its_output() -> None:
    with python("print('port taken'); raise SystemExit(2)") as ending, \
            pytest.raises(AssertionError, match=r"ended with 2 (?s:.*)port taken"):
        wait_started(lambda: False, ending, lambda: piped(ending))


def test_an_answer_ends_the_wait() -> None:
    answers = iter([False, False, True])
    with python("import time; time.sleep(60)") as serving:
        wait_started(lambda: next(answers), serving, lambda: piped(serving))
        assert serving.poll() is None


@contextmanager
def thread(work: str) -> Iterator[threading.Thread]:
    """A thread of this process that spins or sleeps until the test is done with it."""
    done = threading.Event()

    def run() -> None:
        while not done.is_set():
            if work == "sleeps":
                done.wait(60)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    try:
        yield worker
    finally:
        done.set()
        worker.join()


def test_a_thread_s_work_is_judged_by_its_own_cpu() -> None:
    """The waiting thread's own CPU (its polls) is not the worker's: a sleeping worker is
    a hang, never stuck, and a spinning one is stuck after its CPU however long the wall."""
    with thread("spins") as spinning, \
            pytest.raises(AssertionError, match=r"not done after 0.2 s of its thread's CPU"):
        wait_in_thread(lambda: False, spinning, "not done", cpu_limit=0.2)
    with thread("sleeps") as sleeping:
        with pytest.raises(AssertionError, match=r"after 0.3 s of wall time .* \(a hang\)"):
            wait_in_thread(lambda: False, sleeping, "not done", cpu_limit=0.01, hang_s=0.3)
        assert thread_cpu_s(sleeping) < 0.01


def test_a_thread_that_ends_first_fails_the_wait_and_an_answer_ends_it() -> None:
    ended = threading.Thread(target=lambda: None)
    ended.start()
    ended.join()
    with pytest.raises(AssertionError, match="not done: its thread ended first"):
        wait_in_thread(lambda: False, ended, "not done")
    wait_in_thread(lambda: True, ended, "not done")   # done counts, however the thread is
    answers = iter([False, False, True])
    with thread("sleeps") as sleeping:
        wait_in_thread(lambda: next(answers), sleeping, "not done")
        assert next(answers, "asked no more") == "asked no more" and sleeping.is_alive()


def test_a_wait_that_ends_says_what_it_waited_for_and_what_it_saw() -> None:
    """A wait's end is a failure naming its wait, never a silent return that leaves the
    assertions after it to fail for another reason or pass for the wrong one."""
    polls = iter(range(1000))
    with pytest.raises(AssertionError,
                       match=r"waited 0.1 s for KOR's outbox drained; saw \['pending'\]"):
        waited(lambda: next(polls) < 0, "KOR's outbox drained", lambda: ["pending"],
               timeout=0.1, interval=0.01)
    with pytest.raises(AssertionError, match=r"for three rows; saw \[\]"):
        waited(list, "three rows", timeout=0.05, interval=0.01)   # check's own last value
    answers = iter([0, 0, 7])
    assert waited(lambda: next(answers), "an answer", interval=0.001) == 7
