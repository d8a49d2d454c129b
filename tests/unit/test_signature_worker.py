"""The node's signature worker (gsomia.shell.signatures): Ed25519 checks of a batch on
another process, answering exactly as the checks made in place, and never skipping one."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.core import crypto
from gsomia.shell.signatures import SignatureWorker, safe_to_spawn

KEYS = [Ed25519PrivateKey.generate() for _ in range(3)]


@pytest.fixture(scope="module", autouse=True)
def safe_path() -> Iterator[None]:
    """As the ``gsomia`` command sets it for its children, once at its start."""
    with pytest.MonkeyPatch.context() as patched:
        patched.setenv("PYTHONSAFEPATH", "1")
        yield


@pytest.fixture(scope="module")
def worker(safe_path: None) -> Iterator[SignatureWorker]:
    found = SignatureWorker(in_process_below=2)
    yield found
    found.close()


def check(n: int, kind: str) -> crypto.SignatureCheck:
    key = KEYS[n % len(KEYS)]
    message = f"message {n}".encode()
    signature = key.sign(message)
    public = crypto.raw_public(key)
    if kind == "other-message":
        message += b"!"
    elif kind == "other-key":
        public = crypto.raw_public(KEYS[(n + 1) % len(KEYS)])
    elif kind == "not-a-key":
        public = b"\x00" * 31
    return crypto.SignatureCheck(public, signature, message)


@settings(max_examples=30, deadline=None)
@given(kinds=st.lists(st.sampled_from(("good", "other-message", "other-key", "not-a-key")),
                      max_size=40))
def test_the_worker_answers_each_signature_as_it_is(worker: SignatureWorker,
                                                    kinds: list[str]) -> None:
    checks = [check(n, k) for n, k in enumerate(kinds)]
    assert worker.submit(checks)() == [k == "good" for k in kinds]


def test_a_dead_worker_costs_no_check(worker: SignatureWorker) -> None:
    """The worker killed under a batch: that batch is verified in the node's process (a
    forged signature still stops), and the next batch goes to a new worker."""
    kinds = ["good", "other-message", "good", "other-key"]
    checks = [check(n, k) for n, k in enumerate(kinds)]
    assert worker.submit(checks)() == [True, False, True, False]  # the worker runs
    pool = worker._pool
    assert pool is not None
    for pid in list(pool._processes or {}):
        os.kill(pid, signal.SIGKILL)
    assert worker.submit(checks)() == [True, False, True, False]
    assert worker.submit(checks)() == [True, False, True, False]
    assert worker._pool is not pool  # replaced, not left broken


CHILD = """
import sys, time
from gsomia.shell.signatures import SignatureWorker
worker = SignatureWorker().start()  # as gsomia node run does, first thing
print(*worker._pool._processes, flush=True)
time.sleep(60)
"""


def test_the_worker_ends_with_its_node_process() -> None:
    """A node process killed outright (SIGKILL: a crash) leaves no worker behind."""
    import subprocess
    import sys
    import time

    node = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True,
                            env={**os.environ})
    assert node.stdout is not None
    workers = [int(p) for p in node.stdout.readline().split()]
    assert workers and all(os.path.exists(f"/proc/{p}") for p in workers)
    os.kill(node.pid, signal.SIGKILL)
    node.wait()

    def alive(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.monotonic() + 10
    while any(alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in workers)


def test_the_worker_outlives_the_thread_that_started_it() -> None:
    """A server starts the worker on whichever thread handles the first large batch (a
    request's pool thread, which ends when idle). The worker belongs to the node process,
    not to that thread: the next batch still reaches the same worker."""
    import threading
    import time

    kinds = ["good", "other-key", "good"]
    checks = [check(n, k) for n, k in enumerate(kinds)]
    found = SignatureWorker(in_process_below=2)
    try:
        answers: list[list[bool]] = []
        first = threading.Thread(target=lambda: answers.append(found.submit(checks)()))
        first.start()
        first.join()
        assert answers == [[True, False, True]]
        pool = found._pool
        assert pool is not None
        workers = list(pool._processes or {})
        assert workers
        time.sleep(0.3)  # a worker tied to the thread's life is gone by now
        assert found.submit(checks)() == [True, False, True]
        assert found._pool is pool and list(pool._processes or {}) == workers
    finally:
        found.close()


def test_a_worker_started_in_a_folder_others_write_runs_the_real_checks(
        tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's working folder may be one others write (the host's disk): a module
    planted there (here ``multiprocessing``, the first thing a spawned worker imports) is
    not what answers whether a partner's signatures verify."""
    from pathlib import Path

    folder = Path(tmp_path)
    planted = folder / "cwd" / "multiprocessing"
    planted.mkdir(parents=True)
    marker = folder / "ran"
    (planted / "__init__.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\nraise SystemExit(3)\n")
    monkeypatch.chdir(planted.parent)
    kinds = ["good", "other-message", "good"]
    checks = [check(n, k) for n, k in enumerate(kinds)]
    # As the gsomia command runs (safe path set at its start): the worker answers.
    found = SignatureWorker(in_process_below=2)
    try:
        assert found.submit(checks)() == [True, False, True]
        pool = found._pool
        assert pool is not None and pool._processes  # answered by the worker, not here
    finally:
        found.close()
    assert not marker.exists()
    # A process that never set it (gsomia as a library): the checks are made in place, and
    # its environment is left as it is (not set at run time, under other threads, for
    # every process it spawns later).
    monkeypatch.delenv("PYTHONSAFEPATH")
    assert not safe_to_spawn()
    found = SignatureWorker(in_process_below=2)
    try:
        assert found.submit(checks)() == [True, False, True]
        assert found._pool is None and "PYTHONSAFEPATH" not in os.environ
    finally:
        found.close()
    assert not marker.exists()


def test_the_gsomia_command_sets_safe_path_for_its_children_once_at_its_start(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from gsomia.shell.cli import main

    monkeypatch.delenv("PYTHONSAFEPATH")
    monkeypatch.setattr("sys.argv", ["gsomia", "--version"])
    main([])  # called with arguments (a test, an embedding program): not the entry point
    assert "PYTHONSAFEPATH" not in os.environ
    main()
    capsys.readouterr()
    assert os.environ["PYTHONSAFEPATH"] == "1"


def test_closing_a_node_does_not_wait_for_ever_on_a_stopped_worker() -> None:
    """``node stop`` closes the worker: one stopped (SIGSTOP) or wedged must not hold the
    node's exit with it; it is killed after a bounded wait."""
    import time

    stopped = SignatureWorker(in_process_below=1)
    assert stopped.submit([check(0, "good")])() == [True]  # the worker runs
    pool = stopped._pool
    assert pool is not None
    pids = list(pool._processes or {})  # the executor keys its processes by pid
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    began = time.monotonic()
    stopped.close()
    assert time.monotonic() - began < 10
    for pid in pids:
        # Gone, or a zombie not yet reaped (the executor's own thread may reap it first,
        # which makes multiprocessing's is_alive() unreliable here): either way, not running.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _running(pid):
            time.sleep(0.05)
        assert not _running(pid)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
