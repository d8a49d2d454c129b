"""Guessing defences for the node's sign-in and token checks: throttling and a bounded audit.

:class:`Throttle` slows down whoever fails to authenticate, per source address and per
account (token buckets, in memory, per process). A source that keeps failing is refused,
unchecked, until its bucket refills; an account that keeps failing is refused only to
sources that have failed recently, so a flood against one account from some addresses does
not lock its owner out when they sign in from another (an attacker cannot lock everyone
out). A botnet of fresh addresses still gets a few tries per address: the audit shows it.

:class:`FailureAudit` writes failed authentications to the node's audit log, aggregated per
(source, account, interface): the first failure of each in a window is written at once,
the rest as counts when the window ends, at most ``max_keys`` of them per window (any more
are counted together). A flood therefore adds a bounded number of events per window.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gsomia.service.handlers import FailedAuthentications

__all__ = ["Defences", "FailureAudit", "Throttle", "retry_seconds", "source_of"]

Key = tuple[str, str | None, str]  # source, account, interface


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class Throttle:
    """Token buckets of failures: ``burst`` failures at once, then ``per_s`` per second."""

    def __init__(self, *, source_burst: float = 10, source_per_s: float = 0.5,
                 account_burst: float = 10, account_per_s: float = 0.5,
                 max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._rates = {"source": (source_burst, source_per_s),
                       "account": (account_burst, account_per_s)}
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._max = max_keys
        self._clock = clock
        self._lock = threading.Lock()

    def _level(self, kind: str, name: str, now: float) -> float:
        burst, rate = self._rates[kind]
        found = self._buckets.get((kind, name))
        if found is None:
            return burst
        return min(burst, found.tokens + (now - found.at) * rate)

    def _wait(self, kind: str, level: float) -> float:
        return 0.0 if level >= 1 else (1 - level) / self._rates[kind][1]

    def retry_after(self, source: str, account: str | None) -> float:
        """Seconds until ``source`` may try ``account`` (None: a bare token); 0: now."""
        if not self._buckets:
            return 0.0   # nobody has failed lately: the usual case, kept cheap
        now = self._clock()
        with self._lock:
            src = self._level("source", source, now)
            wait = self._wait("source", src)
            suspect = src < self._rates["source"][0]  # failed recently, from here
            if account is not None and suspect:
                wait = max(wait, self._wait("account", self._level("account", account, now)))
        return wait

    def failed(self, source: str, account: str | None) -> None:
        now = self._clock()
        with self._lock:
            self._take("source", source, now)
            if account is not None:
                self._take("account", account, now)

    def _take(self, kind: str, name: str, now: float) -> None:
        level = self._level(kind, name, now)
        self._buckets.pop((kind, name), None)  # re-inserted last: the dict stays LRU-ordered
        self._buckets[(kind, name)] = _Bucket(max(level - 1, -self._rates[kind][0]), now)
        if len(self._buckets) > self._max:
            self._prune(now)

    def _prune(self, now: float) -> None:
        full = [k for k, b in self._buckets.items() if self._level(k[0], k[1], now)
                >= self._rates[k[0]][0]]
        for k in full:
            del self._buckets[k]
        while len(self._buckets) > self._max:  # the oldest failures go first
            del self._buckets[next(iter(self._buckets))]


@dataclass(slots=True)
class _Count:
    first: datetime
    last: datetime
    failures: int = 0
    throttled: int = 0
    written_failures: int = 0
    written_throttled: int = 0
    announced: bool = False


class FailureAudit:
    """Failed authentications, written to the audit log by one background thread."""

    def __init__(self, write: Callable[[Sequence[FailedAuthentications]], None], *,
                 window_s: float = 60.0, max_keys: int = 50,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._write = write
        self._window = window_s
        self._max = max_keys
        self._clock = clock
        self._counts: dict[Key, _Count] = {}
        self._started = time.monotonic()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def record(self, source: str, account: str | None, interface: str, *,
               throttled: bool = False) -> None:
        now = self._clock()
        with self._cond:
            key: Key = (source, account, interface)
            if key not in self._counts and len(self._counts) >= self._max:
                key = ("(other sources)", None, interface)
            count = self._counts.get(key)
            if count is None:
                count = self._counts[key] = _Count(now, now)
            count.last = now
            if throttled:
                count.throttled += 1
            else:
                count.failures += 1
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="gsomia-auth-audit",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def _due(self, *, everything: bool) -> list[FailedAuthentications]:
        out = []
        for (source, account, interface), c in self._counts.items():
            if not everything and (c.announced or not c.failures):
                continue
            failures, throttled = c.failures - c.written_failures, \
                c.throttled - c.written_throttled
            if failures or throttled:
                out.append(FailedAuthentications(source, account, interface, failures,
                                                 throttled, c.first, c.last))
            c.written_failures, c.written_throttled, c.announced = c.failures, c.throttled, True
        return out

    def _run(self) -> None:
        while True:
            with self._cond:
                left = self._started + self._window - time.monotonic()
                if left > 0 and not self._closed and not any(
                        not c.announced and c.failures for c in self._counts.values()):
                    self._cond.wait(timeout=left)
                ended = time.monotonic() >= self._started + self._window or self._closed
                due = self._due(everything=ended)
                if ended:
                    self._counts.clear()
                    self._started = time.monotonic()
                stop = self._closed
            self._emit(due)
            if stop:
                return

    def _emit(self, due: Sequence[FailedAuthentications]) -> None:
        if not due:
            return
        try:
            self._write(due)
        except Exception as exc:  # the server keeps answering; the operator is told
            print(f"gsomia: could not audit {sum(d.failures for d in due)} failed "
                  f"authentication(s): {exc}", file=sys.stderr)

    def close(self) -> None:
        """Write what is counted and stop the thread."""
        with self._cond:
            self._closed = True
            thread = self._thread
            self._cond.notify()
        if thread is not None:
            thread.join(timeout=10)
        else:
            with self._cond:
                due = self._due(everything=True)
            self._emit(due)


def source_of(request: Any) -> str:
    """The caller's address, as the TCP connection gives it (a Starlette request)."""
    client = getattr(request, "client", None)
    return str(client.host) if client is not None else "unknown"


def retry_seconds(wait: float) -> int:
    """A Retry-After value: whole seconds, at least 1."""
    return max(1, math.ceil(wait))


@dataclass(frozen=True, slots=True)
class Defences:
    """One node app's throttle and failure audit (both interfaces share them)."""

    throttle: Throttle
    audit: FailureAudit

    @classmethod
    def for_service(cls, service: object) -> Defences:
        """Defences writing to the audit log of the store behind a TAXII service (a store
        without a log, as some tests wire, gets failures counted but not written)."""
        store = getattr(getattr(service, "store", None), "store", None)

        def write(counts: Sequence[FailedAuthentications]) -> None:
            from gsomia.service import handlers

            if store is not None:
                handlers.record_failed_authentications(store.uow(), counts=counts,
                                                       now=datetime.now(UTC))

        return cls(Throttle(), FailureAudit(write))

    def close(self) -> None:
        self.audit.close()
