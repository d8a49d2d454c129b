"""Label bindings signed on a process of their own (the ``BindingSigner`` port).

``cryptography``'s Ed25519 holds the GIL while it signs, so a thread does not overlap the
signatures with the rest of a TAXII batch; another process does. The process is started
with the node's key file path, never the key: it reads the file itself, after the same
mode check the node makes at start (a private key the group or others may read is not
used), and tells its public key back, which must be the node's. It signs only binding
digests (``crypto.BINDING_CONTEXT``), so what the pipe carries cannot make it sign a tree
head or a receipt.

Fail closed: if the process dies, hangs or answers wrongly, every batch waiting on it gets
:class:`Unavailable` (a 503: nothing of the batch is stored) and the next batch starts a
new process. Requests and answers are framed and taken in order; a batch refused before it
took its signatures drops them (:meth:`PendingSignatures.abandon`).

Wire format: the parent writes ``count (4 bytes, big-endian) ‖ count × 32-byte digests``;
the process answers ``count × 64-byte signatures``. At start it writes its 32-byte raw
public key, or nothing (exit status and stderr say why).
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

from gsomia.core import crypto
from gsomia.core.errors import Unavailable

__all__ = ["SigningProcess"]

_DIGEST = 32
_SIGNATURE = 64
_MAX_COUNT = 100_000  # digests one request may carry (a TAXII batch is far fewer)
_ANSWER_TIMEOUT = 30.0  # seconds without a byte before the process counts as hung
_START_TIMEOUT = 30.0


class SigningProcess:
    """A signing process for the key in ``key_path``, whose fingerprint must be ``key``.
    Started on first use; :meth:`close` ends it."""

    def __init__(self, key_path: Path, key: str, *,
                 answer_timeout: float = _ANSWER_TIMEOUT) -> None:
        self._path = Path(key_path)
        self._key = key
        self._timeout = answer_timeout
        # Lock order: _write_lock, then _lock; _read_lock, then _lock. _lock guards the
        # state and is never held over a pipe's read or write, so a reader draining
        # answers always gets it while a writer waits for room in a full pipe.
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # requests go on the pipe whole, in order
        self._read_lock = threading.Lock()  # one reader at a time: answers come in order
        self._proc: subprocess.Popen[bytes] | None = None
        self._generation = 0
        self._sent = 0  # requests written to the current process
        self._received = 0  # answers read from it
        self._answers: dict[int, list[bytes]] = {}
        self._counts: dict[int, int] = {}  # request number -> digests it carries
        self._closed = False
        self._spent: list[subprocess.Popen[bytes]] = []  # ended, output pipe still open

    @property
    def key(self) -> str:
        return self._key

    @property
    def pid(self) -> int | None:
        """The process's id, None before it starts (tests end it to see the batch refused)."""
        proc = self._proc
        return None if proc is None else proc.pid

    def begin(self, digests: Sequence[bytes]) -> _Pending:
        if any(len(d) != _DIGEST for d in digests) or len(digests) > _MAX_COUNT:
            raise ValueError("binding digests are 32 bytes each")  # a caller's bug
        frame = len(digests).to_bytes(4, "big") + b"".join(digests)
        with self._write_lock:
            proc = self._running()
            assert proc.stdin is not None
            with self._lock:
                if proc is not self._proc:  # ended meanwhile by a reader's timeout
                    raise Unavailable("the signing process is gone: the batch is refused, "
                                      "the next one starts a new process")
                generation, number = self._generation, self._sent
                self._counts[number] = len(digests)
                self._sent += 1
                # A descriptor of this write's own: _broken (a reader's timeout, close)
                # closes proc.stdin under _lock, maybe mid-write, and the number it frees
                # is the next file or socket any thread opens; the rest of the frame must
                # not go there. This one stays the pipe's, and fails once its reader ends.
                fd = os.dup(proc.stdin.fileno())
            try:
                # Bounded: a process that stopped reading (stuck, stopped) fills the pipe,
                # and an unbounded write would hold this request thread, and every batch
                # after it behind the write lock, for ever.
                _write_within(fd, frame, self._timeout)
            except (OSError, ValueError, Unavailable):
                with self._lock:
                    self._broken(generation)
                raise Unavailable("the signing process is gone or does not take the batch: "
                                  "the batch is refused, the next one starts a new process"
                                  ) from None
            finally:
                os.close(fd)
            return _Pending(self, generation, number)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._broken(self._generation)

    # ---- inside ----------------------------------------------------------------------------
    def _running(self) -> subprocess.Popen[bytes]:
        """The live process (under the write lock), started anew if there is none."""
        with self._lock:
            if self._closed:
                raise Unavailable("the node is closing: nothing more is signed")
            if self._proc is not None and self._proc.poll() is None:
                return self._proc
            self._broken(self._generation)
        with self._read_lock, self._lock:
            for spent in self._spent:
                if spent.stdout is not None:
                    spent.stdout.close()
            self._spent.clear()
        # -P: ``-m`` would put the working folder first on the module path, and a
        # ``gsomia`` planted there would be what reads the signing key.
        proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "gsomia.shell.binding_signer", str(self._path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, close_fds=True)
        assert proc.stdout is not None and proc.stdin is not None
        os.set_blocking(proc.stdin.fileno(), False)  # written by _write_within only
        try:
            public = _read_exact(proc.stdout.fileno(), 32, _START_TIMEOUT)
        except Unavailable:
            public = None
        if public is None or crypto.fingerprint(public) != self._key:
            _end(proc)
            proc.stdout.close()
            if public is not None:
                raise Unavailable(f"{self._path} holds another key than the node's "
                                  "signing key: nothing is signed with it")
            raise Unavailable(f"the signing process did not start (exit status "
                              f"{proc.returncode}; the server's error output says why)")
        with self._lock:
            self._proc = proc
            self._generation += 1
            self._sent = self._received = 0
            self._answers.clear()
            self._counts.clear()
        return proc

    def _broken(self, generation: int) -> None:
        """(Under _lock.) The process of ``generation`` is of no more use: end it; a new
        one starts on the next :meth:`begin`, and whoever waits on it gets Unavailable."""
        if generation != self._generation:
            return
        proc, self._proc = self._proc, None
        self._generation += 1
        if proc is not None:
            _end(proc)
            self._spent.append(proc)

    def _result(self, generation: int, number: int) -> list[bytes]:
        with self._read_lock:
            while True:
                with self._lock:
                    if generation != self._generation:
                        raise Unavailable("the signing process ended before it signed the "
                                          "batch's bindings: the batch is refused, nothing "
                                          "of it is stored")
                    found = self._answers.pop(number, None)
                    if found is not None:
                        return found
                    proc, answered = self._proc, self._received
                    count = self._counts.pop(answered)
                assert proc is not None and proc.stdout is not None
                try:
                    raw = _read_exact(proc.stdout.fileno(), count * _SIGNATURE,
                                      self._timeout)
                except (Unavailable, OSError, ValueError):
                    with self._lock:
                        self._broken(generation)
                    continue
                with self._lock:
                    if generation != self._generation:
                        continue
                    self._received += 1
                    self._answers[answered] = [raw[i:i + _SIGNATURE]
                                               for i in range(0, len(raw), _SIGNATURE)]

    def _abandon(self, generation: int, number: int) -> None:
        # Its answer is read and dropped, not left for a later batch to read: answers nobody
        # reads (a publisher re-posting what is held) would fill the pipes until the process
        # blocks on its output and every later batch on its input, for good.
        with suppress(Unavailable):  # the process is gone: there is nothing left to read
            self._result(generation, number)


def _end(proc: subprocess.Popen[bytes]) -> None:
    """Kill ``proc``. Its output pipe stays open: a reader may be waiting on it (it then
    reads the end of file); the pipe is closed under the read lock (``_running``)."""
    if proc.stdin is not None:
        proc.stdin.close()
    if proc.poll() is None:
        proc.kill()
    proc.wait()


class _Pending:
    __slots__ = ("_done", "_generation", "_number", "_signer")

    def __init__(self, signer: SigningProcess, generation: int, number: int) -> None:
        self._signer = signer
        self._generation = generation
        self._number = number
        self._done = False

    def result(self) -> list[bytes]:
        out = self._signer._result(self._generation, self._number)
        self._done = True
        return out

    def abandon(self) -> None:
        if not self._done:
            self._done = True
            self._signer._abandon(self._generation, self._number)


def _read_exact(fd: int, size: int, timeout: float) -> bytes:
    """``size`` bytes from ``fd``, or ``Unavailable`` at end of file or after ``timeout``
    seconds without a byte."""
    parts: list[bytes] = []
    left = size
    while left:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            raise Unavailable("the signing process did not answer in time")
        chunk = os.read(fd, left)
        if not chunk:
            raise Unavailable("the signing process ended")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _write_within(fd: int, data: bytes, timeout: float) -> None:
    """All of ``data`` to the non-blocking ``fd``, or ``Unavailable`` after ``timeout``
    seconds in which the pipe took no byte."""
    view = memoryview(data)
    while view:
        _, ready, _ = select.select([], [fd], [], timeout)
        if not ready:
            raise Unavailable("the signing process did not take the batch in time")
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:  # room for less than a pipe's atomic write: wait again
            continue


# ---- the process itself ------------------------------------------------------------------------


def _serve(key_path: Path) -> int:
    import signal

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gsomia.shell.keys import exposed_private_keys

    # Ctrl-C at the server's terminal reaches this process too: it ends when the node
    # closes the pipe instead, after the node's own shutdown.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if exposed_private_keys(key_path.parent, {"signing": key_path.name}):
        print(f"{key_path}: the group or others may read this private key: not used "
              f"(chmod 600 {key_path})", file=sys.stderr)
        return 2
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    except (OSError, ValueError) as exc:
        print(f"{key_path}: cannot load the signing key: {exc}", file=sys.stderr)
        return 2
    if not isinstance(key, Ed25519PrivateKey):
        print(f"{key_path}: not an Ed25519 private key", file=sys.stderr)
        return 2
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    _write_fd(stdout, crypto.raw_public(key))
    sign = key.sign
    while True:
        head = _read_fd(stdin, 4)
        if head is None:
            return 0  # the node closed the pipe: it is done or gone
        count = int.from_bytes(head, "big")
        if count > _MAX_COUNT:
            return 2
        body = _read_fd(stdin, count * _DIGEST) if count else b""
        if body is None:
            return 0
        _write_fd(stdout, b"".join(
            sign(crypto.signed_message(crypto.BINDING_CONTEXT, body[i:i + _DIGEST]))
            for i in range(0, len(body), _DIGEST)))


def _read_fd(fd: int, size: int) -> bytes | None:
    parts: list[bytes] = []
    left = size
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            return None
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


if __name__ == "__main__":
    sys.exit(_serve(Path(sys.argv[1])))
