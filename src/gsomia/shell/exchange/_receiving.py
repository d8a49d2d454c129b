"""Receiving: a partner's batch of envelopes handed to the handlers over the replay register
read, in one commit.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from gsomia.core import crypto
from gsomia.core.errors import Unavailable
from gsomia.core.types import Party
from gsomia.service import exchange as exchange_handlers
from gsomia.service.exchange import Delivered
from gsomia.service.ports import SignatureChecks, checks_here
from gsomia.service.refusals import RefusalWindow
from gsomia.shell.store import ConstraintViolated

if TYPE_CHECKING:
    from gsomia.shell.exchange._node import NodePort
    from gsomia.shell.exchange._partners import Partners


def _checks(node: NodePort) -> SignatureChecks:
    """The node's signature worker; a node port without one verifies in its own process."""
    found: SignatureChecks | None = getattr(node, "signatures", None)
    return found if found is not None else checks_here


def _seen_nonces(node: NodePort, nonces: list[str]) -> set[str]:
    if not nonces:
        return set()
    with node.store.repository() as repo:
        return repo.seen_nonces(nonces)


def _revoked_standing(node: NodePort, named: Collection[tuple[str, str]]
                      ) -> set[tuple[str, str]]:
    # (consent id, originator): a revocation signed by another party that names the id
    # revokes nothing (as in standing.in_force), and must not refuse the relays under it.
    with node.store.repository() as repo:
        return repo.revoked_standing(named)


_RECEIVE_TRIES = 3  # each lost only to a concurrent delivery of some of the same nonces


def receive(node: NodePort, partners: Partners, envelopes: Sequence[crypto.Envelope],
            sender: Party, now: datetime, window: RefusalWindow | None = None
            ) -> list[Delivered]:
    """Verify, ingest and receipt a batch of envelopes from ``sender`` (one commit);
    ``window``: how many refused envelopes of ``sender`` go on record one by one.

    A concurrent delivery (the peer API answers each on a thread of its own) that stored
    some of the same nonces first makes the commit fail on the replay register's key: the
    batch is received again over the register read anew, so only those nonces are replays
    and the rest are stored (a refusal is final to the sender: a new envelope refused with
    them would never be delivered). Lost every time: refused as unavailable, which the
    sender retries."""
    nonces = [crypto.b64u(e.nonce) for e in envelopes]
    for _ in range(_RECEIVE_TRIES):
        seen = _seen_nonces(node, nonces)
        try:
            # The relays of what it stores are queued in its commit, which wakes the links.
            # Synced outside the write lock: a second batch, arriving while this one's
            # disk sync runs (a report sent beside one in flight), takes the lock and
            # writes meanwhile instead of waiting for that sync, then syncs its own; the
            # answer still goes only once the batch is on disk.
            return exchange_handlers.receive(
                node.store.uow(sync_outside=True), keys=node.keys, catalogue=node.catalogue,
                signing_keys=partners.signing_keys(), envelopes=envelopes, sender=sender,
                seen=seen, now=now, revoked=lambda named: _revoked_standing(node, named),
                checks=_checks(node), window=window)
        except ConstraintViolated:
            continue
    raise Unavailable(f"concurrent deliveries kept storing the nonces of this batch of "
                      f"{len(envelopes)} envelope(s) first ({_RECEIVE_TRIES} tries): "
                      "nothing of it was stored; send it again")
