"""Wake-ups: the in-process event that wakes a node's couriers, and the commit signals read."""

from __future__ import annotations

import threading
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gsomia.shell import store as node_store

if TYPE_CHECKING:
    from gsomia.shell.exchange._node import NodePort


# In-process wake-ups: a commit that queued deliveries in the sender's own process (a relay
# stored by ``receive``, a TAXII or dashboard publish through :func:`publish`) wakes it at
# once; commits by other processes are seen through SQLite's ``data_version``.
_WAKE: dict[str, threading.Event] = {}
_WAKE_LOCK = threading.Lock()


def _wake_event(folder: Path) -> threading.Event:
    key = str(Path(folder).resolve())
    with _WAKE_LOCK:
        return _WAKE.setdefault(key, threading.Event())


def wake(node: NodePort) -> None:
    """Tell ``node``'s sender (if one runs, in this process or another) that deliveries are
    queued: after a write not committed through a unit of work (whose commit wakes the
    couriers itself, :func:`gsomia.shell.store.signal_commit`)."""
    event = _WAKE.get(str(Path(node.folder).resolve())) if _WAKE else None
    if event is not None:
        event.set()
    node_store.signal_commit(node.store.engine)


def _drain(sock: Any) -> frozenset[str] | None:
    """Read every commit signal waiting: the recipients they name rows queued to, or None
    if one of them did not say (the couriers then look at the outbox)."""
    named: set[str] | None = set()
    with suppress(OSError):
        while data := sock.recv(256):
            found = node_store.read_datagram(data)
            if found is None:
                named = None
            elif named is not None:
                named |= found
    return None if named is None else frozenset(named)
