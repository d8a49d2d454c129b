"""The couriers: one sender per partner link, each on a thread of its own, woken at the commits
that concern it; the shape of a node's background loops.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Collection, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, Protocol

from gsomia.core.types import Party
from gsomia.shell import store as node_store
from gsomia.shell.exchange._outbox import scan
from gsomia.shell.exchange._partners import require_partners
from gsomia.shell.exchange._progress import CourierProgress
from gsomia.shell.exchange._sender import _STOP_SLICE_S, FALLBACK_S, Kick, Sender
from gsomia.shell.exchange._wake import _drain, _wake_event
from gsomia.shell.store import now_utc

if TYPE_CHECKING:
    from gsomia.shell.exchange._node import Clock, NodePort


class Worker(Protocol):
    def run(self, stop: threading.Event) -> None: ...

    def close(self) -> None: ...


def in_background(worker: Worker, name: str) -> tuple[threading.Thread, threading.Event]:
    """``worker.run(stop)`` on a daemon thread until ``stop`` is set, then ``worker.close()``:
    the shape of every loop ``gsomia node run`` keeps beside its API."""
    stop = threading.Event()

    def loop() -> None:
        try:
            worker.run(stop)
        finally:
            worker.close()

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread, stop


def stop_background(loops: Sequence[tuple[threading.Thread, threading.Event]],
                    timeout: float) -> None:
    """Tell every loop of :func:`in_background` to stop, all at once, then wait for them in
    the order given, ``timeout`` seconds in all. Told one after another, each told only once
    the one before had ended (or had its 5 s), the sender came last: past the 10 s after
    which a node is killed, with the answer to its batch in flight unrecorded."""
    for _, stop in loops:
        stop.set()
    end = time.monotonic() + timeout
    for thread, _ in loops:
        thread.join(max(0.0, end - time.monotonic()))


class Couriers:
    """A node's couriers: one :class:`Sender` loop per partner link, each on a thread of
    its own taking only the rows to its partner, so that a report for JPN never waits for
    USA's answer or for the commit of USA's receipts. This loop wakes them: at a commit
    signal (the one every writing unit of work sends, in any process of the node) only the
    links to which a row was queued since their last wake-up (one indexed query: a commit
    that settles USA's receipts costs JPN's loop nothing), and all of them every
    ``fallback`` seconds at most (a row whose signal was lost, or left by a crash,
    still goes); without the signal (another sender of this database listens to it) it
    looks every ``idle`` seconds whether anything was committed. A partner added to
    partners.json gets its loop at the next wake-up."""

    def __init__(self, node: NodePort, *, batch: int = 256, clock: Clock = now_utc,
                 progress: CourierProgress | None = None) -> None:
        self.node = node
        # How far each link has got with the rows this process's commits queued to it, for
        # the warning centre beside them (``node run``), which gives way to them.
        self.progress = progress if progress is not None else CourierProgress()
        self.batch = batch
        self.clock = clock
        self._links: dict[Party, tuple[Sender, threading.Thread, Kick]] = {}
        self._recovered = False
        self._sealing = threading.Lock()  # one link seals at a time (see Sender.sealing)
        # Each recipient's newest pending row when its link was last woken for it.
        self._seen: dict[str, int] = {}

    def _open_links(self, stop: threading.Event) -> None:
        partners = require_partners(self.node)
        if not self._recovered:
            # Crash recovery once, before any loop: every commit since queues its own.
            scan(self.node, partners, self.clock())
            self._recovered = True
        new = sorted((set(partners.deliver_to) | set(partners.peers)) - set(self._links))
        if not new:
            return
        for code in new:
            sender = Sender(self.node, batch=self.batch, clock=self.clock, link=code)
            sender._recovered = True
            sender.sealing = self._sealing
            sender.progress = self.progress
            kick = Kick()
            thread = threading.Thread(target=self._link_loop, args=(sender, stop, kick),
                                      name=f"gsomia-sender-{code}", daemon=True)
            self._links[code] = (sender, thread, kick)
        # Notices to a recipient without a link (no URL for it) go with the first link's,
        # to fail and back off as they always did.
        links = frozenset(self._links)
        for code, (sender, _, _) in sorted(self._links.items()):
            sender.hand_strays(links if code == min(links) else None)
        for code in new:
            self._links[code][1].start()

    @staticmethod
    def _link_loop(sender: Sender, stop: threading.Event, kick: threading.Event) -> None:
        try:
            sender.run(stop, kick)
        finally:
            sender.close()

    def _kick(self, links: Collection[Party] | None = None) -> None:
        for code, (_, _, kick) in list(self._links.items()):
            if links is None or code in links:
                kick.set()

    def _links_of(self, recipients: frozenset[str]) -> set[Party]:
        """The links that take rows to ``recipients`` (a recipient without a link of its
        own: the first link's, as :meth:`_open_links` hands them)."""
        links = set(self._links)
        return {to if to in links else min(links) for to in recipients} if links else set()

    def _queueing(self, recipients: frozenset[str]) -> None:
        """A commit of this process is about to queue rows to ``recipients`` (from the
        committing thread, the write lock held; see :func:`gsomia.shell.store.on_queueing`)."""
        self.progress.queueing(self._links_of(recipients))

    def _queued(self, recipients: frozenset[str]) -> None:
        """A commit of this process queued rows to ``recipients``: wake their links (from
        the committing thread; see :func:`gsomia.shell.store.on_queued`)."""
        links = self._links_of(recipients)
        self.progress.queued(links)
        with suppress(Exception):  # told once: the progress must not count it twice
            self._kick(links)

    def _concerned(self) -> set[Party] | None:
        """The links with a row queued since they were last woken for their rows: the
        recipient's own, or the first link's for a recipient without one (as
        :meth:`_open_links` hands them). None: the store could not say (wake them all)."""
        try:
            newest = self.node.store.newest_pending()
        except Exception:  # the store busy: a pass too many costs less than a row left
            return None
        links = set(self._links)
        concerned: set[Party] = set()
        for to, row in newest.items():
            link = to if to in links else min(links, default=None)
            if link is not None and row > self._seen.get(to, 0):
                concerned.add(link)
                self._seen[to] = row
        return concerned

    def _wake_links(self, named: frozenset[str] | None, *, every: bool = False) -> None:
        """Kick the links the commits since the last wake-up concern: every link on the
        fallback pass; those of the recipients the commit signals ``named`` (no query; an
        empty set: none, as a commit whose rows this process's links were handed already);
        None, signals that did not say: those with a row queued since (one query)."""
        if every:
            self._kick()
        elif named is None:
            self._kick(self._concerned())
        elif named:
            self._queued(named)

    def run(self, stop: threading.Event, idle: float = 0.004,
            fallback: float = FALLBACK_S) -> None:
        import select

        last = ""
        woken = _wake_event(self.node.folder)
        signals = node_store.listen_for_commits(self.node.store.engine)
        changes = node_store.Changes(self.node.store.engine) if signals is None else None
        fell_back = True
        node_store.on_queued(self.node.store.engine, self._queued)
        node_store.on_queueing(self.node.store.engine, self._queueing)
        try:
            while not stop.is_set():
                # Which links the commits since the last wake-up concern: named by their
                # signals, or (a signal that does not say, a wake(), a poll) looked up.
                unnamed = woken.is_set() or signals is None
                woken.clear()
                named = _drain(signals) if signals is not None else None
                if changes is not None:
                    changes()  # what the kicked passes see; a commit from now on kicks again
                if fell_back or not self._links:  # not at every commit: partners rarely change
                    try:
                        self._open_links(stop)
                    except Exception as exc:  # no partners yet, the store busy: next wake-up
                        if repr(exc) != last:  # say it once, not every pass
                            last = repr(exc)
                            print(f"gsomia sender: {last}", file=sys.stderr, flush=True)
                self._wake_links(None if unnamed else named, every=fell_back)
                until = time.monotonic() + fallback
                fell_back = True
                while not stop.is_set() and time.monotonic() < until:
                    if changes is not None:
                        if woken.wait(idle) or changes():
                            fell_back = False
                            break
                        continue
                    # In slices, so that a stop is seen within one.
                    wait = max(0.0, min(_STOP_SLICE_S, until - time.monotonic()))
                    if select.select([signals], [], [], wait)[0] or woken.is_set():
                        fell_back = False
                        break
        finally:
            node_store.on_queueing(self.node.store.engine, None)
            node_store.on_queued(self.node.store.engine, None)
            if changes is not None:
                changes.close()
            if signals is not None:
                signals.close()
            self._kick()  # each loop sees the stop now, not at the end of its sleep
            for _, thread, _ in list(self._links.values()):
                thread.join()  # each records the answer of its batch in flight

    def close(self) -> None:
        pass


def start_sender(node: NodePort, progress: CourierProgress | None = None
                 ) -> tuple[threading.Thread, threading.Event]:
    """The couriers on daemon threads (``gsomia node run``), telling ``progress`` how far
    they got (the warning centre's, beside them)."""
    return in_background(Couriers(node, progress=progress), "gsomia-sender")
