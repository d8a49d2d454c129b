"""The narrow seam between the TAXII API and the node's store.

The API never touches tables: it asks an :class:`ObjectStore` for pages of stored versions
in the keyset order (``date_added``, ``key``) restricted to the *label classes* the caller may
see, and hands it checked submissions to bind, store and audit. Access is decided once per
label class (a node holds millions of items but a handful of distinct labels), by
``gsomia.core.policy.decide_access`` in :mod:`gsomia.service.taxii`, never by the store.

Implementations: ``gsomia.shell.taxii_store.SqlObjectStore`` over the node's database, and a
list-backed one in the unit tests that follows :func:`gsomia.core.taxii.select_rows`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from gsomia.core.audit import TreeHead
from gsomia.core.crypto import Consent, Envelope, Receipt
from gsomia.core.errors import AuditUnavailable, MalformedInput, PeerUnavailable
from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import Person
from gsomia.core.taxii import Filters, Position, timestamp
from gsomia.core.types import Party

__all__ = [
    "AccessRecord",
    "AuditUnavailable",
    "ObjectStore",
    "Outcome",
    "Page",
    "PeerInbox",
    "PeerUnavailable",
    "PostStatus",
    "Query",
    "RefusedPost",
    "StoredVersion",
    "Submission",
]


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """One stored version of one STIX object, as a page serves it.

    ``version`` is the object's own version text (``modified``/``created``, or
    ``unversioned``); ``content`` the object's JSON bytes (None when the query asked only
    for metadata: manifest, versions); ``label_key`` names its label class.
    """

    id: str
    version: str
    date_added: datetime
    key: str
    label_key: str
    content: bytes | None = None

    @property
    def position(self) -> Position:
        return Position(self.date_added, self.key)

    @property
    def version_at(self) -> datetime:
        """The version as an instant (parsed on demand: object pages never need it);
        an unversioned object's version is its date_added (TAXII 2.1 §3.4.3)."""
        try:
            return timestamp(self.version, where="version")
        except MalformedInput:
            return self.date_added


@dataclass(frozen=True, slots=True)
class Page:
    rows: Sequence[StoredVersion]
    more: bool


@dataclass(frozen=True, slots=True)
class Query:
    """One page: ``filters`` (TAXII semantics, see ``core.taxii.select_rows``), restricted to
    versions whose label class is in ``visible``, strictly after ``after``; ``object_id`` for
    the object and versions endpoints; ``with_content`` False for metadata-only pages."""

    filters: Filters
    visible: frozenset[str]
    after: Position | None
    limit: int
    object_id: str | None = None
    with_content: bool = True


@dataclass(frozen=True, slots=True)
class Submission:
    """A STIX object a person publishes through TAXII, with the label it is marked with.

    Already checked by the service: a well-formed STIX 2.1 object, a label this node
    originates, and a publisher the access rule lets read it.
    """

    obj: Mapping[str, Any]
    label: SecurityLabel


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one submitted object (a TAXII status success or failure)."""

    id: str
    version: str
    ok: bool
    message: str = ""

    def to_json(self) -> dict[str, str]:
        out = {"id": self.id, "version": self.version}
        if self.message:
            out["message"] = self.message
        return out


@dataclass(frozen=True, slots=True)
class AccessRecord:
    """One person's read through the API, for the audit log (Art. 7: every access, granted
    or denied). ``granted``: (id, version) served; ``denied``: (id, reasons) of an item the
    person asked for by id and may not see."""

    person: Person
    endpoint: str
    granted: Sequence[tuple[str, str]]
    denied: Sequence[tuple[str, Sequence[str]]]
    at: datetime
    explain: Callable[[], Sequence[str]] | None = None
    """For a miss: works out the reasons of the refusal when the event is written, off the
    request path (they depend on whether the item is held and how it is labelled)."""


@dataclass(frozen=True, slots=True)
class PostStatus:
    """The status of a post, to be saved with the objects it reports on: ``make`` turns the
    outcomes :meth:`ObjectStore.add_objects` returns into its body."""

    status_id: str
    owner: str
    make: Callable[[Sequence[Outcome]], Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class RefusedPost:
    """A person's TAXII post refused, whole or in part, for their rights (a collection or a
    label they may not write to, a kind of object only the node makes), as the audit log
    keeps it. ``reasons`` are the access rule's own, which the poster is not told;
    ``item_ids`` the first few refused of the ``count``."""

    person: str
    collection: str
    item_ids: Sequence[str]
    count: int
    reasons: Sequence[str]
    at: datetime


class ObjectStore(Protocol):
    """What the TAXII API needs from the node's store. Every method is one transaction."""

    def label_classes(self) -> Mapping[str, SecurityLabel]:
        """Every label class held, by key (stable across processes over one database)."""
        ...

    def page(self, query: Query) -> Page:
        """One keyset page, in (date_added, key) order, with ``more`` if rows remain."""
        ...

    def page_by(self, query_of: Callable[[Mapping[str, SecurityLabel]], Query]) -> Page:
        """:meth:`page` of the query that ``query_of`` makes of the label classes held
        (:meth:`label_classes`), both read in one transaction."""
        ...

    def labels_of(self, object_id: str) -> Sequence[SecurityLabel]:
        """Labels of every stored version of ``object_id`` (empty if none is held): lets a
        refused read by id be audited with its reasons."""
        ...

    def add_objects(self, submissions: Sequence[Submission], publisher: Person,
                    now: datetime, *, status: PostStatus | None = None,
                    kept_as_is: Callable[[bytes], str | None] | None = None
                    ) -> Sequence[Outcome]:
        """Bind each object's label with the node's key, store and audit, in one commit;
        an (id, version) already held is reported, not stored twice. ``status``: the post's
        status, made once from every outcome and saved (as :meth:`save_status`) in the
        commit that stores the objects, or on its own when none is made; a status is never
        saved for objects not committed. ``kept_as_is``: given the stored content of a held
        item's current version, why no new version may replace it (a failure with that
        reason), or None; asked in the commit's transaction, of items ``publisher`` may
        otherwise add to."""
        ...

    def record_access(self, record: AccessRecord) -> None:
        """Append the access events to the audit log, durably, before anything is served."""
        ...

    def record_access_now(self, record: AccessRecord, *, alone: bool) -> bool:
        """:meth:`record_access` without waiting for another reader's commit (``alone``:
        no other reader could share this one); False, nothing recorded, if it would."""
        ...

    def record_miss(self, record: AccessRecord) -> None:
        """Queue the event of a read by id answered 404, absent and hidden alike: written off
        the request path (durable moments later, and at close), so that both answers do the
        same work and take the same time. A log that cannot be written refuses every read."""
        ...

    def record_refused(self, refused: RefusedPost) -> None:
        """Put a person's refused post on record, bounded as partners' refusals are: one
        event each up to a bound per person and window, the rest counted and written as one
        summary. Never raises: a refusal it cannot write stays counted for the next summary
        (the poster's answer does not depend on it)."""
        ...

    def save_status(self, status_id: str, owner: str, body: Mapping[str, Any],
                    now: datetime) -> None: ...

    def status(self, status_id: str) -> tuple[str, Mapping[str, Any]] | None:
        """(owner, status body) of an earlier POST, from any API process."""
        ...

    def person_by_token(self, token_hash: bytes) -> tuple[str, Person] | None:
        """(user name, person) of the node user whose token hashes to ``token_hash``."""
        ...


class PeerInbox(Protocol):
    """What partner nodes hand this node over the peer API (``/peer/v1/``).

    The API has already checked the JSON shape (``gsomia.core.crypto`` types) and that the
    document's sender is the party of the TLS client certificate; everything else (keys,
    replay, release policy, storage, audit) is the inbox's.
    """

    def deliver(self, envelope: Envelope, sender: Party, now: datetime) -> Receipt:
        """Verify, open, check, store and audit one envelope; the signed receipt."""
        ...

    def receipt(self, receipt: Receipt, sender: Party, now: datetime) -> None: ...

    def consent_request(self, item_id: str, requester: Party, recipient: Party, reason: str,
                        now: datetime, request: object = None) -> Mapping[str, Any]: ...

    def consent_granted(self, consent: Consent, sender: Party, now: datetime) -> None: ...

    def consent_refused(self, item_id: str, sender: Party, reason: str,
                        now: datetime) -> None: ...

    def incident(self, kind: str, item_id: str, description: str, sender: Party,
                 now: datetime) -> None: ...

    def tree_head(self) -> TreeHead: ...

    def partner_tree_head(self, head: TreeHead, sender: Party,
                          now: datetime) -> Mapping[str, Any]: ...
