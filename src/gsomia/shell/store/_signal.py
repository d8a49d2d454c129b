"""The commit signal: how a commit wakes whoever waits for one, in any process."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Collection
from typing import Any

import sqlalchemy as sa

# A commit to a SQLite node database sends one datagram to an abstract Unix socket named
# after the database file (Linux; no file is made), so a process waiting for commits (the
# sender) wakes at once instead of polling. Nothing listens: the send fails, and is dropped.
# It is a hint only; the listener still reads the tables to know what changed.

_SIGNAL: dict[str, Any] = {}
# The couriers of a database running in this process (``exchange.Couriers``): a commit that
# queued outbox rows hands them its rows' recipients from the committing thread, so the
# links concerned wake at once, not through the commit signal's listener (a thread more to
# pass through, on a core the centre and the intake share). The signal still goes, for the
# couriers of other processes and as the check that no row is left.
_QUEUED: dict[str, Callable[[frozenset[str]], None]] = {}


def on_queued(engine: sa.Engine, woken: Callable[[frozenset[str]], None] | None) -> None:
    """Have ``woken`` called with the recipients of the rows each commit to ``engine``'s
    database in this process queued (None: no more)."""
    if woken is None:
        _QUEUED.pop(str(engine.url), None)
    else:
        _QUEUED[str(engine.url)] = woken


# The same couriers told before such a commit is made, while its transaction holds the write
# lock: the warning centre, which reads the notes as soon as their commit is visible, knows
# by then which links owe that commit a post (``exchange.CourierProgress``).
_QUEUEING: dict[str, Callable[[frozenset[str]], None]] = {}


def on_queueing(engine: sa.Engine, asked: Callable[[frozenset[str]], None] | None) -> None:
    """Have ``asked`` called with the recipients of the rows each commit to ``engine``'s
    database in this process queued, just before it commits; :func:`on_queued`'s callback
    follows once the commit is over, made or not (None: no more)."""
    if asked is None:
        _QUEUEING.pop(str(engine.url), None)
    else:
        _QUEUEING[str(engine.url)] = asked
# On PostgreSQL the signal is a NOTIFY on this channel, sent with the commit itself.
COMMIT_CHANNEL = "gsomia_commit"


def commit_signal_address(engine: sa.Engine) -> str | None:
    """The abstract socket name for commits to ``engine``'s database (None: not SQLite on a
    file, or not Linux)."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:") \
            or not sys.platform.startswith("linux"):
        return None
    import hashlib

    path = os.path.realpath(str(engine.url.database))
    return "\0gsomia-commit-" + hashlib.sha256(path.encode()).hexdigest()[:40]


def signal_commit(engine: sa.Engine, queued: Collection[str] | None = None,
                  *, told: bool = False) -> None:
    """Tell whoever listens for commits to ``engine``'s database that one happened, and
    what the listening couriers need of it: ``queued``, the recipients of the outbox rows
    it queued (empty: none; None: not said, the listener looks); ``told``, that the
    couriers of this process were handed them already (:func:`on_queued`). A listener
    woken for a named link needs no query to know whose it is."""
    address = _SIGNAL.get(str(engine.url))
    if address is None:
        address = _SIGNAL[str(engine.url)] = commit_signal_address(engine) or ""
    if not address:
        return
    sock = _SIGNAL.get("")
    try:
        if sock is None:
            import socket

            sock = _SIGNAL[""] = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
        sock.sendto(commit_datagram(queued, told), address)
    except OSError:  # nobody listens, or its queue is full (it is awake then): no matter
        pass


class _Notifications:
    """PostgreSQL's commit signal: a connection of its own that LISTENs on the channel
    every writing commit NOTIFYs (:data:`COMMIT_CHANNEL`), so each of several senders, in
    any process, wakes at once instead of polling the tables."""

    def __init__(self, engine: sa.Engine) -> None:
        import psycopg

        url = engine.url.set(drivername="postgresql")
        self._conn = psycopg.connect(url.render_as_string(hide_password=False),
                                     autocommit=True)
        self._conn.execute(f"LISTEN {COMMIT_CHANNEL}")

    def fileno(self) -> int:
        return self._conn.fileno()

    def recv(self, _size: int) -> bytes:
        """Consume what arrived; b"" once nothing is left (as a drained socket)."""
        pg = self._conn.pgconn
        try:
            pg.consume_input()
            return b"n" if pg.notifies() is not None else b""
        except Exception:  # the connection broke: the sender still passes every tick
            return b""

    def close(self) -> None:
        self._conn.close()


def listen_for_commits(engine: sa.Engine) -> Any:
    """A socket receiving the commit signals of ``engine``'s database (see
    :func:`signal_commit`; ``exchange.Sender`` reads it); None if there can be none or
    another sender of this database already listens (this one then polls)."""
    import socket

    if engine.dialect.name == "postgresql":
        try:
            return _Notifications(engine)
        except Exception:  # the sender polls instead: slower to wake, never wrong
            return None
    address = commit_signal_address(engine)
    if address is None:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        return None
    sock.setblocking(False)
    return sock


class Changes:
    """Whether another connection has committed to the node's database since the last
    look: SQLite's ``PRAGMA data_version`` on a connection of its own (microseconds, no
    lock). On other databases it cannot tell: it says yes, unless ``notified`` (commits are
    then told by PostgreSQL's notifications, and the sender passes every tick anyway)."""

    def __init__(self, engine: sa.Engine, *, notified: bool = False) -> None:
        import sqlite3

        self._db: Any = None
        self._notified = notified
        self._last: int | None = None
        if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            self._db = sqlite3.connect(str(engine.url.database), isolation_level=None,
                                       check_same_thread=False)

    def __call__(self) -> bool:
        if self._db is None:
            return not self._notified
        try:
            version = self._db.execute("PRAGMA data_version").fetchone()[0]
        except Exception:  # a locked or vanished file: look with a full pass
            return True
        changed = bool(version != self._last)
        self._last = int(version)
        return changed

    def newest_seq(self) -> int | None:
        """The highest ``seq`` of the items the node holds, 0 if none (an index lookup on
        this connection: tens of microseconds, where a repository's query costs 0.7 ms of
        a thread holding the GIL); None where it cannot be told (not SQLite on a file, a
        locked or vanished file, or a seq retyped on the host's disk: not a whole number,
        it sorts after every number; a whole number the log has not given yet, it would
        stand above every later item's, and a reader that trusted it would never read
        again)."""
        if self._db is None:
            return None
        try:
            # One statement, one snapshot: an item's row and the log's size it was stored
            # under are written in one commit.
            found, size = self._db.execute(
                "SELECT (SELECT max(seq) FROM items), "
                "(SELECT size FROM audit_state WHERE id = 1)").fetchone()
        except Exception:
            return None
        if found is None:
            return 0
        # Every event's seq is below the log's size (the size before it was appended).
        return found if type(found) is int and type(size) is int and found < size else None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


def commit_datagram(queued: Collection[str] | None, told: bool) -> bytes:
    """The commit signal's datagram: ``c`` (a commit), ``q!`` (its rows were handed to
    the couriers of the committing process), ``q:JPN,USA`` (it queued rows to these; ``q:``
    none). Read by :func:`read_datagram`."""
    if queued is None:
        return b"c"
    if told:
        return b"q!"
    return b"q:" + ",".join(sorted(queued)).encode("ascii", "replace")


def read_datagram(data: bytes) -> frozenset[str] | None:
    """The recipients a commit signal names (empty: no row for a courier of this process
    to take); None: a commit that says nothing of its rows (or a datagram not of this
    shape: whoever sent it, the listener then looks at the outbox itself)."""
    if data == b"q!":
        return frozenset()
    if not data.startswith(b"q:"):
        return None
    try:
        named = data[2:].decode("ascii")
    except UnicodeDecodeError:
        return None
    return frozenset(p for p in named.split(",") if p)
