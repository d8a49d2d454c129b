"""``GSOMIA_STOP_WITH=PID``: a node stops (SIGTERM: gracefully) when the process PID ends, and
so does a sensor player (``sensors run``, ``replay``), which would otherwise play on until its
``--until``; ``node run --workers`` names itself to its workers.

``federation up`` starts its nodes in sessions of their own, so they run on after it exits:
that is what it is for. A supervisor, or a test run, that wants its nodes to end with it,
even when it is killed and cannot stop them, names itself here; every process it starts
inherits the name."""

from __future__ import annotations

import os
import select
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from gsomia.core.errors import MalformedInput

STOP_WITH_ENV = "GSOMIA_STOP_WITH"


def stop_with_pid(environ: Mapping[str, str]) -> int | None:
    """The process ``GSOMIA_STOP_WITH`` names, or None where it is unset or empty. A value
    that is not a process id is refused: a node that silently ignored it would outlive
    whoever meant to stop it."""
    value = environ.get(STOP_WITH_ENV, "").strip()
    if not value:
        return None
    if not (value.isascii() and value.isdigit()) or not 0 < int(value) <= 2**22:
        raise MalformedInput(f"{value!r} is not a process id", where=STOP_WITH_ENV,
                             expected="the id of the process the node stops with, or unset")
    return int(value)


def stop_with_named_process(environ: Mapping[str, str] | None = None) -> None:
    """When ``GSOMIA_STOP_WITH`` names a process, send this one SIGTERM as that one ends (a
    daemon thread). Refused at start if the value is not a process id or names no running
    process (it ended before the node started: the node would run on for nobody)."""
    pid = stop_with_pid(os.environ if environ is None else environ)
    # This very process (a command run inside the one that named itself, as the tests run
    # some): it ends with itself, and a watch would hold a thread and a pidfd until then.
    if pid is None or pid == os.getpid():
        return
    gone = _ended_watcher(pid)

    def watch() -> None:
        gone()
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="gsomia-stop-with", daemon=True).start()


def _ended_watcher(pid: int) -> Callable[[], None]:
    """A callable that returns once ``pid`` has ended. A pidfd where Linux offers one: it
    names that process, not whichever later reuses its id; else ``/proc`` (or signal 0),
    polled."""
    not_running = MalformedInput(f"process {pid} is not running", where=STOP_WITH_ENV,
                                 expected="the id of a running process the node stops with")
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is not None:
        try:
            fd = pidfd_open(pid)
        except ProcessLookupError:
            raise not_running from None
        except OSError:     # an older kernel (ENOSYS) or a sandbox: poll instead
            fd = None
        if fd is not None:
            def by_pidfd() -> None:
                poller = select.poll()
                poller.register(fd, select.POLLIN)
                while not poller.poll():    # readable once the process has ended
                    pass
            return by_pidfd
    if not _running(pid):
        raise not_running

    def by_polling() -> None:
        while _running(pid):
            time.sleep(0.5)
    return by_polling


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:     # another user's: it exists
        pass
    try:   # an ended process its parent has not reaped yet still answers signal 0
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True
