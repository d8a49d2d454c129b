"""TAXII 2.1 in pure form: media types, resource shapes, filters and pagination cursors.

The HTTP layer (``gsomia.shell.api``) only translates requests into these values and back.
Nothing here reads a clock or draws randomness: cursors are keyed with a secret the caller
passes in, instants are passed in.

Pagination is *keyset*, not server state: a cursor names the last position served, the pair
(``date_added``, ``key``) in the store's total order, encrypted and authenticated (AES-GCM,
see :func:`encode_cursor`) with the collection, the endpoint, the filters and the caller as
additional data. It is opaque: a reader learns nothing from it, not even how many versions
hidden from them lie between two of their pages. Any API process that holds the node's
cursor secret resumes any other process's page from the database alone; a changed,
truncated or foreign cursor (another node, collection, endpoint, filter set or caller) fails
to open and is refused as malformed input (HTTP 400).

Public API (stable; the API and the store adapters call it):

- media types: :data:`TAXII_MEDIA`, :data:`STIX_MEDIA`, :func:`negotiate`,
  :func:`content_type_of`
- filters: :class:`VersionMatch`, :class:`Filters`, :func:`parse_filters`, :data:`ENDPOINTS`
- cursors: :class:`Position`, :func:`encode_cursor`, :func:`decode_cursor`,
  :func:`filter_digest`
- versions and timestamps: :func:`stix_version`, :func:`timestamp`, :func:`taxii_time`
- shapes: :func:`discovery`, :func:`api_root`, :func:`collection`, :func:`manifest_record`,
  :func:`status`, :func:`error_body`, :func:`envelope_bytes`, :func:`versions_body`
- selection (reference semantics, used by the in-memory store and checked against SQL):
  :class:`Row`, :func:`select_rows`
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import struct
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache, partial
from typing import Any, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gsomia.core.errors import MalformedInput
from gsomia.core.labels import LabelVocabulary, SecurityLabel
from gsomia.core.types import utc_text

__all__ = [
    "CURSOR_CONTEXT",
    "DEFAULT_LIMIT",
    "ENDPOINTS",
    "HOLDINGS",
    "MAX_LIMIT",
    "STIX_MEDIA",
    "TAXII_MEDIA",
    "Endpoint",
    "Filters",
    "Position",
    "Row",
    "TaxiiCollection",
    "VersionMatch",
    "api_root",
    "collection",
    "collection_id",
    "content_type_of",
    "decode_cursor",
    "discovery",
    "encode_cursor",
    "envelope_bytes",
    "error_body",
    "filter_digest",
    "manifest_record",
    "negotiate",
    "parse_collections",
    "parse_filters",
    "select_rows",
    "status",
    "stix_version",
    "taxii_time",
    "timestamp",
    "versions_body",
]

TAXII_MEDIA = "application/taxii+json;version=2.1"
STIX_MEDIA = "application/stix+json;version=2.1"
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
CURSOR_CONTEXT = b"gsomia/taxii-cursor/v2"

Endpoint = Literal["objects", "object", "manifest", "versions"]

# Which query parameters each paged endpoint understands (TAXII 2.1 §5.3-5.7, §3.4 table).
ENDPOINTS: Mapping[str, frozenset[str]] = {
    "objects": frozenset({"added_after", "limit", "next", "match[id]", "match[type]",
                          "match[version]", "match[spec_version]"}),
    "manifest": frozenset({"added_after", "limit", "next", "match[id]", "match[type]",
                           "match[version]", "match[spec_version]"}),
    "object": frozenset({"added_after", "limit", "next", "match[version]",
                         "match[spec_version]"}),
    "versions": frozenset({"added_after", "limit", "next", "match[spec_version]"}),
}


# ---- media types --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Range:
    kind: str
    sub: str
    version: str | None
    q: float


def _ranges(header: str) -> list[_Range]:
    out = []
    for part in header.split(","):
        bits = [b.strip() for b in part.split(";")]
        if not bits[0]:
            continue
        kind, _, sub = bits[0].lower().partition("/")
        version: str | None = None
        q = 1.0
        for param in bits[1:]:
            name, _, value = param.partition("=")
            name, value = name.strip().lower(), value.strip().strip('"')
            if name == "version":
                version = value
            elif name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
                if not 0.0 <= q <= 1.0:
                    q = 0.0
        out.append(_Range(kind, sub or "*", version, q))
    return out


def _matches(accepted: _Range, offered: str) -> bool:
    kind, _, rest = offered.partition("/")
    sub, _, params = rest.partition(";")
    version = params.partition("=")[2] or None
    if accepted.kind == "*":
        return True
    if accepted.kind != kind:
        return False
    if accepted.sub == "*":
        return True
    # TAXII 2.1 §1.6.8: a media type without a version means the latest the server speaks.
    return accepted.sub == sub and (accepted.version is None or accepted.version == version)


@lru_cache(maxsize=64)  # a client sends the same header on every request
def negotiate(accept: str | None, offered: tuple[str, ...]) -> str | None:
    """The first of ``offered`` the ``Accept`` header allows (highest q wins), or None (406).

    No header means anything; ``q=0`` excludes. ``application/json`` is not a TAXII type.
    """
    if accept is None or not accept.strip():
        return offered[0] if offered else None
    best: tuple[float, int] | None = None
    chosen: str | None = None
    ranges = _ranges(accept)
    for index, media in enumerate(offered):
        q = max((r.q for r in ranges if _matches(r, media)), default=0.0)
        if q > 0 and (best is None or (q, -index) > best):
            best, chosen = (q, -index), media
    return chosen


def content_type_of(header: str | None) -> str | None:
    """Which TAXII body type a ``Content-Type`` names (TAXII_MEDIA or STIX_MEDIA), else None."""
    if header is None:
        return None
    ranges = _ranges(header)
    if len(ranges) != 1:
        return None
    r = ranges[0]
    if r.kind != "application" or r.version not in (None, "2.1"):
        return None
    if r.sub == "taxii+json":
        return TAXII_MEDIA
    if r.sub == "stix+json":
        return STIX_MEDIA
    return None


# ---- timestamps and versions ----------------------------------------------------------------

_TIMESTAMP = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")


def timestamp(text: object, *, where: str) -> datetime:
    """Parse an RFC 3339 timestamp (TAXII and STIX allow any sub-second precision)."""
    m = _TIMESTAMP.match(text) if isinstance(text, str) else None
    if m is None:
        raise MalformedInput(f"{text!r} is not a timestamp", where=where,
                             expected="an RFC 3339 timestamp such as 2017-08-29T06:00:00.000Z")
    fraction = (m.group(7) or ".0")[1:7].ljust(6, "0")
    zone = m.group(8)
    try:
        parsed = datetime.fromisoformat(
            f"{m.group(1)}-{m.group(2)}-{m.group(3)}T{m.group(4)}:{m.group(5)}:{m.group(6)}"
            f".{fraction}{'+00:00' if zone == 'Z' else zone}")
    except ValueError:
        raise MalformedInput(f"{text!r} is not a valid date or time", where=where,
                             expected="an RFC 3339 timestamp") from None
    return parsed.astimezone(UTC)


def taxii_time(at: datetime) -> str:
    """A TAXII timestamp to the microsecond, so that ``added_after`` resumes exactly."""
    return utc_text(at, 6)


def stix_version(obj: Mapping[str, Any], date_added: datetime) -> datetime:
    """The version of a STIX object (TAXII 2.1 §3.4.3): ``modified``, else ``created``,
    else (SCOs, markings without a version) the time the server added it."""
    for name in ("modified", "created"):
        if name in obj:
            return timestamp(obj[name], where=name)
    return date_added


# ---- filters --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VersionMatch:
    """``match[version]``: any of last, first, all, or exact versions (to the microsecond)."""

    last: bool = True
    first: bool = False
    all: bool = False
    at: frozenset[datetime] = frozenset()

    def tokens(self) -> list[str]:
        out = ["all"] if self.all else []
        out += ["first"] if self.first else []
        out += ["last"] if self.last else []
        out += sorted(taxii_time(t) for t in self.at)
        return out


@dataclass(frozen=True, slots=True)
class Filters:
    """The parsed query of one paged request. Empty tuples mean "no filter on this"."""

    added_after: datetime | None = None
    limit: int = DEFAULT_LIMIT
    next: str | None = None
    ids: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()
    versions: VersionMatch = field(default_factory=VersionMatch)
    spec_versions: frozenset[str] = frozenset({"2.1"})

    def to_json(self) -> dict[str, Any]:
        """What the cursor binds: every filter but ``limit`` and ``next`` (a client may
        change its page size between pages; the position is the cursor itself)."""
        return {
            "added_after": taxii_time(self.added_after) if self.added_after else None,
            "ids": sorted(self.ids), "types": sorted(self.types),
            "versions": self.versions.tokens(), "spec_versions": sorted(self.spec_versions),
        }


def _tokens(values: Sequence[str], name: str) -> list[str]:
    out: list[str] = []
    for value in values:
        parts = [p.strip() for p in value.split(",")]
        if any(not p for p in parts):
            raise MalformedInput("has an empty value", where=name,
                                 expected="one or more comma-separated values")
        out.extend(parts)
    return out


def parse_filters(params: Mapping[str, Sequence[str]], endpoint: str, *,
                  max_limit: int = MAX_LIMIT) -> Filters:
    """Parse a paged request's query (each name maps to all its values, in order).

    Parameters the endpoint does not define are ignored, as TAXII 2.1 §3.5 lets servers do;
    a defined one with a bad value is MalformedInput naming it.
    """
    known = ENDPOINTS.get(endpoint)
    if known is None:
        raise MalformedInput(f"{endpoint!r} is not a paged TAXII endpoint", where="endpoint")

    def one(name: str) -> str | None:
        values = params.get(name, ()) if name in known else ()
        if len(values) > 1:
            raise MalformedInput("given more than once", where=name, expected="one value")
        return values[0] if values else None

    added_after = one("added_after")
    limit_text = one("limit")
    limit = DEFAULT_LIMIT
    if limit_text is not None:
        if not re.fullmatch(r"[0-9]{1,9}", limit_text) or int(limit_text) < 1:
            raise MalformedInput(f"{limit_text!r} is not a page size", where="limit",
                                 expected="a positive integer")
        limit = int(limit_text)
    next_token = one("next")
    if next_token is not None and not next_token:
        raise MalformedInput("is empty", where="next", expected="the cursor of the last page")

    def many(name: str) -> list[str]:
        return _tokens(params.get(name, ()), name) if name in known else []

    versions = VersionMatch()
    version_tokens = many("match[version]")
    if version_tokens:
        exact = frozenset(timestamp(t, where="match[version]") for t in version_tokens
                          if t not in ("last", "first", "all"))
        versions = VersionMatch(last="last" in version_tokens, first="first" in version_tokens,
                                all="all" in version_tokens, at=exact)
    spec = many("match[spec_version]")
    return Filters(
        added_after=timestamp(added_after, where="added_after") if added_after else None,
        limit=min(limit, max_limit), next=next_token,
        ids=frozenset(many("match[id]")), types=frozenset(many("match[type]")),
        versions=versions, spec_versions=frozenset(spec) if spec else frozenset({"2.1"}),
    )


# ---- cursors --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """A place in the store's total order of versions: (date_added, key), key a tie-break."""

    date_added: datetime
    key: str


def filter_digest(collection: str, scope: str, filters: Filters, caller: str) -> bytes:
    """SHA-256 of what a cursor is valid for: collection, endpoint scope, filters, caller."""
    body = json.dumps([collection, scope, filters.to_json(), caller], sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(body.encode("utf-8")).digest()


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# A cursor is AES-256-GCM over a fixed-size position, with a synthetic nonce (an HMAC of the
# position and the query, as in SIV): equal cursors only for the same place in the same
# query, and nothing to read in them, not even the size of the key. Its additional data is
# the query digest, so a cursor made for another collection, endpoint, filter set or caller
# does not open. The core draws no randomness; a nonce derived from what is encrypted
# repeats only with the whole plaintext, when the ciphertext repeats too.
_KEY_BYTES = 39
_PLAIN = struct.Struct(f">qB{_KEY_BYTES}s")
_NONCE = 12
_TOKEN_CHARS = len(_b64u(bytes(_NONCE + _PLAIN.size + 16)))


@lru_cache(maxsize=16)
def _cursor_keys(secret: bytes) -> tuple[AESGCM, bytes]:
    """The cipher and the nonce key of one node's cursor secret (separate keys from one)."""
    enc = hmac.new(secret, CURSOR_CONTEXT + b"/encrypt", hashlib.sha256).digest()
    iv = hmac.new(secret, CURSOR_CONTEXT + b"/nonce", hashlib.sha256).digest()
    return AESGCM(enc), iv


def _nonce(iv_key: bytes, aad: bytes, plain: bytes) -> bytes:
    return hmac.new(iv_key, aad + plain, hashlib.sha256).digest()[:_NONCE]


def encode_cursor(secret: bytes, digest: bytes, position: Position) -> str:
    """An opaque ``next`` token: base64url(nonce ‖ AES-GCM(position)), of one fixed size."""
    if len(secret) < 16:
        raise MalformedInput("cursor secret is too short", where="cursor secret",
                             expected="at least 16 bytes")
    key = position.key.encode("utf-8")
    if len(key) > _KEY_BYTES:
        raise MalformedInput("position key is too long for a cursor", where="cursor",
                             expected=f"at most {_KEY_BYTES} bytes")
    at = position.date_added.astimezone(UTC)
    micros = (at - datetime(1970, 1, 1, tzinfo=UTC)) // _MICROSECOND
    plain = _PLAIN.pack(micros, len(key), key)
    cipher, iv_key = _cursor_keys(secret)
    aad = CURSOR_CONTEXT + b"\x00" + digest
    nonce = _nonce(iv_key, aad, plain)
    return _b64u(nonce + cipher.encrypt(nonce, plain, aad))


_MICROSECOND = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)
_B64U = re.compile(r"^[A-Za-z0-9_-]+$")


def decode_cursor(secret: bytes, digest: bytes, token: str) -> Position:
    """The position a ``next`` token names, if this node made it for exactly this query."""
    refused = MalformedInput(
        "is not a cursor this node issued for this collection, query and caller",
        where="next", expected="the next value of the previous page, unchanged")
    if len(token) != _TOKEN_CHARS or not _B64U.match(token):
        raise refused
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, binascii.Error):
        raise refused from None
    if _b64u(raw) != token:  # the spare bits of the last character must be zero too
        raise refused
    cipher, iv_key = _cursor_keys(secret)
    aad = CURSOR_CONTEXT + b"\x00" + digest
    nonce = raw[:_NONCE]
    try:
        plain = cipher.decrypt(nonce, raw[_NONCE:], aad)
    except InvalidTag:
        raise refused from None
    if not hmac.compare_digest(nonce, _nonce(iv_key, aad, plain)):
        raise refused
    try:
        micros, size, padded = _PLAIN.unpack(plain)
        if size > _KEY_BYTES or any(padded[size:]):
            raise ValueError("bad cursor body")
        key = padded[:size].decode("utf-8")
        at = datetime(1970, 1, 1, tzinfo=UTC) + micros * _MICROSECOND
    except (ValueError, OverflowError, struct.error):
        # Only this node could have written it; still never a 500.
        raise refused from None
    return Position(at, key)


# ---- reference selection semantics ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """One stored version as selection sees it. ``label_key`` names its label's class."""

    id: str
    type: str
    version: datetime
    date_added: datetime
    key: str
    spec_version: str
    label_key: str

    @property
    def position(self) -> Position:
        return Position(self.date_added, self.key)


def select_rows(rows: Iterable[Row], filters: Filters, visible: frozenset[str], *,
                after: Position | None, limit: int,
                object_id: str | None = None) -> tuple[list[Row], bool]:
    """The reference meaning of a paged query: what SQL adapters must reproduce.

    Only versions whose label class is in ``visible`` exist for the caller: ``first`` and
    ``last`` are taken among those, so a version the caller may not see is never betrayed by
    a gap. Order is (date_added, key); returns (page, more).
    """
    ids = frozenset({object_id}) if object_id is not None else filters.ids
    mine = [r for r in rows if r.label_key in visible
            and (not ids or r.id in ids)
            and (not filters.types or r.type in filters.types)
            and r.spec_version in filters.spec_versions]
    first: dict[str, datetime] = {}
    last: dict[str, datetime] = {}
    for r in mine:
        first[r.id] = min(first.get(r.id, r.version), r.version)
        last[r.id] = max(last.get(r.id, r.version), r.version)
    vm = filters.versions
    chosen = [r for r in mine
              if vm.all or (vm.last and last[r.id] == r.version)
              or (vm.first and first[r.id] == r.version) or r.version in vm.at]
    if filters.added_after is not None:
        chosen = [r for r in chosen if r.date_added > filters.added_after]
    if after is not None:
        chosen = [r for r in chosen if r.position > after]
    chosen.sort(key=lambda r: (r.date_added, r.key))
    return chosen[:limit], len(chosen) > limit


# ---- resource shapes ------------------------------------------------------------------------


def error_body(title: str, http_status: int, description: str = "",
               details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """TAXII 2.1 §3.6.1 error message."""
    out: dict[str, Any] = {"title": title, "http_status": str(http_status)}
    if description:
        out["description"] = description
    if details:
        out["details"] = dict(details)
    return out


def discovery(title: str, description: str, default: str, api_roots: Sequence[str]) -> dict[
        str, Any]:
    return {"title": title, "description": description, "default": default,
            "api_roots": list(api_roots)}


def api_root(title: str, description: str, max_content_length: int) -> dict[str, Any]:
    return {"title": title, "description": description, "versions": [TAXII_MEDIA],
            "max_content_length": max_content_length}


def collection(collection_id: str, title: str, description: str, *, can_read: bool,
               can_write: bool, label: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A collection resource; ``label``: what a labelled collection applies to the plain
    objects posted into it, as the custom property ``x_gsomia_label``."""
    out = {"id": collection_id, "title": title, "description": description,
           "can_read": can_read, "can_write": can_write, "media_types": [STIX_MEDIA]}
    if label is not None:
        out["x_gsomia_label"] = dict(label)
    return out


# ---- collections ----------------------------------------------------------------------------

_COLLECTIONS = uuid.UUID("6f1d0c9e-8f8e-4b0f-9b6c-5c0a1e6f4d21")
HOLDINGS = "holdings"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_COLLECTION_KEYS = {"name": "a short name such as warnings-secret (its id derives from it)",
                    "title": "a title", "description": "a description",
                    "level": "a level of the node's own scheme", "rel_to": "party codes",
                    "purpose": "a purpose", "policy": "an agreement id",
                    "caveats": "caveats", "category": "a kind of information"}


def collection_id(party: str, name: str = HOLDINGS) -> str:
    """The id of a node's collection ``name``: the same for every process of the node."""
    return str(uuid.uuid5(_COLLECTIONS, f"taxii-collection/{party}/{name}"))


@dataclass(frozen=True, slots=True)
class TaxiiCollection:
    """One TAXII collection of a node. ``label`` None: the holdings, every item the node
    holds, where each posted object must reference its own gsomia label. Otherwise the
    items this node originated under ``label``; a plain object posted there gets it."""

    id: str
    title: str
    description: str
    label: SecurityLabel | None = None


def _field_of(at: str, name: str) -> str:
    return f"{at}.{name}"


def parse_collections(entries: Any, *, party: str, vocabulary: LabelVocabulary,
                      where: str) -> tuple[TaxiiCollection, ...]:
    """The labelled collections ``[[taxii.collections]]`` of a ``node.toml`` defines, every
    value checked against the node's agreements; MalformedInput naming the entry and field.
    """
    if not isinstance(entries, list):
        raise MalformedInput("is not a list of tables", where=where,
                             expected="[[taxii.collections]] tables")
    out: list[TaxiiCollection] = []
    names: set[str] = {HOLDINGS}
    for i, entry in enumerate(entries):
        at = f"{where}[{i}]"
        if not isinstance(entry, Mapping):
            raise MalformedInput("is not a table", where=at,
                                 expected="name, level, rel_to, purpose (policy, caveats, "
                                          "category, title, description)")
        unknown = sorted(set(entry) - set(_COLLECTION_KEYS))
        if unknown:
            raise MalformedInput(f"unknown key(s) {', '.join(map(str, unknown))}", where=at,
                                 expected="some of " + ", ".join(_COLLECTION_KEYS))
        for key in ("name", "level", "rel_to", "purpose"):
            if key not in entry:
                raise MalformedInput("missing", where=f"{at}.{key}",
                                     expected=_COLLECTION_KEYS[key])
        for key in ("name", "title", "description", "level", "purpose", "policy", "category"):
            if key in entry and not isinstance(entry[key], str):
                raise MalformedInput("is not a string", where=f"{at}.{key}",
                                     expected=_COLLECTION_KEYS[key])
        name = entry["name"]
        if not _NAME.match(name) or name in names:
            raise MalformedInput(f"{name!r} is {'taken' if name in names else 'not a name'}",
                                 where=f"{at}.name",
                                 expected="a new name of lower-case letters, digits and -, "
                                          f"not {HOLDINGS}")
        names.add(name)
        rel_to, caveats = entry["rel_to"], entry.get("caveats", [])
        for key, value in (("rel_to", rel_to), ("caveats", caveats)):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise MalformedInput("is not a list of strings", where=f"{at}.{key}",
                                     expected='e.g. ["JPN", "KOR"]' if key == "rel_to"
                                     else '["NOFORN"] or none')
        label = vocabulary.check(
            SecurityLabel(party, entry["level"], frozenset(rel_to), entry["purpose"],
                          frozenset(caveats), policy=entry.get("policy"),
                          category=entry.get("category")),
            where=partial(_field_of, at))
        out.append(TaxiiCollection(collection_id(party, name), entry.get("title", name),
                                   entry.get("description", ""), label))
    return tuple(out)


def manifest_record(object_id: str, date_added: datetime, version: str) -> dict[str, Any]:
    """``version``: the object's own ``modified``/``created`` text, as clients compare it."""
    return {"id": object_id, "date_added": taxii_time(date_added), "version": version,
            "media_type": STIX_MEDIA}


def versions_body(versions: Sequence[str], more: bool, next_token: str | None) -> dict[
        str, Any]:
    out: dict[str, Any] = {"more": more, "versions": list(versions)}
    if more and next_token:
        out["next"] = next_token
    return out


def status(status_id: str, request_timestamp: datetime,
           successes: Sequence[Mapping[str, Any]], failures: Sequence[Mapping[str, Any]]
           ) -> dict[str, Any]:
    """A completed status resource (TAXII 2.1 §4.3.1): gsomia stores synchronously."""
    return {"id": status_id, "status": "complete",
            "request_timestamp": taxii_time(request_timestamp),
            "total_count": len(successes) + len(failures),
            "success_count": len(successes), "successes": [dict(s) for s in successes],
            "failure_count": len(failures), "failures": [dict(f) for f in failures],
            "pending_count": 0, "pendings": []}


def envelope_bytes(objects: Sequence[bytes], more: bool, next_token: str | None) -> bytes:
    """The envelope (§3.7) around already-encoded objects: no decode and re-encode per read."""
    head = b'{"more":true,"next":' + json.dumps(next_token).encode() + b"," \
        if more and next_token else b'{"more":' + (b"true" if more else b"false") + b","
    if not objects:
        return head[:-1] + b"}"
    return head + b'"objects":[' + b",".join(objects) + b"]}"
