"""What a node owes its partners, planned from what its handlers recorded (pure).

A handler that stores an item, obtains a consent, records an incident or a classification
notice records a domain event on its unit of work (:data:`DomainEvent`). Before the commit,
the service turns those events into outbox rows with :func:`plan_deliveries` and
:func:`plan_notices`: deliveries where this node's release policy permits them, notices
back along the custody chain or on to the holders. The rows are written in the same commit
as what caused them, so a crash never loses one nor sends one that was rolled back.

Deliveries and notices are rows of one outbox, told apart by their ``kind``
(:data:`DELIVERY`, :data:`INCIDENT`, :data:`CLASSIFICATION`), sent by one courier: one
backoff (:func:`backoff`, :func:`next_try`), one lease on the rows a sender took
(:data:`LEASE_S`) and one reading of a partner's refusal (:func:`definitive`) serve them all.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from gsomia.core.agreements import Catalogue
from gsomia.core.custody import ClassificationNotice, IncidentReport
from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import Consent, Decision, ReleaseRequest, StandingConsent, decide
from gsomia.core.types import Party

__all__ = [
    "AT_BOUND_S",
    "CLASSIFICATION",
    "CONSENT_REQUEST",
    "DELIVERY",
    "FIRST_BACKOFF",
    "INCIDENT",
    "LEASE_S",
    "MAX_BACKOFF",
    "NOTICE_KINDS",
    "NOT_NOW_CAP_S",
    "STANDING_CONSENT",
    "STANDING_REVOCATION",
    "ConsentObtained",
    "DeliveryDue",
    "DomainEvent",
    "IncidentRecorded",
    "ItemStored",
    "NoticeDue",
    "NoticeRecorded",
    "ReceiptObtained",
    "Routing",
    "StandingConsentIssued",
    "backoff",
    "consents_needed",
    "definitive",
    "next_try",
    "not_now_after",
    "plan_deliveries",
    "plan_held_notices",
    "plan_notices",
    "plan_standing_notices",
    "release_refusal",
    "retry_after",
]

INCIDENT, CLASSIFICATION = "incident", "classification-notice"
STANDING_CONSENT, STANDING_REVOCATION = "standing-consent", "standing-revocation"
DELIVERY = "delivery"  # an (item, version) owed to a partner; the other kinds are notices
# A holder's consent request whose POST got no answer, asked again under its id.
CONSENT_REQUEST = "consent-request"
# The kinds of notice the courier posts (each to its path of the peer API).
NOTICE_KINDS = frozenset({INCIDENT, CLASSIFICATION, STANDING_CONSENT, STANDING_REVOCATION,
                          CONSENT_REQUEST})

# The one retry policy of the outbox: a failed try goes again after FIRST_BACKOFF seconds,
# doubling up to MAX_BACKOFF (a partner back up is served within seconds).
FIRST_BACKOFF = 0.1
MAX_BACKOFF = 5.0
# A partner at one of its ``[limits]`` bounds (429, "not now") is asked again no sooner: its
# room comes as its window moves or its operator answers, not within seconds, and each try
# costs it a signature check and a refusal on record. Doubling with each "not now" in a row
# (a row's tries lost to the network do not count: a partner down a few seconds must not
# make its first "not now" cost an hour), up to NOT_NOW_CAP_S: a bound that stays full for
# a day (a partner's ``[limits]`` windows) must not cost it one refusal a minute all day.
AT_BOUND_S = 60
# The longest a row waits between two tries, whatever the partner's Retry-After says (it is
# honoured up to here) and however often it said "not now". The partners' windows are a day
# (``[limits]``): a row that waits at most an hour arrives within the hour its room comes
# back; a partner, or a proxy on the way, that says "a year" (or a date years ahead) parks
# no row longer, and one try an hour of each row costs a partner nothing.
NOT_NOW_CAP_S = 3600.0
# How long a sender holds the rows it took (PostgreSQL, several senders): longer than any
# post takes (the partner client's timeout is 10 s, a refused batch is retried envelope by
# envelope), so a live sender is never overtaken; a killed one's rows are due again after.
LEASE_S = 60.0


# ---- domain events ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ItemStored:
    """A version stored here: published (``provider`` None) or received from ``provider``.
    ``label`` is the originator's label as bound."""

    item_id: str
    version: str
    label: SecurityLabel
    provider: Party | None = None


@dataclass(frozen=True, slots=True)
class ConsentObtained:
    """The originator's consent to pass ``item_id`` on to ``recipient`` is now held."""

    item_id: str
    recipient: Party


@dataclass(frozen=True, slots=True)
class IncidentRecorded:
    """An incident recorded here; ``came_from``: the partner that reported it to us."""

    report: IncidentReport
    came_from: Party | None = None


@dataclass(frozen=True, slots=True)
class NoticeRecorded:
    """A classification notice recorded here (issued as originator, or applied as holder)."""

    notice: ClassificationNotice
    came_from: Party | None = None


@dataclass(frozen=True, slots=True)
class ReceiptObtained:
    """A partner's signed receipt for a delivery, recorded here (nothing more is owed)."""

    item_id: str
    version: str
    peer: Party


@dataclass(frozen=True, slots=True)
class StandingConsentIssued:
    """A standing consent granted or revoked here, as originator: its signed document
    (``kind``: :data:`STANDING_CONSENT` or :data:`STANDING_REVOCATION`) goes to every
    partner this node delivers to, through the notices outbox (retried until answered)."""

    kind: str
    reference: str
    body: str
    # Partners that hold it already (a revocation passed on: who sent it, its originator).
    skip: tuple[Party, ...] = ()


DomainEvent = (ItemStored | ConsentObtained | IncidentRecorded | NoticeRecorded
               | ReceiptObtained | StandingConsentIssued)


# ---- what is owed -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Routing:
    """Who this node is and whom it delivers to (its topology), with the agreements.
    ``federated`` is False while the node has no partners: nothing is planned for delivery
    then, and the outbox scan catches up once it has some."""

    me: Party
    deliver_to: tuple[Party, ...]
    catalogue: Catalogue
    federated: bool = True


@dataclass(frozen=True, slots=True)
class DeliveryDue:
    """One (item, version) owed to one partner."""

    item_id: str
    version: str
    recipient: Party

    def key(self) -> tuple[str, str, Party]:
        return (self.item_id, self.version, self.recipient)


@dataclass(frozen=True, slots=True)
class NoticeDue:
    """One notice owed to one partner; ``body`` is the JSON text posted."""

    kind: str
    recipient: Party
    reference: str
    item_id: str | None
    body: str

    def key(self) -> tuple[str, str, Party]:
        return (self.kind, self.reference, self.recipient)


def plan_deliveries(stored: Iterable[ItemStored], routing: Routing,
                    consents: Mapping[str, Sequence[Consent]], now: datetime, *,
                    only: Party | None = None,
                    standing: Sequence[StandingConsent] = ()) -> list[DeliveryDue]:
    """Each stored version to every partner this node's release policy permits.

    Never back to the party it came from or to its originator; an item received from a
    partner passes on only with the originator's consent for the item or a standing
    consent covering it (the policy's third-party rule), and without any consent held it
    goes nowhere. ``only``: plan for that recipient alone."""
    out: list[DeliveryDue] = []
    for event in stored:
        label = event.label
        grants = tuple(consents.get(event.item_id, ()))
        standing_held = tuple(c for c in standing if c.originator == label.originator)
        if label.originator != routing.me and not grants and not standing_held:
            continue
        for recipient in routing.deliver_to:
            if recipient in (routing.me, label.originator, event.provider) or \
                    (only is not None and recipient != only):
                continue
            if _release(event.item_id, label, recipient, routing, now, grants,
                        standing_held).permit:
                out.append(DeliveryDue(event.item_id, event.version, recipient))
    return out


def consents_needed(stored: Iterable[ItemStored], routing: Routing, now: datetime, *,
                    only: Party | None = None) -> tuple[list[str], bool]:
    """What :func:`plan_deliveries` needs read to plan ``stored``: the items received from a
    partner that some partner could be sent if the originator's consent were held (their
    consents), and whether a standing consent could open any of them (one of those items
    carries a category). An item no consent could open (its REL TO, caveats, level or the
    agreements shut every partner out; or none is left but the originator and the party it
    came from) is planned as it would be with every consent held: to nobody. So a receive
    whose items no consent could open reads no consent at all."""
    items: set[str] = set()
    standing = False
    for event in stored:
        label = event.label
        if label.originator == routing.me or \
                (event.item_id in items and (standing or label.category is None)):
            continue
        for recipient in routing.deliver_to:
            if recipient in (routing.me, label.originator, event.provider) or \
                    (only is not None and recipient != only):
                continue
            # Consents only ever add a permission (the third-party rule is one reason of
            # the denial among others): granted here, the rest of the decision stands.
            if _release(event.item_id, label, recipient, routing, now,
                        (Consent(event.item_id, label.originator, recipient),), ()).permit:
                items.add(event.item_id)
                standing = standing or label.category is not None
                break
    return sorted(items), standing


def _release(item_id: str, label: SecurityLabel, recipient: Party, routing: Routing,
             now: datetime, grants: tuple[Consent, ...],
             standing_held: tuple[StandingConsent, ...]) -> Decision:
    return decide(ReleaseRequest(item_id, label, routing.me, recipient, now, grants,
                                 standing_held), routing.catalogue)


def release_refusal(item_id: str, label: SecurityLabel, recipient: Party, routing: Routing,
                    now: datetime, grants: Sequence[Consent] = (),
                    standing: Sequence[StandingConsent] = ()) -> str | None:
    """Why ``item_id`` marked ``label`` (as bound) may not go to ``recipient`` at ``now``, by
    the rules :func:`plan_deliveries` queued it by; None: it may. Asked again as the envelope
    is sealed: an outbox row is only what the host's disk says now, and whoever can write
    that file can name any recipient or item in it. (The party the item came from is not
    looked up here: it holds the item already, so nothing new reaches it.)"""
    if recipient == routing.me or recipient not in routing.deliver_to:
        return f"{recipient} is not a partner this node delivers to"
    if recipient == label.originator:
        return f"{recipient} is the item's originator: nothing goes back to it"
    held = tuple(c for c in standing if c.originator == label.originator)
    decision = _release(item_id, label, recipient, routing, now, tuple(grants), held)
    return None if decision.permit else "; ".join(decision.reasons)


def plan_notices(recorded: Iterable[IncidentRecorded | NoticeRecorded], me: Party,
                 holders: Mapping[str, Collection[Party]]) -> list[NoticeDue]:
    """Incident reports go to whoever provided the item; classification notices to every
    holder this node delivered the item to (``holders``: the partners whose receipts it
    obtained). Nothing goes back to the party the record came from."""
    out: list[NoticeDue] = []
    for event in recorded:
        if isinstance(event, IncidentRecorded):
            report = event.report
            if report.item_id is None or report.notify is None or \
                    report.notify in (me, event.came_from):
                continue
            # The reference rides in the text: the receiver's record of it is then unique,
            # which is what makes a retried report a duplicate there.
            body = {"kind": report.kind, "item_id": report.item_id,
                    "reference": report.reference,
                    "description": f"{report.description} [ref {report.reference}]"}
            out.append(NoticeDue(INCIDENT, report.notify, report.reference, report.item_id,
                                 _text(body)))
        else:
            notice = event.notice
            for holder in sorted(set(holders.get(notice.item_id, ()))
                                 - {me, notice.originator, event.came_from}):
                out.append(NoticeDue(CLASSIFICATION, holder, notice.digest(), notice.item_id,
                                     _text(notice.to_json())))
    return out


def plan_held_notices(obtained: Iterable[ReceiptObtained], me: Party,
                      notices: Mapping[str, Sequence[ClassificationNotice]],
                      bound: Mapping[tuple[str, str], SecurityLabel]) -> list[NoticeDue]:
    """The originator's newest notice of each item, owed to a partner whose receipt for a
    version of it was just recorded (``obtained``), if that version was bound at another
    level than the notice sets (``bound``: the label each version was bound with;
    ``notices``: those held, by item). A notice goes to the holders whose receipts are held
    when it is issued (:func:`plan_notices`): a version sealed before it and receipted after
    (in flight meanwhile) left its holder at the old level for good (noticeflight29). A
    version bound at the level in force (a level changed and changed back, or published at
    the new level) carries it already, as the seal decides (``reclassified_at_seal``), so it
    is owed nothing. Only the originator's notices count; one already queued to the partner
    is left out by the caller (:func:`gsomia.service.outbox.queue_notices`)."""
    out: dict[tuple[str, Party], NoticeDue] = {}
    for event in obtained:
        label = bound.get((event.item_id, event.version))
        if label is None or event.peer in (me, label.originator) or \
                (event.item_id, event.peer) in out:
            continue
        held = [n for n in notices.get(event.item_id, ()) if n.originator == label.originator]
        newest = max(held, key=lambda n: n.issued_at, default=None)
        if newest is not None and newest.new_level != label.level:
            out[(event.item_id, event.peer)] = NoticeDue(
                CLASSIFICATION, event.peer, newest.digest(), event.item_id,
                _text(newest.to_json()))
    return list(out.values())


def plan_standing_notices(issued: Iterable[StandingConsentIssued],
                          routing: Routing) -> list[NoticeDue]:
    """A standing consent or its revocation goes to every partner this node delivers to:
    the hub that relays, and the recipient if it is a partner (it checks again on receipt).
    A revocation is passed on the same way by each node that obtains it, so it reaches the
    nodes beyond a relay too (the recipient behind the hub)."""
    return [NoticeDue(event.kind, partner, event.reference, None, event.body)
            for event in issued for partner in routing.deliver_to
            if partner != routing.me and partner not in event.skip]


def _text(body: Mapping[str, object]) -> str:
    return json.dumps(body, ensure_ascii=False, sort_keys=True)


def backoff(attempts: int, *, first: float = FIRST_BACKOFF, cap: float = MAX_BACKOFF) -> float:
    """Seconds before the next try after ``attempts`` failed ones: doubling from ``first``,
    never more than ``cap``."""
    return min(cap, first * float(2 ** min(max(attempts, 0), 62)))


def next_try(attempts: int, now: datetime, status: int = 0,
             wait: float | None = None, *, not_now: int = 0) -> datetime:
    """When a row that failed ``attempts`` times before this failure (answered ``status``,
    0 for none) goes again: after the backoff; from a partner at its bound (429), no sooner
    than :data:`AT_BOUND_S` doubled with each "not now" in a row (``not_now``: those
    answered just before this one, :func:`not_now_after`), whatever the row's tries lost
    to the network before them; and no sooner than ``wait``, the seconds its
    ``Retry-After`` asked for (:func:`retry_after`). Never later than
    :data:`NOT_NOW_CAP_S` but for the backoff itself."""
    seconds = backoff(attempts)
    if status == 429:
        seconds = max(seconds, backoff(not_now, first=AT_BOUND_S, cap=NOT_NOW_CAP_S))
    if wait is not None:
        seconds = max(seconds, min(wait, NOT_NOW_CAP_S))
    return now + timedelta(seconds=seconds)


def not_now_after(not_now: int, status: int) -> int:
    """A row's "not now"s in a row once it is answered ``status`` (0: no answer): one more
    after a 429, none after anything else (a row's outage is not its partner's bound)."""
    return max(not_now, 0) + 1 if status == 429 else 0


def retry_after(value: object, now: datetime) -> float | None:
    """The seconds a partner's ``Retry-After`` asks for (RFC 9110 10.2.3: delay-seconds or
    an HTTP-date, any of its three forms), between 0 and :data:`NOT_NOW_CAP_S`; None if
    there is none or it is not one of those (the caller's own backoff then decides). Never
    raises: the value is whatever a partner, or anything on the way, chose to send."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        # Any number of digits: more than the cap's are the cap, not a number parsed.
        digits = text.lstrip("0") or "0"
        return NOT_NOW_CAP_S if len(digits) > 6 else min(float(digits), NOT_NOW_CAP_S)
    try:
        at = parsedate_to_datetime(text)
        if at.tzinfo is None:  # asctime: GMT, as every HTTP-date
            at = at.replace(tzinfo=UTC)
        seconds = (at - now).total_seconds()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return min(max(seconds, 0.0), NOT_NOW_CAP_S)


def definitive(status: int) -> bool:
    """An HTTP refusal that retrying cannot change: the partner read the request and said
    no (413 too large, 422 malformed, 403 refused, ...). 401 (our certificate not yet
    trusted), 408, 425 and 429 say "not now", and 5xx "not working": those are retried."""
    return 400 <= status < 500 and status not in (401, 408, 425, 429)
