"""Standing consents under the third-party rule: grant, revoke, keep and list.

An originator's operator grants a standing consent (:func:`grant_standing_consent`): the
relay of the originator's items of some label categories, marked for one purpose, to one
recipient, for a validity period, signed with the node's Ed25519 key. It is kept, audited,
and queued in the same commit to every partner this node delivers to through the notices
outbox (retried until answered), so a holder such as the TISA hub can relay without asking
item by item. A revocation (:func:`revoke_standing_consent`) travels the same way; a holder
that knows of it stops relaying at once.

A holder keeps what it obtains (:func:`record_standing_consent`,
:func:`record_standing_revocation`) only after checking the originator's signature and that
the partner who posted it is that originator: a partner cannot consent for another.
:func:`in_force` folds the rows into the policy's claims; the release policy
(:func:`gsomia.core.policy.decide`) decides every relay with them, at the hub when it queues
and again at the recipient when it receives.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gsomia.core import crypto
from gsomia.core.agreements import Catalogue
from gsomia.core.audit import AuditKind
from gsomia.core.custody import StandingConsentRecord, records_detail
from gsomia.core.errors import LimitReached, MalformedInput, PolicyDenied
from gsomia.core.limits import PARTNER_ROWS
from gsomia.core.outbox import STANDING_CONSENT, STANDING_REVOCATION, StandingConsentIssued
from gsomia.core.policy import StandingConsent
from gsomia.core.types import Party, iso
from gsomia.service.outbox import _stored_as_held, commit, queue_deliveries
from gsomia.service.ports import KeyStore, UnitOfWork

__all__ = ["PARSED_AT_MOST", "Parsed", "grant_standing_consent", "in_force", "listing",
           "read_revocation", "record_standing_consent", "record_standing_revocation",
           "revoke_standing_consent", "revoked_ids", "with_documents"]


def _text(document: dict[str, Any]) -> str:
    import json

    return json.dumps(document, ensure_ascii=False, sort_keys=True)


def grant_standing_consent(uow: UnitOfWork, *, keys: KeyStore, catalogue: Catalogue,
                           consent_id: str, recipient: str, categories: Sequence[str],
                           purpose: str, not_before: datetime, not_after: datetime,
                           now: datetime, actor: str = "operator") -> crypto.StandingConsent:
    """As originator, sign a standing consent and send it to the partners."""
    known = catalogue.vocabulary
    recipient = known.party(recipient, where="to")
    if recipient == keys.party:
        raise MalformedInput(f"{recipient} is this node's own party", where="to",
                             expected="a third party to relay to")
    if not categories:
        raise MalformedInput("no category given", where="category",
                             expected=", ".join(sorted(known.categories)))
    for category in categories:
        if category not in known.categories:
            raise MalformedInput(f"{category!r} is not a kind of information",
                                 where="category",
                                 expected=", ".join(sorted(known.categories)))
    known.purpose(purpose, where="purpose")
    if not_after <= now:
        raise MalformedInput(f"the validity ends at {iso(not_after)}, not after now "
                             f"({iso(now)})", where="not_after", expected="a later instant")
    consent = crypto.grant_standing_consent(
        consent_id=consent_id, originator=keys.party, recipient=recipient,
        categories=list(categories), purpose=purpose, not_before=not_before,
        not_after=not_after, granted_at=now, key=keys.signing_key())
    record = StandingConsentRecord(consent.id, keys.party, recipient, "given", "grant",
                                   consent.to_json(), now)
    with uow:
        event = uow.audit.append(
            AuditKind.CONSENT, now, actor,
            details={"standing_consent": consent.id, "originator": keys.party,
                     "recipient": recipient, "direction": "standing-given",
                     "records": records_detail(standing_consents=[record.digest()])})
        uow.repo.add_standing_consent(record, seq=event.seq)
        uow.events.append(StandingConsentIssued(STANDING_CONSENT, consent.id,
                                                _text(consent.to_json())))
        commit(uow, now)
    return consent


def revoke_standing_consent(uow: UnitOfWork, *, keys: KeyStore, consent_id: str,
                            now: datetime, actor: str = "operator"
                            ) -> crypto.StandingRevocation:
    """As originator, revoke a standing consent this node gave; the partners are told."""
    with uow:
        rows = uow.repo.standing_consents_named(consent_id)
        given = [r for r in rows if r.kind == "grant" and r.direction == "given"]
        if not given:
            raise MalformedInput(f"no standing consent {consent_id!r} given by this node",
                                 where="consent_id",
                                 expected="an id from gsomia consent standing list")
        if any(r.kind == "revoke" and r.originator == keys.party for r in rows):
            raise MalformedInput(f"standing consent {consent_id} is already revoked",
                                 where="consent_id")
        revocation = crypto.revoke_standing_consent(consent_id=consent_id,
                                                    originator=keys.party, revoked_at=now,
                                                    key=keys.signing_key())
        record = StandingConsentRecord(consent_id, keys.party, given[0].recipient, "given",
                                       "revoke", revocation.to_json(), now)
        event = uow.audit.append(
            AuditKind.CONSENT, now, actor,
            details={"standing_consent": consent_id, "originator": keys.party,
                     "direction": "standing-revoked-given",
                     "records": records_detail(standing_consents=[record.digest()])})
        uow.repo.add_standing_consent(record, seq=event.seq)
        uow.events.append(StandingConsentIssued(
            STANDING_REVOCATION, f"{consent_id}/revoked", _text(revocation.to_json())))
        commit(uow, now)
    return revocation


def _in_force_from(current: Sequence[StandingConsentRecord], originator: Party,
                   now: datetime) -> int:
    """How many of ``originator``'s standing consents obtained here are in force at ``now``
    (neither revoked by it nor expired), of ``current`` (``Repository.standing_current``:
    no revoked one). Reads only each one's ``not_after``: the consent was checked when it
    was kept, and a whole parse of each on every new one would cost a flood far more than
    its signature check. One whose end does not read is counted."""
    count = 0
    for r in current:
        if r.kind != "grant" or r.originator != originator or r.direction != "obtained":
            continue
        end = r.ends
        count += end is None or now < end
    return count


def read_revocation(data: Mapping[str, Any]
                    ) -> tuple[crypto.StandingRevocation, crypto.StandingConsent | None]:
    """A revocation as posted to the peer API: the originator's signed revocation, and, when
    a hub passes it on, the signed consent it revokes as member ``consent`` (checked by
    :func:`record_standing_revocation`, not here)."""
    fields = dict(data)
    shown = fields.pop("consent", None)
    revocation = crypto.StandingRevocation.from_json(fields)
    if shown is None:
        return revocation, None
    if not isinstance(shown, Mapping):
        raise MalformedInput("the consent passed with the revocation is not a JSON object",
                             where="standing revocation.consent",
                             expected="the signed standing consent it revokes")
    return revocation, crypto.StandingConsent.from_json(shown)


def record_standing_consent(uow: UnitOfWork, *, consent: crypto.StandingConsent,
                            sender: Party, originator_public: Ed25519PublicKey,
                            catalogue: Catalogue, now: datetime,
                            bound: int = PARTNER_ROWS["standing_consents_per_partner"]) -> bool:
    """Keep a standing consent a partner sent as its originator, after checking it; the
    items already held that it covers are queued to its recipient in the same commit.
    False if it was held already (a retry). :class:`LimitReached` if ``bound`` of the
    originator's are in force here already (each costs a look at every relay); one revoked
    or expired no longer counts, so an originator that grants anew is never refused for
    consents it has withdrawn or that have run out."""
    crypto.verify_standing_consent(consent, originator_public, originator=sender)
    known = catalogue.vocabulary
    known.party(consent.recipient, where="standing consent.recipient")
    known.purpose(consent.purpose, where="standing consent.purpose")
    with uow:
        held = uow.repo.standing_consents_named(consent.id)
        if any(r.kind == "grant" for r in held):
            if all(dict(r.document) != consent.to_json() for r in held if r.kind == "grant"):
                raise PolicyDenied((f"standing consent {consent.id} is held with other "
                                    "terms: an id names one consent",))
            return False
        if _in_force_from(uow.repo.standing_current(now), consent.originator, now) >= bound:
            raise LimitReached("standing_consents_per_partner", bound,
                               f"{consent.originator}'s standing consent {consent.id}")
        record = StandingConsentRecord(consent.id, consent.originator, consent.recipient,
                                       "obtained", "grant", consent.to_json(), now)
        event = uow.audit.append(
            AuditKind.CONSENT, now, sender,
            details={"standing_consent": consent.id, "originator": consent.originator,
                     "recipient": consent.recipient, "direction": "standing-obtained",
                     "records": records_detail(standing_consents=[record.digest()])})
        uow.repo.add_standing_consent(record, seq=event.seq)
        if uow.routing.federated and not any(r.kind == "revoke"
                                             and r.originator == consent.originator
                                             for r in held):
            claim = _claim(consent, revoked=False)
            stored = [s for s in _stored_as_held(uow, uow.repo.versions_from(consent.originator))
                      if claim.covers(s.label, consent.recipient, now)]
            queue_deliveries(uow, stored, now, only=consent.recipient)
        commit(uow, now)
    return True


def record_standing_revocation(uow: UnitOfWork, *, revocation: crypto.StandingRevocation,
                               sender: Party, originator_public: Ed25519PublicKey,
                               now: datetime,
                               bound: int = PARTNER_ROWS["standing_revocations_per_partner"],
                               consent: crypto.StandingConsent | None = None,
                               window: timedelta = timedelta(
                                   hours=PARTNER_ROWS["revocation_window_hours"])) -> bool:
    """Keep the originator's revocation (even before the consent it names arrives: that
    consent is then dead on arrival), from the originator or passed on by a partner (it
    withdraws only, and ``originator_public`` is the originator's key, whoever ``sender``
    is). Deliveries it no longer allows that are still queued are refused when the sender
    re-checks them. A new one, of a consent held here, is passed on in the same commit to
    every partner this node delivers to but ``sender`` and the originator: the hub tells
    the recipient behind it, so no node relays or takes a relay under it once it is known
    anywhere on the way. False if it was held already (nothing is passed on again).

    One of a consent not held here is kept only while fewer than ``bound`` of the
    originator's such were kept within the last ``window`` (:class:`LimitReached` after):
    any party may sign revocations of ids nobody holds, each a row, and they must not grow
    the store faster than that. Counted over a window, not for good: a relay passes genuine
    revocations alone to partners that never held the consent, and ordinary traffic must
    not fill a bound that never frees (one stops counting too once its consent is held).
    One of a consent held here is always kept (there is one per consent, and the consents are
    bounded), so no decoys can crowd it out. So is one that comes with ``consent``, the
    signed consent it revokes (what a hub passes along to the nodes behind it, which never
    hold the consents the hub relays under): it is checked against the same originator's
    key and must name the same id, and a revocation that is shown to withdraw a real
    consent is never refused for the decoys of others."""
    crypto.verify_standing_revocation(revocation, originator_public)
    if consent is not None:
        crypto.verify_standing_consent(consent, originator_public,
                                       originator=revocation.originator)
        if consent.id != revocation.consent_id:
            raise MalformedInput(f"the consent passed with the revocation of "
                                 f"{revocation.consent_id} is {consent.id}",
                                 where="standing revocation.consent",
                                 expected="the standing consent the revocation names")
    with uow:
        held = uow.repo.standing_consents_named(revocation.consent_id)
        # Held already only if by the same originator: a partner's revocation of its own
        # naming this id revokes nothing (in_force) and must not shadow the originator's.
        if any(r.kind == "revoke" and r.originator == revocation.originator for r in held):
            return False
        grants = [r for r in held if r.kind == "grant"]
        if grants and grants[0].originator != revocation.originator:
            raise PolicyDenied((f"standing consent {revocation.consent_id} is "
                                f"{grants[0].originator}'s to revoke",))
        # Kept with its consent's recipient when the consent was held or shown: only a
        # revocation of a consent never seen (recipient None) counts against the bound.
        recipient = grants[0].recipient if grants else \
            consent.recipient if consent is not None else None
        if recipient is None:
            # A revocation of a consent never seen: counted by the originator's revocations
            # of the window (by index), not its revocations ever.
            orphans = uow.repo.standing_orphans(revocation.originator, now - window)
            if orphans >= bound:
                raise LimitReached("standing_revocations_per_partner", bound,
                                   f"{revocation.originator}'s revocation of standing consent "
                                   f"{revocation.consent_id}, which is not held here")
        record = StandingConsentRecord(revocation.consent_id, revocation.originator,
                                       recipient, "obtained", "revoke", revocation.to_json(),
                                       now)
        event = uow.audit.append(
            AuditKind.CONSENT, now, sender,
            details={"standing_consent": revocation.consent_id,
                     "originator": revocation.originator,
                     "direction": "standing-revoked-obtained",
                     "records": records_detail(standing_consents=[record.digest()])})
        uow.repo.add_standing_consent(record, seq=event.seq)
        # Passed on only by a node that holds the consent (same id and originator: a grant
        # by another is refused above), the one that may relay under it: a partner's
        # revocations of consents nobody holds (any party may sign its own) stop here
        # instead of being multiplied through the federation. One arriving before its
        # consent is not passed on either: the consent is then dead on arrival here, and
        # nothing is relayed under it that the nodes beyond would need to refuse. The
        # consent goes with it to its recipient, which does not hold it (under the hub):
        # it shows the revocation withdraws a real consent, kept there whatever the bound
        # on decoys. The other partners take no relay under it, and its terms are not
        # theirs to read: they get the revocation alone.
        if uow.routing.federated and grants:
            told = (sender, revocation.originator)
            reference, body = f"{revocation.consent_id}/revoked", revocation.to_json()
            recipient = grants[0].recipient
            others = tuple(p for p in uow.routing.deliver_to if p != recipient)
            uow.events.append(StandingConsentIssued(
                STANDING_REVOCATION, reference,
                _text({**body, "consent": dict(grants[0].document)}), skip=told + others))
            uow.events.append(StandingConsentIssued(
                STANDING_REVOCATION, reference, _text(body),
                skip=told + ((recipient,) if recipient is not None else ())))
        commit(uow, now)
    return True


def _claim(consent: crypto.StandingConsent, *, revoked: bool) -> StandingConsent:
    return StandingConsent(consent.id, consent.originator, consent.recipient,
                           frozenset(consent.categories), consent.purpose, consent.not_before,
                           consent.not_after, revoked)


def in_force(records: Iterable[StandingConsentRecord]) -> list[StandingConsent]:
    """The policy's claims for the standing consents held, each marked revoked if a
    revocation by its originator is held. A row that does not parse is left out: no relay
    rests on what cannot be read."""
    return [claim for claim, _ in with_documents(records)]


# Documents parsed, kept by a caller between reads (:func:`with_documents`): at most this
# many, then begun afresh.
PARSED_AT_MOST = 1024

Parsed = dict[tuple[str, str, bytes], "crypto.StandingConsent | None"]


def with_documents(records: Iterable[StandingConsentRecord], parsed: Parsed | None = None
                   ) -> list[tuple[StandingConsent, Mapping[str, Any]]]:
    """:func:`in_force`, each claim with the signed document it was read from (what a
    relay carries for the next hop to check).

    ``parsed``: the documents parsed at earlier calls, kept by the caller (a courier seals
    under the same few consents batch after batch), each under the exact text of the
    document as read now and the consent and originator its row names: a document
    rewritten on disk is another key, parsed anew; nothing here outlives the row itself,
    whose revocation (a row, or its grant's mark) the records read each time decide."""
    rows = list(records)
    revoked = {(r.consent_id, r.originator) for r in rows if r.kind == "revoke"}
    out: list[tuple[StandingConsent, Mapping[str, Any]]] = []
    for r in rows:
        if r.kind != "grant":
            continue
        consent = _parsed(r, parsed)
        if consent is None:
            continue
        if consent.id != r.consent_id or consent.originator != r.originator:
            continue
        out.append((_claim(consent, revoked=(consent.id, consent.originator) in revoked),
                    r.document))
    return out


def _parsed(record: StandingConsentRecord, parsed: Parsed | None
            ) -> crypto.StandingConsent | None:
    """``record``'s grant as parsed, or None if it does not parse (from ``parsed`` when it
    holds the same text)."""
    key = None
    if parsed is not None:
        try:
            # orjson's text, not crypto.canonical (whose plain path is the same orjson call):
            # a key of the exact text tells 1 from 1.0, which the canonical form writes alike.
            key = (record.consent_id, record.originator,
                   orjson.dumps(record.document, option=orjson.OPT_SORT_KEYS))
        except (TypeError, orjson.JSONEncodeError):  # no text of it to key by: parsed here
            key = None
        if key is not None and key in parsed:
            return parsed[key]
    try:
        consent: crypto.StandingConsent | None = \
            crypto.StandingConsent.from_json(dict(record.document))
    except MalformedInput:
        consent = None
    if parsed is not None and key is not None:
        if len(parsed) >= PARSED_AT_MOST:
            parsed.clear()
        parsed[key] = consent
    return consent


def revoked_ids(records: Iterable[StandingConsentRecord]) -> set[str]:
    return {r.consent_id for r in records if r.kind == "revoke"}


def listing(records: Iterable[StandingConsentRecord], now: datetime) -> list[dict[str, Any]]:
    """What ``consent standing list`` and the desk show: each consent with its state."""
    rows = list(records)
    directions = {r.consent_id: r.direction for r in rows if r.kind == "grant"}
    out = []
    for claim in in_force(rows):
        state = ("revoked" if claim.revoked else "expired" if now >= claim.not_after
                 else "not yet valid" if now < claim.not_before else "in force")
        out.append({**claim.to_json(), "direction": directions.get(claim.id, ""),
                    "state": state})
    return out
