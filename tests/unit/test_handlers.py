"""Handlers against a fake unit of work: receive, settle, consent and notices due.

The fakes keep the registers in lists and the log as a list of events; a commit makes the
events of the unit of work durable, leaving the block without one forgets them. No store,
no network: what is checked is what each handler decides and puts on record, in one commit.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import event, given, settings
from hypothesis import strategies as st

from gsomia.core import crypto
from gsomia.core.agreements import Catalogue
from gsomia.core.audit import AuditEvent, AuditKind, sign_tree_head
from gsomia.core.custody import (
    ClassificationNotice,
    ConsentRecord,
    CreatedCustody,
    CustodyRecord,
    IncidentReport,
    NodeUser,
    ReceiptRecord,
    Revocation,
    StandingConsentRecord,
    StoredItem,
    register_digest,
)
from gsomia.core.errors import GsomiaError, PolicyDenied, ProofInvalid
from gsomia.core.labels import SecurityLabel
from gsomia.core.outbox import (
    AT_BOUND_S,
    INCIDENT,
    STANDING_REVOCATION,
    DeliveryDue,
    DomainEvent,
    ItemStored,
    NoticeDue,
    Routing,
    consents_needed,
    definitive,
    plan_deliveries,
)
from gsomia.core.policy import Consent, ReleaseRequest, StandingConsent, decide
from gsomia.core.types import Party
from gsomia.service import exchange, handlers
from gsomia.service import notices as notice_handlers
from gsomia.service.ports import (
    ConsentRequest,
    LoggedHead,
    QueuedDelivery,
    QueuedNotice,
    SeenEnvelope,
    checks_here,
)
from gsomia.service.refusals import RefusalWindow
from gsomia.shell.signatures import RememberingChecks, SignatureWorker
from gsomia.shell.statuses import status_of

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
KOR_LABEL = handlers.LabelRequest("군사II급비밀", ("KOR", "JPN"), "dprk-missile")


# ---- the fakes ----------------------------------------------------------------------------


class FakeKeys:
    def __init__(self, party: Party) -> None:
        self.party = party
        self._signing = Ed25519PrivateKey.generate()
        self._envelope = X25519PrivateKey.generate()

    def signing_key(self) -> Ed25519PrivateKey:
        return self._signing

    def public_signing_key(self) -> Any:
        return self._signing.public_key()

    def envelope_key(self) -> X25519PrivateKey:
        return self._envelope


@dataclasses.dataclass(frozen=True)
class LoggedHeadRow:
    seq: int
    kind: str
    at: str
    details: str


def _unread() -> NotImplementedError:
    return NotImplementedError("no handler tested here reads this: a fake that answered it "
                               "empty would let one that starts to pass for the wrong reason")


class PeopleRegisters:
    """The people registers of :class:`gsomia.service.ports.Repository`, which only the
    people handlers (not tested here) use: the fake repository has them so that it is a
    Repository, and refuses them. What the shell alone reads (``ShellReads``) it need not
    have."""

    def add_user(self, user: NodeUser, *, seq: int) -> None:
        raise _unread()

    def user_named(self, name: str) -> NodeUser | None:
        raise _unread()

    def user_by_token(self, token_hash: bytes) -> NodeUser | None:
        raise _unread()

    def add_revocation(self, revocation: Revocation, *, seq: int) -> None:
        raise _unread()

    def revoked_names(self) -> set[str]:
        raise _unread()


class FakeRepo(PeopleRegisters):
    def __init__(self) -> None:
        self.log: FakeAudit | None = None
        self.items: dict[tuple[str, str], StoredItem] = {}
        self.item_seqs: dict[str, int] = {}
        self.custody: list[CustodyRecord] = []
        self.consents: list[ConsentRecord] = []
        self.receipts: list[ReceiptRecord] = []
        self.notices: list[ClassificationNotice] = []
        self.notice_seqs: list[int] = []
        self.incident_reports: list[IncidentReport] = []
        self.seen: list[tuple[SeenEnvelope, int]] = []
        self.requests: dict[str, tuple[ConsentRequest, str]] = {}
        self.standing: list[StandingConsentRecord] = []

    def add_item(self, item: StoredItem, *, seq: int) -> None:
        self.items[(item.item_id, item.version)] = item
        self.item_seqs.setdefault(item.item_id, seq)

    def item_seq(self, item_id: str) -> int | None:
        return self.item_seqs.get(item_id)

    def labels_stored_after(self, seq: int, *, originator: Party,
                            stix_type: str) -> list[tuple[str, bytes]]:
        return [(i.item_id, i.label) for (item_id, _), i in self.items.items()
                if self.item_seqs[item_id] > seq and i.originator == originator
                and i.stix_type == stix_type]

    def head_records(self, kinds: Collection[str],
                     limit: int | None = None) -> list[LoggedHead]:
        rows: list[LoggedHead] = [LoggedHeadRow(e.seq, e.kind.value, e.at.isoformat(),
                              json.dumps(e.details, default=dict))
                for e in reversed(self.log.events if self.log else []) if e.kind.value in kinds]
        return rows if limit is None else rows[:limit]

    def add_items(self, items: list[tuple[StoredItem, int]]) -> None:
        for item, seq in items:
            self.add_item(item, seq=seq)

    def get_item(self, item_id: str, version: str | None = None) -> StoredItem | None:
        versions = [v for v in self.item_versions(item_id)
                    if version is None or v.version == version]
        return versions[-1] if versions else None

    def item_versions(self, item_id: str) -> list[StoredItem]:
        return sorted((i for (k, _), i in self.items.items() if k == item_id),
                      key=lambda i: i.version)

    def held_versions(self, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
        return {k for k in keys if k in self.items}

    def versions_held(self, item_ids: list[str]) -> set[tuple[str, str]]:
        return {k for k in self.items if k[0] in item_ids}

    def current_contents(self, item_ids: list[str]) -> dict[str, bytes]:
        return {i: self.item_versions(i)[-1].content for i in item_ids if self.item_versions(i)}

    def current_labels(self, item_ids: list[str]) -> dict[str, list[SecurityLabel]]:
        latest = {(c.item_id, c.version): c.national_label for c in self.custody
                  if c.item_id in item_ids}
        out: dict[str, list[SecurityLabel]] = {}
        for (item_id, _), label in latest.items():
            out.setdefault(item_id, []).append(label)
        return out

    def add_custody(self, record: CustodyRecord, *, seq: int) -> None:
        self.custody.append(record)

    def add_custody_many(self, records: list[tuple[CustodyRecord, int]]) -> None:
        self.custody.extend(r for r, _ in records)

    def add_created_custody(self, batch: CreatedCustody, *, seq: int) -> None:
        self.custody.extend(batch.records())

    def custody_of(self, item_id: str, version: str) -> list[CustodyRecord]:
        return [c for c in self.custody if (c.item_id, c.version) == (item_id, version)]

    def add_consent(self, record: ConsentRecord, *, seq: int) -> None:
        self.consents.append(record)

    def consents_for(self, item_id: str) -> list[ConsentRecord]:
        return [c for c in self.consents if c.item_id == item_id]

    def consents_of(self, item_ids: Collection[str]) -> dict[str, list[ConsentRecord]]:
        return {i: self.consents_for(i) for i in item_ids if self.consents_for(i)}

    def add_standing_consent(self, record: StandingConsentRecord, *, seq: int) -> None:
        self.standing.append(record)

    def standing_consents(self) -> list[StandingConsentRecord]:
        return list(self.standing)

    def standing_consents_named(self, consent_id: str) -> list[StandingConsentRecord]:
        return [r for r in self.standing if r.consent_id == consent_id]

    def standing_current(self, now: datetime, *, recipient: Party | None = None,
                         direction: str | None = None) -> list[StandingConsentRecord]:
        revoked = {(r.consent_id, r.originator) for r in self.standing if r.kind == "revoke"}
        return [r for r in self.standing if r.kind == "grant"
                and (r.consent_id, r.originator) not in revoked
                and (r.ends is None or r.ends > now)
                and recipient in (None, r.recipient) and direction in (None, r.direction)]

    def standing_orphans(self, originator: Party, since: datetime) -> int:
        granted = {(r.consent_id, r.originator) for r in self.standing if r.kind == "grant"}
        return sum(r.kind == "revoke" and r.originator == originator and r.at > since
                   and r.direction == "obtained" and r.recipient is None
                   and (r.consent_id, r.originator) not in granted for r in self.standing)

    def versions_from(self, originator: str) -> list[tuple[str, str]]:
        return [k for k, i in self.items.items() if i.originator == originator]

    def add_notice(self, notice: ClassificationNotice, *, seq: int) -> None:
        self.notices.append(notice)
        self.notice_seqs.append(seq)

    def notices_from(self, sender: Party, since: datetime,
                     originator: Party | None = None) -> int:
        events = {e.seq: e for e in (self.log.events if self.log else [])}
        return sum(seq in events and events[seq].actor == sender and events[seq].at > since
                   and originator in (None, notice.originator)
                   for notice, seq in zip(self.notices, self.notice_seqs, strict=True))

    def notices_for(self, item_id: str) -> list[ClassificationNotice]:
        return [n for n in self.notices if n.item_id == item_id]

    def notices_of(self, item_ids: Collection[str]) -> dict[str, list[ClassificationNotice]]:
        out: dict[str, list[ClassificationNotice]] = {}
        for notice in self.notices:
            if notice.item_id in item_ids:
                out.setdefault(notice.item_id, []).append(notice)
        return out

    def add_incident(self, report: IncidentReport, *, seq: int) -> None:
        self.incident_reports.append(report)

    def incidents(self) -> list[IncidentReport]:
        return list(self.incident_reports)

    def add_receipt(self, record: ReceiptRecord, *, seq: int) -> None:
        self.receipts.append(record)

    def add_receipts(self, batch: list[tuple[ReceiptRecord, int]]) -> None:
        self.receipts.extend(r for r, _ in batch)

    def receipts_for(self, item_id: str) -> list[ReceiptRecord]:
        return [r for r in self.receipts if r.item_id == item_id]

    def receipted(self, item_ids: Collection[str], peer: Party,
                  direction: str) -> set[tuple[str, str]]:
        return {(r.item_id, r.version) for r in self.receipts
                if r.item_id in item_ids and r.peer == peer and r.direction == direction}

    def add_envelopes_seen(self, rows: Sequence[SeenEnvelope], *, seq: int) -> None:
        self.seen.extend((r, seq) for r in rows)

    def add_consent_request(self, request: ConsentRequest, *, seq: int) -> None:
        self.requests[request.request_id] = (request, "pending")

    def pending_consent_requests(self, direction: str, *, holder: Party | None = None,
                                 item_id: str | None = None) -> int:
        return sum(state == "pending" and r.direction == direction
                   and holder in (None, r.holder) and item_id in (None, r.item_id)
                   for r, state in self.requests.values())

    def consent_request_row(self, request_id: str) -> dict[str, Any] | None:
        found = self.requests.get(request_id)
        if found is None:
            return None
        request, state = found
        return {"id": request_id, "item_id": request.item_id, "holder": request.holder,
                "recipient": request.recipient, "direction": request.direction,
                "status": state}

    def answer_consent_requests(self, item_id: str, recipient: Party | None, status: str,
                                at: datetime, *, request_id: str | None = None) -> None:
        for key, (request, state) in list(self.requests.items()):
            if (request_id is not None and key == request_id and state == "pending") or (
                    request_id is None and request.item_id == item_id and state == "pending"
                    and request.direction == "outgoing"
                    and recipient in (None, request.recipient)):
                self.requests[key] = (request, status)


class FakeAudit:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []  # committed
        self.pending: list[AuditEvent] = []

    def append(self, kind: AuditKind, at: datetime, actor: str, *, item_id: str | None = None,
               item_version: str | None = None, content_hash: str | None = None,
               details: Mapping[str, Any] | None = None) -> AuditEvent:
        event = AuditEvent(self.size, kind, at, actor, item_id, item_version, content_hash,
                           dict(details or {}))
        self.pending.append(event)
        return event

    @property
    def size(self) -> int:
        return len(self.events) + len(self.pending)

    def head(self) -> None:
        return None

    def of(self, kind: AuditKind) -> list[AuditEvent]:
        return [e for e in self.events if e.kind == kind]


class FakeOutbox:
    def __init__(self) -> None:
        self.deliveries: list[dict[str, Any]] = []
        self.notices: list[dict[str, Any]] = []
        self.mark: int | None = None

    def queued_deliveries(self, keys: Collection[tuple[str, str, Party]]
                          ) -> set[tuple[str, str, Party]]:
        return {k for k in keys
                if any((d["item_id"], d["version"], d["recipient"]) == k
                       for d in self.deliveries)}

    def add_deliveries(self, rows: Sequence[DeliveryDue], *, now: datetime, seq: int) -> None:
        for d in rows:
            self.deliveries.append({"row": len(self.deliveries) + 1, "item_id": d.item_id,
                                    "version": d.version, "recipient": d.recipient,
                                    "status": "pending", "attempts": 0, "seq": seq,
                                    "next_at": now, "last_error": None, "not_now": 0})

    def queued_notices(self, keys: Collection[tuple[str, str, Party]]
                       ) -> set[tuple[str, str, Party]]:
        return {k for k in keys
                if any((n["kind"], n["reference"], n["recipient"]) == k for n in self.notices)}

    def add_notices(self, rows: Sequence[NoticeDue], *, now: datetime, seq: int) -> None:
        for n in rows:
            self.notices.append({"row": len(self.notices) + 1, "kind": n.kind,
                                 "recipient": n.recipient, "reference": n.reference,
                                 "item_id": n.item_id, "body": n.body, "status": "pending",
                                 "attempts": 0, "seq": seq, "not_now": 0})

    def advance_scan(self, added: int) -> int | None:
        return None

    def unscanned(self) -> list[tuple[str, str, int]]:
        return []

    def set_scan_mark(self, seq: int) -> None:
        self.mark = seq

    def row(self, key: int) -> dict[str, Any]:
        return next(d for d in self.deliveries if d["row"] == key)

    def still_pending(self, rows: Collection[int]) -> set[int]:
        return {r for r in rows if self.row(r)["status"] == "pending"}

    def mark_delivered(self, rows: Sequence[tuple[int, int]], at: datetime) -> None:
        for key, attempts in rows:
            self.row(key).update(status="delivered", attempts=attempts)

    def mark_refused(self, rows: Sequence[tuple[int, int, str]]) -> None:
        for key, attempts, why in rows:
            self.row(key).update(status="refused", attempts=attempts, last_error=why)

    def retry_deliveries(self, rows: Sequence[tuple[int, int, int, datetime, str]]) -> None:
        for key, attempts, not_now, next_at, error in rows:
            self.row(key).update(attempts=attempts, not_now=not_now, next_at=next_at,
                                 last_error=error)

    def update_notices(self, rows: Sequence[tuple[int, Mapping[str, Any]]]) -> None:
        for key, values in rows:
            next(n for n in self.notices if n["row"] == key).update(values)


class FakeUnitOfWork:
    def __init__(self, routing: Routing) -> None:
        self.repo = FakeRepo()
        self.audit = FakeAudit()
        self.repo.log = self.audit  # the store's registers and log are one database
        self.outbox = FakeOutbox()
        self.events: list[DomainEvent] = []
        self.routing = routing
        self.commits = 0
        self.remembered = RememberingChecks(checks_here)  # what this process signed

    def __enter__(self) -> FakeUnitOfWork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.rollback()

    def commit(self) -> None:
        assert not self.events, "domain events left unplanned"
        self.audit.events.extend(self.audit.pending)
        self.audit.pending = []
        self.commits += 1

    def rollback(self) -> None:
        self.audit.pending = []
        self.events = []


def node(party: Party, catalogue: Catalogue, deliver_to: tuple[Party, ...] = ()
         ) -> tuple[FakeUnitOfWork, FakeKeys]:
    return FakeUnitOfWork(Routing(party, deliver_to, catalogue)), FakeKeys(party)


def indicator(n: int = 1) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{n:08d}-0000-4000-8000-"
            "000000000000", "created": "2026-11-01T00:00:00.000Z",
            "modified": "2026-11-01T00:00:00.000Z", "name": "launch", "pattern_type": "stix",
            "pattern": "[ipv4-addr:value = '10.0.0.1']", "valid_from": "2026-11-01T00:00:00Z"}


def sealed(sender: FakeKeys, recipient: FakeKeys, obj: dict[str, Any],
           label: SecurityLabel, consents: Sequence[crypto.Consent] = ()) -> crypto.Envelope:
    binding = crypto.bind(label.to_json(), obj, sender.signing_key())
    return crypto.seal_envelope(
        sender=sender.party, recipient=recipient.party, item_id=obj["id"],
        version=obj["modified"], nonce=os.urandom(16), sent_at=NOW,
        payload={"object": obj, "label": label.to_json(), "binding": binding.to_json(),
                 "consents": [c.to_json() for c in consents]},
        sender_key=sender.signing_key(), recipient_public=recipient.envelope_key().public_key())


def kor_label(*rel_to: Party) -> SecurityLabel:
    return SecurityLabel("KOR", "군사II급비밀", frozenset(rel_to or ("KOR", "JPN")),
                         "dprk-missile", created=NOW)


# ---- publishing and the planner -----------------------------------------------------------


def test_a_publish_queues_its_deliveries_in_its_own_commit(shipped: Catalogue) -> None:
    uow, keys = node("KOR", shipped, ("JPN", "USA"))
    done = handlers.publish_many(uow, keys=keys, catalogue=shipped,
                                 entries=[(indicator(), KOR_LABEL)], now=NOW)
    assert uow.commits == 1
    # USA is not in REL TO: only JPN is owed the item.
    assert [(d["item_id"], d["recipient"]) for d in uow.outbox.deliveries] == [
        (done[0].item_id, "JPN")]
    queued = uow.audit.of(AuditKind.DELIVERIES_QUEUED)
    assert len(queued) == 1 and uow.outbox.deliveries[0]["seq"] == queued[0].seq
    assert queued[0].details["records"]["outbox"] == [register_digest("outbox", {
        "item_id": done[0].item_id, "version": done[0].version, "recipient": "JPN"})]


def test_outside_a_federation_nothing_is_queued(shipped: Catalogue) -> None:
    uow = FakeUnitOfWork(Routing("KOR", (), shipped, federated=False))
    handlers.publish_many(uow, keys=FakeKeys("KOR"), catalogue=shipped,
                          entries=[(indicator(), KOR_LABEL)], now=NOW)
    assert uow.outbox.deliveries == [] and uow.audit.of(AuditKind.DELIVERIES_QUEUED) == []


def test_a_batch_of_new_ids_and_a_held_one_still_checks_the_held_ones_label(
        shipped: Catalogue) -> None:
    # The batch reads custody only for ids with a version held: the held id's label must
    # still be found and kept, beside ids new to the node.
    uow, keys = node("KOR", shipped)
    handlers.publish_many(uow, keys=keys, catalogue=shipped,
                          entries=[(indicator(1), KOR_LABEL)], now=NOW)
    narrower = handlers.LabelRequest("군사II급비밀", ("KOR",), "dprk-missile")
    later = {**indicator(1), "modified": "2026-11-02T00:00:00.000Z"}
    with pytest.raises(PolicyDenied, match="keeps the item's label"):
        handlers.publish_many(uow, keys=keys, catalogue=shipped,
                              entries=[(indicator(2), narrower), (later, narrower)], now=NOW)
    skipped: dict[int, str] = {}
    done = handlers.publish_many(uow, keys=keys, catalogue=shipped,
                                 entries=[(indicator(3), narrower), (later, narrower),
                                          (indicator(1), KOR_LABEL)],
                                 now=NOW, skipped=skipped, publisher=None)
    assert skipped == {1: handlers.REFUSED_TO_PUBLISH, 2: handlers.ALREADY_HELD}
    assert [p.item_id for p in done] == [indicator(3)["id"]]
    assert (later["id"], later["modified"]) not in uow.repo.items


PARTIES: tuple[Party, ...] = ("JPN", "KOR", "USA")


@settings(max_examples=60, deadline=None)
@given(originator=st.sampled_from(PARTIES), me=st.sampled_from(PARTIES),
       provider=st.sampled_from((None, *PARTIES)),
       rel_to=st.sets(st.sampled_from(PARTIES), min_size=1),
       consented=st.sets(st.sampled_from(PARTIES)),
       deliver_to=st.sets(st.sampled_from(PARTIES)))
def test_the_planner_releases_only_what_the_policy_permits(
        shipped: Catalogue, originator: Party, me: Party, provider: Party | None,
        rel_to: set[Party], consented: set[Party], deliver_to: set[Party]) -> None:
    levels = {"JPN": "秘", "KOR": "군사III급비밀", "USA": "SECRET"}
    label = SecurityLabel(originator, levels[originator], frozenset(rel_to | {originator}),
                          "dprk-missile", created=NOW)
    grants = {"x": [Consent("x", originator, r) for r in sorted(consented)]}
    routing = Routing(me, tuple(sorted(deliver_to)), shipped)
    planned = plan_deliveries([ItemStored("x", "v1", label, provider)], routing, grants, NOW)
    for due in planned:
        # Never back where it came from, never to its originator or to this node, and
        # only as the release policy permits (with the originator's consents held).
        assert due.recipient in deliver_to
        assert due.recipient not in (me, originator, provider)
        assert decide(ReleaseRequest("x", label, me, due.recipient, NOW,
                                     tuple(grants["x"])), shipped).permit
    if originator != me and not consented:
        assert planned == []  # a relay without the originator's consent goes nowhere


LEVELS = {"JPN": ("秘", "機密"), "KOR": ("군사III급비밀", "군사I급비밀"),
          "USA": ("SECRET", "TOP SECRET")}


@st.composite
def stored_versions(draw: st.DrawFn) -> ItemStored:
    originator = draw(st.sampled_from(PARTIES))
    # Drawn so that a relay is often open (a common purpose, no caveat, everyone in REL
    # TO), and often shut by one rule or another.
    label = SecurityLabel(
        originator, draw(st.sampled_from((*LEVELS[originator], LEVELS[originator][0]))),
        frozenset(draw(st.just(set(PARTIES)) | st.sets(st.sampled_from(PARTIES)))
                  | {originator}),
        draw(st.sampled_from(("dprk-missile", "dprk-missile", "regional-security"))),
        draw(st.sampled_from((frozenset(), frozenset(), frozenset({"NOFORN"})))), created=NOW,
        category=draw(st.sampled_from((None, "sensor-report", "flight-path"))),
        policy=draw(st.sampled_from((None, "trilateral-mwd-2023"))))
    return ItemStored(draw(st.sampled_from(("x", "y"))), draw(st.sampled_from(("v1", "v2"))),
                      label, draw(st.sampled_from((None, *PARTIES))))


@settings(max_examples=100, deadline=None)
@given(stored=st.lists(stored_versions(), min_size=1, max_size=3),
       me=st.sampled_from(("USA", *PARTIES)),  # the hub relays most
       deliver_to=st.just(set(PARTIES)) | st.sets(st.sampled_from(PARTIES)),
       only=st.sampled_from((None, None, *PARTIES)),
       consented=st.sets(st.tuples(st.sampled_from(("x", "y")), st.sampled_from(PARTIES))),
       granted=st.sets(st.tuples(st.sampled_from(PARTIES), st.sampled_from(PARTIES))))
def test_consents_are_read_only_where_one_could_open_a_relay(
        shipped: Catalogue, stored: list[ItemStored], me: Party, deliver_to: set[Party],
        only: Party | None, consented: set[tuple[str, Party]],
        granted: set[tuple[Party, Party]]) -> None:
    # The planner given only the consents consents_needed asks for plans exactly what it
    # plans with every consent held: skipping a read never releases nor loses a delivery.
    standing = [StandingConsent(f"standing-consent--{n}", originator, recipient,
                                frozenset({"sensor-report", "flight-path"}), "dprk-missile",
                                NOW - timedelta(days=1), NOW + timedelta(days=1))
                for n, (originator, recipient) in enumerate(sorted(granted))]
    routing = Routing(me, tuple(sorted(deliver_to)), shipped)
    grants: dict[str, list[Consent]] = {}
    for item, recipient in sorted(consented):  # by each originator its versions name
        grants.setdefault(item, []).extend(Consent(item, e.label.originator, recipient)
                                           for e in stored if e.item_id == item)
    full = plan_deliveries(stored, routing, grants, NOW, only=only, standing=standing)
    items, by_standing = consents_needed(stored, routing, NOW, only=only)
    read = plan_deliveries(stored, routing, {i: grants.get(i, []) for i in items}, NOW,
                           only=only, standing=standing if by_standing else ())
    assert read == full
    relayed = {e.item_id for e in stored} - {e.item_id for e in stored
                                             if e.label.originator == me}
    event("relayed" if any(d.item_id in relayed for d in full) else "nothing relayed")
    # And an item left out is planned to nobody even with every consent it could have.
    every = {e.item_id: [Consent(e.item_id, e.label.originator, r) for r in PARTIES]
             for e in stored}
    opened = plan_deliveries(stored, routing, every, NOW, only=only, standing=standing)
    assert {d.item_id for d in opened} - {e.item_id for e in stored
                                           if e.label.originator == me} <= set(items)


def test_the_hub_reads_consents_for_what_one_could_open_and_no_other(
        shipped: Catalogue) -> None:
    hub = Routing("USA", PARTIES, shipped)
    label = SecurityLabel("KOR", "군사III급비밀", frozenset(PARTIES), "dprk-missile",
                          category="sensor-report", created=NOW)
    received = [ItemStored("x", "v1", label, "KOR")]
    standing = [StandingConsent("standing-consent--1", "KOR", "JPN",
                                frozenset({"sensor-report"}), "dprk-missile",
                                NOW - timedelta(days=1), NOW + timedelta(days=1))]
    # Open to JPN with a consent; a standing one covers it (it is categorised): both read.
    assert consents_needed(received, hub, NOW) == (["x"], True)
    assert plan_deliveries(received, hub, {}, NOW, standing=standing) == [
        DeliveryDue("x", "v1", "JPN")]
    uncategorised = [ItemStored("x", "v1", dataclasses.replace(label, category=None), "KOR")]
    assert consents_needed(uncategorised, hub, NOW) == (["x"], False)
    # Shut to JPN whatever the consents (not in REL TO; NOFORN): nothing read.
    for shut in (dataclasses.replace(label, rel_to=frozenset({"KOR", "USA"})),
                 dataclasses.replace(label, caveats=frozenset({"NOFORN"}))):
        assert consents_needed([ItemStored("x", "v1", shut, "KOR")], hub, NOW) == ([], False)
    assert consents_needed(received, hub, NOW, only="KOR") == ([], False)  # its originator


# ---- receiving ----------------------------------------------------------------------------


def test_receive_stores_receipts_and_keeps_the_nonces_in_one_commit(
        shipped: Catalogue) -> None:
    uow, jpn = node("JPN", shipped, ("KOR", "USA"))
    kor = FakeKeys("KOR")
    envelope = sealed(kor, jpn, indicator(), kor_label())
    keys = {"KOR": kor.public_signing_key(), "JPN": jpn.public_signing_key()}
    [result] = exchange.receive(uow, keys=jpn, catalogue=shipped, signing_keys=keys,
                                envelopes=[envelope], sender="KOR", seen=set(), now=NOW)
    assert uow.commits == 1 and result.receipt is not None
    crypto.verify_receipt(result.receipt, jpn.public_signing_key(), envelope=envelope)
    assert [c.national_label.level for c in uow.repo.custody] == ["極秘"]  # Art. 4
    assert [(r.peer, r.direction) for r in uow.repo.receipts] == [("KOR", "given")]
    [accepted] = uow.audit.of(AuditKind.ENVELOPES_ACCEPTED)
    assert [(s.nonce, seq) for s, seq in uow.repo.seen] == [
        (crypto.b64u(envelope.nonce), accepted.seq)]
    # KOR's item goes back to neither KOR nor, without KOR's consent, to USA.
    assert uow.outbox.deliveries == []


def test_a_replayed_or_misaddressed_envelope_is_refused_and_on_record(
        shipped: Catalogue) -> None:
    uow, jpn = node("JPN", shipped)
    kor, usa = FakeKeys("KOR"), FakeKeys("USA")
    keys = {"KOR": kor.public_signing_key(), "USA": usa.public_signing_key()}
    replay = sealed(kor, jpn, indicator(1), kor_label())
    posed = sealed(kor, jpn, indicator(2), kor_label())  # sent by KOR, posted by USA
    out = exchange.receive(uow, keys=jpn, catalogue=shipped, signing_keys=keys,
                           envelopes=[replay, posed], sender="KOR",
                           seen={crypto.b64u(replay.nonce)}, now=NOW)
    assert [d.status for d in out] == [409, 202]
    wrong = exchange.receive(uow, keys=jpn, catalogue=shipped, signing_keys=keys,
                             envelopes=[posed], sender="USA", seen=set(), now=NOW)
    assert [d.status for d in wrong] == [403] and wrong[0].receipt is None
    refused = uow.audit.of(AuditKind.ENVELOPE_REFUSED)
    assert [(e.actor, e.item_id) for e in refused] == [("KOR", replay.item_id),
                                                       ("USA", posed.item_id)]
    assert len(uow.repo.items) == 1


def test_replayed_envelopes_in_a_loop_do_not_grow_the_log_past_the_bound(
        shipped: Catalogue) -> None:
    """A partner posting the same envelope again and again (each a replay, refused): past
    the window's bound the refusals are counted, and the count goes on record, naming the
    item, once the window has closed."""
    uow, jpn = node("JPN", shipped)
    kor = FakeKeys("KOR")
    keys = {"KOR": kor.public_signing_key()}
    replay = sealed(kor, jpn, indicator(1), kor_label())
    window = RefusalWindow(per_window=2, window=timedelta(minutes=1))
    for _ in range(10):
        out = exchange.receive(uow, keys=jpn, catalogue=shipped, signing_keys=keys,
                               envelopes=[replay, replay], sender="KOR",
                               seen={crypto.b64u(replay.nonce)}, now=NOW, window=window)
        assert [d.status for d in out] == [409, 409]  # the answer is the same
    assert len(uow.audit.of(AuditKind.ENVELOPE_REFUSED)) == 2
    exchange.receive(uow, keys=jpn, catalogue=shipped, signing_keys=keys,
                     envelopes=[replay], sender="KOR", seen={crypto.b64u(replay.nonce)},
                     now=NOW + timedelta(minutes=1), window=window)
    [*_, summary, last] = uow.audit.of(AuditKind.ENVELOPE_REFUSED)
    assert summary.details["refused"] == 18 and summary.details["notices"] == {"envelope": 18}
    assert summary.details["item_ids"] == [replay.item_id]
    assert last.item_id == replay.item_id and not last.details.get("summary")


def test_items_the_policy_refuses_in_a_loop_do_not_grow_the_log_past_the_bound(
        shipped: Catalogue) -> None:
    """KOR seals fresh envelopes (each verifies: its own signature) of items not releasable
    to JPN: each is refused, the first of the window on record one by one, the rest counted
    in one summary naming the items (consent18: before, one event per item, without end)."""
    uow, jpn = node("JPN", shipped)
    kor = FakeKeys("KOR")
    keys = {"KOR": kor.public_signing_key()}
    window = RefusalWindow(per_window=3, window=timedelta(minutes=1))
    for n in range(4):
        out = exchange.receive(uow, keys=jpn, catalogue=shipped, signing_keys=keys,
                               envelopes=[sealed(kor, jpn, indicator(3 * n + k),
                                                 kor_label("KOR")) for k in range(3)],
                               sender="KOR", seen=set(), now=NOW, window=window)
        assert [d.status for d in out] == [403] * 3 and all(d.reasons for d in out)
    assert len(uow.audit.of(AuditKind.ENVELOPE_REFUSED)) == 3
    assert not uow.repo.items
    assert notice_handlers.record_refusal_summaries(
        uow, refusals=window, now=NOW + timedelta(minutes=1),
        kind=AuditKind.ENVELOPE_REFUSED) == 1
    [*_, summary] = uow.audit.of(AuditKind.ENVELOPE_REFUSED)
    assert summary.details["refused"] == 9 and summary.details["notices"] == {"item": 9}
    assert summary.details["item_ids"] == [indicator(n)["id"] for n in range(3, 12)]


def test_a_relay_goes_on_once_the_originator_consents(shipped: Catalogue) -> None:
    uow, usa = node("USA", shipped, ("JPN", "KOR"))
    kor = FakeKeys("KOR")
    keys = {"KOR": kor.public_signing_key(), "USA": usa.public_signing_key()}
    label = SecurityLabel("KOR", "군사III급비밀", frozenset({"KOR", "JPN", "USA"}),
                          "dprk-missile", created=NOW)
    envelope = sealed(kor, usa, indicator(), label)
    exchange.receive(uow, keys=usa, catalogue=shipped, signing_keys=keys,
                     envelopes=[envelope], sender="KOR", seen=set(), now=NOW)
    assert uow.outbox.deliveries == []  # no consent of KOR's yet
    exchange.record_consent_request(uow, request=ConsentRequest(
        "r1", envelope.item_id, "USA", "JPN", "relay", "outgoing", NOW), now=NOW,
        actor="operator")
    consent = crypto.grant_consent(item_id=envelope.item_id, originator="KOR",
                                   recipient="JPN", granted_at=NOW, key=kor.signing_key())
    handlers.record_consent(uow, consent=consent, originator_public=kor.public_signing_key(),
                            now=NOW, actor="KOR")
    assert [(d["item_id"], d["recipient"]) for d in uow.outbox.deliveries] == [
        (envelope.item_id, "JPN")]
    assert uow.repo.requests["r1"][1] == "granted"
    forged = crypto.grant_consent(item_id=envelope.item_id, originator="KOR",
                                  recipient="JPN", granted_at=NOW, key=usa.signing_key())
    with pytest.raises(ProofInvalid):
        handlers.record_consent(uow, consent=forged,
                                originator_public=kor.public_signing_key(), now=NOW)
    assert len(uow.repo.consents) == 1 and len(uow.outbox.deliveries) == 1


@pytest.fixture(scope="module")
def worker() -> Iterator[SignatureWorker]:
    """The node's signature worker process, taking every batch (none verified in place);
    spawned with safe path, as the gsomia command sets it at its start."""
    with pytest.MonkeyPatch.context() as patched:
        patched.setenv("PYTHONSAFEPATH", "1")
        found = SignatureWorker(in_process_below=1)
        yield found
        found.close()


def flipped(signature: bytes) -> bytes:
    return bytes([signature[0] ^ 1]) + signature[1:]


def sealed_forged(sender: FakeKeys, recipient: FakeKeys, obj: dict[str, Any],
                  label: SecurityLabel, forged: str) -> crypto.Envelope:
    """An envelope whose sender signature (``envelope``) or originator's binding signature
    (``binding``) does not verify; everything else about it is right."""
    binding = crypto.bind(label.to_json(), obj, sender.signing_key())
    if forged == "binding":
        binding = dataclasses.replace(binding, signature=flipped(binding.signature))
    envelope = crypto.seal_envelope(
        sender=sender.party, recipient=recipient.party, item_id=obj["id"],
        version=obj["modified"], nonce=os.urandom(16), sent_at=NOW,
        payload={"object": obj, "label": label.to_json(), "binding": binding.to_json(),
                 "consents": []},
        sender_key=sender.signing_key(), recipient_public=recipient.envelope_key().public_key())
    if forged == "envelope":
        envelope = dataclasses.replace(envelope, signature=flipped(envelope.signature))
    return envelope


@settings(max_examples=25, deadline=None)
@given(forged=st.lists(st.sampled_from(("none", "envelope", "binding")), min_size=1,
                       max_size=8))
def test_a_signature_that_fails_on_the_worker_stops_its_item_only(
        shipped: Catalogue, worker: SignatureWorker, forged: list[str]) -> None:
    """Signatures checked on another process, a batch at a time: an envelope whose sender's
    or originator's signature does not verify is refused and stores nothing, the others are
    stored and receipted, and the same batch again stores nothing twice."""
    uow, jpn = node("JPN", shipped, ("KOR", "USA"))
    kor = FakeKeys("KOR")
    keys = {"KOR": kor.public_signing_key(), "JPN": jpn.public_signing_key()}
    envelopes = [sealed_forged(kor, jpn, indicator(n), kor_label(), f)
                 for n, f in enumerate(forged)]
    out = exchange.receive(uow, keys=jpn, catalogue=shipped, signing_keys=keys,
                           envelopes=envelopes, sender="KOR", seen=set(), now=NOW,
                           checks=worker)
    for f, result in zip(forged, out, strict=True):
        assert (result.receipt is not None) == (f == "none"), (f, result)
        if f != "none":
            assert result.status == 403 and "does not verify" in result.reasons[0]
    good = {e.item_id for e, f in zip(envelopes, forged, strict=True) if f == "none"}
    assert {i for i, _ in uow.repo.items} == good
    # Its nonce is kept once the sender's signature verified, the item refused or not.
    assert [s.item_id for s, _ in uow.repo.seen] == [
        e.item_id for e, f in zip(envelopes, forged, strict=True) if f != "envelope"]
    again = exchange.receive(uow, keys=jpn, catalogue=shipped, signing_keys=keys,
                             envelopes=envelopes, sender="KOR",
                             seen={s.nonce for s, _ in uow.repo.seen}, now=NOW,
                             checks=worker)
    assert all(r.receipt is None for r in again)
    assert {i for i, _ in uow.repo.items} == good
    assert len(uow.repo.custody) == len(good) and len(uow.repo.receipts) == len(good)


@settings(max_examples=15, deadline=None)
@given(forged=st.lists(st.booleans(), min_size=1, max_size=6))
def test_a_receipt_that_fails_on_the_worker_settles_nothing(
        shipped: Catalogue, worker: SignatureWorker, forged: list[bool]) -> None:
    """The partner's receipts checked on another process: a forged one marks its delivery
    refused and records no receipt; the others are recorded once."""
    uow, kor = node("KOR", shipped, ("JPN",))
    jpn = FakeKeys("JPN")
    handlers.publish_many(uow, keys=kor, catalogue=shipped,
                          entries=[(indicator(n), KOR_LABEL) for n in range(len(forged))],
                          now=NOW)
    rows = [QueuedDelivery(d["row"], d["item_id"], d["version"], "JPN", d["attempts"])
            for d in uow.outbox.deliveries]
    sent = []
    for n, (row, bad) in enumerate(zip(rows, forged, strict=True)):
        envelope = sealed(kor, jpn, indicator(n), kor_label())
        receipt = crypto.make_receipt(envelope, received_at=NOW, key=jpn.signing_key())
        if bad:
            receipt = dataclasses.replace(receipt, signature=flipped(receipt.signature))
        sent.append(exchange.Sent(row, envelope, {"receipt": receipt.to_json()}))
    done = exchange.settle(uow, peer="JPN", peer_public=jpn.public_signing_key(), sent=sent,
                           now=NOW, checks=worker)
    assert done == (forged.count(False), forged.count(True))
    assert [d["status"] for d in uow.outbox.deliveries] == [
        "refused" if bad else "delivered" for bad in forged]
    assert len(uow.repo.receipts) == forged.count(False)
    assert exchange.settle(uow, peer="JPN", peer_public=jpn.public_signing_key(), sent=sent,
                           now=NOW, checks=worker) == (0, 0)


# ---- settling -----------------------------------------------------------------------------


def test_settle_records_each_receipt_once_and_marks_refusals_for_good(
        shipped: Catalogue) -> None:
    uow, kor = node("KOR", shipped, ("JPN",))
    jpn = FakeKeys("JPN")
    done = handlers.publish_many(uow, keys=kor, catalogue=shipped,
                                 entries=[(indicator(n), KOR_LABEL) for n in (1, 2, 3)],
                                 now=NOW)
    rows = [QueuedDelivery(d["row"], d["item_id"], d["version"], "JPN", d["attempts"])
            for d in uow.outbox.deliveries]
    envelopes = [sealed(kor, jpn, indicator(n), kor_label()) for n in (1, 2)]
    receipt = crypto.make_receipt(envelopes[0], received_at=NOW, key=jpn.signing_key())
    forged = crypto.make_receipt(envelopes[1], received_at=NOW, key=kor.signing_key())
    sent = [exchange.Sent(rows[0], envelopes[0], {"receipt": receipt.to_json()}),
            exchange.Sent(rows[1], envelopes[1], {"receipt": forged.to_json()}),
            exchange.Sent(rows[2], None, unsent="its envelope is too large")]
    later = NOW + timedelta(seconds=1)
    assert exchange.settle(uow, peer="JPN", peer_public=jpn.public_signing_key(), sent=sent,
                           now=later) == (1, 2)
    assert [d["status"] for d in uow.outbox.deliveries] == ["delivered", "refused", "refused"]
    assert [(r.item_id, r.direction) for r in uow.repo.receipts] == [
        (done[0].item_id, "obtained")]
    assert len(uow.audit.of(AuditKind.DELIVERY_REFUSED)) == 2
    # The same answers again (a second sender, a lost commit): nothing changes.
    assert exchange.settle(uow, peer="JPN", peer_public=jpn.public_signing_key(), sent=sent,
                           now=later) == (0, 0)
    assert len(uow.repo.receipts) == 1 and len(uow.audit.of(AuditKind.RECEIPT)) == 1


def test_a_partners_refusal_whatever_its_reasons_hold_is_recorded_whole(
        shipped: Catalogue) -> None:
    """tidy29: the partner's "reasons" went to ``tuple()`` as they came: a str was recorded
    as one reason a letter ("n; o; t; ..."), and a reason that is no str raised TypeError
    out of the settle, which then recorded nothing of the batch."""
    uow, kor = node("KOR", shipped, ("JPN",))
    jpn = FakeKeys("JPN")
    handlers.publish_many(uow, keys=kor, catalogue=shipped,
                          entries=[(indicator(n), KOR_LABEL) for n in (1, 2, 3, 4)], now=NOW)
    rows = [QueuedDelivery(d["row"], d["item_id"], d["version"], "JPN", d["attempts"])
            for d in uow.outbox.deliveries]
    answers: list[Any] = [{"refused": True, "reasons": "not cleared"},
                          {"refused": True, "reasons": ["not cleared", 7]},
                          {"refused": True, "reasons": ["not cleared", "no agreement"]},
                          {"refused": True}]
    sent = [exchange.Sent(row, sealed(kor, jpn, indicator(n), kor_label()), answer)
            for n, (row, answer) in enumerate(zip(rows, answers, strict=True), start=1)]
    assert exchange.settle(uow, peer="JPN", peer_public=jpn.public_signing_key(), sent=sent,
                           now=NOW) == (0, 4)
    assert [d["status"] for d in uow.outbox.deliveries] == ["refused"] * 4
    reasons = [e.details["reason"] for e in uow.audit.of(AuditKind.DELIVERY_REFUSED)]
    assert reasons == ["not cleared",
                       "refused; its reasons do not read: a list of str expected, found "
                       "['not cleared', 7]",
                       "not cleared; no agreement", "refused"]


def test_a_failed_delivery_backs_off_and_stays_pending(shipped: Catalogue) -> None:
    uow, kor = node("KOR", shipped, ("JPN",))
    handlers.publish_many(uow, keys=kor, catalogue=shipped,
                          entries=[(indicator(), KOR_LABEL)], now=NOW)
    row = uow.outbox.deliveries[0]
    for attempt in range(8):
        exchange.retry(uow, deliveries=[QueuedDelivery(row["row"], row["item_id"],
                                                       row["version"], "JPN", attempt)],
                       error="connection refused", now=NOW)
        wait = (row["next_at"] - NOW).total_seconds()
        assert row["status"] == "pending" and 0 < wait <= exchange.MAX_BACKOFF
    assert wait == exchange.MAX_BACKOFF
    # A partner that answered "not now" with a Retry-After: no sooner than it said.
    exchange.retry(uow, deliveries=[QueuedDelivery(row["row"], row["item_id"], row["version"],
                                                   "JPN", 0)],
                   error="HTTP 503: busy", now=NOW, status=503, wait=90.0)
    assert row["status"] == "pending" and row["next_at"] == NOW + timedelta(seconds=90)


def _waits(uow: FakeUnitOfWork, statuses: Sequence[int]) -> list[float]:
    """Each answer in turn to a row's try, as the courier records it; the waits it set."""
    row, waits = uow.outbox.deliveries[0], []
    for status in statuses:
        exchange.retry(uow, deliveries=[QueuedDelivery(row["row"], row["item_id"],
                                                       row["version"], "JPN", row["attempts"],
                                                       row["not_now"])],
                       error=f"HTTP {status}" if status else "connection refused", now=NOW,
                       status=status)
        waits.append((row["next_at"] - NOW).total_seconds())
    return waits


def test_a_not_now_after_tries_lost_to_an_outage_waits_the_bound(shipped: Catalogue) -> None:
    """review20: a partner down ~11 s (six tries lost), then its first 429: 60 s, not an
    hour; doubling with each 429 in a row, back to 60 s after any other outcome."""
    uow, kor = node("KOR", shipped, ("JPN",))
    handlers.publish_many(uow, keys=kor, catalogue=shipped,
                          entries=[(indicator(), KOR_LABEL)], now=NOW)
    waits = _waits(uow, [0] * 6 + [429, 429, 429, 503, 429, 0, 429])
    assert waits[6:] == [AT_BOUND_S, 2 * AT_BOUND_S, 4 * AT_BOUND_S, exchange.MAX_BACKOFF,
                         AT_BOUND_S, exchange.MAX_BACKOFF, AT_BOUND_S]
    assert uow.outbox.deliveries[0]["not_now"] == 1


def test_a_refused_batch_retried_one_by_one_keeps_each_rows_own_outcome(
        shipped: Catalogue) -> None:
    """review20: the last 429's status and wait were applied to every row retried from a
    refused batch, rows lost to the network included."""
    uow, kor = node("KOR", shipped, ("JPN",))
    handlers.publish_many(uow, keys=kor, catalogue=shipped,
                          entries=[(indicator(n), KOR_LABEL) for n in (1, 2)], now=NOW)
    busy, lost = [QueuedDelivery(d["row"], d["item_id"], d["version"], "JPN", 0)
                  for d in uow.outbox.deliveries]
    exchange.retry_each(uow, failed=[(busy, "HTTP 429: at its bound", 429, 300.0),
                                     (lost, "connection reset", 0, None)], now=NOW)
    first, second = uow.outbox.deliveries
    assert (first["next_at"], first["not_now"], first["last_error"]) == (
        NOW + timedelta(seconds=300), 1, "HTTP 429: at its bound")
    assert (second["next_at"], second["not_now"], second["last_error"]) == (
        NOW + timedelta(seconds=exchange.FIRST_BACKOFF), 0, "connection reset")


# ---- notices due --------------------------------------------------------------------------


def received_item(shipped: Catalogue) -> tuple[FakeUnitOfWork, FakeKeys, str]:
    uow, jpn = node("JPN", shipped, ("KOR", "USA"))
    kor = FakeKeys("KOR")
    envelope = sealed(kor, jpn, indicator(), kor_label())
    exchange.receive(uow, keys=jpn, catalogue=shipped,
                     signing_keys={"KOR": kor.public_signing_key()}, envelopes=[envelope],
                     sender="KOR", seen=set(), now=NOW)
    return uow, jpn, envelope.item_id


def test_an_incident_is_due_to_the_provider_in_the_commit_that_records_it(
        shipped: Catalogue) -> None:
    uow, jpn, item = received_item(shipped)
    report = handlers.report_incident(uow, keys=jpn, kind="loss", description="laptop lost",
                                      now=NOW, item_id=item)
    [due] = uow.outbox.notices
    assert (due["kind"], due["recipient"], due["reference"]) == (INCIDENT, "KOR",
                                                                 report.reference)
    [queued] = uow.audit.of(AuditKind.NOTICES_QUEUED)
    assert due["seq"] == queued.seq
    # Reported to us by the provider itself: it is not told again.
    handlers.report_incident(uow, keys=jpn, kind="loss", description="again", now=NOW,
                             item_id=item, came_from="KOR")
    assert len(uow.outbox.notices) == 1


def test_an_incident_about_an_item_not_provided_is_refused_on_record(
        shipped: Catalogue) -> None:
    uow, jpn, item = received_item(shipped)
    with pytest.raises(PolicyDenied):
        notice_handlers.accept_incident(uow, keys=jpn, kind="compromise", item_id=item,
                                        description="seen on a forum", sender="USA", now=NOW,
                                        refusals=RefusalWindow())
    [refused] = uow.audit.of(AuditKind.NOTICE_REFUSED)
    assert refused.actor == "USA" and refused.details["notice"] == INCIDENT
    assert uow.repo.incident_reports == [] and uow.outbox.notices == []


# ---- a partner cannot grow the log without bound -------------------------------------------


_JPN_LOG = FakeKeys("JPN")  # one key for every example: signing heads is what is checked
_JPN_HEADS = [sign_tree_head(size, bytes([size]) * 32, NOW, _JPN_LOG.signing_key())
              for size in (5, 6, 7)]


def test_a_partner_s_same_head_posted_again_is_recorded_once(shipped: Catalogue) -> None:
    uow, _ = node("KOR", shipped, ("JPN",))
    for _ in range(20):
        notice_handlers.record_partner_head(uow, sender="JPN", head=_JPN_HEADS[0],
                                            sender_key=_JPN_LOG.public_signing_key(), now=NOW)
    [kept] = uow.audit.of(AuditKind.TREE_HEAD_EXCHANGED)
    assert kept.details["head"] == _JPN_HEADS[0].to_json()


@settings(max_examples=30, deadline=None)
@given(posted=st.lists(st.tuples(st.sampled_from(("JPN", "USA")), st.integers(0, 2)),
                       max_size=25))
def test_the_log_grows_by_a_partner_s_head_only_when_it_changes(
        shipped: Catalogue, posted: list[tuple[str, int]]) -> None:
    """Any sequence of heads posted by two partners (same key, distinct senders): one event
    per head that differs from the newest recorded for its sender, in order."""
    uow, _ = node("KOR", shipped, ("JPN", "USA"))
    expected: list[tuple[str, int]] = []
    newest: dict[str, int] = {}
    for sender, n in posted:
        notice_handlers.record_partner_head(uow, sender=sender, head=_JPN_HEADS[n],
                                            sender_key=_JPN_LOG.public_signing_key(), now=NOW)
        if newest.get(sender) != n:
            expected.append((sender, n))
            newest[sender] = n
    assert [(e.actor, e.details["head"]["size"] - 5)
            for e in uow.audit.of(AuditKind.TREE_HEAD_EXCHANGED)] == expected


def test_refused_incident_reports_do_not_grow_the_log_past_the_bound(
        shipped: Catalogue) -> None:
    uow, jpn, _ = received_item(shipped)
    before = len(uow.audit.events)
    refusals = RefusalWindow(per_window=3, window=timedelta(minutes=1))
    for n in range(20):
        with pytest.raises(GsomiaError):
            notice_handlers.accept_incident(uow, keys=jpn, kind="compromise",
                                            item_id=indicator(500 + n)["id"],
                                            description="x" * 3000, sender="USA", now=NOW,
                                            refusals=refusals)
    assert len(uow.audit.events) - before <= 3
    # The window closed: the next refusal puts the 17 counted on record, none lost.
    later = NOW + timedelta(minutes=1)
    with pytest.raises(GsomiaError):
        notice_handlers.accept_incident(uow, keys=jpn, kind="compromise",
                                        item_id=indicator(600)["id"], description="x",
                                        sender="USA", now=later, refusals=refusals)
    [summary] = [e for e in uow.audit.of(AuditKind.NOTICE_REFUSED) if e.details.get("summary")]
    assert summary.actor == "USA" and summary.details["refused"] == 17
    assert summary.details["notices"] == {INCIDENT: 17}
    assert summary.details["item_ids"][0] == indicator(503)["id"]


@settings(max_examples=30, deadline=None)
@given(sent=st.lists(st.tuples(st.sampled_from(("USA", "KOR")),
                               st.sampled_from((0, 0, 0, 1, 30, 90))), max_size=30),
       per_window=st.integers(0, 3))
def test_refusals_are_on_record_one_by_one_up_to_the_bound_and_counted_after(
        shipped: Catalogue, sent: list[tuple[str, int]], per_window: int) -> None:
    """Any sequence of refused notices from two partners, at any seconds: a partner's
    refusals are written one by one at most ``per_window`` times per window (a window lasts
    a minute, so a partner refused over a span s opens at most 1 + s // 1 min of them), and
    once the windows are closed every refusal is on record, itself or in a summary's count."""
    uow, jpn, _ = received_item(shipped)
    before = len(uow.audit.events)
    refusals = RefusalWindow(per_window=per_window, window=timedelta(minutes=1))
    at = NOW
    times: dict[Party, list[datetime]] = {"USA": [], "KOR": []}
    for n, (sender, seconds) in enumerate(sent):
        at += timedelta(seconds=seconds)
        times[sender].append(at)
        with pytest.raises(GsomiaError):
            notice_handlers.accept_incident(uow, keys=jpn, kind="compromise",
                                            item_id=indicator(700 + n)["id"],
                                            description="junk", sender=sender, now=at,
                                            refusals=refusals)
    notice_handlers.record_refusal_summaries(uow, refusals=refusals, now=at, everything=True)
    refused = uow.audit.events[before:]
    assert all(e.kind == AuditKind.NOTICE_REFUSED for e in refused)
    for party, when in times.items():
        windows = 1 + (when[-1] - when[0]) // timedelta(minutes=1) if when else 0
        mine = [e for e in refused if e.actor == party]
        assert sum(not e.details.get("summary") for e in mine) <= per_window * windows
        assert sum(bool(e.details.get("summary")) for e in mine) <= windows
        assert sum(e.details.get("refused", 1) for e in mine) == len(when)


def test_notices_are_settled_on_record_or_retried(shipped: Catalogue) -> None:
    uow, jpn, item = received_item(shipped)
    for text in ("one", "two", "three", "four"):
        handlers.report_incident(uow, keys=jpn, kind="loss", description=text, now=NOW,
                                 item_id=item)
    rows = [QueuedNotice(n["row"], n["kind"], n["recipient"],
                                         n["reference"], n["item_id"], n["body"],
                                         n["attempts"]) for n in uow.outbox.notices]
    # 429: the partner at a [limits] bound, "not now" (bounds19): tried again, never lost.
    counts = notice_handlers.settle_notices(
        uow, outcomes=[(rows[0], 202, ""), (rows[1], 422, "bad"), (rows[2], 503, "busy"),
                       (rows[3], 429, "at its bound")],
        now=NOW)
    assert counts == (1, 1, 2)
    assert [n["status"] for n in uow.outbox.notices] == ["delivered", "refused", "pending",
                                                         "pending"]
    # ... after its Retry-After, not within seconds: each try costs the partner a signature
    # check and a refusal on record, and its room does not come back that soon.
    busy, at_bound = (uow.outbox.notices[n]["next_at"] for n in (2, 3))
    assert busy < NOW + timedelta(seconds=AT_BOUND_S) <= at_bound
    # A partner whose Retry-After says 120 is asked again after 120 s, not after 60.
    notice_handlers.settle_notices(uow, outcomes=[(rows[3], 429, "at its bound")],
                                   now=NOW, waits={rows[3].row: 120.0})
    assert uow.outbox.notices[3]["next_at"] == NOW + timedelta(seconds=120)
    # The "not now"s in a row, kept by row: the next 429 doubles, a 503 starts them again.
    assert [n["not_now"] for n in uow.outbox.notices[2:]] == [0, 1]
    again = dataclasses.replace(rows[3], attempts=7, not_now=1)
    notice_handlers.settle_notices(uow, outcomes=[(again, 429, "at its bound")], now=NOW)
    assert uow.outbox.notices[3]["next_at"] == NOW + timedelta(seconds=2 * AT_BOUND_S)
    notice_handlers.settle_notices(uow, outcomes=[(dataclasses.replace(again, not_now=2),
                                                   503, "busy")], now=NOW)
    assert uow.outbox.notices[3]["not_now"] == 0
    [settled] = uow.audit.of(AuditKind.NOTICES_SETTLED)
    assert settled.details == {
        "delivered": [register_digest("notices", rows[0].register())],
        "refused": [register_digest("notices", rows[1].register())]}


def test_a_consent_request_without_an_answer_is_resent_until_taken_or_refused(
        shipped: Catalogue) -> None:
    """A request whose POST timed out goes again through the outbox under its id: "not
    now" is retried, a refusal for good fails the request (nothing will answer it), and
    one answered meanwhile is not sent again (before: pending for ever, never resent)."""
    uow, _, item = received_item(shipped)
    ids = [f"JPN-consent-{n}" for n in range(3)]
    for request_id in ids:
        exchange.record_consent_request(uow, request=ConsentRequest(
            request_id, item, "JPN", "USA", "USFJ needs it", "outgoing", NOW), now=NOW,
            actor="operator")
    uow.repo.answer_consent_requests("", None, "granted", NOW, request_id=ids[2])
    assert [exchange.resend_consent_request(uow, request_id=r, originator="KOR",
                                            body=json.dumps({"request": r}), now=NOW)
            for r in ids] == [True, True, False]
    rows = [QueuedNotice(n["row"], n["kind"], n["recipient"], n["reference"], n["item_id"],
                         n["body"], n["attempts"]) for n in uow.outbox.notices]
    assert [(n.kind, n.recipient, n.reference) for n in rows] == [
        ("consent-request", "KOR", ids[0]), ("consent-request", "KOR", ids[1])]
    assert notice_handlers.settle_notices(
        uow, outcomes=[(rows[0], 429, "at its bound"), (rows[1], 403, "refused")],
        now=NOW) == (0, 1, 1)
    states = {r: s for r, (_, s) in uow.repo.requests.items()}
    assert states == {ids[0]: "pending", ids[1]: "failed", ids[2]: "granted"}
    assert [n["status"] for n in uow.outbox.notices] == ["pending", "refused"]


# ---- standing consents: a revocation reaches the nodes beyond a relay -----------------------


def test_a_standing_revocation_is_passed_on_by_the_hub_to_the_nodes_beyond_it(
        shipped: Catalogue) -> None:
    """Under ``hub``, KOR's partner is the hub (USA) alone; JPN, the consent's recipient,
    takes KOR's items from the hub. KOR's revocation reaches the hub, which passes it on in
    the commit that keeps it; JPN takes it from the hub (not its originator), checked with
    KOR's key, and refuses any relay under the consent from then on."""
    from gsomia.service import standing

    kor = FakeKeys("KOR")
    consent = crypto.grant_standing_consent(
        consent_id="standing-consent--1", originator="KOR", recipient="JPN",
        categories=["sensor-report"], purpose="dprk-missile", not_before=NOW,
        not_after=NOW + timedelta(days=1), granted_at=NOW, key=kor.signing_key())
    revocation = crypto.revoke_standing_consent(
        consent_id=consent.id, originator="KOR", revoked_at=NOW + timedelta(hours=1),
        key=kor.signing_key())
    kor_public = kor.signing_key().public_key()
    hub, _ = node("USA", shipped, ("JPN", "KOR", "AUS"))
    assert standing.record_standing_consent(hub, consent=consent, sender="KOR",
                                            originator_public=kor_public, catalogue=shipped,
                                            now=NOW)
    assert hub.outbox.notices == []  # a grant is the originator's to send, to its partners
    assert standing.record_standing_revocation(hub, revocation=revocation, sender="KOR",
                                               originator_public=kor_public, now=NOW)
    assert sorted((n["kind"], n["recipient"]) for n in hub.outbox.notices) == [
        (STANDING_REVOCATION, "AUS"), (STANDING_REVOCATION, "JPN")]  # not back to KOR
    bodies = {n["recipient"]: standing.read_revocation(json.loads(n["body"]))
              for n in hub.outbox.notices}
    passed_on, shown = bodies["JPN"]
    assert passed_on == revocation
    assert shown == consent  # the hub shows the recipient what the revocation withdraws
    assert bodies["AUS"] == (revocation, None)  # the consent's terms are not AUS's to read
    hub.outbox.notices[:] = [n for n in hub.outbox.notices if n["recipient"] == "JPN"]
    assert consent.id in standing.revoked_ids(hub.repo.standing_consents())

    jpn, _ = node("JPN", shipped, ("USA",))
    assert standing.record_standing_revocation(jpn, revocation=passed_on, sender="USA",
                                               originator_public=kor_public, now=NOW)
    assert consent.id in standing.revoked_ids(jpn.repo.standing_consents())
    assert jpn.outbox.notices == []  # its only partner is the hub, which sent it
    # Again (a retry): held, passed on no further.
    assert not standing.record_standing_revocation(hub, revocation=revocation, sender="KOR",
                                                   originator_public=kor_public, now=NOW)
    assert len(hub.outbox.notices) == 1
    # Only the originator's signature counts, whoever passes it on.
    forged = crypto.revoke_standing_consent(
        consent_id="standing-consent--2", originator="KOR", revoked_at=NOW,
        key=FakeKeys("USA").signing_key())
    with pytest.raises(ProofInvalid):
        standing.record_standing_revocation(jpn, revocation=forged, sender="USA",
                                            originator_public=kor_public, now=NOW)


def test_a_revocation_of_a_consent_not_held_is_passed_on_to_no_one(
        shipped: Catalogue) -> None:
    """Any partner may sign revocations of consents of its own that nobody holds (made-up
    ids): the hub keeps each (it revokes nothing) but passes none on, where each was
    multiplied through the federation; KOR's revocation of the consent it holds is passed
    on to the nodes beyond it, as before."""
    from gsomia.service import standing

    kor, jpn = FakeKeys("KOR"), FakeKeys("JPN")
    hub, _ = node("USA", shipped, ("JPN", "KOR"))
    for n in range(3):
        made_up = crypto.revoke_standing_consent(
            consent_id=f"standing-consent--made-up-{n}", originator="JPN", revoked_at=NOW,
            key=jpn.signing_key())
        assert standing.record_standing_revocation(
            hub, revocation=made_up, sender="JPN",
            originator_public=jpn.signing_key().public_key(), now=NOW)
    assert len([r for r in hub.repo.standing_consents() if r.kind == "revoke"]) == 3
    assert hub.outbox.notices == []
    # KOR's own, before its consent reached the hub: kept (the consent is dead on arrival
    # here, so nothing is relayed under it), not passed on.
    early = crypto.revoke_standing_consent(
        consent_id="standing-consent--0", originator="KOR", revoked_at=NOW,
        key=kor.signing_key())
    assert standing.record_standing_revocation(
        hub, revocation=early, sender="KOR", originator_public=kor.signing_key().public_key(),
        now=NOW)
    assert hub.outbox.notices == []
    consent = crypto.grant_standing_consent(
        consent_id="standing-consent--1", originator="KOR", recipient="JPN",
        categories=["sensor-report"], purpose="dprk-missile", not_before=NOW,
        not_after=NOW + timedelta(days=1), granted_at=NOW, key=kor.signing_key())
    kor_public = kor.signing_key().public_key()
    assert standing.record_standing_consent(hub, consent=consent, sender="KOR",
                                            originator_public=kor_public, catalogue=shipped,
                                            now=NOW)
    genuine = crypto.revoke_standing_consent(
        consent_id=consent.id, originator="KOR", revoked_at=NOW + timedelta(hours=1),
        key=kor.signing_key())
    assert standing.record_standing_revocation(hub, revocation=genuine, sender="KOR",
                                               originator_public=kor_public, now=NOW)
    assert [(n["kind"], n["recipient"]) for n in hub.outbox.notices] == [
        (STANDING_REVOCATION, "JPN")]


def test_a_partners_revocation_of_anothers_consent_does_not_stand_in_for_the_originators(
        shipped: Catalogue) -> None:
    """A partner (USA) signs a revocation of its own naming KOR's consent, before KOR's
    consent and KOR's revocation reach JPN. It revokes nothing (it is not KOR's), and
    KOR's own revocation, when it comes, must still be kept and passed on: held as "a
    revocation of that id already", it was dropped, and KOR's consent stayed in force."""
    from gsomia.service import standing

    kor, usa = FakeKeys("KOR"), FakeKeys("USA")
    consent = crypto.grant_standing_consent(
        consent_id="standing-consent--1", originator="KOR", recipient="JPN",
        categories=["sensor-report"], purpose="dprk-missile", not_before=NOW,
        not_after=NOW + timedelta(days=1), granted_at=NOW, key=kor.signing_key())
    decoy = crypto.revoke_standing_consent(
        consent_id=consent.id, originator="USA", revoked_at=NOW, key=usa.signing_key())
    jpn, _ = node("JPN", shipped, ("USA", "KOR"))
    assert standing.record_standing_revocation(
        jpn, revocation=decoy, sender="USA", originator_public=usa.signing_key().public_key(),
        now=NOW)
    kor_public = kor.signing_key().public_key()
    assert standing.record_standing_consent(jpn, consent=consent, sender="KOR",
                                            originator_public=kor_public, catalogue=shipped,
                                            now=NOW)
    assert [c.revoked for c in standing.in_force(jpn.repo.standing_consents())] == [False]
    genuine = crypto.revoke_standing_consent(
        consent_id=consent.id, originator="KOR", revoked_at=NOW + timedelta(hours=1),
        key=kor.signing_key())
    assert standing.record_standing_revocation(jpn, revocation=genuine, sender="KOR",
                                               originator_public=kor_public, now=NOW)
    assert [c.revoked for c in standing.in_force(jpn.repo.standing_consents())] == [True]
    # Passed on to the partner that did not send it (USA), as any new revocation is.
    assert [(n["kind"], n["recipient"]) for n in jpn.outbox.notices][-1:] == [
        (STANDING_REVOCATION, "USA")]


def test_a_partners_decoy_revocation_does_not_stop_the_consent_queueing_what_it_covers(
        shipped: Catalogue) -> None:
    """JPN holds KOR's sensor report; USA's own revocation naming KOR's consent (it revokes
    nothing) arrives before that consent: the consent, when it comes, still queues the
    report to its recipient, as without the decoy."""
    from gsomia.service import standing

    jpn_uow, jpn = node("JPN", shipped, ("KOR", "USA"))
    kor, usa = FakeKeys("KOR"), FakeKeys("USA")
    label = dataclasses.replace(kor_label("KOR", "JPN", "USA"), category="sensor-report")
    envelope = sealed(kor, jpn, indicator(), label)
    [ok] = exchange.receive(jpn_uow, keys=jpn, catalogue=shipped,
                            signing_keys={"KOR": kor.public_signing_key()},
                            envelopes=[envelope], sender="KOR", seen=set(), now=NOW)
    assert ok.receipt is not None, ok.reasons  # held
    consent = crypto.grant_standing_consent(
        consent_id="standing-consent--1", originator="KOR", recipient="USA",
        categories=["sensor-report"], purpose="dprk-missile", not_before=NOW,
        not_after=NOW + timedelta(days=1), granted_at=NOW, key=kor.signing_key())
    decoy = crypto.revoke_standing_consent(
        consent_id=consent.id, originator="USA", revoked_at=NOW, key=usa.signing_key())
    assert standing.record_standing_revocation(
        jpn_uow, revocation=decoy, sender="USA",
        originator_public=usa.signing_key().public_key(), now=NOW)
    assert standing.record_standing_consent(
        jpn_uow, consent=consent, sender="KOR", originator_public=kor.public_signing_key(),
        catalogue=shipped, now=NOW)
    assert [(d["item_id"], d["recipient"]) for d in jpn_uow.outbox.deliveries] == [
        (envelope.item_id, "USA")]


# ---- rows a partner makes the node keep are bounded (hygiene16) ----------------------------


@settings(max_examples=25, deadline=None)
@given(bound=st.integers(1, 4), sent=st.integers(0, 9))
def test_a_partner_never_makes_the_node_keep_more_revocations_of_consents_not_held_than_its_bound(
        shipped: Catalogue, bound: int, sent: int) -> None:
    """JPN signs revocations of made-up consent ids (each a row at the hub, before): past
    ``bound`` each is refused with LimitReached naming the limit, none stored. KOR's share
    is KOR's own, and KOR's revocation of a consent the hub holds is kept at any count."""
    from gsomia.core.errors import LimitReached
    from gsomia.service import standing

    kor, jpn = FakeKeys("KOR"), FakeKeys("JPN")
    hub, _ = node("USA", shipped, ("JPN", "KOR"))

    def revoke(keys: FakeKeys, n: int, sender: Party) -> bool:
        made_up = crypto.revoke_standing_consent(
            consent_id=f"standing-consent--made-up-{n}", originator=keys.party,
            revoked_at=NOW, key=keys.signing_key())
        return standing.record_standing_revocation(
            hub, revocation=made_up, sender=sender,
            originator_public=keys.signing_key().public_key(), now=NOW, bound=bound)

    for n in range(sent):
        if n < bound:
            assert revoke(jpn, n, "JPN")
        else:
            with pytest.raises(LimitReached) as refused:
                revoke(jpn, n, "JPN")
            assert refused.value.limit == "standing_revocations_per_partner"
            assert refused.value.bound == bound and str(bound) in str(refused.value)
    kept = [r for r in hub.repo.standing_consents() if r.originator == "JPN"]
    assert len(kept) == min(sent, bound)
    # Passed on by a relay (USA's partner KOR here), they still count as JPN's.
    if sent >= bound:
        with pytest.raises(LimitReached):
            revoke(jpn, sent, "KOR")
    assert revoke(kor, 0, "KOR")  # another partner's bound is its own
    consent = crypto.grant_standing_consent(
        consent_id="standing-consent--1", originator="JPN", recipient="KOR",
        categories=["sensor-report"], purpose="dprk-missile", not_before=NOW,
        not_after=NOW + timedelta(days=1), granted_at=NOW, key=jpn.signing_key())
    jpn_public = jpn.signing_key().public_key()
    assert standing.record_standing_consent(hub, consent=consent, sender="JPN",
                                            originator_public=jpn_public, catalogue=shipped,
                                            now=NOW)
    genuine = crypto.revoke_standing_consent(
        consent_id=consent.id, originator="JPN", revoked_at=NOW + timedelta(hours=1),
        key=jpn.signing_key())
    assert standing.record_standing_revocation(hub, revocation=genuine, sender="JPN",
                                               originator_public=jpn_public, now=NOW,
                                               bound=bound)
    assert consent.id in standing.revoked_ids(hub.repo.standing_consents())


def test_revocations_of_consents_not_held_count_over_a_window_not_for_good(
        shipped: Catalogue) -> None:
    """outbox20: a relay passes KOR's genuine revocations alone to partners that never held
    the consent (AUS under a hub of more than three parties). They counted against KOR's
    bound for good: once it was reached, every later one was refused, 429 for ever. Counted
    over ``window``, the next is kept once the window has passed, and not before."""
    from gsomia.core.errors import LimitReached
    from gsomia.service import standing

    kor = FakeKeys("KOR")
    aus, _ = node("AUS", shipped, ("USA",))
    window = timedelta(hours=24)

    def passed_on(n: int, at: datetime) -> bool:
        genuine = crypto.revoke_standing_consent(
            consent_id=f"standing-consent--{n}", originator="KOR", revoked_at=at,
            key=kor.signing_key())
        return standing.record_standing_revocation(
            aus, revocation=genuine, sender="USA", now=at, bound=2, window=window,
            originator_public=kor.signing_key().public_key())

    assert passed_on(1, NOW) and passed_on(2, NOW + timedelta(hours=1))
    with pytest.raises(LimitReached, match="standing_revocations_per_partner"):
        passed_on(3, NOW + timedelta(hours=23))
    assert passed_on(3, NOW + window + timedelta(seconds=1))  # the first has left the window
    with pytest.raises(LimitReached):
        passed_on(4, NOW + window + timedelta(minutes=1))  # the second has not
    assert passed_on(4, NOW + window + timedelta(hours=1, seconds=1))
    assert len(aus.repo.standing_consents()) == 4  # nothing dropped: each one kept


@settings(max_examples=25, deadline=None)
@given(bound=st.integers(1, 3), gaps=st.lists(st.integers(0, 30), min_size=1, max_size=12))
def test_a_partner_never_makes_the_node_keep_more_than_its_bound_within_any_window(
        shipped: Catalogue, bound: int, gaps: list[int]) -> None:
    """Revocations of made-up ids by KOR arrive ``gaps`` hours apart: within every window of
    24 hours at most ``bound`` are kept, and one is refused only when the window before it
    already holds ``bound`` (the flood the bound is for stays bounded by a rate; ordinary
    traffic is not refused for what it sent long ago)."""
    from gsomia.core.errors import LimitReached
    from gsomia.service import standing

    kor = FakeKeys("KOR")
    hub, _ = node("USA", shipped, ("KOR",))
    window = timedelta(hours=24)
    at = NOW
    kept: list[datetime] = []
    for n, gap in enumerate(gaps):
        at += timedelta(hours=gap)
        made_up = crypto.revoke_standing_consent(
            consent_id=f"standing-consent--made-up-{n}", originator="KOR", revoked_at=at,
            key=kor.signing_key())
        recent = sum(k > at - window for k in kept)
        try:
            standing.record_standing_revocation(
                hub, revocation=made_up, sender="KOR", now=at, bound=bound, window=window,
                originator_public=kor.signing_key().public_key())
        except LimitReached:
            assert recent >= bound
        else:
            assert recent < bound
            kept.append(at)
    assert len(hub.repo.standing_consents()) == len(kept)
    assert all(sum(t - window < k <= t for k in kept) <= bound for t in kept)


@settings(max_examples=15, deadline=None)
@given(bound=st.integers(1, 4), sent=st.integers(0, 7))
def test_a_partner_never_makes_the_node_keep_more_standing_consents_than_its_bound(
        shipped: Catalogue, bound: int, sent: int) -> None:
    from gsomia.core.errors import LimitReached
    from gsomia.service import standing

    kor = FakeKeys("KOR")
    jpn, _ = node("JPN", shipped, ("KOR", "USA"))
    for n in range(sent):
        consent = crypto.grant_standing_consent(
            consent_id=f"standing-consent--{n}", originator="KOR", recipient="USA",
            categories=["sensor-report"], purpose="dprk-missile", not_before=NOW,
            not_after=NOW + timedelta(days=1), granted_at=NOW, key=kor.signing_key())

        def take(c: crypto.StandingConsent = consent) -> bool:
            return standing.record_standing_consent(
                jpn, consent=c, sender="KOR", originator_public=kor.signing_key().public_key(),
                catalogue=shipped, now=NOW, bound=bound)

        if n < bound:
            assert take() and not take()  # a retry of one kept is no new row
        else:
            with pytest.raises(LimitReached, match="standing_consents_per_partner"):
                take()
    assert len(jpn.repo.standing_consents()) == min(sent, bound)


@settings(max_examples=15, deadline=None)
@given(delivered=st.lists(st.booleans(), min_size=1, max_size=5))
def test_a_partner_keeps_receipts_only_for_what_this_node_delivered_to_it(
        shipped: Catalogue, delivered: list[bool]) -> None:
    """JPN's own signature is all a receipt holds: posted over the peer API, one for an
    item KOR never queued to JPN is refused (PolicyDenied) and nothing is kept, so JPN can
    neither grow KOR's store without bound nor claim custody of what it was never sent."""
    kor_uow, kor = node("KOR", shipped, ("JPN",))
    jpn = FakeKeys("JPN")
    for n, was_sent in enumerate(delivered):
        envelope = sealed(kor, jpn, indicator(n + 1), kor_label())
        if was_sent:
            kor_uow.outbox.deliveries.append({"item_id": envelope.item_id,
                                              "version": envelope.version, "recipient": "JPN"})
        receipt = crypto.make_receipt(envelope, received_at=NOW, key=jpn.signing_key())

        def post(r: crypto.Receipt = receipt) -> Any:
            return handlers.record_receipt(kor_uow, keys=kor, receipt=r, now=NOW,
                                           peer_public=jpn.signing_key().public_key(),
                                           actor="JPN", delivered_only=True)

        if was_sent:
            assert post().peer == "JPN"
        else:
            with pytest.raises(PolicyDenied, match="sent JPN no"):
                post()
    assert len(kor_uow.repo.receipts) == sum(delivered)
    assert len(kor_uow.audit.of(AuditKind.RECEIPT)) == sum(delivered)


@settings(max_examples=15, deadline=None)
@given(bound=st.integers(1, 4), texts=st.lists(st.text(min_size=1, max_size=20), max_size=7,
                                                unique=True))
def test_a_partner_never_makes_the_node_keep_more_incident_reports_than_its_bound(
        shipped: Catalogue, bound: int, texts: list[str]) -> None:
    """Any new text is a new report: USA, to whom JPN provided an item, reports it again
    and again. Past ``bound`` each is refused (LimitReached naming the limit), not kept,
    and on record as the other refused notices are: the first ``per_window`` one by one,
    naming the limit, the rest counted in one summary (consent18: before, not audited at
    all, so the operator could not see a partner flooding); the operator's own reports are
    not counted against USA's."""
    from gsomia.core.errors import LimitReached

    uow, jpn, item = received_item(shipped)
    uow.repo.receipts.append(ReceiptRecord(item, "2026-11-01T00:00:00.000Z", "USA",
                                           "obtained", {}, NOW))
    handlers.report_incident(uow, keys=jpn, kind="loss", description="ours", now=NOW,
                             item_id=item)
    refusals = RefusalWindow(per_window=2)
    size = len(uow.audit.events)
    for n, text in enumerate(texts):
        def send(t: str = text) -> Any:
            return notice_handlers.accept_incident(uow, keys=jpn, kind="compromise",
                                                   item_id=item, description=t,
                                                   sender="USA", now=NOW, bound=bound,
                                                   refusals=refusals)
        if n < bound:
            assert send()["accepted"]
            size = len(uow.audit.events)
        else:
            with pytest.raises(LimitReached, match="incidents_per_partner"):
                send()
    assert sum(r.reported_by == "USA" for r in uow.repo.incident_reports) == min(len(texts),
                                                                                 bound)
    refused = max(0, len(texts) - bound)
    written = uow.audit.events[size:]
    assert len(written) == min(refused, 2)
    assert all(e.kind == AuditKind.NOTICE_REFUSED and e.details["limit"] ==
               "incidents_per_partner" and e.details["bound"] == bound for e in written)
    # Nothing lost: the rest is counted, on record in one summary when the window closes.
    assert notice_handlers.record_refusal_summaries(uow, refusals=refusals, now=NOW,
                                                    everything=True) == (refused > 2)
    assert sum(e.details.get("refused", 1) for e in uow.audit.events[size:]) == refused


@settings(max_examples=15, deadline=None)
@given(bound=st.integers(1, 4),
       levels=st.lists(st.sampled_from(["군사II급비밀", "군사III급비밀"]), max_size=7),
       gaps=st.lists(st.integers(0, 30), min_size=7, max_size=7))
def test_a_partner_never_makes_the_node_apply_more_classification_notices_than_its_bound(
        shipped: Catalogue, bound: int, levels: list[str], gaps: list[int]) -> None:
    """KOR, the item's originator and provider, re-marks it again and again (each notice a
    new signature), hours apart: a notice is refused (LimitReached naming the limit, not
    kept, on record as a ``notice-refused`` event naming the limit and bound, as every
    other bound's refusal is: bounds19) exactly when ``bound`` of KOR's were applied in the
    24 h before it; one already applied is answered as a duplicate at any count."""
    from gsomia.core.custody import sign_classification_notice
    from gsomia.core.errors import LimitReached

    uow, jpn, item = received_item(shipped)
    kor = FakeKeys("KOR")
    window = timedelta(hours=24)
    now, applied, old = NOW, list[datetime](), "군사II급비밀"
    for n, (level, gap) in enumerate(zip(levels, gaps, strict=False)):
        now += timedelta(hours=gap)
        notice = sign_classification_notice(item_id=item, originator="KOR", old_level=old,
                                            new_level=level,
                                            issued_at=NOW + timedelta(seconds=n),
                                            key=kor.signing_key())

        doc = notice.to_json()

        def send(doc: dict[str, Any] = doc, at: datetime = now) -> Any:
            return notice_handlers.accept_classification_notice(
                uow, keys=jpn, catalogue=shipped, doc=doc, sender="KOR",
                originator_keys={"KOR": kor.public_signing_key()}, now=at,
                refusals=RefusalWindow(), bound=bound, window=window)
        size = len(uow.audit.events)
        if sum(now - window < at for at in applied) >= bound:
            with pytest.raises(LimitReached, match="classification_notices_per_partner"):
                send()
            [refused] = uow.audit.events[size:]
            assert refused.kind == AuditKind.NOTICE_REFUSED and refused.actor == "KOR"
            assert refused.details["limit"] == "classification_notices_per_partner"
            assert refused.details["bound"] == bound
            assert status_of(LimitReached("classification_notices_per_partner", bound, "x")
                             ) == 429 and not definitive(429)  # the sender tries again
        else:
            assert send()["accepted"]
            applied.append(now)
            old = level
            assert send()["duplicate"]  # posted again: nothing new, whatever the count
            assert len(uow.audit.events) == size + 1
    assert len(uow.repo.notices) == len(applied)


@settings(max_examples=15, deadline=None)
@given(bound=st.integers(1, 4), sent=st.integers(0, 7))
def test_a_partner_never_makes_the_node_keep_more_pending_consent_requests_than_its_bound(
        shipped: Catalogue, bound: int, sent: int) -> None:
    """Each request a holder asks is a row waiting for the operator, whatever its reason:
    past ``bound`` pending ones of one holder the next is refused (LimitReached naming the
    limit), none kept or audited; one answered frees its place; another holder's are its own."""
    from gsomia.core.errors import LimitReached

    uow, _ = node("KOR", shipped, ("JPN", "USA"))

    def ask(n: int, holder: Party = "JPN") -> None:
        exchange.record_consent_request(uow, request=ConsentRequest(
            f"r{holder}{n}", indicator(1)["id"], holder, "USA", f"reason {n}", "incoming", NOW),
            now=NOW, actor=holder, bound=bound)

    for n in range(sent):
        if n < bound:
            ask(n)
        else:
            size = len(uow.audit.events)
            with pytest.raises(LimitReached, match="consent_requests_per_partner"):
                ask(n)
            assert len(uow.audit.events) == size
    assert uow.repo.pending_consent_requests("incoming", holder="JPN") == min(sent, bound)
    ask(0, "USA")
    if sent >= bound:
        exchange.answer_consent_request(uow, request_id="rJPN0", status="denied", now=NOW)
        ask(sent)  # its place is free again


def test_a_consent_refusal_is_kept_only_for_a_request_this_node_made_of_that_originator(
        shipped: Catalogue) -> None:
    """Each refusal is an audit event: one nobody asked for (or from another than the
    item's originator) is refused and adds nothing, where any partner could grow the log."""
    uow, _, item = received_item(shipped)
    size = len(uow.audit.events)
    with pytest.raises(PolicyDenied):
        exchange.record_consent_refusal(uow, item_id=item, originator="KOR", reason="no",
                                        now=NOW)
    exchange.record_consent_request(uow, request=ConsentRequest(
        "q1", item, "JPN", "USA", "relay", "outgoing", NOW), now=NOW, actor="operator")
    size = len(uow.audit.events)
    for forged in (("USA", item), ("KOR", "indicator--00000000-0000-4000-8000-00000000ffff")):
        with pytest.raises(PolicyDenied):
            exchange.record_consent_refusal(uow, item_id=forged[1], originator=forged[0],
                                            reason="no", now=NOW)
    assert len(uow.audit.events) == size
    exchange.record_consent_refusal(uow, item_id=item, originator="KOR", reason="no", now=NOW)
    assert uow.repo.requests["q1"][1] == "denied" and len(uow.audit.events) == size + 1


@settings(max_examples=15, deadline=None)
@given(posts=st.lists(st.tuples(st.booleans(), st.sampled_from(("USA", "KOR"))), min_size=1,
                      max_size=6))
def test_a_partner_never_makes_the_node_keep_consents_for_what_it_holds_not_or_twice(
        shipped: Catalogue, posts: list[tuple[bool, Party]]) -> None:
    """KOR's own signature is all a consent holds: posted over the peer API (a consent
    reply), one for an item JPN does not hold of KOR's is refused (PolicyDenied), and one
    for an (item, recipient) JPN holds a consent for already changes nothing. Each was a
    row and an audit event, without bound (review16)."""
    uow, _, item = received_item(shipped)
    kor = FakeKeys("KOR")
    kept: set[Party] = set()
    for n, (held, recipient) in enumerate(posts):
        item_id = item if held else indicator(1000 + n)["id"]
        consent = crypto.grant_consent(item_id=item_id, originator="KOR", recipient=recipient,
                                       granted_at=NOW + timedelta(seconds=n),
                                       key=kor.signing_key())
        size = len(uow.audit.events)

        def post(c: crypto.Consent = consent) -> ConsentRecord:
            return handlers.record_consent(uow, consent=c, now=NOW, actor="KOR",
                                           originator_public=kor.public_signing_key())

        if not held:
            with pytest.raises(PolicyDenied, match="not hold"):
                post()
            assert len(uow.audit.events) == size
        elif recipient in kept:
            exchange.record_consent_request(uow, request=ConsentRequest(
                f"again{n}", item, "JPN", recipient, "relay", "outgoing", NOW), now=NOW,
                actor="operator")
            size = len(uow.audit.events)
            assert post().recipient == recipient
            assert len(uow.audit.events) == size
            assert uow.repo.requests[f"again{n}"][1] == "granted"
        else:
            assert post().recipient == recipient
            kept.add(recipient)
    assert sorted((c.item_id, c.recipient) for c in uow.repo.consents) == \
        sorted((item, r) for r in kept)
    assert len([e for e in uow.audit.of(AuditKind.CONSENT)
                if e.details["direction"] == "obtained"]) == len(kept)


# ---- the bounds count what is in force, never the node's life (bounds17) -------------------


@settings(max_examples=10, deadline=None)
@given(genuine=st.integers(2, 5), decoys=st.integers(0, 4), bound=st.integers(1, 2))
def test_revocations_the_hub_passes_on_are_kept_at_any_count_and_decoys_still_hit_the_bound(
        shipped: Catalogue, genuine: int, decoys: int, bound: int) -> None:
    """Under ``hub`` JPN never holds KOR's standing consents, which USA relays under: every
    genuine KOR revocation USA passes on names a consent JPN does not hold. Each comes with
    the consent it revokes, so JPN keeps them all, past any bound; KOR's revocations of ids
    nobody granted (decoys, which come with nothing) are still refused past ``bound``."""
    from gsomia.core.errors import LimitReached
    from gsomia.service import standing

    kor = FakeKeys("KOR")
    kor_public = kor.signing_key().public_key()
    hub, _ = node("USA", shipped, ("JPN", "KOR"))
    jpn, _ = node("JPN", shipped, ("USA",))
    for n in range(genuine):
        consent = crypto.grant_standing_consent(
            consent_id=f"standing-consent--{n}", originator="KOR", recipient="JPN",
            categories=["sensor-report"], purpose="dprk-missile", not_before=NOW,
            not_after=NOW + timedelta(days=1), granted_at=NOW, key=kor.signing_key())
        assert standing.record_standing_consent(hub, consent=consent, sender="KOR",
                                                originator_public=kor_public,
                                                catalogue=shipped, now=NOW)
        assert standing.record_standing_revocation(
            hub, revocation=crypto.revoke_standing_consent(
                consent_id=consent.id, originator="KOR", revoked_at=NOW,
                key=kor.signing_key()),
            sender="KOR", originator_public=kor_public, now=NOW)
    bodies = [json.loads(n["body"]) for n in hub.outbox.notices
              if n["kind"] == STANDING_REVOCATION and n["recipient"] == "JPN"]
    assert len(bodies) == genuine
    for body in bodies:
        revocation, shown = standing.read_revocation(body)
        assert standing.record_standing_revocation(jpn, revocation=revocation, sender="USA",
                                                   originator_public=kor_public, now=NOW,
                                                   bound=bound, consent=shown)
    assert standing.revoked_ids(jpn.repo.standing_consents()) == {
        f"standing-consent--{n}" for n in range(genuine)}
    for n in range(decoys):
        made_up = crypto.revoke_standing_consent(
            consent_id=f"standing-consent--made-up-{n}", originator="KOR", revoked_at=NOW,
            key=kor.signing_key())

        def take(r: crypto.StandingRevocation = made_up) -> bool:
            return standing.record_standing_revocation(
                jpn, revocation=r, sender="USA", originator_public=kor_public, now=NOW,
                bound=bound)

        if n < bound:
            assert take()
        else:
            with pytest.raises(LimitReached, match="standing_revocations_per_partner"):
                take()
    assert len(jpn.repo.standing_consents()) == genuine + min(decoys, bound)


def test_a_consent_shown_with_a_revocation_must_be_the_one_it_revokes_signed_by_its_originator(
        shipped: Catalogue) -> None:
    """What lifts a revocation past the bound is the originator's own consent of that id:
    one of another id, or signed by another party (the sender, say), lifts nothing."""
    from gsomia.core.errors import LimitReached, MalformedInput
    from gsomia.service import standing

    kor, usa = FakeKeys("KOR"), FakeKeys("USA")
    kor_public = kor.signing_key().public_key()
    jpn, _ = node("JPN", shipped, ("USA",))

    def grant(consent_id: str, originator: Party, keys: FakeKeys) -> crypto.StandingConsent:
        return crypto.grant_standing_consent(
            consent_id=consent_id, originator=originator, recipient="JPN",
            categories=["sensor-report"], purpose="dprk-missile", not_before=NOW,
            not_after=NOW + timedelta(days=1), granted_at=NOW, key=keys.signing_key())

    def revoke(consent_id: str, consent: crypto.StandingConsent | None) -> bool:
        return standing.record_standing_revocation(
            jpn, revocation=crypto.revoke_standing_consent(
                consent_id=consent_id, originator="KOR", revoked_at=NOW,
                key=kor.signing_key()),
            sender="USA", originator_public=kor_public, now=NOW, bound=1, consent=consent)

    assert revoke("standing-consent--decoy", None)  # the one decoy the bound allows
    with pytest.raises(MalformedInput, match="standing-consent--other"):
        revoke("standing-consent--1", grant("standing-consent--other", "KOR", kor))
    with pytest.raises(ProofInvalid):
        revoke("standing-consent--1", grant("standing-consent--1", "KOR", usa))
    with pytest.raises(ProofInvalid):
        revoke("standing-consent--1", grant("standing-consent--1", "USA", usa))
    with pytest.raises(LimitReached):
        revoke("standing-consent--1", None)
    assert revoke("standing-consent--1", grant("standing-consent--1", "KOR", kor))
    assert len(jpn.repo.standing_consents()) == 2


def test_a_standing_consent_revoked_or_expired_frees_its_place_under_the_bound(
        shipped: Catalogue) -> None:
    """Bound 1: KOR's second consent is refused while its first is in force, and kept once
    the first is revoked; a third once the second has expired."""
    from gsomia.core.errors import LimitReached
    from gsomia.service import standing

    kor = FakeKeys("KOR")
    kor_public = kor.signing_key().public_key()
    jpn, _ = node("JPN", shipped, ("KOR", "USA"))

    def take(n: int, now: datetime) -> bool:
        consent = crypto.grant_standing_consent(
            consent_id=f"standing-consent--{n}", originator="KOR", recipient="USA",
            categories=["sensor-report"], purpose="dprk-missile", not_before=now,
            not_after=now + timedelta(days=1), granted_at=now, key=kor.signing_key())
        return standing.record_standing_consent(jpn, consent=consent, sender="KOR",
                                                originator_public=kor_public,
                                                catalogue=shipped, now=now, bound=1)

    assert take(1, NOW)
    with pytest.raises(LimitReached, match="standing_consents_per_partner"):
        take(2, NOW)
    assert standing.record_standing_revocation(
        jpn, revocation=crypto.revoke_standing_consent(
            consent_id="standing-consent--1", originator="KOR", revoked_at=NOW,
            key=kor.signing_key()),
        sender="KOR", originator_public=kor_public, now=NOW, bound=1)
    assert take(2, NOW)
    with pytest.raises(LimitReached):
        take(3, NOW + timedelta(hours=23))
    assert take(3, NOW + timedelta(days=1))  # the second ran out at that instant


def test_the_incident_bound_counts_the_reports_of_the_last_window_only(
        shipped: Catalogue) -> None:
    """Bound 1 in 24 h: USA's second report within the day is refused, one a day after its
    first is kept."""
    from gsomia.core.errors import LimitReached

    uow, jpn, item = received_item(shipped)
    uow.repo.receipts.append(ReceiptRecord(item, "2026-11-01T00:00:00.000Z", "USA",
                                           "obtained", {}, NOW))

    def send(text: str, now: datetime) -> Any:
        return notice_handlers.accept_incident(uow, keys=jpn, kind="compromise", item_id=item,
                                               description=text, sender="USA", now=now,
                                               refusals=RefusalWindow(), bound=1,
                                               window=timedelta(hours=24))

    assert send("first", NOW)["accepted"]
    with pytest.raises(LimitReached, match="incidents_per_partner"):
        send("second", NOW + timedelta(hours=23))
    assert send("second", NOW + timedelta(hours=24))["accepted"]
    with pytest.raises(LimitReached):
        send("third", NOW + timedelta(hours=25))


@settings(max_examples=15, deadline=None)
@given(bound=st.integers(1, 3),
       steps=st.lists(st.sampled_from(["grant", "revoke", "later"]), max_size=12))
def test_a_partners_standing_consents_are_refused_exactly_when_its_bound_is_in_force(
        shipped: Catalogue, bound: int, steps: list[str]) -> None:
    """KOR grants (each valid 10 h), revokes its oldest in force, or time passes 4 h: a new
    consent is refused if and only if ``bound`` of KOR's are in force here, so the node
    never holds more in force than the bound and never refuses one with room left."""
    from gsomia.core.errors import LimitReached
    from gsomia.service import standing

    kor = FakeKeys("KOR")
    kor_public = kor.signing_key().public_key()
    jpn, _ = node("JPN", shipped, ("KOR", "USA"))
    now, ends, live = NOW, dict[str, datetime](), list[str]()
    for n, step in enumerate(steps):
        live = [c for c in live if now < ends[c]]
        if step == "later":
            now += timedelta(hours=4)
        elif step == "revoke" and live:
            assert standing.record_standing_revocation(
                jpn, revocation=crypto.revoke_standing_consent(
                    consent_id=live.pop(0), originator="KOR", revoked_at=now,
                    key=kor.signing_key()),
                sender="KOR", originator_public=kor_public, now=now)
        elif step == "grant":
            consent = crypto.grant_standing_consent(
                consent_id=f"standing-consent--{n}", originator="KOR", recipient="USA",
                categories=["sensor-report"], purpose="dprk-missile", not_before=now,
                not_after=now + timedelta(hours=10), granted_at=now, key=kor.signing_key())
            try:
                kept = standing.record_standing_consent(
                    jpn, consent=consent, sender="KOR", originator_public=kor_public,
                    catalogue=shipped, now=now, bound=bound)
            except LimitReached:
                kept = False
            assert kept == (len(live) < bound)
            if kept:
                live.append(consent.id)
                ends[consent.id] = consent.not_after
        held = [c for c in standing.in_force(jpn.repo.standing_consents())
                if not c.revoked and now < c.not_after]
        assert len(held) <= bound


def test_a_genuine_classification_notice_past_the_bound_is_not_refused_for_good(
        shipped: Catalogue) -> None:
    """review18: past its bound a genuine notice (here raising the level again) was a
    PolicyDenied the peer API answered 403, which the sender's outbox takes as final: the
    holder kept the item at its old level for good. The bound says "not now": 429, which
    the sender retries, and on record (notice-refused naming the limit)."""
    from gsomia.core.custody import sign_classification_notice
    from gsomia.core.errors import LimitReached
    uow, jpn, item = received_item(shipped)
    kor = FakeKeys("KOR")

    def send(old: str, new: str, n: int) -> Any:
        notice = sign_classification_notice(item_id=item, originator="KOR", old_level=old,
                                            new_level=new,
                                            issued_at=NOW + timedelta(seconds=n),
                                            key=kor.signing_key())
        return notice_handlers.accept_classification_notice(
            uow, keys=jpn, catalogue=shipped, doc=notice.to_json(), sender="KOR",
            originator_keys={"KOR": kor.public_signing_key()},
            now=NOW + timedelta(seconds=n), refusals=RefusalWindow(), bound=1,
            window=timedelta(hours=24))
    assert send("군사II급비밀", "군사III급비밀", 1)["accepted"]
    with pytest.raises(LimitReached) as refused:
        send("군사III급비밀", "군사II급비밀", 2)  # raised again: a genuine notice
    assert not definitive(status_of(refused.value))  # the sender will try it again
    [event] = uow.audit.of(AuditKind.NOTICE_REFUSED)
    assert event.details["limit"] == "classification_notices_per_partner"


def test_one_originators_notices_never_use_up_anothers_share_of_a_relay(
        shipped: Catalogue) -> None:
    """Under ``hub`` every originator's notices reach a node from the hub: counted per
    (sender, originator), USA's notices relayed by KOR never use up KOR's own share
    (review18: they shared one count, so one originator re-marking a lot held back
    another's notices)."""
    from gsomia.core.custody import sign_classification_notice
    uow, jpn, item = received_item(shipped)
    kor, usa = FakeKeys("KOR"), FakeKeys("USA")
    # A notice of USA's about one of its items, applied here an hour ago as sent by KOR.
    relayed = sign_classification_notice(item_id="indicator--usa", originator="USA",
                                         old_level="II", new_level="III", issued_at=NOW,
                                         key=usa.signing_key())
    event = uow.audit.append(AuditKind.CLASSIFICATION_CHANGED, NOW - timedelta(hours=1),
                             "KOR", item_id="indicator--usa")
    uow.commit()
    uow.repo.add_notice(relayed, seq=event.seq)
    notice = sign_classification_notice(item_id=item, originator="KOR",
                                        old_level="군사II급비밀", new_level="군사III급비밀",
                                        issued_at=NOW, key=kor.signing_key())
    answer = notice_handlers.accept_classification_notice(
        uow, keys=jpn, catalogue=shipped, doc=notice.to_json(), sender="KOR",
        originator_keys={"KOR": kor.public_signing_key()}, now=NOW, refusals=RefusalWindow(),
        bound=1, window=timedelta(hours=24))
    assert answer["accepted"] and not answer.get("duplicate")


# ---- hunt29: only the originator's newest classification notice is in force -------------------

_KOR_LEVELS = ("군사II급비밀", "군사III급비밀")  # the two the JPN-KOR agreement covers


def _held_level(uow: FakeUnitOfWork, item: str) -> str:
    """The level the holder marks every version of ``item`` with now (one for all)."""
    levels = {uow.repo.custody_of(item, v.version)[-1].national_label.level
              for v in uow.repo.item_versions(item)}
    assert len(levels) == 1
    return levels.pop()


def _jpn_level_of(shipped: Catalogue, uow: FakeUnitOfWork, item: str, kor_level: str) -> str:
    """The JPN equivalent of KOR's ``kor_level`` under the agreement ``item`` came by."""
    version = uow.repo.item_versions(item)[-1].version
    agreement = uow.repo.custody_of(item, version)[-1].agreement
    assert agreement is not None
    return shipped.get(agreement).equivalent("KOR", kor_level, "JPN")


def test_an_older_classification_notice_delivered_after_a_newer_one_is_refused(
        shipped: Catalogue) -> None:
    """hunt29: KOR lowers its item to 군사III급비밀 (notice 1), then raises it back to
    군사II급비밀 (notice 2). The relay that passes KOR's notices on (the hub), or a retry that lands
    late, delivers notice 2 and then notice 1: the holder applied them in the order they
    came and kept the item at the lowered level, readable by people the originator had
    since shut out. Failed before the fix: notice 1 was accepted and re-marked the item
    down. Now an older notice than the one in force is refused, on record, re-marks
    nothing and is passed on to no one."""
    from gsomia.core.custody import sign_classification_notice
    uow, jpn, item = received_item(shipped)
    kor = FakeKeys("KOR")
    lowered = sign_classification_notice(item_id=item, originator="KOR",
                                         old_level="군사II급비밀", new_level="군사III급비밀",
                                         issued_at=NOW + timedelta(minutes=1),
                                         key=kor.signing_key())
    raised = sign_classification_notice(item_id=item, originator="KOR",
                                        old_level="군사III급비밀", new_level="군사II급비밀",
                                        issued_at=NOW + timedelta(minutes=2),
                                        key=kor.signing_key())

    def send(notice: ClassificationNotice) -> Any:
        return notice_handlers.accept_classification_notice(
            uow, keys=jpn, catalogue=shipped, doc=notice.to_json(), sender="KOR",
            originator_keys={"KOR": kor.public_signing_key()},
            now=NOW + timedelta(minutes=3), refusals=RefusalWindow())
    assert send(raised)["accepted"]
    top = _jpn_level_of(shipped, uow, item, "군사II급비밀")
    assert _held_level(uow, item) == top
    queued = len(uow.outbox.notices)
    size = len(uow.audit.events)
    with pytest.raises(PolicyDenied, match="newer classification notice"):
        send(lowered)
    assert _held_level(uow, item) == top  # still the originator's newest level
    assert len(uow.outbox.notices) == queued  # passed on to no one
    [refused] = uow.audit.events[size:]
    assert refused.kind == AuditKind.NOTICE_REFUSED and refused.item_id == item
    assert status_of(PolicyDenied(("x",))) == 403 and definitive(403)  # settled, not retried
    assert send(raised)["duplicate"]  # the one in force, posted again: as before


@settings(max_examples=40, deadline=None)
@given(levels=st.lists(st.sampled_from(_KOR_LEVELS), min_size=1, max_size=5),
       order=st.randoms(use_true_random=False), repeats=st.lists(st.integers(0, 4),
                                                                max_size=3))
def test_the_holder_keeps_the_newest_notice_whatever_order_they_arrive_in(
        shipped: Catalogue, levels: list[str], order: Any, repeats: list[int]) -> None:
    """hunt29 (Hypothesis): however a relay or the retries order KOR's notices (some
    posted again), after each one the holder marks the item with the equivalent of the
    newest notice it has accepted, and after all of them with that of KOR's newest."""
    from gsomia.core.custody import sign_classification_notice
    uow, jpn, item = received_item(shipped)
    kor = FakeKeys("KOR")
    notices = [sign_classification_notice(item_id=item, originator="KOR",
                                          old_level="군사II급비밀", new_level=level,
                                          issued_at=NOW + timedelta(seconds=n),
                                          key=kor.signing_key())
               for n, level in enumerate(levels)]
    arrivals = list(notices) + [notices[r % len(notices)] for r in repeats]
    order.shuffle(arrivals)
    newest: ClassificationNotice | None = None
    applied: list[ClassificationNotice] = []
    for notice in arrivals:
        try:
            answer = notice_handlers.accept_classification_notice(
                uow, keys=jpn, catalogue=shipped, doc=notice.to_json(), sender="KOR",
                originator_keys={"KOR": kor.public_signing_key()},
                now=NOW + timedelta(minutes=1), refusals=RefusalWindow())
        except PolicyDenied:
            assert newest is not None and notice.issued_at < newest.issued_at
        else:
            if answer.get("duplicate"):  # applied before: answered as such, changes nothing
                assert notice in applied
            else:
                assert newest is None or notice.issued_at >= newest.issued_at
                newest = notice
                applied.append(notice)
        assert newest is not None
        assert _held_level(uow, item) == _jpn_level_of(shipped, uow, item, newest.new_level)
    assert newest == notices[-1]


# ---- a person's refusals, bounded (issue 11) -------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.tuples(st.sampled_from(["aiko", "taro", "hana"]),
                                st.integers(min_value=0, max_value=200)), max_size=60))
def test_a_person_s_refusals_are_each_on_record_or_counted_within_the_bound(
        steps: list[tuple[str, int]]) -> None:
    """However a person repeats refused actions, each is either an event of its own or
    counted in a summary (nothing lost), and no person gets more than the bound's events one
    by one in a window: probing what one may write leaves a trace, not an unbounded log."""
    uow = FakeUnitOfWork(Routing("JPN", (), None))  # type: ignore[arg-type]
    window = RefusalWindow(per_window=3, window=timedelta(seconds=60))
    steps = sorted(steps, key=lambda s: s[1])  # time goes forward
    for person, second in steps:
        handlers.refuse_bounded(uow, refusals=window, actor=person, action="taxii-post",
                                reasons=["above their clearance"], item_id="indicator--1",
                                now=NOW + timedelta(seconds=second))
    handlers.record_action_summaries(uow, refusals=window, now=None)
    events = uow.audit.of(AuditKind.ACTION_REFUSED)
    one_by_one = [e for e in events if not e.details.get("summary")]
    counted = sum(e.details["refused"] for e in events if e.details.get("summary"))
    assert len(one_by_one) + counted == len(steps)
    assert all(e.details["action"] == "taxii-post" for e in events)
    for person in {p for p, _ in steps}:
        # Windows start at a person's first refusal after the last closed: within any
        # 60 s, at most two windows overlap, so at most twice the bound one by one.
        times = [e.at for e in one_by_one if e.actor == person]
        assert all(sum(1 for u in times if t <= u < t + timedelta(seconds=60)) <= 6
                   for t in times)
        assert len([e for e in events if e.actor == person and e.details.get("summary")]) \
            <= len(times)


@settings(max_examples=40, deadline=None)
@given(forged=st.lists(st.tuples(st.sampled_from(["KOR", "USA", "JPN"]),
                                 st.sampled_from(_KOR_LEVELS),
                                 st.integers(min_value=1, max_value=10**6)),
                       min_size=1, max_size=4),
       level=st.sampled_from(_KOR_LEVELS))
def test_a_partner_not_the_originator_with_a_clock_ahead_holds_no_later_notice_back(
        shipped: Catalogue, forged: list[tuple[str, str, int]], level: str) -> None:
    """secreview29: USA, a partner but not the originator of KOR's item, signs notices with
    its own key and a clock far ahead (issued up to ~2 years after now), naming KOR or
    itself or JPN as their originator, and the item's provider passes them on. None is
    applied or kept, so none counts as "a newer notice in force" (hunt29's order rule): the
    originator's next notice, issued now, is applied."""
    from gsomia.core.custody import sign_classification_notice
    uow, jpn, item = received_item(shipped)
    kor, usa = FakeKeys("KOR"), FakeKeys("USA")
    keys = {"KOR": kor.public_signing_key(), "USA": usa.public_signing_key(),
            "JPN": jpn.public_signing_key()}

    def send(notice: ClassificationNotice) -> Any:
        return notice_handlers.accept_classification_notice(
            uow, keys=jpn, catalogue=shipped, doc=notice.to_json(), sender="KOR",
            originator_keys=keys, now=NOW, refusals=RefusalWindow())

    for originator, new_level, ahead in forged:
        notice = sign_classification_notice(
            item_id=item, originator=originator, old_level="군사II급비밀", new_level=new_level,
            issued_at=NOW + timedelta(minutes=ahead), key=usa.signing_key())
        with pytest.raises((ProofInvalid, PolicyDenied)):
            send(notice)
    assert uow.repo.notices_for(item) == []
    genuine = sign_classification_notice(item_id=item, originator="KOR",
                                         old_level="군사II급비밀", new_level=level,
                                         issued_at=NOW, key=kor.signing_key())
    assert send(genuine)["accepted"]
    assert _held_level(uow, item) == _jpn_level_of(shipped, uow, item, level)
