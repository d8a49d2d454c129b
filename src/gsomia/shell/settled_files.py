"""Files asked for at every request, read again only when they may have changed.

A file's bytes are kept under its stat (device, inode, size, modification and change times)
and given again while the stat is the same, but only if the file had *settled* when they were
read: a file changed less than :data:`SETTLED_NS` before it was read is read again at every
ask, since a rewrite in place within the clock's tick (or the 2 s of a FAT file system's
times) can keep its size and its times (racy git's rule); bytes read while it was fresh are
not trusted later either, even once the file looks settled, since such a rewrite may have
followed them. ``partners.json`` (:meth:`gsomia.shell.exchange.Partners.load`) and
the pinned CA files a peer request is decided by (:class:`gsomia.shell.peer_identity.PinnedPeers`)
are read through it: both decide who a node trusts, so a change must never be missed, and both
are asked for at every peer request, where reading them cost tens of microseconds of the
event loop each time.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["SETTLED_NS", "SettledFiles"]

SETTLED_NS = 2_000_000_000
"""A file changed less than this long ago (by its modification or change time, whichever is
later) is read again even if its stat is the one kept."""


class SettledFiles:
    """The bytes of files, each read again only when its stat changed or it had not settled
    (:data:`SETTLED_NS`) when last read. :meth:`read` raises what reading the file raises
    (``OSError``); an unchanged file's bytes are the very object given before, so comparing
    them with what a caller kept is a pointer's comparison."""

    def __init__(self, kept: int = 64) -> None:
        self.kept = kept
        # path -> (its stat when read, whether it had settled when read, its bytes)
        self._files: dict[str, tuple[tuple[int, ...], bool, bytes]] = {}

    def read(self, path: str | Path) -> bytes:
        key = os.fspath(path)
        # Taken before the stat: a write after it moves the file's times past those kept.
        now = time.time_ns()
        st = os.stat(key)
        stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        cached = self._files.get(key)
        # Bytes kept are trusted only if the file had settled when they were read (racy
        # git's rule), not merely by now: bytes read while it was fresh may predate a rewrite
        # within the same tick, which no later stat tells apart (secreview29).
        if cached is not None and cached[0] == stamp and cached[1]:
            return cached[2]
        data = Path(key).read_bytes()
        if cached is not None and cached[2] == data:
            data = cached[2]  # the same bytes: the same object, for the callers' keys
        elif len(self._files) >= self.kept:
            self._files.clear()
        settled = now - max(st.st_mtime_ns, st.st_ctime_ns) > SETTLED_NS
        self._files[key] = (stamp, settled, data)
        return data
