"""From domain events to outbox rows, in the commit that records the events.

Every handler that changes what the node owes its partners ends with :func:`commit`: the
events it recorded on the unit of work are planned (:mod:`gsomia.core.outbox`), the rows
not queued before are written through ``uow.outbox``, each batch recorded by one audit event
(``deliveries-queued``, ``notices-queued``), and only then does the unit of work commit. So
whoever publishes or receives, the deliveries are queued in the same commit; the outbox scan
(:func:`recover`) is left with what a node stored before it had partners.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gsomia.core import crypto
from gsomia.core.audit import AuditKind
from gsomia.core.custody import (
    ClassificationNotice,
    ConsentRecord,
    StoredItem,
    records_detail,
    register_digest,
    verify_classification_notice,
)
from gsomia.core.errors import MalformedInput, ProofInvalid
from gsomia.core.labels import SecurityLabel
from gsomia.core.outbox import (
    ConsentObtained,
    DeliveryDue,
    IncidentRecorded,
    ItemStored,
    NoticeDue,
    NoticeRecorded,
    ReceiptObtained,
    Routing,
    StandingConsentIssued,
    consents_needed,
    plan_deliveries,
    plan_held_notices,
    plan_notices,
    plan_standing_notices,
    release_refusal,
)
from gsomia.core.policy import Consent, StandingConsent
from gsomia.core.types import Party, iso
from gsomia.service.ports import SignatureChecks, UnitOfWork

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = ["commit", "notice_verifies", "queue_deliveries", "queue_notices",
           "reclassified_at_seal", "recover", "refused_at_seal", "standing_held",
           "unbound_at_seal"]


def commit(uow: UnitOfWork, now: datetime) -> None:
    """Plan what the unit of work's events owe partners, queue it, and commit."""
    events = list(uow.events)
    uow.events.clear()
    stored = [e for e in events if isinstance(e, ItemStored)]
    if stored and uow.routing.federated:
        queue_deliveries(uow, stored, now, scanned_to=uow.outbox.advance_scan(len(stored)))
    for consent in (e for e in events if isinstance(e, ConsentObtained)):
        _queue_consented(uow, consent, now)
    recorded = [e for e in events if isinstance(e, IncidentRecorded | NoticeRecorded)]
    if recorded:
        _queue_notices(uow, recorded, now)
    issued = [e for e in events if isinstance(e, StandingConsentIssued)]
    if issued:
        queue_notices(uow, plan_standing_notices(issued, uow.routing), now)
    obtained = [e for e in events if isinstance(e, ReceiptObtained)]
    if obtained:
        _queue_held_notices(uow, obtained, now)
    uow.commit()


def queue_deliveries(uow: UnitOfWork, stored: Sequence[ItemStored], now: datetime, *,
                     only: Party | None = None, scanned_to: int | None = None) -> int:
    """Queue each stored version to every partner the release policy permits; the rows
    queued, and ``scanned_to`` (the scan watermark, if this commit moves it), are recorded
    by one ``deliveries-queued`` event. Queueing twice changes nothing."""
    routing = uow.routing
    planned: list[DeliveryDue] = []
    if routing.federated and routing.deliver_to and stored:
        # Only what came from a partner needs the originator's consents (third-party rule),
        # and only if a consent could open it to a partner: read here, under the write lock,
        # so a consent revoked before it is taken releases nothing.
        relayed, by_standing = consents_needed(stored, routing, now, only=only)
        held = uow.repo.consents_of(relayed) if relayed else {}
        grants = {item: [Consent(c.item_id, c.originator, c.recipient) for c in records]
                  for item, records in held.items()}
        planned = plan_deliveries(stored, routing, grants, now, only=only,
                                  standing=standing_held(uow, now) if by_standing else ())
    if planned:
        # The write lock is held: a delivery already in the outbox is left out here, so
        # every row has exactly one recording event.
        held_rows = uow.outbox.queued_deliveries({d.key() for d in planned})
        fresh: list[DeliveryDue] = []
        for due in planned:
            if due.key() not in held_rows:
                held_rows.add(due.key())
                fresh.append(due)
        planned = fresh
    if not planned and scanned_to is None:
        return 0
    details: dict[str, Any] = {"records": records_detail(outbox=[
        register_digest("outbox", {"item_id": d.item_id, "version": d.version,
                                   "recipient": d.recipient}) for d in planned])}
    if scanned_to is not None:
        details["scanned_to"] = scanned_to
    event = uow.audit.append(AuditKind.DELIVERIES_QUEUED, now, "node", details=details)
    if planned:
        uow.outbox.add_deliveries(planned, now=now, seq=event.seq)
    return len(planned)


def refused_at_seal(routing: Routing, recipient: Party, now: datetime,
                    labelled: Iterable[tuple[str, str, SecurityLabel]],
                    consents: Mapping[str, Sequence[ConsentRecord]],
                    standing: Sequence[StandingConsent]) -> dict[tuple[str, str], str]:
    """The versions of ``labelled`` (item, version, label as bound) that may not go to
    ``recipient`` at ``now``, each with the policy's reasons: the decision
    :func:`queue_deliveries` took, taken again by the courier just before it seals, with the
    consents held for those items and the standing consents in force. The row that queued
    a delivery names its recipient and item only as the host's disk says now."""
    refused: dict[tuple[str, str], str] = {}
    grants: dict[str, tuple[Consent, ...]] = {}
    # The node's own items need no consent: the decision rests on the label alone, taken
    # once per label of the batch (items published together share theirs).
    own: dict[SecurityLabel, str | None] = {}
    for item_id, version, label in labelled:
        if label.originator == routing.me:
            if label not in own:
                own[label] = release_refusal(item_id, label, recipient, routing, now)
            why = own[label]
        else:
            if item_id not in grants:
                grants[item_id] = tuple(Consent(c.item_id, c.originator, c.recipient)
                                        for c in consents.get(item_id, ()))
            why = release_refusal(item_id, label, recipient, routing, now, grants[item_id],
                                  standing)
        if why is not None:
            refused[(item_id, version)] = f"not released to {recipient} as it was sealed: {why}"
    return refused


def reclassified_at_seal(labelled: Iterable[tuple[str, str, SecurityLabel]],
                         notices: Mapping[str, Sequence[ClassificationNotice]],
                         originator_keys: Mapping[Party, Ed25519PublicKey]
                         ) -> dict[tuple[str, str], str]:
    """The versions of ``labelled`` (item, version, label as bound) whose originator has
    since changed the item's level: its newest notice held (``notices``, by item, each
    checked by its originator's key) sets a level other than the bound label's. An envelope
    carries the bound label, never the notice, so such a version would leave at the level
    the originator left, past a level the agreement may not even cover (hunt29). A notice
    held that does not verify (rewritten on the host's disk) refuses the item's versions:
    which level is in force cannot be told."""
    refused: dict[tuple[str, str], str] = {}
    newest: dict[tuple[str, Party], ClassificationNotice | str | None] = {}
    for item_id, version, label in labelled:
        key = (item_id, label.originator)
        if key not in newest:
            public = originator_keys.get(label.originator)
            held = [n for n in notices.get(item_id, ()) if n.originator == label.originator]
            if held and (public is None or not all(notice_verifies(n, public)
                                                    for n in held)):
                newest[key] = ("a classification notice held of it does not verify against "
                               f"{label.originator}'s key: which level is in force cannot "
                               "be told")
            else:
                newest[key] = max(held, key=lambda n: n.issued_at, default=None)
        found = newest[key]
        if isinstance(found, str):
            refused[(item_id, version)] = found
        elif found is not None and found.new_level != label.level:
            refused[(item_id, version)] = (
                f"its originator {label.originator} changed its level to {found.new_level} "
                f"(notice issued {iso(found.issued_at)}) after binding it at {label.level}: "
                "it would leave at a level the originator has left; a version bound at the "
                "new level goes")
    return refused


def notice_verifies(notice: ClassificationNotice, public: Ed25519PublicKey) -> bool:
    """Whether ``notice`` verifies against its originator's ``public`` key."""
    try:
        verify_classification_notice(notice, public)
    except ProofInvalid:
        return False
    return True


def unbound_at_seal(stored: Iterable[tuple[str, str, bytes, bytes, Mapping[str, Any] | bytes,
                                           Party]],
                    originator_keys: Mapping[Party, Ed25519PublicKey],
                    checks: SignatureChecks, here: SignatureChecks | None = None
                    ) -> tuple[dict[tuple[str, str], crypto.Binding],
                               Callable[[], dict[tuple[str, str], str]]]:
    """Whether the originator bound each version of ``stored`` (item, version, content and
    label as stored, the binding as stored or its JSON read, the label's originator) as it
    is about to be sealed: the label the release was just decided by, and the content that
    goes under it, are only what the host's disk says now, and whoever can write that file
    can widen a REL TO, lower a level or put one item's content under another's label.
    Verified against the originator's key (``originator_keys``: this node's own for its
    items, the partner's for a relay), the signatures of the batch through ``checks`` (the
    node's signature worker) while the caller goes on with the seal; with ``here``, half of
    them only, the other half through ``here`` (in the caller's process) once the caller
    asks for the answer, as the worker checks the first.

    The bindings read whose digest matches (their signatures still being checked), and a
    call that waits for those checks and gives every version that may not be sealed, each
    with its reason: a binding that does not read, names no key this node knows for the
    originator, does not match the label and content, or whose signature does not verify."""
    refused: dict[tuple[str, str], str] = {}
    bindings: dict[tuple[str, str], crypto.Binding] = {}
    signed: list[tuple[tuple[str, str], crypto.SignatureCheck]] = []
    for item_id, version, content, label, binding_bytes, originator in stored:
        key = (item_id, version)
        public = originator_keys.get(originator)
        try:
            if public is None:
                raise ProofInvalid(f"no signing key known for its originator {originator}")
            if type(label) is not bytes or type(content) is not bytes:
                # Retyped on disk (SQLite keeps a text or a number written into a blob
                # column): hashed, it raised out of the seal at every pass, and the link's
                # rows behind it waited for ever. What was bound is bytes.
                raise MalformedInput(
                    f"its stored label or content is not bytes "
                    f"({type(label).__name__}, {type(content).__name__})")
            binding = crypto.Binding.from_json(binding_bytes)
            signed.append((key, crypto.binding_check(label, content, binding, public)))
        except (MalformedInput, ProofInvalid) as exc:
            refused[key] = f"{_UNBOUND}: {exc}"
            continue
        bindings[key] = binding
    # The seal has nothing to do while it waits: with ``here``, this process checks half.
    half = len(signed) // 2 if here is not None else len(signed)
    answers = checks.submit([c for _, c in signed[:half]])

    def unbound() -> dict[tuple[str, str], str]:
        rest = here.submit([c for _, c in signed[half:]])() if here is not None else []
        verified = answers() + rest
        if len(verified) != len(signed):
            verified = [False] * len(signed)  # an answer that does not add up verifies nothing
        for (key, _), good in zip(signed, verified, strict=True):
            if good is not True:
                refused[key] = f"{_UNBOUND}: {crypto.BINDING_SIGNATURE_FAILS}"
        return refused

    return bindings, unbound


_UNBOUND = "its binding does not verify"


def standing_held(uow: UnitOfWork, now: datetime) -> list[StandingConsent]:
    """The standing consents this node holds that may allow a relay at ``now``, as the
    policy reads them: neither revoked nor ended (those allow nothing), so the read is
    bounded by what is in force, not by the history of every grant and revocation."""
    from gsomia.service.standing import in_force

    return in_force(uow.repo.standing_current(now))


def _stored_as_held(uow: UnitOfWork, keys: Collection[tuple[str, str]]) -> list[ItemStored]:
    """Items already held, as the events that stored them would have said."""
    held = (uow.repo.get_item(item_id, version) for item_id, version in keys)
    return _as_stored(uow, [item for item in held if item is not None])


def _as_stored(uow: UnitOfWork, held: Sequence[StoredItem]) -> list[ItemStored]:
    """``held`` as the events that stored them would have said (the provider: custody's)."""
    out: list[ItemStored] = []
    for item in held:
        custody = uow.repo.custody_of(item.item_id, item.version)
        out.append(ItemStored(item.item_id, item.version, item.security_label(),
                              custody[0].provider if custody else None))
    return out


def _queue_consented(uow: UnitOfWork, consent: ConsentObtained, now: datetime) -> None:
    """A consent obtained opens the relay: the item's versions go to its recipient (read
    once: each version is as item_versions gave it, not read again by its key)."""
    held = uow.repo.item_versions(consent.item_id)
    if held and uow.routing.federated:
        queue_deliveries(uow, _as_stored(uow, held), now, only=consent.recipient)


def _queue_notices(uow: UnitOfWork, recorded: Sequence[IncidentRecorded | NoticeRecorded],
                   now: datetime) -> None:
    holders: dict[str, set[Party]] = {}
    for event in recorded:
        if isinstance(event, NoticeRecorded) and event.notice.item_id not in holders:
            holders[event.notice.item_id] = {
                r.peer for r in uow.repo.receipts_for(event.notice.item_id)
                if r.direction == "obtained"}
    queue_notices(uow, plan_notices(recorded, uow.routing.me, holders), now)


def _queue_held_notices(uow: UnitOfWork, obtained: Sequence[ReceiptObtained],
                        now: datetime) -> None:
    """Receipts just recorded: the newest notice of each item to the partner that sent
    one, if its version left before the notice and carries another level
    (:func:`plan_held_notices`). On every settle's way: with no notice held for any of the
    batch's items (nearly always), one indexed read and nothing more."""
    held = uow.repo.notices_of({e.item_id for e in obtained})
    if not held:
        return
    bound: dict[tuple[str, str], SecurityLabel] = {}
    for event in obtained:
        key = (event.item_id, event.version)
        if event.item_id in held and key not in bound:
            item = uow.repo.get_item(*key)
            try:
                if item is not None:
                    bound[key] = item.security_label()
            except MalformedInput:
                # Retyped on the host's disk: the seal refuses its versions, and the settle
                # that records this receipt must not fail with it.
                continue
    queue_notices(uow, plan_held_notices(obtained, uow.routing.me, held, bound), now)


def queue_notices(uow: UnitOfWork, planned: Sequence[NoticeDue], now: datetime) -> None:
    """Queue the notices not queued before (kind, reference, recipient), recorded by one
    ``notices-queued`` event; inside the caller's unit of work, which commits."""
    held = uow.outbox.queued_notices({n.key() for n in planned})
    fresh = []
    for due in planned:
        if due.key() not in held:
            held.add(due.key())
            fresh.append(due)
    if fresh:
        queued = uow.audit.append(AuditKind.NOTICES_QUEUED, now, "node", details={
            "records": records_detail(notices=[register_digest("notices", {
                "kind": n.kind, "recipient": n.recipient, "reference": n.reference,
                "item_id": n.item_id, "body": n.body}) for n in fresh])})
        uow.outbox.add_notices(fresh, now=now, seq=queued.seq)


def recover(uow: UnitOfWork, now: datetime) -> int:
    """Crash recovery: queue what was stored after the scan watermark (stored before the
    node had partners, or by a node of an older version), in one commit; the count queued."""
    with uow:
        rows = uow.outbox.unscanned()
        if not rows:
            return 0
        scanned_to = max(r[2] for r in rows)
        uow.outbox.set_scan_mark(scanned_to)
        queued = queue_deliveries(uow, _stored_as_held(uow, [(r[0], r[1]) for r in rows]),
                                  now, scanned_to=scanned_to)
        uow.commit()
    return queued
