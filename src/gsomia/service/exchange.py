"""The exchange's use cases: receive envelopes, settle deliveries, keep consent requests.

The transport (:mod:`gsomia.shell.exchange`) carries bytes and calls these; every release
decision and every audit event of the exchange is made here, each in one unit of work.

Receiving (:func:`receive`). Each envelope is checked (sender = TLS peer, nonce never seen,
signature, addressee, key, decryption, consents signed by the originator), then the batch
goes through :func:`gsomia.service.handlers.ingest_into` (originator binding, own release
policy, Art. 4 re-marking, store, audit); refusals, the nonces accepted (the replay register)
and the relays of what was stored are written in the same commit. Idempotency is on (item,
version, sender): a version already held is a ``duplicate`` and still gets a receipt for
the envelope it came in, recorded once.

Settling (:func:`settle`). The partner's answers for a batch: each receipt verified against
the envelope sent and recorded once per (item, version, partner), each refusal for good
marked ``refused`` and audited, in one commit; only deliveries still pending are settled.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gsomia.core import crypto, limits
from gsomia.core.agreements import Catalogue
from gsomia.core.audit import AuditKind
from gsomia.core.custody import ReceiptRecord, item_version, records_detail, register_digest
from gsomia.core.errors import (
    GsomiaError,
    LimitReached,
    MalformedInput,
    PolicyDenied,
    ProofInvalid,
)
from gsomia.core.labels import SecurityLabel
from gsomia.core.outbox import (
    CONSENT_REQUEST,
    FIRST_BACKOFF,
    MAX_BACKOFF,
    NoticeDue,
    ReceiptObtained,
    next_try,
    not_now_after,
)
from gsomia.core.policy import Consent, StandingConsent
from gsomia.core.types import Party
from gsomia.service import handlers
from gsomia.service.outbox import commit, queue_notices
from gsomia.service.ports import (
    ConsentRequest,
    KeyStore,
    QueuedDelivery,
    SeenEnvelope,
    SignatureChecks,
    UnitOfWork,
    checks_here,
)
from gsomia.service.refusals import RefusalSummary, RefusalWindow

__all__ = ["FIRST_BACKOFF", "MAX_BACKOFF", "REFUSALS_ONE_BY_ONE", "Delivered", "RevokedAmong",
           "Sent", "answer_consent_request", "receive", "record_consent_refusal",
           "record_consent_request", "resend_consent_request", "retry", "retry_each", "settle"]

REPLAYED, MALFORMED, REFUSED = 409, 422, 403


@dataclass(frozen=True)
class Delivered:
    """One envelope's outcome: a receipt, or refusal reasons (and the HTTP status)."""

    receipt: crypto.Receipt | None
    reasons: tuple[str, ...] = ()
    status: int = 202

    def to_json(self) -> dict[str, Any]:
        if self.receipt is not None:
            return {"receipt": self.receipt.to_json()}
        return {"refused": True, "status": self.status, "reasons": list(self.reasons)}


def _signed(signing_keys: Mapping[Party, Ed25519PublicKey], envelope: crypto.Envelope,
            sender: Party) -> crypto.SignatureCheck:
    """Checks before the envelope is opened, each raising with its reason; the sender's
    signature to verify."""
    if envelope.sender != sender:
        raise PolicyDenied((f"envelope.sender is {envelope.sender}, but the TLS client "
                            f"certificate is {sender}'s",))
    sender_public = signing_keys.get(sender)
    if sender_public is None:
        raise PolicyDenied((f"{sender} is not a partner of this node",))
    sealed = len(envelope.ciphertext) - limits.AEAD_TAG
    if sealed > limits.MAX_ITEM_BYTES + limits.PAYLOAD_RESERVE:
        raise MalformedInput(f"the sealed payload is {sealed} bytes", where="envelope",
                             expected=f"an item of at most {limits.MAX_ITEM_BYTES} bytes with "
                                      "its label, binding and consents")
    return crypto.envelope_check(envelope, sender_public)


def _opened(keys: KeyStore, catalogue: Catalogue,
            signing_keys: Mapping[Party, Ed25519PublicKey], envelope: crypto.Envelope
            ) -> handlers.Incoming:
    """The steps after :func:`_signed`, each raising with its reason. The caller accepts
    what this returns only once the envelope's signature verified; its standing consents
    are not yet marked revoked (:func:`_marked`)."""
    sender = envelope.sender
    payload = crypto.open_checked_envelope(envelope, recipient=keys.party,
                                           recipient_private=keys.envelope_key())
    try:
        obj, label_doc = payload["object"], payload["label"]
        binding = crypto.Binding.from_json(payload["binding"])
        consent_docs = payload.get("consents", [])
        standing_docs = payload.get("standing_consents", [])
    except (KeyError, TypeError):
        raise MalformedInput("the payload lacks object, label or binding",
                             where="envelope payload") from None
    if not isinstance(obj, dict) or not isinstance(consent_docs, list) or \
            not isinstance(standing_docs, list):
        raise MalformedInput("object or consents of the wrong shape", where="envelope payload")
    label = SecurityLabel.from_json(label_doc, catalogue.vocabulary,
                                    where="envelope payload.label")
    if label.created is not None and label.to_json() != label_doc and \
            str(label_doc.get("created", "")).endswith(".000Z"):
        # types.iso renders 1-999 microseconds as ".000Z" but parsing that gives 0, which
        # renders as "Z": keep the bytes the originator bound (the binding still decides).
        label = dataclasses.replace(label, created=label.created.replace(microsecond=1))
    if obj.get("id") != envelope.item_id or \
            item_version(obj) != envelope.version:
        raise ProofInvalid("the envelope header names another item or version than it holds")
    consents: list[Consent] = []
    originator = signing_keys.get(label.originator)
    for doc in consent_docs:
        consent = crypto.Consent.from_json(doc)
        if originator is None:
            raise ProofInvalid(f"no key for originator {label.originator} to check a consent")
        # A consent travels with a relay and is checked again at every hop.
        crypto.verify_consent(consent, originator, item_id=envelope.item_id,
                              originator=label.originator)
        consents.append(Consent(consent.item_id, consent.originator, consent.recipient))
    standing: list[StandingConsent] = []
    for doc in standing_docs:
        held = crypto.StandingConsent.from_json(doc)
        if originator is None:
            raise ProofInvalid(f"no key for originator {label.originator} to check a "
                               "standing consent")
        # Signed by the item's originator, or it is no consent for this item at all.
        crypto.verify_standing_consent(held, originator, originator=label.originator)
        standing.append(StandingConsent(
            held.id, held.originator, held.recipient, frozenset(held.categories),
            held.purpose, held.not_before, held.not_after))
    return handlers.Incoming(obj, label, binding, sender, tuple(consents),
                             crypto.envelope_digest(envelope), envelope, tuple(standing))


# Given the (consent id, originator) pairs the opened envelopes' standing consents name,
# those this node holds the originator's revocation of (read for those pairs only: the
# revocations ever recorded grow with history).
RevokedAmong = Callable[[Collection[tuple[str, Party]]], Collection[tuple[str, Party]]]


def _none_revoked(named: Collection[tuple[str, Party]]) -> Collection[tuple[str, Party]]:
    return ()


def _marked(opened: list[tuple[int, crypto.Envelope, handlers.Incoming | GsomiaError]],
            revoked: RevokedAmong
            ) -> list[tuple[int, crypto.Envelope, handlers.Incoming | GsomiaError]]:
    """``opened`` with each standing consent a revocation held names marked revoked (one
    read for the batch, before the policy screens any of it)."""
    named = {(s.id, s.originator) for _, _, incoming in opened
             if isinstance(incoming, handlers.Incoming) for s in incoming.standing}
    known = set(revoked(named)) if named else set()
    if not known:
        return opened
    return [(i, envelope, dataclasses.replace(incoming, standing=tuple(
        dataclasses.replace(s, revoked=(s.id, s.originator) in known)
        for s in incoming.standing)) if isinstance(incoming, handlers.Incoming) else incoming)
            for i, envelope, incoming in opened]


def _reasons(exc: GsomiaError) -> tuple[str, ...]:
    return exc.reasons if isinstance(exc, PolicyDenied) else (str(exc),)


def _status(exc: GsomiaError) -> int:
    return MALFORMED if isinstance(exc, MalformedInput) else REFUSED


def _refusal(uow: UnitOfWork, envelope: crypto.Envelope | None, sender: Party,
             reasons: Sequence[str], now: datetime) -> None:
    uow.audit.append(
        AuditKind.ENVELOPE_REFUSED, now, sender,
        item_id=envelope.item_id if envelope else None,
        item_version=envelope.version if envelope else None,
        details={"sender": sender, "reasons": list(reasons),
                 "nonce": crypto.b64u(envelope.nonce) if envelope else None})


def _refusals(uow: UnitOfWork, refused: Sequence[tuple[crypto.Envelope, Sequence[str]]],
              sender: Party, now: datetime, window: RefusalWindow | None
              ) -> list[RefusalSummary]:
    """The refused envelopes on record: each, or as many as ``window`` allows and the
    summaries of the windows it closed (the rest are counted there, never dropped); the
    summaries written, for :meth:`RefusalWindow.give_back` if the commit fails."""
    written: list[RefusalSummary] = []
    for envelope, reasons in refused:
        admitted, closed = (True, []) if window is None else \
            window.admit(sender, "envelope", envelope.item_id, now)
        for summary in closed:
            uow.audit.append(AuditKind.ENVELOPE_REFUSED, now, summary.sender,
                             details=summary.details())
        written.extend(closed)
        if admitted:
            _refusal(uow, envelope, sender, reasons, now)
    return written


def receive(uow: UnitOfWork, *, keys: KeyStore, catalogue: Catalogue,
            signing_keys: Mapping[Party, Ed25519PublicKey],
            envelopes: Sequence[crypto.Envelope], sender: Party, seen: Collection[str],
            now: datetime, revoked: RevokedAmong = _none_revoked,
            checks: SignatureChecks = checks_here,
            window: RefusalWindow | None = None) -> list[Delivered]:
    """Verify, ingest and receipt a batch of envelopes from ``sender`` in one commit.

    ``seen``: the nonces of ``envelopes`` already in the replay register (read before the
    write lock; a nonce stored meanwhile makes the commit fail on the register's key, and
    the caller then receives the batch again over the register read anew). ``revoked``:
    given the (id, originator) of the standing consents the batch carries, those whose
    originator's revocation this node holds (a relay under one is refused). ``checks``
    verifies the senders' and originators' signatures of the batch (on another process)
    while this one decrypts and screens; an envelope is accepted only once both verified.
    ``window``: how many refused envelopes of ``sender`` go on record one by one (the rest
    counted, :mod:`gsomia.service.refusals`); None: every one."""
    out: list[Delivered | None] = [None] * len(envelopes)
    refusals: list[tuple[int, crypto.Envelope, tuple[str, ...]]] = []
    nonces = [crypto.b64u(e.nonce) for e in envelopes]
    signed: list[tuple[int, crypto.Envelope, crypto.SignatureCheck]] = []

    def refuse(i: int, envelope: crypto.Envelope, reasons: tuple[str, ...],
               status: int) -> None:
        out[i] = Delivered(None, reasons, status)
        refusals.append((i, envelope, reasons))

    def replayed(i: int) -> tuple[str, ...]:
        return (f"replayed envelope: nonce {nonces[i]} was seen before",)

    for i, envelope in enumerate(envelopes):
        if nonces[i] in seen:
            refuse(i, envelope, replayed(i), REPLAYED)
            continue
        try:
            signed.append((i, envelope, _signed(signing_keys, envelope, sender)))
        except (PolicyDenied, ProofInvalid, MalformedInput) as exc:
            refuse(i, envelope, _reasons(exc), _status(exc))
    answers = checks.submit([c for _, _, c in signed])
    opened: list[tuple[int, crypto.Envelope, handlers.Incoming | GsomiaError]] = []
    for i, envelope, _ in signed:
        try:
            opened.append((i, envelope, _opened(keys, catalogue, signing_keys, envelope)))
        except (PolicyDenied, ProofInvalid, MalformedInput) as exc:
            opened.append((i, envelope, exc))
    opened = _marked(opened, revoked)
    candidates = [(i, incoming) for i, _, incoming in opened
                  if isinstance(incoming, handlers.Incoming)]
    screened = dict(zip([i for i, _ in candidates], handlers.screen_incoming(
        [c for _, c in candidates], keys=keys, catalogue=catalogue,
        originator_keys=signing_keys, now=now, checks=checks), strict=True))
    verified = answers()
    if len(verified) != len(signed):
        verified = [False] * len(signed)  # an answer that does not add up verifies nothing
    good = {i for (i, _, _), ok in zip(signed, verified, strict=True) if ok}
    batch: list[tuple[int, crypto.Envelope, handlers.Incoming]] = []
    verdicts: list[handlers.Verdict] = []
    in_batch: set[str] = set()
    for i, envelope, incoming in opened:
        if nonces[i] in in_batch:
            refuse(i, envelope, replayed(i), REPLAYED)
        elif i not in good:
            refuse(i, envelope, (crypto.envelope_signature_fails(envelope),), REFUSED)
        elif not isinstance(incoming, handlers.Incoming):
            refuse(i, envelope, _reasons(incoming), _status(incoming))
        else:
            in_batch.add(nonces[i])
            batch.append((i, envelope, incoming))
            verdicts.append(screened[i])
    refusals.sort(key=lambda r: r[0])
    summaries: list[RefusalSummary] = []
    try:
        with uow:
            summaries = _refusals(uow, [(e, r) for _, e, r in refusals], sender, now, window)
            results = handlers.ingest_into(uow, keys=keys, catalogue=catalogue,
                                           verdicts=verdicts, now=now, window=window,
                                           summaries=summaries)
            accepted = [SeenEnvelope(nonces[i], sender, e.item_id, e.version, now)
                        for i, e, _ in batch]
            if accepted:
                # The replay register is covered by the log: a nonce deleted behind its back
                # (which would let the envelope in again) shows in audit verify.
                event = uow.audit.append(
                    AuditKind.ENVELOPES_ACCEPTED, now, sender,
                    details={"sender": sender, "records": records_detail(
                        envelopes_seen=[register_digest("envelopes_seen", s.row())
                                        for s in accepted])})
                uow.repo.add_envelopes_seen(accepted, seq=event.seq)
            commit(uow, now)
    except BaseException:
        if window is not None:
            window.give_back(summaries)  # not on record: counted again, never dropped
        raise
    for (i, _, _), result in zip(batch, results, strict=True):
        if result.status == "refused" or result.receipt is None:
            out[i] = Delivered(None, result.reasons or ("not receipted",), REFUSED)
        else:
            out[i] = Delivered(result.receipt)
    return [d for d in out if d is not None]


# ---- settling what was sent ---------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """A delivery and what became of it: the envelope posted and the partner's answer, or
    why it was not posted (``envelope`` None)."""

    delivery: QueuedDelivery
    envelope: crypto.Envelope | None
    answer: Any = None
    unsent: str | None = None
    digest: bytes | None = None  # the envelope's digest, when the sender kept it


def _partner_reasons(answer: Mapping[str, Any]) -> tuple[str, ...]:
    """Why the partner refused a delivery, as its answer says (a list of str, or one str),
    or what its answer held instead: read as it came, a str was one reason a letter and a
    reason that is no str raised out of the settle, which recorded nothing (tidy29)."""
    given = answer.get("reasons")
    if not given:
        return ("refused",)
    if isinstance(given, str):
        return (given,)
    if isinstance(given, list) and all(isinstance(r, str) for r in given):
        return tuple(given)
    return (f"refused; its reasons do not read: a list of str expected, found {given!r:.200}",)


def settle(uow: UnitOfWork, *, peer: Party, peer_public: Ed25519PublicKey,
           sent: Sequence[Sent], now: datetime, answered_at: datetime | None = None,
           checks: SignatureChecks = checks_here) -> tuple[int, int]:
    """Record the partner's receipts and refusals in one commit, once each; (delivered,
    refused). A delivery is marked delivered at ``answered_at``, when the partner's answer
    came back (its receipt says it holds the item), if the sender took that instant; the
    audit events and receipt records are stamped ``now``, when they are recorded.

    Only a delivery still ``pending`` is settled, and a receipt is recorded only if none
    from ``peer`` is held for that (item, version): a second sender, or a receipt pushed
    over the peer API, never doubles the custody record."""
    receipts: list[tuple[QueuedDelivery, crypto.Receipt]] = []
    refused: list[tuple[QueuedDelivery, str]] = []
    signed: list[tuple[Sent, crypto.Envelope, crypto.Receipt, crypto.SignatureCheck]] = []
    for s in sent:
        if s.envelope is None:
            refused.append((s.delivery, s.unsent or "the item is no longer held here"))
            continue
        result = s.answer
        try:
            if not isinstance(result, Mapping) or "receipt" not in result:
                raise PolicyDenied(_partner_reasons(result) if isinstance(result, Mapping)
                                   else ("refused",))
            receipt = crypto.Receipt.from_json(result["receipt"])
            signed.append((s, s.envelope, receipt, crypto.receipt_check(receipt, peer_public)))
        except GsomiaError as exc:
            refused.append((s.delivery, str(exc)))
    # Half the partner's signatures verify on another process while this one verifies the
    # other half: the sender has nothing else to do meanwhile.
    half = len(signed) // 2
    answers = checks.submit([c for *_, c in signed[:half]])
    here = crypto.verify_checks([c for *_, c in signed[half:]])
    matched: list[str | None] = []
    for s, envelope, receipt, _ in signed:
        try:
            crypto.receipt_matches(receipt, envelope, digest=s.digest)
            matched.append(None)
        except GsomiaError as exc:
            matched.append(str(exc))
    verified = answers() + here
    if len(verified) != len(signed):
        verified = [False] * len(signed)  # an answer that does not add up verifies nothing
    for (s, _, receipt, _), ok, mismatch in zip(signed, verified, matched, strict=True):
        if not ok:
            refused.append((s.delivery, crypto.receipt_signature_fails(receipt)))
        elif mismatch is not None:
            refused.append((s.delivery, mismatch))
        else:
            receipts.append((s.delivery, receipt))
    with uow:
        still = uow.outbox.still_pending([d.row for d, _ in receipts] +
                                         [d.row for d, _ in refused])
        kept = uow.repo.receipted({d.item_id for d, _ in receipts if d.row in still}, peer,
                                  "obtained")
        written: list[tuple[ReceiptRecord, int]] = []
        delivered: list[tuple[int, int]] = []
        for delivery, receipt in receipts:
            if delivery.row not in still:
                continue
            delivered.append((delivery.row, delivery.attempts + 1))
            if (receipt.item_id, receipt.version) in kept:
                continue
            kept.add((receipt.item_id, receipt.version))
            record = ReceiptRecord(receipt.item_id, receipt.version, peer, "obtained",
                                   receipt.to_json(), now)
            event = uow.audit.append(
                AuditKind.RECEIPT, now, "node", item_id=receipt.item_id,
                item_version=receipt.version,
                details={"peer": peer, "direction": "obtained",
                         "records": records_detail(receipts=[record.digest()])})
            written.append((record, event.seq))
            uow.events.append(ReceiptObtained(receipt.item_id, receipt.version, peer))
        uow.repo.add_receipts(written)
        uow.outbox.mark_delivered(delivered, now if answered_at is None else min(answered_at, now))
        gave_up: list[tuple[int, int, str]] = []
        rest: list[tuple[QueuedDelivery, str]] = []
        for delivery, why in refused:
            if delivery.row not in still:
                continue
            # Not retried from now on, and on record: audit verify holds every outbox row
            # marked refused against these events.
            if len(gave_up) < REFUSALS_ONE_BY_ONE:
                uow.audit.append(AuditKind.DELIVERY_REFUSED, now, "node",
                                 item_id=delivery.item_id, item_version=delivery.version,
                                 details={"recipient": peer, "reason": why[:500],
                                          "attempts": delivery.attempts + 1})
            else:
                rest.append((delivery, why[:500]))
            gave_up.append((delivery.row, delivery.attempts + 1, why[:500]))
        if rest:
            # A partner refusing a whole batch makes one event more, not one per delivery;
            # each row keeps its own reason (``last_error``).
            uow.audit.append(AuditKind.DELIVERY_REFUSED, now, "node",
                             details=_refused_together(peer, rest))
        uow.outbox.mark_refused(gave_up)
        commit(uow, now)
    return len(delivered), len(gave_up)


REFUSALS_ONE_BY_ONE = 10  # of one answer's refused deliveries, on record one event each


def _refused_together(peer: Party, rest: Sequence[tuple[QueuedDelivery, str]]
                      ) -> dict[str, Any]:
    reasons: Counter[str] = Counter(why[:200] for _, why in rest)
    return {"recipient": peer, "summary": True, "refused": len(rest),
            "deliveries": [[d.item_id, d.version] for d, _ in rest],
            "reasons": dict(reasons.most_common(10))}


def retry(uow: UnitOfWork, *, deliveries: Sequence[QueuedDelivery], error: str,
          now: datetime, status: int = 0, wait: float | None = None) -> None:
    """Deliveries that failed on the way (network, partner down, ``status`` a "not now")
    go again after a backoff, and no sooner than ``wait``, the partner's Retry-After."""
    retry_each(uow, failed=[(d, error, status, wait) for d in deliveries], now=now)


def retry_each(uow: UnitOfWork, *,
               failed: Sequence[tuple[QueuedDelivery, str, int, float | None]],
               now: datetime) -> None:
    """As :func:`retry`, each delivery with its own outcome (error, status, wait): a
    refused batch posted again envelope by envelope meets a "not now" for some and the
    network for others, and each row's wait follows its own answer."""
    if not failed:
        return
    with uow:
        uow.outbox.retry_deliveries([
            (d.row, d.attempts + 1, not_now_after(d.not_now, status),
             next_try(d.attempts, now, status, wait, not_now=d.not_now), error[:500])
            for d, error, status, wait in failed])
        uow.commit()


# ---- consent requests ---------------------------------------------------------------------


def record_consent_request(uow: UnitOfWork, *, request: ConsentRequest, now: datetime,
                           actor: str, bound: int | None = None) -> None:
    """Keep a consent request (asked of this node, or asked by it) and audit it.

    ``bound`` (one a partner asks): at most that many of the holder's may wait for the
    operator (:class:`LimitReached` after); each is a row, and any reason makes a new one."""
    with uow:
        if bound is not None and uow.repo.pending_consent_requests(
                "incoming", holder=request.holder) >= bound:
            raise LimitReached("consent_requests_per_partner", bound,
                               f"{request.holder}'s consent request")
        event = uow.audit.append(
            AuditKind.CONSENT, now, actor, item_id=request.item_id,
            details={"request": request.request_id,
                     "direction": f"requested-{request.direction}",
                     "holder": request.holder, "recipient": request.recipient,
                     "records": records_detail(consent_requests=[
                         register_digest("consent_requests", request.row())])})
        uow.repo.add_consent_request(request, seq=event.seq)
        uow.commit()


def record_consent_refusal(uow: UnitOfWork, *, item_id: str, originator: Party, reason: str,
                           now: datetime) -> None:
    """The originator refused the relay this node asked for: on record, request answered.
    PolicyDenied unless this node asked for it (a pending request about one of
    ``originator``'s items): each refusal is an audit event, and a partner's refusals of
    what nobody asked must not grow the log."""
    with uow:
        item = uow.repo.get_item(item_id)
        if item is None or item.originator != originator or not \
                uow.repo.pending_consent_requests("outgoing", item_id=item_id):
            raise PolicyDenied((f"{item_id} is no item of {originator}'s that this node "
                                "asked consent for",))
        uow.audit.append(AuditKind.CONSENT, now, originator, item_id=item_id,
                         details={"originator": originator, "direction": "refused",
                                  "reason": reason[:1000]})
        uow.repo.answer_consent_requests(item_id, None, "denied", now)
        uow.commit()


def resend_consent_request(uow: UnitOfWork, *, request_id: str, originator: Party,
                           body: str, now: datetime) -> bool:
    """A request this node asked whose POST got no answer (a timeout: it may or may not
    have reached the originator) goes again through the notices outbox, under its id, with
    the outbox's backoff: the originator keeps one request per id in the holder's name
    space, so a resend of one it has is answered as that one. False if the request is no
    longer pending here (answered meanwhile): nothing is queued."""
    with uow:
        row = uow.repo.consent_request_row(request_id)
        if row is None or (row["direction"], row["status"]) != ("outgoing", "pending"):
            return False
        queue_notices(uow, [NoticeDue(CONSENT_REQUEST, originator, request_id,
                                      row["item_id"], body)], now)
        uow.commit()
    return True


def answer_consent_request(uow: UnitOfWork, *, request_id: str, status: str,
                           now: datetime) -> None:
    """The operator's answer to a request asked of this node (the operator's view only)."""
    with uow:
        uow.repo.answer_consent_requests("", None, status, now, request_id=request_id)
        uow.commit()
