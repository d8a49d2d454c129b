"""The outbox: crash recovery's scan, a federation node's publish, what is queued, and a caller's
wait for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gsomia.core.types import Party
from gsomia.service import handlers
from gsomia.service import outbox as outbox_handlers
from gsomia.service.ports import StixValidator
from gsomia.shell.exchange._partners import require_partners
from gsomia.shell.store import now_utc

if TYPE_CHECKING:
    from gsomia.shell.exchange._node import NodePort
    from gsomia.shell.exchange._partners import Partners


PENDING, DELIVERED, REFUSED = "pending", "delivered", "refused"


def scan(node: NodePort, partners: Partners, now: datetime) -> int:
    """Crash recovery: queue what was stored since the last scan (items stored before the
    node had partners); one transaction, the count queued. Every publish and every receipt
    queues its own deliveries in its commit, so this finds work only after such a gap."""
    # Read first: most passes find nothing new, and must not take the write lock.
    with node.store.repository() as repo:
        if not repo.stored_since_scan():
            return 0
    return outbox_handlers.recover(node.uow(), now)


def publish(node: NodePort, *,
            entries: Sequence[tuple[Mapping[str, Any], handlers.LabelRequest]],
            now: datetime | None = None, actor: str = "operator",
            validate: StixValidator | None = None) -> list[handlers.Published]:
    """``handlers.publish_many`` in a federation's node (its deliveries are queued in the
    same commit, as on every publish path), then the sender woken."""
    at = now or now_utc()
    at = at.replace(microsecond=at.microsecond // 1000 * 1000)  # labels keep milliseconds
    require_partners(node)
    # Its commit wakes the couriers (the links it queued rows for, named in the commit
    # signal): a wake() more here would have them look at the outbox again, in the middle
    # of posting the rows just queued.
    return handlers.publish_many(node.uow(), keys=node.keys, catalogue=node.catalogue,
                                 entries=entries, now=at, actor=actor, validate=validate)


def pending(node: NodePort, recipient: Party | None = None) -> int:
    """Deliveries not yet receipted (or refused)."""
    with node.store.repository() as repo:
        return repo.deliveries_pending(recipient)


def outbox_rows(node: NodePort) -> list[dict[str, Any]]:
    """The deliveries of the outbox (its notices: :func:`gsomia.shell.notices.notice_rows`)."""
    with node.store.repository() as repo:
        return repo.delivery_rows()


def wait_until(check: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``check()`` until true or ``timeout`` seconds pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(interval)
    return bool(check())
