"""Consents, classification changes, incidents and receipts, each on record; a release checked."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gsomia.core import crypto
from gsomia.core.agreements import Catalogue
from gsomia.core.audit import AuditEvent, AuditKind
from gsomia.core.custody import (
    ClassificationNotice,
    ConsentRecord,
    CustodyRecord,
    IncidentReport,
    ReceiptRecord,
    StoredItem,
    records_detail,
    sign_classification_notice,
    verify_classification_notice,
)
from gsomia.core.errors import MalformedInput, PolicyDenied, ProofInvalid
from gsomia.core.labels import Scheme, SecurityLabel
from gsomia.core.outbox import ConsentObtained, IncidentRecorded, NoticeRecorded, ReceiptObtained
from gsomia.core.policy import (
    Decision,
    ReleaseRequest,
    decide,
    decide_classification_change,
    decide_derived,
    narrowed_derived,
)
from gsomia.core.types import Party, iso, party
from gsomia.service.outbox import commit, notice_verifies
from gsomia.service.ports import KeyStore, UnitOfWork
from gsomia.service.refusals import RefusalSummary, RefusalWindow


def grant_consent(uow: UnitOfWork, *, keys: KeyStore, item_id: str, recipient: Party,
                  now: datetime, actor: str = "operator") -> crypto.Consent:
    """As originator, consent in writing to the release of ``item_id`` to ``recipient``."""
    recipient = party(recipient, where="recipient")
    with uow:
        item = uow.repo.get_item(item_id)
        if item is None:
            raise MalformedInput(f"{item_id} is not held here", where="item")
        if item.originator != keys.party:
            raise PolicyDenied((f"{item_id} originated at {item.originator}; only the "
                                "originator consents to a release to a third party",))
        consent = crypto.grant_consent(item_id=item_id, originator=keys.party,
                                       recipient=recipient, granted_at=now,
                                       key=keys.signing_key())
        record = ConsentRecord(item_id, keys.party, recipient, "given", consent.to_json(), now)
        event = uow.audit.append(
            AuditKind.CONSENT, now, actor, item_id=item_id,
            details={"originator": keys.party, "recipient": recipient, "direction": "given",
                     "records": records_detail(consents=[record.digest()])})
        uow.repo.add_consent(record, seq=event.seq)
        uow.commit()
    return consent


def refuse_consent(uow: UnitOfWork, *, keys: KeyStore, item_id: str, request: str,
                   holder: Party, recipient: Party, reason: str, now: datetime,
                   actor: str = "operator") -> AuditEvent:
    """As originator, refuse a holder's request to release ``item_id`` to ``recipient``:
    on record with the reason given (the holder is told by the caller)."""
    with uow:
        event = uow.audit.append(
            AuditKind.CONSENT, now, actor, item_id=item_id,
            details={"originator": keys.party, "recipient": recipient, "holder": holder,
                     "request": request, "direction": "refused-given",
                     "reason": reason[:1000]})
        uow.commit()
    return event


def refuse_action(uow: UnitOfWork, *, actor: str, action: str, reasons: Sequence[str],
                  now: datetime, item_id: str | None = None) -> AuditEvent:
    """Put on record an action a person was refused at the desk, with the true reasons
    (the person may have been told less: an item they may not see reads as absent)."""
    with uow:
        event = uow.audit.append(AuditKind.ACTION_REFUSED, now, actor, item_id=item_id,
                                 details={"action": action, "reasons": list(reasons)})
        uow.commit()
    return event


def refuse_bounded(uow: UnitOfWork, *, refusals: RefusalWindow, actor: str, action: str,
                   reasons: Sequence[str], now: datetime, item_id: str | None = None,
                   details: Mapping[str, Any] | None = None) -> None:
    """:func:`refuse_action` for a refusal a person can repeat in a loop (a TAXII post): on
    record one by one up to ``refusals``' bound per person and window, then counted, the
    count written as one ``action-refused`` summary with the next refusal after its window
    (or at close). What cannot be written is given back to ``refusals``, never dropped."""
    admitted, closed = refusals.admit(actor, action, item_id, now)
    if not admitted and not closed:
        return  # counted: on record in the summary once the window closes
    try:
        with uow:
            _action_summaries(uow, closed, now)
            if admitted:
                uow.audit.append(AuditKind.ACTION_REFUSED, now, actor, item_id=item_id,
                                 details={"action": action,
                                          "reasons": [r[:500] for r in reasons[:10]],
                                          **(details or {})})
            uow.commit()
    except BaseException:
        refusals.give_back([*closed, *([RefusalSummary(actor, {action: 1},
                                                       (item_id,) if item_id else (), now,
                                                       now)] if admitted else [])])
        raise


def record_action_summaries(uow: UnitOfWork, *, refusals: RefusalWindow,
                            now: datetime | None) -> int:
    """The counts :func:`refuse_bounded` kept of the windows closed by ``now`` (None: of
    all, as the node stops) put on record; how many summaries were written."""
    summaries = refusals.closed(now)
    if summaries:
        try:
            with uow:
                _action_summaries(uow, summaries, now or max(s.last for s in summaries))
                uow.commit()
        except BaseException:
            refusals.give_back(summaries)
            raise
    return len(summaries)


def _action_summaries(uow: UnitOfWork, summaries: Sequence[RefusalSummary],
                      now: datetime) -> None:
    for summary in summaries:
        uow.audit.append(AuditKind.ACTION_REFUSED, now, summary.sender,
                         details={"action": ", ".join(sorted(summary.kinds)),
                                  **summary.details()})


def record_consent(uow: UnitOfWork, *, consent: crypto.Consent,
                   originator_public: Ed25519PublicKey, now: datetime,
                   actor: str = "node") -> ConsentRecord:
    """Keep a consent obtained from an originator, after checking its signature; the relay
    it opens is queued in the same commit, and this node's requests for it are answered.

    Kept only for an item of the originator's held here (PolicyDenied otherwise, the same
    answer whether or not the item is held), and once per (item, recipient): a second
    consent for a pair already consented returns the one kept. The originator's signature
    is all a consent holds, so it could otherwise make this node keep a row and an audit
    event per consent it signs, for any id, without bound."""
    crypto.verify_consent(consent, originator_public)
    record = ConsentRecord(consent.item_id, consent.originator, consent.recipient, "obtained",
                           consent.to_json(), now)
    with uow:
        item = uow.repo.get_item(consent.item_id)
        if item is None or item.originator != consent.originator:
            raise PolicyDenied((f"this node does not hold {consent.item_id} of "
                                f"{consent.originator}'s",))
        for kept in uow.repo.consents_for(consent.item_id):
            if (kept.originator, kept.recipient, kept.direction) == \
                    (consent.originator, consent.recipient, "obtained"):
                # A request asked again since is answered all the same (its status is the
                # operator's view only: no row and no event more).
                uow.repo.answer_consent_requests(consent.item_id, consent.recipient,
                                                 "granted", now)
                uow.commit()
                return kept
        event = uow.audit.append(
            AuditKind.CONSENT, now, actor, item_id=consent.item_id,
            details={"originator": consent.originator, "recipient": consent.recipient,
                     "direction": "obtained",
                     "records": records_detail(consents=[record.digest()])})
        uow.repo.add_consent(record, seq=event.seq)
        uow.repo.answer_consent_requests(consent.item_id, consent.recipient, "granted", now)
        uow.events.append(ConsentObtained(consent.item_id, consent.recipient))
        commit(uow, now)
    return record


def change_classification(uow: UnitOfWork, *, keys: KeyStore,
                          schemes: Mapping[Party, Scheme], item_id: str, new_level: str,
                          now: datetime, actor: str = "operator") -> ClassificationNotice:
    """As originator, change an item's level; every version held is re-marked here.

    Returns the signed notice for the exchange to send to every holder. A holder's attempt
    is refused (:class:`PolicyDenied`) and recorded. A level the node's scheme does not have
    is bad input, not a refusal on record.
    """
    own = schemes.get(keys.party)
    if own is None:
        raise MalformedInput(f"no classification scheme for {keys.party}", where="party")
    own.level(new_level, where="level")
    with uow:
        versions = uow.repo.item_versions(item_id)
        if not versions:
            raise MalformedInput(f"{item_id} is not held here", where="item")
        latest = uow.repo.custody_of(item_id, versions[-1].version)[-1]
        decision = decide_classification_change(keys.party, latest.original_label, new_level,
                                                schemes)
        if not decision.permit:
            uow.audit.append(AuditKind.CLASSIFICATION_CHANGED, now, actor, item_id=item_id,
                             details={"permit": False, "reasons": list(decision.reasons),
                                      "new_level": new_level})
            uow.commit()
            raise PolicyDenied(decision.reasons)
        notice = _reclassify_own(uow, keys, versions, latest.national_label.level, new_level,
                                 now, actor)
        commit(uow, now)
    return notice


def apply_classification_notice(uow: UnitOfWork, *, keys: KeyStore, catalogue: Catalogue,
                                notice: ClassificationNotice,
                                originator_public: Ed25519PublicKey, now: datetime,
                                actor: str = "node",
                                came_from: Party | None = None) -> list[CustodyRecord]:
    """As holder, re-mark every version held to the equivalent of the originator's new level.

    The notice must be signed by the item's originator; the equivalent level comes from the
    agreement each version was received under (``NoEquivalent`` if it has none).
    """
    verify_classification_notice(notice, originator_public)
    with uow:
        versions = uow.repo.item_versions(notice.item_id)
        if not versions:
            raise MalformedInput(f"{notice.item_id} is not held here", where="notice.item_id")
        # Only the originator's newest notice is in force: a relay (or a retry landing late)
        # that hands over an older one after it would re-mark the item back to a level the
        # originator has since left, lowered, readable by those it shut out (hunt29).
        newer = _newer_notice(uow.repo.notices_for(notice.item_id), notice,
                              originator_public)
        if newer is not None:
            raise PolicyDenied((
                f"a newer classification notice of {notice.originator} for {notice.item_id} "
                f"is in force here (issued {iso(newer.issued_at)}, to {newer.new_level}); "
                f"this one, issued {iso(notice.issued_at)}, is older and changes nothing",))
        remarked: list[CustodyRecord] = []
        for item in versions:
            current = uow.repo.custody_of(item.item_id, item.version)[-1]
            if current.original_label.originator != notice.originator:
                raise ProofInvalid(f"notice from {notice.originator}, but {notice.item_id} "
                                   f"originated at {current.original_label.originator}")
            if keys.party == notice.originator:
                level = notice.new_level
            elif current.agreement is None:
                raise MalformedInput(f"{notice.item_id} was received under no agreement",
                                     where="custody")
            else:
                level = catalogue.get(current.agreement).equivalent(
                    notice.originator, notice.new_level, keys.party)
            remarked.append(CustodyRecord(
                item.item_id, item.version, "remarked", keys.party, current.original_label,
                current.national_label.remarked(keys.party, level), now,
                provider=current.provider, agreement=current.agreement,
                note=f"notice of {notice.originator}: {notice.old_level} → {notice.new_level}"))
        event = uow.audit.append(
            AuditKind.CLASSIFICATION_CHANGED, now, actor, item_id=notice.item_id,
            details={"permit": True, "originator": notice.originator,
                     "old_level": notice.old_level, "new_level": notice.new_level,
                     "national_levels": sorted({r.national_label.level for r in remarked}),
                     "records": records_detail(classification_notices=[notice.digest()],
                                               custody=[r.digest() for r in remarked])})
        uow.repo.add_notice(notice, seq=event.seq)
        for record in remarked:
            uow.repo.add_custody(record, seq=event.seq)
        # Passed on to those this node delivered the item to, never back to ``came_from``.
        uow.events.append(NoticeRecorded(notice, came_from))
        if keys.party != notice.originator:
            _narrow_derived(uow, keys, catalogue.schemes, versions[-1], now)
        commit(uow, now)
    return remarked


def _reclassify_own(uow: UnitOfWork, keys: KeyStore, versions: Sequence[StoredItem],
                    old_level: str, new_level: str, now: datetime, actor: str,
                    why: str | None = None) -> ClassificationNotice:
    """As originator, re-mark every version of one of this node's items to ``new_level``
    and sign the notice its holders are sent (queued at the unit of work's commit)."""
    # Each notice issued after the last one of this item, even if the clock went back:
    # holders keep only the newest by its time (see apply_classification_notice).
    mine = keys.signing_key().public_key()
    last = max((n.issued_at for n in uow.repo.notices_for(versions[0].item_id)
                if n.originator == keys.party and notice_verifies(n, mine)), default=None)
    issued = now if last is None or now > last else last + timedelta(milliseconds=1)
    notice = sign_classification_notice(
        item_id=versions[0].item_id, originator=keys.party, old_level=old_level,
        new_level=new_level, issued_at=issued, key=keys.signing_key())
    remarked = _remark_all(uow, versions, keys.party, new_level, now,
                           why or f"classification changed by originator {keys.party}")
    details: dict[str, Any] = {
        "permit": True, "originator": keys.party, "old_level": notice.old_level,
        "new_level": new_level}
    if why is not None:
        details["why"] = why
    event = uow.audit.append(
        AuditKind.CLASSIFICATION_CHANGED, now, actor, item_id=notice.item_id,
        details={**details, "records": records_detail(
            classification_notices=[notice.digest()], custody=[r.digest() for r in remarked])})
    uow.repo.add_notice(notice, seq=event.seq)
    for record in remarked:
        uow.repo.add_custody(record, seq=event.seq)
    uow.events.append(NoticeRecorded(notice))
    return notice


# What the node's warning centre publishes (``gsomia.shell.warning_centre``): made from the
# reports and predictions it held, so bound by their labels (``decide_derived``).
DERIVED_CATEGORIES = frozenset({"impact-prediction", "flight-path", "warning"})


def _narrow_derived(uow: UnitOfWork, keys: KeyStore, schemes: Mapping[Party, Scheme],
                    source: StoredItem, now: datetime) -> list[ClassificationNotice]:
    """What this node's centre made from ``source`` after its originator narrowed it: each
    output re-marked to no wider than the source's label now (:func:`narrowed_derived`), by
    this node as their originator, with its own notices to those it delivered them to.

    Which outputs used it: the centre feeds notes in the order stored and publishes what a
    note made after feeding it, so every output stored after the source may hold some of it
    (the tracker fuses them all), and none stored before does. A source whose label as stored
    the centre's label would have widened was never fed (``CentreWorker.withheld_reason``):
    nothing was made of it."""
    if source.stix_type != "note":
        return []
    seq = uow.repo.item_seq(source.item_id)
    current = uow.repo.current_labels([source.item_id]).get(source.item_id, [])
    if seq is None or not current:
        return []
    try:
        stored = SecurityLabel.from_stored(json.loads(source.label))
    except (MalformedInput, ValueError, TypeError):
        return []  # never fed: the centre withholds a label that does not read
    notices = []
    for item_id, label_bytes in uow.repo.labels_stored_after(seq, originator=keys.party,
                                                            stix_type="note"):
        try:
            label = SecurityLabel.from_stored(json.loads(label_bytes))
        except (MalformedInput, ValueError, TypeError):
            continue
        if label.category not in DERIVED_CATEGORIES \
                or not decide_derived(stored, label, schemes).permit:
            continue
        versions = uow.repo.item_versions(item_id)
        if not versions:
            continue
        now_marked = uow.repo.custody_of(item_id, versions[-1].version)[-1].national_label
        wanted: SecurityLabel | None = now_marked
        for source_now in current:
            wanted = narrowed_derived(source_now, wanted, schemes) if wanted else None
        if wanted is None or wanted.level == now_marked.level:
            # A REL TO or caveat no notice carries (none narrows one) is left to the seal,
            # which asks the policy about the label as bound.
            continue
        notices.append(_reclassify_own(
            uow, keys, versions, now_marked.level, wanted.level, now, "node",
            f"made from {source.item_id}, which its originator {source.originator} "
            f"re-marked"))
    return notices


def _newer_notice(held: Sequence[ClassificationNotice], notice: ClassificationNotice,
                  originator_public: Ed25519PublicKey) -> ClassificationNotice | None:
    """A notice of ``notice``'s originator among ``held`` issued no earlier than it (another
    signature): one that, in force, ``notice`` may not undo. A held notice counts only if
    its signature verifies over what is stored: its time is read from the host's disk,
    and one rewritten into the future would otherwise refuse every later notice for good."""
    return next((n for n in held
                 if n.originator == notice.originator and n.signature != notice.signature
                 and isinstance(n.issued_at, datetime) and n.issued_at >= notice.issued_at
                 and notice_verifies(n, originator_public)), None)


def _remark_all(uow: UnitOfWork, versions: Sequence[StoredItem], holder: Party, level: str,
                now: datetime, note: str) -> list[CustodyRecord]:
    out = []
    for item in versions:
        current = uow.repo.custody_of(item.item_id, item.version)[-1]
        out.append(CustodyRecord(item.item_id, item.version, "remarked", holder,
                                 current.original_label,
                                 current.national_label.remarked(holder, level), now,
                                 provider=current.provider, agreement=current.agreement,
                                 note=note))
    return out


def report_incident(uow: UnitOfWork, *, keys: KeyStore, kind: str, description: str,
                    now: datetime, item_id: str | None = None,
                    actor: str = "operator", came_from: Party | None = None) -> IncidentReport:
    """Record a loss, compromise or possible compromise (Art. 17), naming whom to tell:
    the provider the item came from, else its originator if that is another party. The
    report to that party is queued in the same commit (``came_from``: the partner that
    reported it here, which is not told again)."""
    with uow:
        notify: Party | None = None
        if item_id is not None:
            versions = uow.repo.item_versions(item_id)
            if not versions:
                raise MalformedInput(f"{item_id} is not held here", where="item")
            current = uow.repo.custody_of(item_id, versions[-1].version)[-1]
            notify = current.provider or (current.original_label.originator
                                          if current.original_label.originator != keys.party
                                          else None)
        reference = f"{keys.party}-incident-{uow.audit.size}"
        report = IncidentReport(reference, kind, item_id, description, actor, notify, now)
        event = uow.audit.append(
            AuditKind.INCIDENT, now, actor, item_id=item_id,
            details={"reference": reference, "kind": kind, "notify": notify,
                     "records": records_detail(incidents=[report.digest()])})
        uow.repo.add_incident(report, seq=event.seq)
        uow.events.append(IncidentRecorded(report, came_from))
        commit(uow, now)
    return report


def record_receipt(uow: UnitOfWork, *, keys: KeyStore, receipt: crypto.Receipt, now: datetime,
                   peer_public: Ed25519PublicKey | None = None,
                   actor: str = "node", delivered_only: bool = False) -> ReceiptRecord:
    """Keep a receipt this node signed (given) or a partner signed for it (obtained; its
    signature is checked when ``peer_public`` is given).

    ``delivered_only`` (a receipt a partner posts): an obtained receipt is kept only for a
    delivery this node queued to that partner, else PolicyDenied. A partner's own signature
    is all a receipt holds, so it could otherwise claim items this node never sent it (a
    row each, without bound, and a custody claim an incident report rests on).

    Once per (item, version, peer, direction): a receipt for a delivery already receipted
    (a resend after a lost answer) changes nothing and returns the record already kept."""
    direction: Literal["given", "obtained"]
    if receipt.recipient == keys.party:
        direction, peer = "given", receipt.sender
    elif receipt.sender == keys.party:
        direction, peer = "obtained", receipt.recipient
        if peer_public is not None:
            crypto.verify_receipt(receipt, peer_public)
    else:
        raise MalformedInput(f"receipt between {receipt.sender} and {receipt.recipient} does "
                             f"not concern {keys.party}", where="receipt")
    record = ReceiptRecord(receipt.item_id, receipt.version, peer, direction,
                           receipt.to_json(), now)
    with uow:
        for kept in uow.repo.receipts_for(receipt.item_id):
            if (kept.version, kept.peer, kept.direction) == (receipt.version, peer, direction):
                return kept
        if delivered_only and direction == "obtained" and not uow.outbox.queued_deliveries(
                {(receipt.item_id, receipt.version, peer)}):
            # The same answer whether or not the item is held here.
            raise PolicyDenied((f"{keys.party} sent {peer} no {receipt.item_id} version "
                                f"{receipt.version}",))
        event = uow.audit.append(
            AuditKind.RECEIPT, now, actor, item_id=receipt.item_id,
            item_version=receipt.version,
            details={"peer": peer, "direction": direction,
                     "records": records_detail(receipts=[record.digest()])})
        uow.repo.add_receipt(record, seq=event.seq)
        if direction == "obtained":
            uow.events.append(ReceiptObtained(record.item_id, record.version, peer))
        commit(uow, now)
    return record


def check_release(request: ReleaseRequest, catalogue: Catalogue) -> Decision:
    """One release decided and explained, recorded nowhere (``agreements release-check``,
    the demo's story)."""
    return decide(request, catalogue)
