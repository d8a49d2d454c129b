"""Consent requests over the peer API: ids proposed and checked, requests kept, listed and
decided.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gsomia.core.errors import MalformedInput
from gsomia.core.types import Party, iso
from gsomia.service import exchange as exchange_handlers
from gsomia.service.ports import ConsentRequest

if TYPE_CHECKING:
    from gsomia.shell.exchange._node import NodePort


def new_request_id(node: NodePort, now: datetime) -> str:
    return f"{node.party}-consent-{now.strftime('%Y%m%dT%H%M%S')}-{os.urandom(4).hex()}"


_REQUEST_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")


def proposed_request_id(value: object, requester: Party) -> str | None:
    """The id a holder proposes for its consent request (it keeps the request pending under
    it before asking), or None for none proposed. Only in the holder's own name space
    (``{holder}-consent-...``): one partner cannot take, or collide with, another's ids."""
    if value is None:
        return None
    prefix = f"{requester}-consent-"
    if not isinstance(value, str) or not value.startswith(prefix) or \
            len(value) > 100 or len(value) == len(prefix) or \
            not set(value) <= _REQUEST_ID_CHARS:
        raise MalformedInput("not a request id of the requester's", where="request",
                             expected=f"{prefix}... (letters, digits and hyphens, at most "
                                      "100 characters)")
    return value


def consent_rows(node: NodePort, item_ids: Collection[str] | None = None
                 ) -> list[dict[str, Any]]:
    """The consent requests register, oldest first; ``item_ids``: only those about these
    items, the others not read (the desk's, for the items its user may read)."""
    with node.store.repository() as repo:
        rows = repo.consent_request_rows(item_ids)
    return [{**r, "at": iso(r["at"]),
             "decided_at": iso(r["decided_at"]) if r["decided_at"] else None} for r in rows]


def consent_row(node: NodePort, request_id: str) -> dict[str, Any]:
    with node.store.repository() as repo:
        row = repo.consent_request_row(request_id)
    if row is None:
        raise MalformedInput(f"no consent request {request_id!r}", where="--request",
                             expected="an id from gsomia consent list")
    return row


def record_request(node: NodePort, *, request_id: str, item_id: str, holder: Party,
                   recipient: Party, reason: str, direction: str, now: datetime,
                   actor: str, bound: int | None = None) -> None:
    """Keep a consent request (asked of this node, or asked by it) and audit it; ``bound``:
    how many of a partner's may be pending."""
    exchange_handlers.record_consent_request(
        node.uow(), request=ConsentRequest(request_id, item_id, holder, recipient, reason,
                                           direction, now), now=now, actor=actor, bound=bound)


def decide_request(node: NodePort, request_id: str, status: str, now: datetime) -> None:
    exchange_handlers.answer_consent_request(node.uow(), request_id=request_id, status=status,
                                             now=now)
