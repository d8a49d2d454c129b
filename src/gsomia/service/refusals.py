"""How many of a partner's refused messages go on record one by one: a bounded window.

Each refused partner message (a notice, with reasons up to a few KB) used to be one audit
event, so a partner sending junk in a loop grew the log without end. :class:`RefusalWindow`
lets the first ``per_window`` refusals of each partner in a window be written as before and
counts the rest; when the window has closed, the count goes on record as one summary event
(the kinds of notice refused, how many, the first item ids, when), written with the next
refusal of any partner or by :meth:`RefusalWindow.closed` when the node stops. A flood
therefore adds at most ``per_window + 1`` events per partner per window, and nothing is lost
silently: every refusal is either on record itself or counted in a summary.

It keeps the counts in memory, per process, like the sign-in failure audit
(:class:`gsomia.shell.guard.FailureAudit`): a node that dies before a window closes loses
that window's count, never an accepted message.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gsomia.core.types import Party

__all__ = ["OTHER_ACCOUNTS", "OTHER_PARTNERS", "RefusalSummary", "RefusalWindow"]

OTHER_PARTNERS = "(other partners)"
# The same for a node's people (its TAXII posts refused for their rights): not a person's
# name, and not a partner's.
OTHER_ACCOUNTS = "(other accounts)"
_ITEMS_NAMED = 10  # the first item ids of a summary: a refused item stays traceable


@dataclass(frozen=True, slots=True)
class RefusalSummary:
    """Refusals of ``sender`` not written one by one in the window ``first``..``last``."""

    sender: Party
    kinds: dict[str, int]
    item_ids: tuple[str, ...]
    first: datetime
    last: datetime

    @property
    def count(self) -> int:
        return sum(self.kinds.values())

    def details(self) -> dict[str, Any]:
        # ``reasons`` as a refusal written one by one has them, for whoever reads the log.
        return {"sender": self.sender, "summary": True, "refused": self.count,
                "reasons": [f"{self.count} more refused from {self.sender} in this window, "
                            "counted, not written one by one"],
                "notices": dict(sorted(self.kinds.items())), "item_ids": list(self.item_ids),
                "first": self.first.isoformat(), "last": self.last.isoformat()}


@dataclass(slots=True)
class _Window:
    start: datetime
    written: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    item_ids: list[str] = field(default_factory=list)
    first: datetime | None = None
    last: datetime | None = None


class RefusalWindow:
    """Per partner, ``per_window`` refusals on record one by one per ``window``; the rest
    counted. At most ``max_partners`` partners are counted apart (any more together, as
    ``overflow``)."""

    def __init__(self, *, per_window: int = 10, window: timedelta = timedelta(minutes=1),
                 max_partners: int = 50, overflow: str = OTHER_PARTNERS) -> None:
        if per_window < 0 or window <= timedelta(0):
            raise ValueError("a refusal window needs per_window >= 0 and a positive length")
        self._per_window = per_window
        self._window = window
        self._max = max_partners
        self._overflow = overflow
        self._windows: dict[Party, _Window] = {}
        self._lock = threading.Lock()

    def admit(self, sender: Party, kind: str, item_id: object,
              now: datetime) -> tuple[bool, list[RefusalSummary]]:
        """Whether this refusal is written itself, and the summaries of the windows that
        have closed by ``now`` (to be written in the same commit)."""
        with self._lock:
            due = self._close(now)
            if sender not in self._windows and len(self._windows) >= self._max:
                sender = self._overflow
            window = self._windows.setdefault(sender, _Window(now))
            if window.written < self._per_window:
                window.written += 1
                return True, due
            window.kinds[kind] += 1
            if isinstance(item_id, str) and item_id and len(window.item_ids) < _ITEMS_NAMED \
                    and item_id[:300] not in window.item_ids:
                window.item_ids.append(item_id[:300])
            window.first = window.first or now
            window.last = now
            return False, due

    def closed(self, now: datetime | None = None) -> list[RefusalSummary]:
        """The summaries of the windows closed by ``now`` (None: of every window, as the node
        stops), forgotten here once returned."""
        with self._lock:
            return self._close(now)

    def give_back(self, summaries: Sequence[RefusalSummary]) -> None:
        """Summaries whose commit failed: counted again, to be written with the next."""
        with self._lock:
            for summary in summaries:
                window = self._windows.setdefault(
                    summary.sender, _Window(summary.first, written=self._per_window))
                window.kinds.update(summary.kinds)
                for item_id in summary.item_ids:
                    if len(window.item_ids) < _ITEMS_NAMED and item_id not in window.item_ids:
                        window.item_ids.append(item_id)
                window.first = min(window.first or summary.first, summary.first)
                window.last = max(window.last or summary.last, summary.last)
                window.start = min(window.start, summary.first)

    def _close(self, now: datetime | None) -> list[RefusalSummary]:
        ended = [s for s, w in self._windows.items()
                 if now is None or now >= w.start + self._window]
        out = []
        for sender in ended:
            w = self._windows.pop(sender)
            if w.kinds and w.first is not None and w.last is not None:
                out.append(RefusalSummary(sender, dict(w.kinds), tuple(w.item_ids), w.first,
                                          w.last))
        return out
