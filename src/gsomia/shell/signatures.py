"""Signature checks on another process: a node's receive handler and sender hand the Ed25519
verifications of a batch (the senders' envelope signatures, the originators' bindings, the
partners' receipts) to one worker process while they decrypt, screen and hash.

The worker gets public keys, signatures and the bytes signed, never a private key, and
answers one yes or no per signature; a no stops what it signs. Small batches (a light
load's one item) are verified in the caller's process: the round trip to the worker would
cost them more than the check. Should the worker die or answer out of shape, the batch is
verified in the caller's process instead, so a check is never skipped.

``gsomia node run`` starts the worker first thing (:meth:`SignatureWorker.start`: forked
before the node opens its store or loads a key, so it holds neither, and costs no start-up
of its own). Elsewhere, and to replace a worker that died, it is spawned (none of the
node's memory: it imports this module and the core's crypto, and the parent's main module
only when that is a script) with the first batch large enough to go to it, and only where
it runs with Python's safe path (:func:`safe_to_spawn`; else the checks are made in the
node's process).
"""

from __future__ import annotations

import multiprocessing
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TYPE_CHECKING

from gsomia.core.crypto import SignatureCheck, verify_checks

if TYPE_CHECKING:
    from gsomia.service.ports import SignatureChecks

__all__ = ["IN_PROCESS_BELOW", "RememberingChecks", "SignatureWorker", "safe_to_spawn"]

# Below this many signatures a batch is verified where it is: a round trip to the worker
# (pickling, two pipe hops, the wake-up) costs about what ten verifications do, and the
# worker's start (0.5 s of CPU) pays only in a node that receives or settles large batches.
IN_PROCESS_BELOW = 32
_WAIT_S = 60.0
# A worker that cannot start (or keeps dying) is not started again and again, one process
# per batch: after this many, the node verifies in its own process only.
_STARTS = 3
_CLOSE_WAIT_S = 2.0


def _die_with(parent: int) -> None:
    """In the worker, first: it ends when the node process does, even by SIGKILL (a crash
    test, an operator), instead of waiting on its pipe for ever. Not by PR_SET_PDEATHSIG:
    that signal follows the parent's *thread* that started the worker (a server's request
    thread, which ends when idle), and would kill the worker under a live node."""
    import os
    import threading
    import time

    if os.getppid() != parent:  # gone already
        os._exit(0)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="gsomia-parent-watch", daemon=True).start()


def safe_to_spawn() -> bool:
    """Whether a spawned worker would run with Python's safe path (``-P``).

    A spawned worker (and multiprocessing's resource tracker) runs ``python -c``, which puts
    the working folder first on the module path unless safe path is on: a
    ``multiprocessing`` planted there would answer the signature checks. The ``gsomia``
    command turns it on for its children once, at its start (:func:`gsomia.shell.cli.main`);
    a process that did not (gsomia used as a library) verifies in its own process rather
    than change its environment under running threads (setenv beside another thread's
    getenv is unsafe, and would reach every process it spawns later)."""
    import os
    import sys

    return bool(sys.flags.safe_path or os.environ.get("PYTHONSAFEPATH"))


def _pool(method: str) -> ProcessPoolExecutor:
    import os

    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context(method),
                               initializer=_die_with, initargs=(os.getpid(),))


def _verify(batch: list[tuple[bytes, bytes, bytes]]) -> list[bool]:
    """In the worker: one answer per (raw public key, signature, message)."""
    return verify_checks([SignatureCheck(*c) for c in batch])


class SignatureWorker:
    """The :class:`gsomia.service.ports.SignatureChecks` of a node process."""

    def __init__(self, *, in_process_below: int = IN_PROCESS_BELOW) -> None:
        self.in_process_below = in_process_below
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._started = 0

    def start(self) -> SignatureWorker:
        """Fork the worker now, before this process loads a key or opens a file: a fork
        copies the parent's memory, so it must hold nothing then (``node run`` calls this
        before it opens the node)."""
        with self._lock:
            if self._pool is None and not self._closed:
                self._started += 1
                self._pool = _pool("fork")
                pool = self._pool
            else:
                return self
        pool.submit(int).result(timeout=_WAIT_S)  # the fork happens here, not later
        return self

    def _executor(self) -> ProcessPoolExecutor | None:
        with self._lock:
            if self._pool is None and not self._closed and self._started < _STARTS \
                    and safe_to_spawn():
                self._started += 1
                self._pool = _pool("spawn")
            return self._pool

    def submit(self, checks: Sequence[SignatureCheck]) -> Callable[[], list[bool]]:
        checks = list(checks)
        if len(checks) < self.in_process_below:
            found = verify_checks(checks)
            return lambda: found
        pool = self._executor()
        future: Future[list[bool]] | None = None
        if pool is not None:
            try:
                future = pool.submit(_verify, [(c.public, c.signature, c.message)
                                               for c in checks])
            except Exception:  # broken or shut down: verify here, and start a new one next
                self._discard(pool)
                future = None

        def answer() -> list[bool]:
            if future is not None:
                try:
                    found = future.result(timeout=_WAIT_S)
                    if isinstance(found, list) and len(found) == len(checks) and \
                            all(type(ok) is bool for ok in found):
                        return found
                except Exception:  # the worker died or hung: the checks are made here
                    self._discard(pool)
            return verify_checks(checks)

        return answer

    def _discard(self, pool: ProcessPoolExecutor | None) -> None:
        with self._lock:
            if pool is not None and self._pool is pool:
                self._pool = None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            _shut(pool)


def _shut(pool: ProcessPoolExecutor) -> None:
    """Stop the worker without waiting on it for ever: a worker stopped or hung (SIGSTOP,
    a wedged check) would otherwise hold ``node stop`` with it."""
    # Taken before shutdown, which forgets them.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.join(timeout=_CLOSE_WAIT_S)
        if process.is_alive():
            process.kill()
            process.join(timeout=_CLOSE_WAIT_S)


class RememberingChecks:
    """The node's :class:`gsomia.service.ports.RememberedChecks`: signature checks through
    ``checks`` (the node's signature worker), each that said yes kept (the last ``keep``)
    and not made again: a key, a signature and the bytes signed verify the same way every
    time. The courier checks each version's binding as it seals it, once per partner it
    goes to; the bytes signed are recomputed from what is stored at each seal, so a label
    or content rewritten since is checked anew (and fails). Only a yes is kept, in the
    process's memory, never on disk."""

    def __init__(self, checks: SignatureChecks, *, keep: int = 8192,
                 _like: RememberingChecks | None = None) -> None:
        self._checks = checks
        self._keep = keep
        self._yes: OrderedDict[SignatureCheck, None] = OrderedDict() if _like is None \
            else _like._yes
        self._lock: threading.Lock = threading.Lock() if _like is None else _like._lock

    @property
    def here(self) -> RememberingChecks:
        """The same, remembering into the same keeping, but verified in the caller's own
        process (:data:`checks_here`): the half of a batch it checks while the worker
        checks the other."""
        # Imported here: a spawned worker imports this module, and needs none of the service.
        from gsomia.service.ports import checks_here

        return self.through(checks_here)

    def through(self, checks: SignatureChecks) -> RememberingChecks:
        """The same keeping, verified through ``checks`` (the node's keeping, which its
        publish path fills, seen by a courier through the node's signature worker)."""
        return RememberingChecks(checks, keep=self._keep, _like=self)

    def vouch(self, made: Iterable[SignatureCheck]) -> None:
        """Keep as a yes each of ``made``: signatures this process has just made itself
        with the key named, over exactly the bytes named (a binding it signed as it
        published). What a seal then finds here was bound by this node to exactly the
        bytes it recomputes from the store: a label or content rewritten on disk since
        makes other bytes, is not found, and is verified (and refused)."""
        with self._lock:
            for check in made:
                self._yes[check] = None
                self._yes.move_to_end(check)
            while len(self._yes) > self._keep:
                self._yes.popitem(last=False)

    def submit(self, checks: Sequence[SignatureCheck]) -> Callable[[], list[bool]]:
        checks = list(checks)
        with self._lock:
            known = [c in self._yes for c in checks]
        todo = [c for c, seen in zip(checks, known, strict=True) if not seen]
        answer = self._checks.submit(todo) if todo else list

        def answers() -> list[bool]:
            found = answer()
            if len(found) != len(todo):
                return [False] * len(checks)  # an answer that does not add up: no yes
            fresh = iter(found)
            out = [True if seen else next(fresh) is True for seen in known]
            with self._lock:
                for check, seen, good in zip(checks, known, out, strict=True):
                    if good and not seen:
                        self._yes[check] = None
                while len(self._yes) > self._keep:
                    self._yes.popitem(last=False)
            return out

        return answers
