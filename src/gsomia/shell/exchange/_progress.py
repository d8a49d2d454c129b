"""The couriers' progress: how far each partner link has got with the rows the node's commits
queued to it, for the warning centre in the same process (``gsomia node run``), which lets
the couriers post a report before its pass takes the interpreter.

Per link, three counts and a flag, under one condition:

- ``asked``: the commits that queued rows to the link, counted as each commits, while its
  transaction still holds the write lock (:func:`gsomia.shell.store.on_queueing`): a commit
  the centre can see is counted already, however soon it looks.
- ``committed``: the same commits counted once each is over (visible, or failed), from the
  committing thread (:func:`gsomia.shell.store.on_queued`). A link's pass takes this count as
  its ticket before it reads the outbox: every commit counted is visible to that read (they
  commit one at a time, in the order they were asked), so its rows are in the pass's claim
  unless they are in flight, backing off or not due.
- ``dealt``: the highest ticket of a pass that ended, or of a batch whose request went out.
  A pass that sealed a batch still to be posted counts it in ``unsent`` until its request
  is written (or its post fails), so an ended pass never stands for an envelope not sent.
- ``resting``: the link waits out its own backoff (its partner did not answer): it takes
  nothing meanwhile, so nothing waits for it.

The centre, about to read the notes stored, takes ``asked`` as it stands and waits until each
link not resting has ``dealt`` that far with nothing unsent, or for ``bound`` seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from gsomia.core.types import Party


class CourierProgress:
    """What the couriers have dealt with, shared with the centre (see the module's text)."""

    def __init__(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._asked: dict[Party, int] = {}
        self._committed: dict[Party, int] = {}
        self._dealt: dict[Party, int] = {}
        self._unsent: dict[Party, int] = {}
        self._resting: set[Party] = set()

    # The committing thread's calls (through Couriers' store hooks).
    def queueing(self, links: Iterable[Party]) -> None:
        """A commit about to be made queued rows to ``links`` (it holds the write lock)."""
        with self._changed:
            for link in links:
                self._asked[link] = self._asked.get(link, 0) + 1

    def queued(self, links: Iterable[Party]) -> None:
        """That commit is over (made or failed): a read from now on sees what it made."""
        with self._changed:
            for link in links:
                self._committed[link] = self._committed.get(link, 0) + 1

    # A link's calls.
    def taking(self, link: Party) -> int:
        """A pass of ``link`` is about to read the outbox: its ticket."""
        with self._changed:
            return self._committed.get(link, 0)

    def sealed(self, link: Party) -> None:
        """The pass sealed a batch, to be posted (:meth:`sent` once it is)."""
        with self._changed:
            self._unsent[link] = self._unsent.get(link, 0) + 1

    def sent(self, link: Party, ticket: int) -> None:
        """A batch's request is written to its partner, or its post failed (once a batch)."""
        with self._changed:
            self._unsent[link] = max(0, self._unsent.get(link, 0) - 1)
            self._deal(link, ticket)

    def dealt(self, link: Party, ticket: int) -> None:
        """A pass of ``link`` with ``ticket`` ended: what it took is posted, on its way
        (:meth:`sealed`), refused at seal or left for later."""
        with self._changed:
            self._deal(link, ticket)

    def resting(self, link: Party, rests: bool) -> None:
        """``link`` waits out its backoff (True) or takes rows again (False)."""
        with self._changed:
            if rests:
                self._resting.add(link)
                self._changed.notify_all()
            else:
                self._resting.discard(link)

    def _deal(self, link: Party, ticket: int) -> None:
        self._dealt[link] = max(ticket, self._dealt.get(link, 0))
        self._changed.notify_all()

    # The centre's.
    def owing(self) -> dict[Party, int]:
        """The links that have not dealt with every commit asked so far, with that count."""
        with self._changed:
            return self._owing(dict(self._asked))

    def _owing(self, asked: dict[Party, int]) -> dict[Party, int]:
        return {link: count for link, count in asked.items()
                if link not in self._resting and
                (self._dealt.get(link, 0) < count or self._unsent.get(link, 0) > 0)}

    def wait(self, bound: float) -> float:
        """Wait until every link not resting has dealt with the commits asked so far (not
        those asked meanwhile), at most ``bound`` seconds; the seconds waited (0.0: none
        owed anything)."""
        with self._changed:
            asked = dict(self._asked)
            if not self._owing(asked):
                return 0.0
            start = time.monotonic()
            end = start + bound
            while self._owing(asked):
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            return time.monotonic() - start
