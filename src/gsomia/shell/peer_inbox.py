"""What a node does with what partners send over the peer API: thin, delegating to handlers.

The delivery pipeline (outbox, retries, HPKE envelopes opened and ingested, receipts signed
back) is issue 4's exchange work and not wired here yet: without a partner's public key this
inbox refuses with :class:`PeerUnavailable` (503) rather than guess. What needs only this
node's own state works now: its signed tree head, and receipts and consents and tree heads
checked against partner keys when the caller supplied them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gsomia.core import crypto
from gsomia.core.audit import AuditKind, TreeHead, verify_tree_head
from gsomia.core.types import Party
from gsomia.service import handlers
from gsomia.service.taxii_ports import PeerUnavailable
from gsomia.shell.node import Node

__all__ = ["NodeInbox"]


class NodeInbox:
    """The ``PeerInbox`` of one node; ``partner_keys`` are partners' Ed25519 signing keys."""

    def __init__(self, node: Node, partner_keys: Mapping[Party, Ed25519PublicKey] | None = None
                 ) -> None:
        self.node = node
        self.partner_keys = dict(partner_keys or {})

    def _key(self, sender: Party) -> Ed25519PublicKey:
        key = self.partner_keys.get(sender)
        if key is None:
            raise PeerUnavailable(f"this node has no signing key for {sender}: add the partner "
                                  "to the federation first")
        return key

    def deliver(self, envelope: crypto.Envelope, sender: Party,
                now: datetime) -> crypto.Receipt:
        self._key(sender)
        raise PeerUnavailable("envelope delivery (open, ingest, receipt) is not wired yet")

    def receipt(self, receipt: crypto.Receipt, sender: Party, now: datetime) -> None:
        handlers.record_receipt(self.node.uow(), keys=self.node.keys, receipt=receipt, now=now,
                                peer_public=self._key(sender), actor=sender)

    def consent_request(self, item_id: str, requester: Party, recipient: Party, reason: str,
                        now: datetime) -> Mapping[str, Any]:
        self._key(requester)
        raise PeerUnavailable("consent requests are queued for the operator in a later step")

    def consent_granted(self, consent: crypto.Consent, sender: Party, now: datetime) -> None:
        handlers.record_consent(self.node.uow(), consent=consent,
                                originator_public=self._key(sender), now=now, actor=sender)

    def consent_refused(self, item_id: str, sender: Party, reason: str, now: datetime) -> None:
        self._key(sender)
        raise PeerUnavailable("consent refusals are recorded in a later step")

    def incident(self, kind: str, item_id: str, description: str, sender: Party,
                 now: datetime) -> None:
        self._key(sender)
        raise PeerUnavailable("partners' incident reports are recorded in a later step")

    def tree_head(self) -> TreeHead:
        with self.node.store.reader() as reader:
            head = reader.latest_head()
        if head is None:
            raise PeerUnavailable("this node's log has no signed tree head yet")
        return head

    def partner_tree_head(self, head: TreeHead, sender: Party,
                          now: datetime) -> Mapping[str, Any]:
        verify_tree_head(head, self._key(sender))
        with self.node.uow() as uow:
            uow.audit.append(AuditKind.TREE_HEAD_EXCHANGED, now, sender,
                             details={"partner": sender, "head": head.to_json()})
            uow.commit()
        return self.tree_head().to_json()
