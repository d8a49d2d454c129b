"""What a node holds and the registers the agreement asks it to keep, as plain data.

GSOMIA obliges each side to identify, locate, inventory and control every item, keep a
register of cleared people, act on the originator's classification changes and report loss
or compromise. These records are those registers. Each one has a canonical JSON form and a
``digest`` (hex SHA-256 of its RFC 8785 bytes) that the audit event recording it carries, so
a record changed behind the log's back no longer matches its event.

An item is stored as three RFC 8785 documents, kept byte for byte: the STIX object as bound,
the label the originator bound to it, and the binding. Its audit ``content_hash`` covers all
three (:meth:`StoredItem.content_hash`), so changing any one of them is caught.
"""

from __future__ import annotations

import hashlib
import json
import json.encoder
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gsomia.core.crypto import (
    Binding,
    _encode_plain,
    _encode_plain_bytes,
    b64u,
    canonical,
    fingerprint,
    from_b64u,
    sign,
    signed_message,
    verify_binding_bytes,
)
from gsomia.core.errors import MalformedInput, ProofInvalid
from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import Person
from gsomia.core.types import Party, instant, iso, party, utc_text

__all__ = [
    "CLASSIFICATION_CONTEXT",
    "INCIDENT_KINDS",
    "REGISTER_FIELDS",
    "UNVERSIONED",
    "ClassificationNotice",
    "ConsentRecord",
    "CreatedCustody",
    "CustodyEvent",
    "CustodyRecord",
    "Direction",
    "Holding",
    "IncidentReport",
    "NodeUser",
    "ReceiptRecord",
    "Release",
    "Revocation",
    "StandingConsentRecord",
    "StoredItem",
    "custody_trail",
    "digest",
    "item_version",
    "record_bytes",
    "records_detail",
    "register_digest",
    "sign_classification_notice",
    "stamp",
    "token_hash",
    "verify_binding_bytes",
    "verify_classification_notice",
]

CLASSIFICATION_CONTEXT = b"gsomia/classification-notice/v1"
UNVERSIONED = "unversioned"
"""Version of STIX objects that have neither ``modified`` nor ``created`` (cyber observables)."""

INCIDENT_KINDS = ("loss", "compromise", "possible-compromise", "investigation-result")
CustodyEvent = Literal["created", "received", "remarked"]
Direction = Literal["given", "obtained"]


@lru_cache(maxsize=256)  # the records of a batch share their instant: it is written once
def stamp(at: datetime) -> str:
    """An instant to the microsecond (``2026-01-01T00:00:00.000000Z``).

    Record digests use this rather than ``iso`` (milliseconds), so that no stored digit of a
    timestamp can change without changing the digest.
    """
    return utc_text(at, 6)


# RFC 8785 for the records and labels built here: string keys (all ASCII), strings, lists,
# None and no numbers, for which sorted-key compact JSON is exactly RFC 8785 (UTF-16 and
# code-point key order agree on ASCII). ``crypto.canonical`` first walks the whole value to
# prove that, which for these fixed shapes is most of its cost; the tests check both agree.
# The same settings as ``crypto._encode_plain`` (sorted keys, compact, no NaN, anything else
# refused), whose C encoder is built once rather than by every JSONEncoder.encode call.
_encode_records = _encode_plain


def record_bytes(record: Mapping[str, Any]) -> bytes:
    """RFC 8785 bytes of a label or register record (same as ``crypto.canonical``)."""
    try:
        return _encode_records(record).encode("utf-8")
    except (UnicodeEncodeError, TypeError, ValueError):
        return canonical(record, where="record")  # raises MalformedInput, naming the issue


def digest(record: Mapping[str, Any]) -> str:
    """Hex SHA-256 of a record's RFC 8785 bytes: what its audit event carries."""
    return hashlib.sha256(record_bytes(record)).hexdigest()


def records_detail(**tables: Iterable[str]) -> dict[str, list[str]]:
    """The ``records`` member of an event's details: table name -> digests it records."""
    return {name: list(digests) for name, digests in sorted(tables.items()) if digests}


def item_version(obj: Mapping[str, Any]) -> str:
    """The version of a STIX object: ``modified``, else ``created``, else :data:`UNVERSIONED`."""
    for key in ("modified", "created"):
        value = obj.get(key)
        if isinstance(value, str) and value:
            return value
    return UNVERSIONED


def _label(data: bytes, where: str) -> SecurityLabel:
    return SecurityLabel.from_stored(json.loads(data), where=where)


@dataclass(frozen=True, slots=True)
class StoredItem:
    """One version of one item as the node stores it (immutable once written).

    ``content``, ``label`` and ``binding`` are RFC 8785 bytes: of the STIX object as bound
    (carrying its label's marking reference), of the originator's label, and of the binding.
    """

    item_id: str
    version: str
    stix_type: str
    originator: Party
    content: bytes
    label: bytes
    binding: bytes
    added_at: datetime

    @classmethod
    def of(cls, obj: Mapping[str, Any], label: SecurityLabel, binding: Binding,
           added_at: datetime) -> StoredItem:
        item_id, stix_type = obj.get("id"), obj.get("type")
        if not isinstance(item_id, str) or not item_id:
            raise MalformedInput("the object has no id", where="object.id",
                                 expected="a STIX identifier such as indicator--<uuid>")
        if not isinstance(stix_type, str) or not stix_type:
            raise MalformedInput("the object has no type", where="object.type",
                                 expected="a STIX object type")
        return cls(item_id, item_version(obj), stix_type, label.originator,
                   canonical(obj, where="object"), record_bytes(label.to_json()),
                   record_bytes(binding.to_json()), instant(added_at))

    @classmethod
    def from_canonical(cls, obj: Mapping[str, Any], content: bytes, label: SecurityLabel,
                       label_bytes: bytes, binding: Binding, added_at: datetime) -> StoredItem:
        """Like :meth:`of`, with the object and label already in RFC 8785 bytes."""
        item_id, stix_type = obj.get("id"), obj.get("type")
        if not isinstance(item_id, str) or not item_id or not isinstance(stix_type, str):
            raise MalformedInput("the object has no id or type", where="object",
                                 expected="a STIX object")
        # The binding's members are all plain text: its RFC 8785 bytes through orjson.
        return cls(item_id, item_version(obj), stix_type, label.originator, content,
                   label_bytes, _encode_plain_bytes(binding.to_json()), instant(added_at))

    def object(self) -> dict[str, Any]:
        """The STIX object as bound."""
        out: dict[str, Any] = json.loads(self.content)
        return out

    def security_label(self) -> SecurityLabel:
        """The label the originator bound."""
        return _label(self.label, f"item {self.item_id} label")

    def bound(self) -> Binding:
        return Binding.from_json(self.binding)

    def record(self) -> bytes:
        """RFC 8785 bytes of ``{"binding", "label", "object"}``: what the audit log fixes.

        Assembled from the stored parts (each already canonical, keys in RFC 8785 order), so
        it equals ``canonical`` of the parsed mapping without parsing anything.
        """
        return (b'{"binding":' + self.binding + b',"label":' + self.label
                + b',"object":' + self.content + b"}")

    def content_hash(self) -> str:
        """Hex SHA-256 of :meth:`record` (``audit.content_hash`` of the same bytes)."""
        return hashlib.sha256(self.record()).hexdigest()


@dataclass(frozen=True, slots=True)
class CustodyRecord:
    """One step in the custody of one item version at this node (append-only history).

    ``event``: ``created`` here, ``received`` from ``provider`` under ``agreement``, or
    ``remarked`` after a classification change. ``original_label`` is the label the
    originator bound; ``national_label`` the label as held here (Art. 4 re-marking: the
    holder's scheme and equivalent level; the originator's own items hold it unchanged).
    """

    item_id: str
    version: str
    event: CustodyEvent
    holder: Party
    original_label: SecurityLabel
    national_label: SecurityLabel
    at: datetime
    provider: Party | None = None
    agreement: str | None = None
    envelope_digest: bytes | None = None
    note: str = ""
    # RFC 8785 bytes of (original_label, national_label), made on first use: the digest and
    # the store both need them, and a label's JSON (with its timestamp) is costly to redo.
    _labels: tuple[bytes, bytes] | None = field(default=None, init=False, repr=False,
                                                compare=False)

    def knowing(self, original: bytes) -> CustodyRecord:
        """This record, told the RFC 8785 bytes of its original label (already at hand when
        an item is stored), so they are not made again."""
        # One label object for both (an item created here): told so without comparing.
        national = original if self.national_label is self.original_label \
            or self.national_label == self.original_label \
            else record_bytes(self.national_label.to_json())
        object.__setattr__(self, "_labels", (original, national))
        return self

    def label_bytes(self) -> tuple[bytes, bytes]:
        """RFC 8785 bytes of the original and the national label."""
        if self._labels is None:
            original = record_bytes(self.original_label.to_json())
            national = original if self.national_label == self.original_label \
                else record_bytes(self.national_label.to_json())
            object.__setattr__(self, "_labels", (original, national))
        assert self._labels is not None
        return self._labels

    def canonical(self) -> bytes:
        """RFC 8785 bytes of :meth:`to_json`, assembled around the label bytes."""
        original, national = self.label_bytes()
        return _custody_bytes(
            _custody_frame(self.agreement, self.at, self.envelope_digest, self.event,
                           self.holder, national, self.note, original, self.provider),
            self.item_id, self.version)

    def to_json(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id, "version": self.version, "event": self.event,
            "holder": self.holder, "provider": self.provider, "agreement": self.agreement,
            "original_label": self.original_label.to_json(),
            "national_label": self.national_label.to_json(),
            "at": stamp(self.at),
            "envelope_digest": None if self.envelope_digest is None
            else b64u(self.envelope_digest),
            "note": self.note,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CustodyRecord:
        event = data["event"]
        if event not in ("created", "received", "remarked"):
            raise MalformedInput(f"{event!r} is not a custody event", where="custody.event")
        env = data.get("envelope_digest")
        return cls(
            data["item_id"], data["version"], event, party(data["holder"]),
            SecurityLabel.from_stored(data["original_label"], where="custody.original_label"),
            SecurityLabel.from_stored(data["national_label"], where="custody.national_label"),
            instant(data["at"]), data.get("provider"), data.get("agreement"),
            None if env is None else from_b64u(env, where="custody.envelope_digest"),
            data.get("note", ""),
        )

    def digest(self) -> str:
        return hashlib.sha256(self.canonical()).hexdigest()


@dataclass(frozen=True, slots=True)
class CreatedCustody:
    """The ``created`` custody records of a batch of items bound here by ``holder`` at
    ``at``: for each item its id, version, label and the label's RFC 8785 bytes. Each is the
    record ``CustodyRecord(id, version, "created", holder, label, label, at,
    agreement=label.policy)``, without an object made per record: in a TAXII batch, making,
    hashing and storing those a hundred times cost a tenth of an object's CPU."""

    holder: Party
    at: datetime
    items: Sequence[tuple[str, str, SecurityLabel, bytes]]

    def records(self) -> list[CustodyRecord]:
        return [CustodyRecord(item_id, version, "created", self.holder, label, label, self.at,
                              agreement=label.policy).knowing(label_bytes)
                for item_id, version, label, label_bytes in self.items]

    def digests(self) -> list[str]:
        """:meth:`CustodyRecord.digest` of each record, in order: the bytes around an item's
        id and version are the same for every item of a label, and made once for it."""
        frames: dict[bytes, tuple[bytes, bytes]] = {}
        out = []
        sha, layout = hashlib.sha256, _custody_bytes
        holder, at = self.holder, self.at
        last, frame = None, (b"", b"")
        for item_id, version, label, label_bytes in self.items:
            if label_bytes is not last:  # a batch's items mostly share one label's bytes
                last, found = label_bytes, frames.get(label_bytes)
                if found is None:
                    # The record's fixed values: no envelope, no provider, an empty note.
                    found = frames[label_bytes] = _custody_frame(
                        label.policy, at, None, "created", holder, label_bytes, "",
                        label_bytes, None)
                frame = found
            out.append(sha(layout(frame, item_id, version)).hexdigest())
        return out


# A custody record's RFC 8785 bytes are laid out here alone, by both CustodyRecord.canonical
# and CreatedCustody.digests: two layouts would drift apart unseen, and a record written by
# one would no longer verify by the other. The frame (all but the item id and version) is
# shared by the records of a batch with one label; the members are in RFC 8785 order.
def _custody_frame(agreement: str | None, at: datetime, envelope_digest: bytes | None,
                   event: str, holder: str, national: bytes, note: str, original: bytes,
                   provider: str | None) -> tuple[bytes, bytes]:
    """The bytes before a custody record's item id, and between its item id and version
    (the label bytes already RFC 8785)."""
    return (_record_head(agreement, at, envelope_digest, event, holder),
            b"".join((b',"national_label":', national, b',"note":', _j(note),
                      b',"original_label":', original, b',"provider":', _j(provider),
                      b',"version":')))


def _custody_bytes(frame: tuple[bytes, bytes], item_id: str, version: str) -> bytes:
    """A custody record's RFC 8785 bytes: its :func:`_custody_frame` around its id and
    version."""
    return b"".join((frame[0], _j(item_id), frame[1], _j(version), b"}"))


@lru_cache(maxsize=256)
def _record_head(agreement: str | None, at: datetime, envelope_digest: bytes | None,
                 event: str, holder: str) -> bytes:
    """A custody record's canonical bytes up to its item id: the records of one batch share
    them (same agreement, instant, envelope, event and holder), so they are made once."""
    env = None if envelope_digest is None else b64u(envelope_digest)
    return b"".join((b'{"agreement":', _j(agreement), b',"at":', _j(stamp(at)),
                     b',"envelope_digest":', _j(env), b',"event":', _j(event),
                     b',"holder":', _j(holder), b',"item_id":'))


_encode_text = json.encoder.encode_basestring  # the C escaper RFC 8785 strings agree with


def _j(value: str | None) -> bytes:
    return b"null" if value is None else _encode_text(value).encode("utf-8")


@dataclass(frozen=True, slots=True)
class Holding:
    """An item version the node holds, with its custody history (oldest first)."""

    item: StoredItem
    custody: tuple[CustodyRecord, ...]

    @property
    def current(self) -> CustodyRecord:
        return self.custody[-1]


def token_hash(token: str) -> bytes:
    """SHA-256 of a user token under its own context.

    Tokens are 32 random bytes, so a fast hash suffices (no guessing to slow down) and keeps
    authenticating each API request cheap.
    """
    return hashlib.sha256(b"gsomia/user-token/v1\x00" + token.encode("utf-8")).digest()


@dataclass(frozen=True, slots=True)
class NodeUser:
    """A person in the node's register of cleared people (Art. 7: clearance and need-to-know)."""

    name: str
    party: Party
    clearance: str
    need_to_know: frozenset[str]
    token_hash: bytes = field(repr=False)
    created_at: datetime
    # What the person may do at the dashboard's desk (gsomia.core.roles); reading follows
    # Art. 7 whatever the role.
    role: str = "reader"

    def person(self) -> Person:
        return Person(self.name, self.party, self.clearance, self.need_to_know)

    def to_json(self) -> dict[str, Any]:
        """The register entry; the token hash is included (it is what the digest fixes).

        A reader's entry names no role, so the digests of users registered before roles
        existed (all readers) still match what the log recorded; any other role is fixed
        by the digest, so a role raised behind the log's back is caught."""
        out = {"name": self.name, "party": self.party, "clearance": self.clearance,
               "need_to_know": sorted(self.need_to_know),
               "token_hash": self.token_hash.hex(), "created_at": stamp(self.created_at)}
        if self.role != "reader":
            out["role"] = self.role
        return out

    def public_json(self) -> dict[str, Any]:
        """What listings show: no token material."""
        out = self.to_json()
        del out["token_hash"]
        out["role"] = self.role
        return out

    def digest(self) -> str:
        return digest(self.to_json())


@dataclass(frozen=True, slots=True)
class Revocation:
    """A user's token withdrawn by an operator: the register keeps who, which token (its
    hash) and when; a token that is revoked is refused everywhere from then on."""

    name: str
    token_hash: bytes = field(repr=False)
    by: str
    at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "token_hash": self.token_hash.hex(), "by": self.by,
                "at": stamp(self.at)}

    def digest(self) -> str:
        return digest(self.to_json())


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """An originator's signed consent (``crypto.Consent`` JSON), given by or obtained here."""

    item_id: str
    originator: Party
    recipient: Party
    direction: Direction
    document: Mapping[str, Any]
    at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "originator": self.originator,
                "recipient": self.recipient, "direction": self.direction,
                "document": dict(self.document), "at": stamp(self.at)}

    def digest(self) -> str:
        return digest(self.to_json())


@dataclass(frozen=True, slots=True)
class StandingConsentRecord:
    """A standing consent (``kind`` "grant", ``crypto.StandingConsent`` JSON) or its
    revocation (``kind`` "revoke", ``crypto.StandingRevocation`` JSON), given by or obtained
    here. Rows are only added: a revocation is a row of its own."""

    consent_id: str
    originator: Party
    recipient: Party | None
    direction: Direction
    kind: Literal["grant", "revoke"]
    document: Mapping[str, Any]
    at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"consent_id": self.consent_id, "originator": self.originator,
                "recipient": self.recipient, "direction": self.direction, "kind": self.kind,
                "document": dict(self.document), "at": stamp(self.at)}

    def digest(self) -> str:
        return digest(self.to_json())

    @property
    def ends(self) -> datetime | None:
        """When a grant's validity ends, as its signed document says: kept beside the row
        (indexed) so what is in force is read without the whole history. None for a
        revocation, and for a grant whose end does not read (taken as in force by the
        bound, which must not under-count; left out by the policy, which reads the
        document itself)."""
        if self.kind != "grant":
            return None
        try:
            return instant(self.document["not_after"], where="not_after")
        except (KeyError, TypeError, MalformedInput):
            return None


@dataclass(frozen=True, slots=True)
class ReceiptRecord:
    """A signed receipt (``crypto.Receipt`` JSON) this node gave or obtained for an item."""

    item_id: str
    version: str
    peer: Party
    direction: Direction
    document: Mapping[str, Any]
    at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "version": self.version, "peer": self.peer,
                "direction": self.direction, "document": dict(self.document),
                "at": stamp(self.at)}

    def digest(self) -> str:
        return digest(self.to_json())


@dataclass(frozen=True, slots=True)
class Release:
    """An item version the release policy let this node pass to a partner: queued in the
    commit that decided it, then ``pending``, ``delivered`` (the partner's signed receipt is
    in the receipts register) or ``refused``."""

    recipient: Party
    status: str
    queued_at: datetime
    delivered_at: datetime | None = None


def custody_trail(holding: Holding, releases: Iterable[Release],
                  receipts: Iterable[ReceiptRecord]) -> list[dict[str, Any]]:
    """The custody of one item version at this node, oldest first: how it came here
    (``created``, ``received``), each re-marking, each release to a partner and each signed
    receipt, obtained from a recipient or given to the provider."""
    holder = holding.item.originator if not holding.custody else holding.custody[0].holder
    steps: list[tuple[datetime, int, dict[str, Any]]] = [
        (c.at, 0, {"event": c.event, "holder": c.holder, "provider": c.provider,
                   "agreement": c.agreement, "at": c.at.isoformat(),
                   "national_marking": c.national_label.national_marking(), "note": c.note})
        for c in holding.custody]
    steps += [(r.queued_at, 1, {"event": "released", "holder": holder,
                                "recipient": r.recipient, "at": r.queued_at.isoformat(),
                                "delivery": r.status,
                                "delivered_at": None if r.delivered_at is None
                                else r.delivered_at.isoformat()})
              for r in releases]
    steps += [(r.at, 2, {"event": "receipt", "holder": holder, "direction": r.direction,
                         ("from" if r.direction == "obtained" else "to"): r.peer,
                         "at": r.at.isoformat(),
                         "received_at": r.document.get("received_at")})
              for r in receipts]
    # Stable: a step recorded in the same instant as another keeps the order above.
    return [step for _, _, step in sorted(steps, key=lambda s: (s[0], s[1]))]


@dataclass(frozen=True, slots=True)
class ClassificationNotice:
    """The originator's written notice that an item's level changed (only it may issue one).

    Levels are in the originator's scheme; each holder re-marks to its own equivalent.
    """

    item_id: str
    originator: Party
    old_level: str
    new_level: str
    issued_at: datetime
    key: str
    signature: bytes

    def body(self) -> dict[str, str]:
        return {"item_id": self.item_id, "originator": self.originator,
                "old_level": self.old_level, "new_level": self.new_level,
                "issued_at": iso(self.issued_at), "key": self.key}

    def to_json(self) -> dict[str, str]:
        return {**self.body(), "signature": b64u(self.signature)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClassificationNotice:
        names = ("item_id", "originator", "old_level", "new_level", "issued_at", "key",
                 "signature")
        if not isinstance(data, Mapping) or set(data) != set(names):
            raise MalformedInput("not a classification notice", where="notice",
                                 expected="members " + ", ".join(names))
        for name in ("item_id", "old_level", "new_level", "key"):
            if not isinstance(data[name], str) or not data[name]:
                raise MalformedInput("must be a non-empty string", where=f"notice.{name}")
        return cls(data["item_id"], party(data["originator"], where="notice.originator"),
                   data["old_level"], data["new_level"],
                   instant(data["issued_at"], where="notice.issued_at"), data["key"],
                   from_b64u(data["signature"], where="notice.signature"))

    def digest(self) -> str:
        return digest({**self.to_json(), "issued_at": stamp(self.issued_at)})


def _notice_message(notice: ClassificationNotice) -> bytes:
    return signed_message(CLASSIFICATION_CONTEXT, canonical(notice.body()))


def sign_classification_notice(*, item_id: str, originator: Party, old_level: str,
                               new_level: str, issued_at: datetime,
                               key: Ed25519PrivateKey) -> ClassificationNotice:
    """Sign a classification change with the originator node's Ed25519 key."""
    at = instant(issued_at)
    # Milliseconds are what iso() renders, so a parsed copy equals the signed original.
    unsigned = ClassificationNotice(item_id, party(originator), old_level, new_level,
                                    at.replace(microsecond=at.microsecond // 1000 * 1000),
                                    fingerprint(key), b"")
    return replace(unsigned, signature=sign(key, _notice_message(unsigned)))


def verify_classification_notice(notice: ClassificationNotice,
                                 originator_public: Ed25519PublicKey) -> None:
    """Check the originator signed ``notice``; raise :class:`ProofInvalid` if not."""
    if notice.key != fingerprint(originator_public):
        raise ProofInvalid(f"classification notice names key {notice.key[:16]}…, not the "
                           f"key of originator {notice.originator}")
    try:
        originator_public.verify(notice.signature, _notice_message(notice))
    except InvalidSignature:
        raise ProofInvalid("classification notice signature does not verify") from None


@dataclass(frozen=True, slots=True)
class IncidentReport:
    """A report of loss, compromise or possible compromise (Art. 17), or its investigation.

    ``notify`` is the party that must be told: the originator or the provider of the item.
    """

    reference: str
    kind: str
    item_id: str | None
    description: str
    reported_by: str
    notify: Party | None
    at: datetime

    def __post_init__(self) -> None:
        if self.kind not in INCIDENT_KINDS:
            raise MalformedInput(f"{self.kind!r} is not an incident kind", where="incident.kind",
                                 expected="one of " + ", ".join(INCIDENT_KINDS))
        if not self.description.strip():
            raise MalformedInput("an incident report needs a description",
                                 where="incident.description")

    def to_json(self) -> dict[str, Any]:
        return {"reference": self.reference, "kind": self.kind, "item_id": self.item_id,
                "description": self.description, "reported_by": self.reported_by,
                "notify": self.notify, "at": stamp(self.at)}

    def digest(self) -> str:
        return digest(self.to_json())


# The exchange's registers: each row names the event whose ``records`` carry its digest,
# over the columns that never change once written. Their changing columns (a delivery's
# status, attempts, next try) are checked against the log by ``audit verify`` instead: a
# delivery marked delivered needs the partner's receipt, one marked refused a logged
# refusal.
REGISTER_FIELDS: dict[str, tuple[str, ...]] = {
    "envelopes_seen": ("nonce", "sender", "item_id", "version", "at"),
    "outbox": ("item_id", "version", "recipient"),
    "notices": ("kind", "recipient", "reference", "item_id", "body"),
    "consent_requests": ("id", "item_id", "holder", "recipient", "reason", "direction", "at"),
}


def register_digest(table: str, values: Mapping[str, Any]) -> str:
    """The digest a register row's event records (``REGISTER_FIELDS`` of ``table``)."""
    record: dict[str, Any] = {"register": table}
    for name in REGISTER_FIELDS[table]:
        value = values[name]
        record[name] = stamp(value) if isinstance(value, datetime) else value
    return digest(record)
