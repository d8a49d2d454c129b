"""A node started by a process that then dies, even by SIGKILL, stops by itself: it was started
as ``federation up`` starts nodes (a session of its own, so nothing else ties them) by a
process that named itself in ``GSOMIA_STOP_WITH``, as the tests' conftest names pytest's.
An interrupted test run left a module's federation running (testtime27). A value that is not
a running process's id is refused at start."""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_dashboard import free_port

from commandline import run_gsomia_here
from gsomia.core.agreements import Catalogue
from gsomia.shell.federation import HANG_S, START_CPU_S
from gsomia.shell.stop_with import STOP_WITH_ENV
from starting import cpu_s, waited

TESTS = Path(__file__).resolve().parents[1]

# The stand-in for a test run: names itself as the conftest does, starts one ``gsomia``
# (its arguments after the log's path) as ``federation up`` starts a node, says its pid and
# waits to be killed.
STARTER = f"""
import subprocess, sys, time
sys.path.insert(0, {str(TESTS)!r})
from starting import nodes_stop_with_me
nodes_stop_with_me()
child = subprocess.Popen(
    [sys.executable, "-P", "-m", "gsomia", *sys.argv[2:]],
    stdout=open(sys.argv[1], "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    start_new_session=True)
print(child.pid, flush=True)
time.sleep(600)
"""


def started(log: Path, *command: str) -> tuple[subprocess.Popen[str], int]:
    """The starter, and the pid of the ``gsomia command`` it started."""
    starter = subprocess.Popen([sys.executable, "-c", STARTER, str(log), *command],
                               stdout=subprocess.PIPE, text=True)
    assert starter.stdout is not None
    said = starter.stdout.readline()
    if not said.strip().isdigit():
        starter.kill()
        raise AssertionError(f"the starter failed ({starter.wait(30)}): {said!r}")
    return starter, int(said)


def running(pid: int) -> bool:
    """``pid`` is a process not yet ended (a zombie has ended: its parent only has not
    reaped it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def test_a_node_stops_when_the_process_it_stops_with_is_killed(
        tmp_path: Path, shipped: Catalogue) -> None:
    import os
    import signal
    import time

    from gsomia.shell.node import init_node

    folder, port, log = tmp_path / "jpn", free_port(), tmp_path / "node.log"
    init_node(folder, "JPN", catalogue=shipped, now=datetime.now(UTC)).close()
    starter, node = started(log, "node", "run", "--dir", str(folder), "--host", "127.0.0.1",
                            "--port", str(port))
    try:
        hang = time.monotonic() + HANG_S
        while not answers(port):   # judged by its CPU, as every start in the tests is
            assert running(node), f"the node ended before it answered:\n{log.read_text()}"
            assert cpu_s(node) < START_CPU_S and time.monotonic() < hang, (
                f"the node did not answer:\n{log.read_text()}")
            time.sleep(0.2)
        starter.kill()
        assert starter.wait(timeout=30) == -signal.SIGKILL
        waited(lambda: not running(node), "the node to stop after its starter was killed",
               lambda: log.read_text()[-2000:], timeout=60)
        assert not answers(port)
        # Stopped as SIGTERM stops it (uvicorn's graceful shutdown), not killed mid-work.
        assert "Traceback" not in log.read_text(), log.read_text()
    finally:
        starter.kill()
        starter.wait(timeout=30)
        if running(node):
            os.kill(node, signal.SIGKILL)


def test_a_sensor_player_stops_when_the_process_it_stops_with_is_killed(
        tmp_path: Path) -> None:
    """Not at its ``--until``, minutes on: a player plays for nobody once its starter is
    gone. Its node here takes the connection and never answers, so the player waits on its
    first batch (httpx's 30 s) until it is stopped."""
    import contextlib
    import os
    import signal
    import time

    log = tmp_path / "player.log"
    with socket.create_server(("127.0.0.1", 0)) as node:
        node.settimeout(0.2)
        starter, player = started(
            log, "sensors", "run", "--launch", "2017-08-29", "--party", "JPN", "--node",
            f"http://127.0.0.1:{node.getsockname()[1]}", "--token", "t", "--speed", "100")
        taken: socket.socket | None = None
        try:
            hang = time.monotonic() + HANG_S
            while taken is None:   # judged by its CPU, as every start in the tests is
                assert running(player), f"the player ended before it sent:\n{log.read_text()}"
                assert cpu_s(player) < START_CPU_S and time.monotonic() < hang, (
                    f"the player sent nothing:\n{log.read_text()}")
                with contextlib.suppress(TimeoutError):
                    taken = node.accept()[0]
            starter.kill()
            assert starter.wait(timeout=30) == -signal.SIGKILL
            killed = time.monotonic()
            waited(lambda: not running(player), "the player to stop after its starter was "
                   "killed", lambda: log.read_text()[-2000:], timeout=60)
            # A few seconds on a loaded machine; unwatched, it waited out its 30 s for an answer.
            assert time.monotonic() - killed < 10, log.read_text()
        finally:
            starter.kill()
            starter.wait(timeout=30)
            if running(player):
                os.kill(player, signal.SIGKILL)
            if taken is not None:
                taken.close()


@pytest.mark.parametrize("command", ["run", "serve"])
def test_a_value_that_names_no_running_process_is_refused_at_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    ended = subprocess.Popen([sys.executable, "-c", ""])   # its pid names nobody once reaped
    ended.wait()
    for value, said in (("pytest", "'pytest' is not a process id"),
                        ("-1", "'-1' is not a process id"), ("0", "'0' is not a process id"),
                        (str(ended.pid), f"process {ended.pid} is not running")):
        monkeypatch.setenv(STOP_WITH_ENV, value)
        # Refused before the folder is even looked at: it does not exist.
        done = run_gsomia_here("node", command, "--dir", str(tmp_path / "none"))
        assert done.returncode == 2, (value, done.stdout, done.stderr)
        assert STOP_WITH_ENV in done.stderr and said in done.stderr, done.stderr
