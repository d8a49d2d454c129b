"""The seams between the handlers and the world: what a store and a key store must offer.

A handler opens one :class:`UnitOfWork`, reads and writes through ``uow.repo``, appends to
``uow.audit``, records domain events in ``uow.events`` and commits through
:func:`gsomia.service.outbox.commit`, which plans what the events owe partners into
``uow.outbox``: the records, the outbox rows, the audit events and the signed tree head for
the new log size then become durable together, or (leaving the block without committing,
or on any error) not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from gsomia.core.audit import AuditEvent, AuditKind, LogProblem, MerkleAccumulator, TreeHead
from gsomia.core.crypto import SignatureCheck, verify_checks
from gsomia.core.custody import (
    ClassificationNotice,
    ConsentRecord,
    CreatedCustody,
    CustodyRecord,
    Holding,
    IncidentReport,
    NodeUser,
    ReceiptRecord,
    Revocation,
    StandingConsentRecord,
    StoredItem,
)
from gsomia.core.labels import SecurityLabel
from gsomia.core.outbox import DeliveryDue, DomainEvent, NoticeDue, Routing
from gsomia.core.types import Party

__all__ = ["AuditLog", "AuditReader", "BindingSigner", "ConsentRequest", "KeyStore",
           "LoggedHead", "Outbox", "PendingSignatures", "QueuedDelivery", "QueuedNotice",
           "RecordRow", "RememberedChecks", "Repository", "SeenEnvelope", "ShellReads",
           "SignatureChecks", "StixValidator", "UnitOfWork", "checks_here"]


class SignatureChecks(Protocol):
    """Verifies a batch of Ed25519 signatures, possibly on another process, while the caller
    goes on: ``submit`` returns a callable that waits for one answer per check, in order
    (False: that signature does not verify, and what it signs is refused)."""

    def submit(self, checks: Sequence[SignatureCheck]) -> Callable[[], list[bool]]: ...


class _ChecksHere:
    def submit(self, checks: Sequence[SignatureCheck]) -> Callable[[], list[bool]]:
        found = verify_checks(checks)
        return lambda: found


checks_here: SignatureChecks = _ChecksHere()
"""In the caller's own process, before ``submit`` returns."""


class RememberedChecks(SignatureChecks, Protocol):
    """Signature checks, each that said yes kept in this process's memory and not made
    again (the node's keeping: :class:`gsomia.shell.signatures.RememberingChecks`). The
    publish path vouches for the bindings it has just signed; the courier's seal looks
    there before it verifies, the bytes signed recomputed from what is stored."""

    def vouch(self, made: Iterable[SignatureCheck]) -> None:
        """Keep as a yes each of ``made``: signatures this process has just made itself
        with the key named, over exactly the bytes named."""
        ...


class KeyStore(Protocol):
    """The node's identity: its party and its keys (held by the shell, passed in)."""

    @property
    def party(self) -> Party: ...

    def signing_key(self) -> Ed25519PrivateKey:
        """Label binding, receipts, consents, notices and tree heads."""
        ...

    def public_signing_key(self) -> Ed25519PublicKey: ...

    def envelope_key(self) -> X25519PrivateKey:
        """The key partners seal envelopes to."""
        ...


class PendingSignatures(Protocol):
    """Signatures asked for and not yet taken."""

    def result(self) -> list[bytes]:
        """The signatures, in the order of the digests; ``Unavailable`` if they cannot be
        had (nothing signed elsewhere is then used)."""
        ...

    def abandon(self) -> None:
        """The batch is refused: its signatures, if they come, are dropped."""
        ...


class BindingSigner(Protocol):
    """Signs label bindings with the node's key (``crypto.BINDING_CONTEXT`` and the binding
    digest: it signs nothing else); ``key`` is the key's fingerprint. :meth:`begin` may
    return before the signing is done, so the caller goes on with its batch meanwhile."""

    @property
    def key(self) -> str: ...

    def begin(self, digests: Sequence[bytes]) -> PendingSignatures: ...


class StixValidator(Protocol):
    """Checks one STIX 2.1 object; raises ``MalformedInput`` listing what is wrong."""

    def __call__(self, obj: Mapping[str, Any]) -> None: ...


class Repository(Protocol):
    """The node's holdings and registers as the handlers read and write them. ``seq`` is
    the audit event that records a write. What the shell alone reads is :class:`ShellReads`:
    a fake for the handlers implements this port and nothing more."""

    # items and custody
    def add_item(self, item: StoredItem, *, seq: int) -> None: ...
    def add_items(self, items: list[tuple[StoredItem, int]]) -> None: ...
    def get_item(self, item_id: str, version: str | None = None) -> StoredItem | None:
        """One version, or the latest stored version when ``version`` is None."""
        ...
    def item_versions(self, item_id: str) -> list[StoredItem]: ...
    def held_versions(self, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of the (id, version) pairs are already stored."""
        ...
    def versions_held(self, item_ids: list[str]) -> set[tuple[str, str]]:
        """Every (id, version) stored of these ids (none for an id not held)."""
        ...
    def notices_of(self, item_ids: Collection[str]) -> dict[str, list[ClassificationNotice]]:
        """The classification notices held of each of ``item_ids`` (those with any): the
        seal's (:func:`gsomia.service.outbox.reclassified_at_seal`) and the settle's, which
        sends a receipted holder the notice its version left before
        (:func:`gsomia.service.outbox.plan_held_notices`)."""
        ...

    def labels_stored_after(self, seq: int, *, originator: Party,
                            stix_type: str) -> list[tuple[str, bytes]]:
        """(id, stored label) of the items of ``stix_type`` from ``originator`` stored by
        events after ``seq``, in the order stored (what a centre made after a source)."""
        ...

    def item_seq(self, item_id: str) -> int | None:
        """The seq of the event that first stored ``item_id`` (None if not held; -1, before
        every seq, if a seq of it as stored is not one the audit log has given)."""
        ...

    def current_labels(self, item_ids: list[str]) -> dict[str, list[SecurityLabel]]:
        """For each id held, the national label of every version's latest custody record
        (what access is decided on); ids not held are absent."""
        ...
    def current_contents(self, item_ids: list[str]) -> dict[str, bytes]:
        """For each id held, the stored content of its current version (the latest by
        ``modified``); ids not held are absent."""
        ...
    def add_custody(self, record: CustodyRecord, *, seq: int) -> None: ...
    def add_custody_many(self, records: list[tuple[CustodyRecord, int]]) -> None: ...
    def add_created_custody(self, batch: CreatedCustody, *, seq: int) -> None:
        """The records of ``batch``, as ``add_custody_many`` of its records would."""
        ...
    def custody_of(self, item_id: str, version: str) -> list[CustodyRecord]:
        """Custody history of one item version, oldest first."""
        ...
    # registers
    def add_user(self, user: NodeUser, *, seq: int) -> None: ...
    def user_named(self, name: str) -> NodeUser | None: ...
    def user_by_token(self, token_hash: bytes) -> NodeUser | None: ...
    def add_revocation(self, revocation: Revocation, *, seq: int) -> None: ...
    def revoked_names(self) -> set[str]:
        """Names of the users whose token is revoked."""
        ...
    def add_consent(self, record: ConsentRecord, *, seq: int) -> None: ...
    def consents_for(self, item_id: str) -> list[ConsentRecord]: ...
    def add_standing_consent(self, record: StandingConsentRecord, *, seq: int) -> None: ...
    def versions_from(self, originator: Party) -> list[tuple[str, str]]:
        """(id, version) of every item version held that ``originator`` originated."""
        ...
    def standing_consents_named(self, consent_id: str) -> list[StandingConsentRecord]:
        """The grant and revocation rows of ``consent_id``, oldest first (read by index:
        the table keeps every grant and revocation ever made)."""
        ...
    def standing_current(self, now: datetime, *, recipient: Party | None = None,
                         direction: str | None = None) -> list[StandingConsentRecord]:
        """The grants held of standing consents not revoked by their originator whose
        validity has not ended at ``now`` (or whose end does not read), oldest first: all a
        relay may rest on, read without the rest of the history (revoked and expired ones
        allow nothing). ``recipient``, ``direction``: only the grants whose row names that
        recipient, that direction (a seal reads those of its batch's recipient alone)."""
        ...
    def standing_orphans(self, originator: Party, since: datetime) -> int:
        """How many of ``originator``'s revocations kept after ``since`` came alone (with no
        consent shown) and name a consent of its that no grant held here names."""
        ...
    def add_notice(self, notice: ClassificationNotice, *, seq: int) -> None: ...
    def notices_for(self, item_id: str) -> list[ClassificationNotice]: ...
    def notices_from(self, sender: Party, since: datetime,
                     originator: Party | None = None) -> int:
        """How many classification notices ``sender`` posted that were applied here after
        ``since`` (the actor and time of the event that applied each); of ``originator``'s
        only, if given."""
        ...
    def add_incident(self, report: IncidentReport, *, seq: int) -> None: ...
    def incidents(self) -> list[IncidentReport]: ...
    def add_receipt(self, record: ReceiptRecord, *, seq: int) -> None: ...
    def add_receipts(self, batch: list[tuple[ReceiptRecord, int]]) -> None: ...
    def receipts_for(self, item_id: str) -> list[ReceiptRecord]: ...
    def receipted(self, item_ids: Collection[str], peer: Party,
                  direction: str) -> set[tuple[str, str]]:
        """(id, version) of the receipts held with ``peer`` in ``direction`` for ``item_ids``."""
        ...
    def consents_of(self, item_ids: Collection[str]) -> dict[str, list[ConsentRecord]]:
        """The consents held for each of ``item_ids`` (absent: none)."""
        ...
    # the exchange's registers
    def add_envelopes_seen(self, rows: Sequence[SeenEnvelope], *, seq: int) -> None: ...
    def add_consent_request(self, request: ConsentRequest, *, seq: int) -> None: ...
    def pending_consent_requests(self, direction: str, *, holder: Party | None = None,
                                 item_id: str | None = None) -> int:
        """How many consent requests of ``direction`` are pending (of ``holder``, about
        ``item_id``, where given)."""
        ...
    def answer_consent_requests(self, item_id: str, recipient: Party | None, status: str,
                                at: datetime, *, request_id: str | None = None) -> None:
        """Mark this node's requests answered: the pending outgoing ones for ``item_id``
        (to ``recipient``), or the one ``request_id`` if it is still pending."""
        ...
    # the exchange and the notices read back what they recorded
    def consent_request_row(self, request_id: str) -> dict[str, Any] | None:
        """The consent request ``request_id`` (its columns by name), or None."""
        ...
    def head_records(self, kinds: Collection[str],
                     limit: int | None = None) -> list[LoggedHead]:
        """The log's events of ``kinds`` (partners' tree heads exchanged or found
        inconsistent), newest first, at most ``limit``."""
        ...


class ShellReads(Repository, Protocol):
    """The repository as the shell reads it: the handlers' port, and the reads the shell
    alone makes (status, the dashboard, the TAXII pages, the warning centre, the courier,
    the scenarios, the operator's commands)."""

    # items and custody
    def newest_item_seq(self) -> int:
        """The seq of the event that stored the newest item (0 when none is held)."""
        ...
    def items_stored_after(self, seq: int, *, originator: Party,
                           stix_type: str) -> list[tuple[str, bytes]]:
        """(id, stored content) of the items of ``stix_type`` from ``originator`` stored by
        events after ``seq``, in the order stored."""
        ...
    def holdings(self) -> list[Holding]: ...
    def readable_versions(self, party: Party, purposes: Collection[str],
                          levels: Mapping[str, Sequence[str]]) -> list[tuple[str, str]]:
        """The versions whose current label's audience (``item_audience``) lets a person of
        ``party`` with need-to-know for ``purposes``, cleared for ``levels`` (scheme ->
        level names), read them, sought without touching the others: candidates only, the
        policy decides on each one's custody label (the dashboard, dashsql29)."""
        ...
    def holdings_of(self, keys: Collection[tuple[str, str]]) -> list[Holding]:
        """The holdings of these versions (those held), in the order stored."""
        ...
    def reclassified_up_to(self, seq: int, *, stix_type: str
                           ) -> list[tuple[str, bytes, list[SecurityLabel]]]:
        """The items of ``stix_type`` stored up to ``seq`` (or by a seq the audit log has
        not given) whose level a classification notice changed: (id, label as stored,
        current labels)."""
        ...
    # registers
    def users(self) -> list[NodeUser]: ...
    def standing_consents(self) -> list[StandingConsentRecord]:
        """Every standing consent and revocation given or obtained here, oldest first."""
        ...
    def bound_versions(self, item_ids: Collection[str]
                       ) -> Iterator[tuple[str, str, bytes, bytes, bytes]]:
        """(id, version, stored object, label, binding) of every version held of
        ``item_ids``: what an envelope of each carries, as stored."""
        ...
    # the exchange's registers
    def seen_nonces(self, nonces: Collection[str]) -> set[str]:
        """Which of ``nonces`` the replay register holds."""
        ...
    def revoked_standing(self, named: Collection[tuple[str, Party]]
                         ) -> set[tuple[str, Party]]:
        """Which of ``named`` (consent id, originator) this node holds a revocation of (as
        signed: one that names another originator's consent revokes nothing)."""
        ...
    def pending_outgoing_request(self, item_id: str, recipient: Party) -> str | None:
        """The id of this node's request for ``item_id`` to ``recipient`` still pending (the
        oldest), or None."""
        ...
    # what the operator, the dashboard, the warning centre and the scenarios read
    def holdings_mark(self) -> tuple[int, ...]:
        """(newest item row, newest custody row, newest receipt row, largest signed tree
        head): changes whenever something the dashboard shows does, read at one end of each
        table's key, whatever it holds."""
        ...
    def contents_stored_after(self, seq: int, *, stix_type: str, limit: int
                              ) -> list[tuple[int, str, bytes, datetime | None, bytes]]:
        """(seq, originator, stored content, when added, stored label) of at most ``limit``
        items of ``stix_type`` stored by events after ``seq``, in the order stored (None: a
        time that reads as none)."""
        ...
    def contents_held(self, stix_type: str) -> list[tuple[str, bytes, datetime]]:
        """(originator, stored content, when added) of every item of ``stix_type`` held, in
        the order stored."""
        ...
    def added_from(self, originator: Party) -> list[tuple[str, datetime]]:
        """(id, when added) of every item version held that ``originator`` originated."""
        ...
    def received_since(self, row: int) -> list[tuple[int, str, str | None, bytes]]:
        """(custody row, item id, provider, original label bytes) of the items received
        from partners recorded after custody row ``row``, in the order recorded."""
        ...
    def incident_records(self, item_ids: Collection[str] | None = None
                         ) -> list[dict[str, Any]]:
        """Every incident report held (``item_ids``: only those about none of the items or
        about one of these, sought by item), with the seq of its event, oldest first."""
        ...
    def consent_request_count(self) -> int:
        """Requests for an originator's consent to a relay, asked here or by this node."""
        ...
    def consent_request_rows(self, item_ids: Collection[str] | None = None
                             ) -> list[dict[str, Any]]:
        """The consent requests register (``item_ids``: only the requests about these, sought
        by item), oldest first (its columns by name)."""
        ...
    def newest_head_after(self, after: int) -> int | None:
        """The seq of the newest record of a partner's head after seq ``after``, or None."""
        ...
    def partner_head_records(self, partner: Party, after: int = 0) -> list[LoggedHead]:
        """Of the log's records of ``partner``'s heads after seq ``after``, newest first: the
        newest exchanged (or posted), every one found inconsistent, and, if none was, the
        newest found consistent; read by index, however long the log."""
        ...
    def partner_heads_by_size(self, partner: Party) -> Iterator[tuple[Any, LoggedHead]]:
        """The log's records of heads naming ``partner``, largest head first and newest
        first among equals, each with the size as the store sorted it (an ``int`` where the
        record's size is a whole number; read in that order by index on SQLite)."""
        ...
    def partner_heads_newest(self, partner: Party, kind: AuditKind,
                             also: str = "%") -> Iterator[LoggedHead]:
        """The log's records of ``kind`` that may name ``partner`` (and whose details match
        the LIKE pattern ``also``), newest first, read lazily by index: a superset the
        caller checks, as a pattern cannot parse JSON."""
        ...
    def newest_events(self, limit: int) -> list[tuple[int, str]]:
        """(seq, kind) of the log's ``limit`` newest events, newest first."""
        ...
    # the outbox, as the operator reads it
    def queued_recipients(self, kind: str, reference: str) -> list[Party]:
        """Whom the notice ``kind``/``reference`` is queued to, in the order queued."""
        ...
    def notice_rows(self, kind: str | None = None,
                    references: Collection[str] | None = None) -> list[dict[str, Any]]:
        """Every notice of the outbox (its columns but ``version``), in the order queued;
        ``kind``: only those of that kind, and ``references`` with it: only those named so
        (sought by kind and reference)."""
        ...
    def notices_in(self, status: str) -> int:
        """How many notices of the outbox are in ``status``."""
        ...
    def held_back(self) -> list[tuple[Party, str, int, int, int]]:
        """(recipient, kind, rows, most tries, most "not now"s in a row) of the pending rows
        of the outbox a partner last answered "not now" at one of its bounds (429)."""
        ...
    def deliveries_by_status(self) -> dict[str, int]:
        """How many deliveries of the outbox are in each status."""
        ...
    def deliveries_refused(self, limit: int) -> list[tuple[str, str, str | None]]:
        """(item id, recipient, why) of the ``limit`` deliveries refused last, newest first."""
        ...
    def delivered(self) -> list[tuple[str, Party, datetime | None]]:
        """(item id, recipient, when receipted) of every row of the outbox delivered."""
        ...
    def deliveries_pending(self, recipient: Party | None = None) -> int:
        """How many deliveries of the outbox (to ``recipient`` if named) are pending: not
        yet receipted or refused."""
        ...
    def delivery_rows(self) -> list[dict[str, Any]]:
        """Every delivery of the outbox (its columns but the notices' own), in the order
        queued."""
        ...
    def stored_since_scan(self) -> bool:
        """Whether an item was stored after the scan's watermark (or none is set yet and
        an item is held): what the crash-recovery scan would queue deliveries for."""
        ...


class LoggedHead(Protocol):
    """A partner's tree head as the log recorded it: ``details`` is the event's JSON (the
    partner, its head, and whether it was consistent)."""

    @property
    def seq(self) -> int: ...

    @property
    def kind(self) -> str: ...

    @property
    def at(self) -> str: ...

    @property
    def details(self) -> str: ...


@dataclass(frozen=True, slots=True)
class SeenEnvelope:
    """An envelope accepted here: its nonce is never accepted again (the replay register)."""

    nonce: str
    sender: Party
    item_id: str
    version: str
    at: datetime

    def row(self) -> dict[str, Any]:
        return {"nonce": self.nonce, "sender": self.sender, "item_id": self.item_id,
                "version": self.version, "at": self.at}


@dataclass(frozen=True, slots=True)
class ConsentRequest:
    """A request for the originator's consent to a relay, asked of this node or by it."""

    request_id: str
    item_id: str
    holder: Party
    recipient: Party
    reason: str
    direction: str
    at: datetime

    def row(self) -> dict[str, Any]:
        return {"id": self.request_id, "item_id": self.item_id, "holder": self.holder,
                "recipient": self.recipient, "reason": self.reason, "status": "pending",
                "direction": self.direction, "at": self.at}


@dataclass(frozen=True, slots=True)
class QueuedDelivery:
    """An outbox row the courier sends: ``row`` is its key in the register."""

    row: int
    item_id: str
    version: str
    recipient: Party
    attempts: int
    not_now: int = 0  # the partner's "not now"s (429) in a row, the last answers it had


@dataclass(frozen=True, slots=True)
class QueuedNotice:
    """A notice row the courier sends."""

    row: int
    kind: str
    recipient: Party
    reference: str
    item_id: str | None
    body: str
    attempts: int
    not_now: int = 0  # as a delivery's

    def register(self) -> dict[str, Any]:
        return {"kind": self.kind, "recipient": self.recipient, "reference": self.reference,
                "item_id": self.item_id, "body": self.body}


class Outbox(Protocol):
    """What the node owes its partners, inside one unit of work: deliveries and notices,
    rows of one outbox sent by one courier, each recorded by the audit event named by
    ``seq``."""

    def queued_deliveries(self, keys: Collection[tuple[str, str, Party]]
                          ) -> set[tuple[str, str, Party]]:
        """Which of the (item, version, recipient) are in the outbox already."""
        ...

    def add_deliveries(self, rows: Sequence[DeliveryDue], *, now: datetime, seq: int) -> None:
        ...

    def queued_notices(self, keys: Collection[tuple[str, str, Party]]
                       ) -> set[tuple[str, str, Party]]:
        """Which of the (kind, reference, recipient) are queued already."""
        ...

    def add_notices(self, rows: Sequence[NoticeDue], *, now: datetime, seq: int) -> None: ...

    def advance_scan(self, added: int) -> int | None:
        """Move the scan watermark past the ``added`` items this commit stored, when nothing
        older is left unscanned (writers commit in seq order); the new mark, or None."""
        ...

    def unscanned(self) -> list[tuple[str, str, int]]:
        """(id, version, seq) of the items stored after the scan watermark, oldest first."""
        ...

    def set_scan_mark(self, seq: int) -> None: ...

    def still_pending(self, rows: Collection[int]) -> set[int]: ...

    def mark_delivered(self, rows: Sequence[tuple[int, int]], at: datetime) -> None:
        """(row, attempts) delivered at ``at``."""
        ...

    def mark_refused(self, rows: Sequence[tuple[int, int, str]]) -> None:
        """(row, attempts, why): refused for good, never retried."""
        ...

    def retry_deliveries(self, rows: Sequence[tuple[int, int, int, datetime, str]]) -> None:
        """(row, attempts, "not now"s in a row, next try, last error) of deliveries still
        pending."""
        ...

    def update_notices(self, rows: Sequence[tuple[int, Mapping[str, Any]]]) -> None:
        """(row, new values) of notices sent, refused or to retry."""
        ...


class AuditLog(Protocol):
    """The append side of the node's Merkle log, inside one unit of work."""

    def append(self, kind: AuditKind, at: datetime, actor: str, *, item_id: str | None = None,
               item_version: str | None = None, content_hash: str | None = None,
               details: Mapping[str, Any] | None = None) -> AuditEvent:
        """Assign the next seq and queue the event; it is written on commit."""
        ...

    @property
    def size(self) -> int:
        """Events in the log, counting those queued in this unit of work."""
        ...

    def head(self) -> TreeHead | None:
        """The latest signed tree head committed."""
        ...


class UnitOfWork(Protocol):
    @property
    def repo(self) -> Repository: ...

    @property
    def audit(self) -> AuditLog: ...

    @property
    def outbox(self) -> Outbox: ...

    @property
    def events(self) -> list[DomainEvent]:
        """Domain events recorded in this unit of work, planned into the outbox on commit."""
        ...

    @property
    def routing(self) -> Routing:
        """Who this node is and whom it delivers to."""
        ...

    @property
    def remembered(self) -> RememberedChecks:
        """The node's signature checks said yes in this process (one keeping per node per
        process, in memory): what it binds as it publishes goes there, and its couriers'
        seals look there before they verify."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Roll back whatever was not committed."""
        ...

    def commit(self) -> None:
        """Write queued events, sign the new tree head, and make it all durable at once."""
        ...

    def rollback(self) -> None: ...


class RecordRow(Protocol):
    """A stored register row as the verifier sees it."""

    @property
    def table(self) -> str: ...

    @property
    def where(self) -> str: ...

    @property
    def seq(self) -> int: ...

    @property
    def digest(self) -> str: ...


class AuditReader(Protocol):
    """Read side of the log for verification and proofs, over one consistent snapshot."""

    def rows(self) -> Iterator[Mapping[str, Any]]:
        """Every stored event in storage order, in ``AuditRecord.to_json`` shape."""
        ...

    def tree_heads(self, limit: int | None = None) -> list[TreeHead]:
        """Signed tree heads kept in the store, oldest first; at most ``limit`` of them,
        evenly spread and always with the first and the latest."""
        ...

    def tree_head(self, size: int) -> TreeHead | None:
        """The signed head of exactly this size, if one was signed."""
        ...

    def latest_head(self) -> TreeHead | None: ...

    def head_sizes(self) -> list[int]: ...

    def external_head(self) -> TreeHead | None:
        """The latest head kept outside the database (survives a database roll-back)."""
        ...

    def accumulator(self) -> MerkleAccumulator | None:
        """The stored frontier the node appends with."""
        ...

    def item_record(self, item_id: str, version: str | None) -> bytes | None:
        """``StoredItem.record()`` bytes of a stored item, or None."""
        ...

    def stored_items(self) -> Iterator[tuple[str, str | None]]: ...

    def item_meta(self) -> Iterator[tuple[str, str, str, str, str, int]]:
        """Each stored item's (id, version, type, originator, time added as
        ``custody.stamp``, seq of the event that stored it); an unreadable time is given as
        text starting ``unreadable``."""
        ...

    def record_rows(self) -> Iterator[RecordRow]:
        """Every register row with the seq of its event and its recomputed digest."""
        ...

    def leaf_hashes(self) -> list[bytes]:
        """Stored leaf hashes in seq order (for proofs)."""
        ...

    def leaf_hashes_from(self, seq: int) -> list[bytes]:
        """Stored leaf hashes from ``seq`` on, in seq order (to extend a proof's levels)."""
        ...

    def events_from(self, seq: int, limit: int,
                    item_id: str | None = None) -> list[dict[str, Any]]:
        """At most ``limit`` events from ``seq`` on, in seq order (naming ``item_id``, or
        the batch that stored it, if given), with their details parsed."""
        ...

    def head_file(self) -> str | None:
        """Where the latest head is kept outside the database (None: nowhere)."""
        ...

    def deliveries(self) -> Iterator[tuple[str, str, str, Any, Any, str]]:
        """Each outbox row: (item id, version, recipient, status, next try, where)."""
        ...

    def notice_states(self) -> Iterator[tuple[str, Any, str]]:
        """Each queued notice: (its register digest, status, where)."""
        ...

    def obtained_receipts(self) -> set[tuple[Any, Any, Any]]:
        """(item id, version, partner) of every receipt a partner signed for this node."""
        ...

    def scan_mark(self) -> Any:
        """The outbox scan watermark (an audit seq), None if no scan ran."""
        ...

    def identity(self) -> list[tuple[Any, Any]]:
        """(party, signing key fingerprint) rows of the node's identity."""
        ...

    def storage_problems(self) -> list[LogProblem]:
        """Values of the wrong kind and schema objects no migration made (after a complete
        pass of :meth:`rows`, from what that pass found in the events)."""
        ...

    def event(self, seq: int) -> Mapping[str, Any] | None: ...

    def item_seq(self, item_id: str, version: str | None) -> tuple[int, str, str] | None:
        """(seq of the event that stored it, id, version) of a held item, the version stored
        last if ``version`` is None; None if no such item is held."""
        ...
