"""Receiving: an item from a partner checked, stored or refused on record."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gsomia.core import crypto, limits
from gsomia.core.agreements import Catalogue
from gsomia.core.audit import AuditKind
from gsomia.core.custody import (
    CustodyRecord,
    ReceiptRecord,
    StoredItem,
    item_version,
    record_bytes,
    records_detail,
    stamp,
)
from gsomia.core.errors import MalformedInput, ProofInvalid
from gsomia.core.labels import SecurityLabel
from gsomia.core.outbox import ItemStored
from gsomia.core.policy import (
    Consent,
    Decision,
    ReleaseRequest,
    StandingConsent,
    decide,
    decide_new_version,
)
from gsomia.core.stix import check_extension_properties, check_spec_version, check_warning_party
from gsomia.core.types import Party
from gsomia.service.handlers._publishing import NOT_A_NEW_VERSION
from gsomia.service.outbox import commit
from gsomia.service.ports import KeyStore, SignatureChecks, UnitOfWork, checks_here
from gsomia.service.refusals import RefusalSummary, RefusalWindow


@dataclass(frozen=True, slots=True)
class Incoming:
    """An item as a partner delivered it: the object and label the originator bound, and
    (over the peer API) the envelope it came in, which :func:`ingest` signs a receipt for."""

    obj: Mapping[str, Any]
    label: SecurityLabel
    binding: crypto.Binding
    sender: Party
    consents: tuple[Consent, ...] = ()
    envelope_digest: bytes | None = None
    envelope: crypto.Envelope | None = None
    standing: tuple[StandingConsent, ...] = ()


@dataclass(frozen=True, slots=True)
class Ingested:
    """Outcome for one incoming item: ``stored``, ``duplicate`` (already held) or
    ``refused`` with reasons; ``receipt`` is the receipt signed for its envelope (not for a
    refusal)."""

    item_id: str
    version: str
    status: str
    reasons: tuple[str, ...] = ()
    agreement: str | None = None
    national_level: str | None = None
    seq: int | None = None
    receipt: crypto.Receipt | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.item_id, "version": self.version, "status": self.status,
                "reasons": list(self.reasons), "agreement": self.agreement,
                "national_level": self.national_level, "seq": self.seq}


def check_binding(incoming: Incoming,
                  originator_keys: Mapping[Party, Ed25519PublicKey]) -> str | None:
    """Why the originator's binding does not hold (None if it does). Fails closed."""
    public = originator_keys.get(incoming.label.originator)
    if public is None:
        return f"no public key known for originator {incoming.label.originator}"
    try:
        crypto.verify_binding(incoming.label.to_json(), incoming.obj, incoming.binding, public)
    except (ProofInvalid, MalformedInput) as exc:
        return f"binding of {incoming.label.originator}: {exc}"
    return None


def check_bindings(batch: Sequence[Incoming],
                   originator_keys: Mapping[Party, Ed25519PublicKey]) -> list[str | None]:
    """:func:`check_binding` for each item, in order."""
    return [check_binding(i, originator_keys) for i in batch]


def ingest(uow: UnitOfWork, *, keys: KeyStore, catalogue: Catalogue,
           batch: Sequence[Incoming], originator_keys: Mapping[Party, Ed25519PublicKey],
           now: datetime) -> list[Ingested]:
    """Receive a batch of items in one commit.

    Each item must carry a binding by its originator that verifies, and this node's own copy
    of the release policy must permit the sender to release it here (a node refuses what the
    sender had no right to send). Accepted items are re-marked to this node's equivalent
    level (Art. 4), stored with a custody record and audited; refused ones are audited with
    their reasons; versions already held are reported as duplicates and change nothing.
    One commit (one sync, one signed head) serves the whole batch.

    An item that came in an envelope gets a receipt signed for that envelope, stored or
    duplicate (a sender that lost our answer resends). The receipt given is recorded once
    per (item, version, sender), in the commit that stores the item (its ``received`` event
    records both), so a resend is answered but never recorded twice.
    """
    verdicts = screen_incoming(batch, keys=keys, catalogue=catalogue,
                               originator_keys=originator_keys, now=now)
    with uow:
        out = ingest_into(uow, keys=keys, catalogue=catalogue, verdicts=verdicts, now=now)
        commit(uow, now)
    return out


Verdict = tuple[Incoming, str, str, str | None, Decision | None, StoredItem | None]


def screen_incoming(batch: Sequence[Incoming], *, keys: KeyStore, catalogue: Catalogue,
                    originator_keys: Mapping[Party, Ed25519PublicKey],
                    now: datetime, checks: SignatureChecks = checks_here) -> list[Verdict]:
    """The checks of :func:`ingest` that need no store (run before the write lock).

    The originators' binding signatures of the whole batch go to ``checks`` at once (another
    process, while this one decides the releases); an item whose signature does not verify
    is refused, whatever its decision (fail closed)."""
    screened: list[tuple[Incoming, str, str, str | None, StoredItem | None]] = []
    signed: list[tuple[int, crypto.SignatureCheck]] = []
    for incoming in batch:
        item_id = str(incoming.obj.get("id", ""))
        version = _version(incoming.obj)
        problem: str | None = None
        item: StoredItem | None = None
        public = originator_keys.get(incoming.label.originator)
        content = b""
        try:
            # Bounds first: they decide whether the object may be walked at all.
            limits.check_depth(incoming.obj, where="object")
            check_spec_version(incoming.obj, where="object")
            # What the originator should never have published is refused like any bad item.
            check_extension_properties(incoming.obj, where=f"object {item_id}")
            check_warning_party(incoming.obj, incoming.label.originator,
                                where=f"object {item_id}")
            content = crypto.canonical(incoming.obj, where="content")
            limits.check_item_size(content, where="content")
        except MalformedInput as exc:
            problem = str(exc)
        if problem is None and public is None:
            problem = f"no public key known for originator {incoming.label.originator}"
        elif problem is None and public is not None:
            # The bytes bound are the bytes stored: canonicalise once for both.
            try:
                label_bytes = record_bytes(incoming.label.to_json())
                check = crypto.binding_check(label_bytes, content, incoming.binding, public)
                item = StoredItem.from_canonical(incoming.obj, content, incoming.label,
                                                 label_bytes, incoming.binding, now)
                signed.append((len(screened), check))
            except (ProofInvalid, MalformedInput) as exc:
                problem = f"binding of {incoming.label.originator}: {exc}"
        screened.append((incoming, item_id, version, problem, item))
    answers = checks.submit([c for _, c in signed])
    verdicts: list[Verdict] = []
    for incoming, item_id, version, problem, item in screened:
        if problem is not None:
            verdicts.append((incoming, item_id, version, problem, None, None))
            continue
        decision = decide(ReleaseRequest(item_id, incoming.label, incoming.sender, keys.party,
                                         now, incoming.consents, incoming.standing), catalogue)
        verdicts.append((incoming, item_id, version,
                         None if decision.permit else "; ".join(decision.reasons), decision,
                         item))
    verified = answers()
    if len(verified) != len(signed):
        verified = [False] * len(signed)  # an answer that does not add up verifies nothing
    for (n, _), good in zip(signed, verified, strict=True):
        if not good:
            incoming, item_id, version = verdicts[n][:3]
            verdicts[n] = (incoming, item_id, version,
                           f"binding of {incoming.label.originator}: "
                           f"{crypto.BINDING_SIGNATURE_FAILS}", None, None)
    return verdicts


def ingest_into(uow: UnitOfWork, *, keys: KeyStore, catalogue: Catalogue,
                verdicts: Sequence[Verdict], now: datetime,
                window: RefusalWindow | None = None,
                summaries: list[RefusalSummary] | None = None) -> list[Ingested]:
    """Store what :func:`screen_incoming` let through, inside the caller's unit of work
    (not committed): the decisions needing the store, custody, receipts given, audit.

    ``window``: how many refused items of a sender go on record one by one (a partner's
    own signature makes an envelope verify, whatever the item it seals); the rest are
    counted, and the summaries of the windows this closed are written and added to
    ``summaries`` (to give back if the commit fails). None: every one."""
    verdicts = list(verdicts)
    out: list[Ingested] = []
    signer = keys.signing_key() if any(v[0].envelope is not None for v in verdicts) \
        else None
    held = uow.repo.held_versions([(v[1], v[2]) for v in verdicts if v[3] is None])
    # A partner's new version of an item held here must keep its originator and its
    # label as marked here (a version already held is a duplicate, checked below): an
    # item is re-marked only by its originator's signed classification notice.
    current = uow.repo.current_labels(sorted({v[1] for v in verdicts if v[3] is None}))
    national_labels: dict[int, SecurityLabel] = {}  # made once, checked here, stored below
    for n, (incoming, item_id, version, problem, verdict, _) in enumerate(verdicts):
        if problem is not None or verdict is None or (item_id, version) in held:
            continue
        marked = national_labels[n] = incoming.label.remarked(
            keys.party, verdict.recipient_level or incoming.label.level)
        change = decide_new_version(marked, current.get(item_id, []), catalogue.schemes)
        if not change.permit:
            verdicts[n] = (incoming, item_id, version, NOT_A_NEW_VERSION, None, None)
        else:
            current.setdefault(item_id, [marked])
    items: list[tuple[StoredItem, int]] = []
    custody: list[tuple[CustodyRecord, int]] = []
    given: set[tuple[str, str, str]] = set()  # (item, version, sender) recorded here
    receipts: list[tuple[ReceiptRecord, int]] = []
    for n, (incoming, item_id, version, problem, verdict, stored) in enumerate(verdicts):
        if problem is not None or verdict is None or stored is None:
            reasons = (problem or "refused",)
            admitted, closed = (True, []) if window is None else \
                window.admit(incoming.sender, "item", item_id, now)
            for summary in closed:
                uow.audit.append(AuditKind.ENVELOPE_REFUSED, now, summary.sender,
                                 details=summary.details())
            if summaries is not None:
                summaries.extend(closed)
            seq = None
            if admitted:
                seq = uow.audit.append(
                    AuditKind.ENVELOPE_REFUSED, now, incoming.sender,
                    item_id=item_id or None, item_version=version if item_id else None,
                    details={"sender": incoming.sender, "reasons": list(reasons)}).seq
            out.append(Ingested(item_id, version, "refused", reasons, seq=seq))
            continue
        decision = verdict
        receipt = given_record = None
        if incoming.envelope is not None and signer is not None:
            receipt = crypto.make_receipt(incoming.envelope, received_at=now, key=signer,
                                         digest=incoming.envelope_digest)
            given_record = ReceiptRecord(item_id, version, incoming.sender, "given",
                                         receipt.to_json(), now)
        if (item_id, version) in held:
            once = (item_id, version, incoming.sender)
            if given_record is not None and once not in given and not any(
                    r.direction == "given" and r.peer == incoming.sender
                    and r.version == version for r in uow.repo.receipts_for(item_id)):
                # Held from another path or sender: this sender's first receipt.
                event = uow.audit.append(
                    AuditKind.RECEIPT, now, "node", item_id=item_id, item_version=version,
                    details={"peer": incoming.sender, "direction": "given",
                             "records": records_detail(receipts=[given_record.digest()])})
                uow.repo.add_receipt(given_record, seq=event.seq)
            given.add(once)
            out.append(Ingested(item_id, version, "duplicate", agreement=decision.agreement,
                                national_level=decision.recipient_level, receipt=receipt))
            continue
        held.add((item_id, version))
        level = decision.recipient_level or incoming.label.level
        national = national_labels.get(n) or incoming.label.remarked(keys.party, level)
        record = CustodyRecord(item_id, version, "received", keys.party, incoming.label,
                               national, now, provider=incoming.sender,
                               agreement=decision.agreement,
                               envelope_digest=incoming.envelope_digest
                               ).knowing(stored.label)
        event = uow.audit.append(
            AuditKind.RECEIVED, now, incoming.sender, item_id=item_id,
            item_version=version, content_hash=stored.content_hash(),
            details={"sender": incoming.sender, "type": stored.stix_type,
                     "originator": stored.originator, "added_at": stamp(stored.added_at),
                     "agreement": decision.agreement, "binding_key": incoming.binding.key,
                     "national_level": level,
                     "records": records_detail(
                         custody=[record.digest()],
                         receipts=[given_record.digest()] if given_record else [])})
        items.append((stored, event.seq))
        custody.append((record, event.seq))
        uow.events.append(ItemStored(item_id, version, incoming.label, incoming.sender))
        if given_record is not None:
            receipts.append((given_record, event.seq))
            given.add((item_id, version, incoming.sender))
        out.append(Ingested(item_id, version, "stored", decision.reasons,
                            decision.agreement, level, event.seq, receipt))
    uow.repo.add_items(items)
    uow.repo.add_custody_many(custody)
    uow.repo.add_receipts(receipts)
    return out


def _version(obj: Mapping[str, Any]) -> str:
    return item_version(obj)
