"""What a node does with what partners send over the peer API: thin, delegating to handlers
and to :mod:`gsomia.shell.exchange`.

Partners' keys come from the node's ``partners.json`` (``gsomia federation up``) unless the
caller supplies them. A node that has none refuses with :class:`PeerUnavailable` (503)
rather than guess.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gsomia.core import crypto
from gsomia.core.audit import AuditKind, TreeHead
from gsomia.core.errors import (
    LimitReached,
    MalformedInput,
    PeerUnavailable,
    PolicyDenied,
    Replayed,
)
from gsomia.core.outbox import STANDING_CONSENT, STANDING_REVOCATION
from gsomia.core.types import Party
from gsomia.service import exchange as exchange_handlers
from gsomia.service import handlers, standing
from gsomia.service import notices as notice_handlers
from gsomia.service.refusals import RefusalWindow
from gsomia.shell import exchange, notices
from gsomia.shell.node import Node
from gsomia.shell.peer_identity import PeerRefused

__all__ = ["INCIDENT_KINDS", "NodeInbox", "Replayed"]

INCIDENT_KINDS = ("loss", "compromise", "possible-compromise", "investigation-result")
CONSENT_REQUEST = "consent-request"  # as the refused notices name it


class NodeInbox:
    """The ``PeerInbox`` of one node; ``partner_keys`` are partners' Ed25519 signing keys."""

    def __init__(self, node: Node, partner_keys: Mapping[Party, Ed25519PublicKey] | None = None
                 ) -> None:
        self.node = node
        self.partner_keys = dict(partner_keys or {})
        self._leaves = notices.LeafCache()
        # Partners' refused notices and envelopes on record one by one up to a bound, then
        # counted (apart: a summary names one kind of event).
        self.refusals = RefusalWindow()
        # A sender retrying a batch whose answer it lost gets a refusal (replay) per envelope:
        # more room than for notices, still bounded.
        self.envelope_refusals = RefusalWindow(per_window=30)
        # Client certificates that count as no partner: whoever holds one can call in a loop
        # (room for an impostor trying every route, on record in full).
        self.peer_refusals = RefusalWindow(per_window=30)

    def close(self) -> None:
        """Put on record the refusals still counted (the node stops)."""
        try:
            now = datetime.now(UTC)
            notice_handlers.record_refusal_summaries(self.node.uow(), refusals=self.refusals,
                                                     now=now, everything=True)
            notice_handlers.record_refusal_summaries(
                self.node.uow(), refusals=self.envelope_refusals, now=now, everything=True,
                kind=AuditKind.ENVELOPE_REFUSED)
            notice_handlers.record_refusal_summaries(
                self.node.uow(), refusals=self.peer_refusals, now=now, everything=True,
                kind=AuditKind.PEER_REFUSED)
        except Exception as exc:  # the node still stops; the operator is told
            print(f"gsomia: could not audit the partners' refusals still counted: {exc}",
                  file=sys.stderr)

    def partners(self) -> exchange.Partners:
        # Read on each call: `federation up` may rewrite it while the node runs.
        found = exchange.Partners.load(self.node.folder)
        if found is None:
            raise PeerUnavailable("this node belongs to no federation (no partners.json)")
        return found

    def _key(self, sender: Party) -> Ed25519PublicKey:
        key = self.partner_keys.get(sender)
        if key is None:
            found = exchange.Partners.load(self.node.folder)
            peer = found.peers.get(sender) if found is not None else None
            key = peer.signing_public if peer is not None else None
        if key is None:
            raise PeerUnavailable(f"this node has no signing key for {sender}: add the partner "
                                  "to the federation first")
        return key

    def _originator_key(self, originator: Party) -> Ed25519PublicKey:
        """The key of a party whose signed document a partner passes on. One the federation
        does not list is refused (403, not retried: this node checks nothing it signs, so
        takes no relay under its consents), where a node with no partners.json yet answers
        503 (it may join and then need it)."""
        key = self.partner_keys.get(originator)
        if key is not None:
            return key
        found = exchange.Partners.load(self.node.folder)
        if found is None:
            return self._key(originator)
        peer = found.peers.get(originator)
        if peer is None:
            raise PolicyDenied((f"{originator} is no party of this node's federation: "
                                "nothing it signs is taken here",))
        return peer.signing_public

    def deliver(self, envelope: crypto.Envelope, sender: Party,
                now: datetime) -> crypto.Receipt:
        """One envelope: its receipt, or the refusal raised (403; 409 for a replay, 422 for
        a payload that is malformed, oversized or names what the agreements do not know)."""
        result = self.deliver_many([envelope], sender, now)[0]
        if result.receipt is None:
            if result.status == 409:
                raise Replayed(result.reasons)
            if result.status == 422:
                raise MalformedInput("; ".join(result.reasons), where="envelope")
            raise PolicyDenied(result.reasons)
        return result.receipt

    def deliver_many(self, envelopes: list[crypto.Envelope], sender: Party,
                     now: datetime) -> list[exchange.Delivered]:
        return exchange.receive(self.node, self.partners(), envelopes, sender, now,
                                self.envelope_refusals)

    def peer_refused(self, refusal: PeerRefused, route: str, now: datetime) -> None:
        """A client certificate that counts as no partner: recorded under the party whose CA
        issued it (that CA's key made it), or ``unknown-peer``."""
        notice_handlers.record_peer_refused(self.node.uow(), issuer=refusal.issuer,
                                            details=refusal.to_json(), route=route, now=now,
                                            refusals=self.peer_refusals)

    def receipt(self, receipt: crypto.Receipt, sender: Party, now: datetime) -> None:
        handlers.record_receipt(self.node.uow(), keys=self.node.keys, receipt=receipt, now=now,
                                peer_public=self._key(sender), actor=sender,
                                delivered_only=True)

    def consent_request(self, item_id: str, requester: Party, recipient: Party, reason: str,
                        now: datetime, request: object = None) -> Mapping[str, Any]:
        """A holder asks this node, as originator, to consent to a release: queued for the
        operator (``gsomia consent grant|deny``), under ``request``, the id the holder
        proposes (it holds the request pending under it), else one of this node's."""
        self._key(requester)
        proposed = exchange.proposed_request_id(request, requester)
        item = None
        with self.node.store.repository() as repo:
            item = repo.get_item(item_id)
            kept = repo.consent_request_row(proposed) if proposed is not None else None
        if item is None or item.originator != self.node.party:
            # Not held, or not ours to consent to: the same answer for both.
            raise PolicyDenied((f"{item_id} did not originate at {self.node.party}",))
        if kept is not None:
            # The holder asking again under the same id (it lost the answer): the one kept.
            if (kept["direction"], kept["holder"], kept["item_id"], kept["recipient"]) != \
                    ("incoming", requester, item_id, recipient):
                raise MalformedInput(f"request {proposed} is another request of "
                                     f"{requester}'s", where="request")
            answer: dict[str, Any] = {"request": proposed, "status": kept["status"]}
            if kept["status"] == "granted":
                # The reply that carried it may be what was lost: the signed consent again,
                # which the holder checks and keeps as it would have kept the reply.
                with self.node.store.repository() as repo:
                    given = [c for c in repo.consents_for(item_id)
                             if (c.direction, c.recipient) == ("given", recipient)]
                if given:
                    answer["consent"] = dict(given[-1].document)
            return answer
        request_id = proposed or exchange.new_request_id(self.node, now)
        with self._at_bound(CONSENT_REQUEST, requester, item_id, now):
            exchange.record_request(self.node, request_id=request_id, item_id=item_id,
                                    holder=requester, recipient=recipient, reason=reason,
                                    direction="incoming", now=now, actor=requester,
                                    bound=self.node.config.partner_rows[
                                        "consent_requests_per_partner"])
        return {"request": request_id, "status": "pending"}

    @contextmanager
    def _at_bound(self, kind: str, sender: Party, item_id: object,
                  now: datetime) -> Iterator[None]:
        """A partner's message refused at its bound of rows (``[limits]``): on record as the
        other refused notices are (one by one up to the window's bound, then counted), so the
        operator sees a partner flooding and the log still grows by a bounded amount."""
        try:
            yield
        except LimitReached as exc:
            notice_handlers.record_refusal(self.node.uow(), kind=kind, sender=sender,
                                           item_id=item_id, refused=exc, now=now,
                                           refusals=self.refusals)
            raise

    def consent_granted(self, consent: crypto.Consent, sender: Party, now: datetime) -> None:
        """The originator's consent: kept, this node's request answered and the relay it
        opens queued, in one commit."""
        handlers.record_consent(self.node.uow(), consent=consent,
                                originator_public=self._key(sender), now=now, actor=sender)
        # That commit woke the links it queued the relay for (a wake() more: a look at the
        # outbox more, while the relay is being sealed).

    def consent_refused(self, item_id: str, sender: Party, reason: str, now: datetime) -> None:
        self._key(sender)
        exchange_handlers.record_consent_refusal(self.node.uow(), item_id=item_id,
                                                 originator=sender, reason=reason, now=now)

    def standing_consent(self, consent: crypto.StandingConsent, sender: Party,
                         now: datetime) -> bool:
        """The originator's standing consent: kept, and what it covers here queued to its
        recipient, in one commit; False for one already held (a retry)."""
        with self._at_bound(STANDING_CONSENT, sender, consent.id, now):
            new = standing.record_standing_consent(
                self.node.uow(), consent=consent, sender=sender,
                originator_public=self._key(sender), catalogue=self.node.catalogue, now=now,
                bound=self.node.config.partner_rows["standing_consents_per_partner"])
        return new  # its commit woke the links it queued rows for

    def standing_revocation(self, revocation: crypto.StandingRevocation, sender: Party,
                            now: datetime, consent: crypto.StandingConsent | None = None
                            ) -> bool:
        """The originator's revocation, from the originator or passed on by a relay (checked
        against the originator's key either way, as is ``consent``, the signed consent it
        revokes, when the relay passes it along): kept, and passed on in turn."""
        self._key(sender)
        if revocation.originator == self.node.party:
            return False  # this node's own, passed back: held since it revoked
        with self._at_bound(STANDING_REVOCATION, sender, revocation.consent_id, now):
            return standing.record_standing_revocation(
                self.node.uow(), revocation=revocation, sender=sender,
                originator_public=self._originator_key(revocation.originator), now=now,
                bound=self.node.config.partner_rows["standing_revocations_per_partner"],
                consent=consent, window=timedelta(
                    hours=self.node.config.partner_rows["revocation_window_hours"]))

    def incident(self, kind: str, item_id: str, description: str, sender: Party,
                 now: datetime) -> None:
        """A holder's loss-or-compromise report (Art. 17) reaches the provider of the item;
        refused and audited unless this node provided the item to ``sender``."""
        self._key(sender)
        notices.accept_incident(self.node, kind=kind, item_id=item_id,
                                description=description, sender=sender, now=now,
                                refusals=self.refusals,
                                bound=self.node.config.partner_rows["incidents_per_partner"],
                                window=timedelta(hours=self.node.config.partner_rows[
                                    "incident_window_hours"]))

    def classification_notice(self, doc: Mapping[str, Any], sender: Party,
                              now: datetime) -> Mapping[str, Any]:
        """The originator's signed classification notice, from the party this node holds the
        item from: re-marked in this party's scheme (Art. 4) and passed on to holders."""
        # The TLS layer identified the sender; the notice's own signature is the
        # originator's, checked against the originator's key, so no sender key is needed.
        found = exchange.Partners.load(self.node.folder)
        keys = (found.signing_keys() if found is not None else {}) | self.partner_keys
        rows = self.node.config.partner_rows
        return notices.accept_classification_notice(
            self.node, doc, sender, keys, now, self.refusals,
            bound=rows["classification_notices_per_partner"],
            window=timedelta(hours=rows["notice_window_hours"]))

    def tree_head(self) -> TreeHead:
        with self.node.store.reader() as reader:
            head = notices.head_for_partners(reader)
        if head is None:
            raise PeerUnavailable("this node's log has no signed tree head yet")
        return head

    def partner_tree_head(self, head: TreeHead, sender: Party,
                          now: datetime) -> Mapping[str, Any]:
        with self.node.store.reader() as reader:
            mine = notices.head_for_partners(reader)
        self._record_partner_head(head, sender, now)
        return (mine if mine is not None else self.tree_head()).to_json()

    def _record_partner_head(self, head: TreeHead, sender: Party, now: datetime) -> None:
        """Keep a head the partner posted of its own log. Its commit waits for no disk
        sync, and the answer is this node's head as it was before it (on disk already:
        :func:`notices.head_for_partners`), so an exchange costs this node no sync of its
        own. Lost at a power cut, the record is missing from what this node holds of the
        partner (its ``held_head`` is the one before, as if the post had come later);
        nothing is released on its strength, and the partner posts again as its log grows."""
        notice_handlers.record_partner_head(self.node.store.uow(synced=False), sender=sender,
                                            head=head, sender_key=self._key(sender), now=now)

    def held_head(self, sender: Party) -> Mapping[str, Any]:
        """The newest head of ``sender`` this node holds, exactly as ``sender`` signed it:
        the partner checks its own log against it (a node rolled back in full)."""
        from gsomia.shell.partner_check import held_head_of

        try:
            key = self._key(sender)
        except PeerUnavailable:
            # No key for the caller (not a partner of this node, or the node itself): this
            # node holds no head of it that it could vouch for. A read with no effect, so
            # "none held" is the whole answer, not an outage.
            return {"partner": sender, "head": None}
        head = held_head_of(self.node, sender, key)
        return {"partner": sender, "head": head.to_json() if head is not None else None}

    def tree_head_exchange(self, head: TreeHead, sender: Party, since: str,
                           now: datetime) -> Mapping[str, Any]:
        """Record the partner's head; answer with ours (as it was before that record) and an
        RFC 9162 consistency proof from ``since``, the size of our log the partner last
        recorded."""
        size = notices.parse_since(since)
        try:
            answer: Mapping[str, Any] | None = notices.head_with_proof(self.node, size,
                                                                       self._leaves)
        except MalformedInput:
            answer = None  # no head yet: the record below makes the log's first
        self._record_partner_head(head, sender, now)
        return answer if answer is not None else notices.head_with_proof(self.node, size,
                                                                         self._leaves)
