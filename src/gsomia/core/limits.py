"""How much a node takes in, in one place: request bodies, JSON nesting, item size.

Every bound here is checked before the thing it bounds is read, parsed or canonicalised, so
an oversized or deeply nested input costs the node at most the bound, and is answered as bad
input (413, 422, exit 2), never as a crash.

    FORM_BODY     a dashboard form (/login, /logout, /dashboard/replay) and any route that
                  takes no body
    TAXII_BODY    a TAXII POST: the ``max_content_length`` the API root advertises
    PEER_BODY     one POST to the peer API: a batch of envelopes, a notice, a tree head
    MAX_ITEM_BYTES  an item's canonical content: what still fits, sealed, in one PEER_BODY
                  with its label, binding and consents; refused at publish and at ingest,
                  so the sender never holds what no partner takes
    MAX_DEPTH     nesting of one STIX object (an envelope or bundle adds two levels)

Rows a partner makes the node keep, per partner (``PARTNER_ROWS``, each overridable in
``node.toml``'s ``[limits]``): at the bound the next is refused (403, naming the limit),
never stored and never dropped silently. Each counts only what is still in force or
pending, never over the node's life, so a partner's legitimate traffic is never refused
for what it sent long ago.

    standing_consents_per_partner     standing consents a partner granted that are in force
                                      here (neither revoked nor expired)
    standing_revocations_per_partner  a partner's revocations of standing consents not held
                                      here and not shown either, kept within the last
                                      ``revocation_window_hours`` (a relay passes genuine
                                      ones alone to partners that never held the consent:
                                      counted for good they filled the bound, never to
                                      free; a revocation of one held here, or passed on
                                      with the signed consent it revokes, is always kept:
                                      the hub passes that consent along to its recipient)
    incidents_per_partner             incident reports a partner made within the last
                                      ``incident_window_hours`` (any text is a new one)
    consent_requests_per_partner      a partner's consent requests waiting for the operator
    classification_notices_per_partner  classification notices a partner posted that the
                                      node applied within the last ``notice_window_hours``
                                      (each re-marking is a new one, and only the newest
                                      of an item is in force: counting those would bound
                                      nothing a partner makes the node keep)
    incident_window_hours             the window ``incidents_per_partner`` counts in
    notice_window_hours               the window ``classification_notices_per_partner``
                                      counts in
    revocation_window_hours           the window ``standing_revocations_per_partner``
                                      counts in

The sender and the receiver read the same constants: a node never publishes an item that
its partners would refuse for size, and packs batches to stay under ``PEER_BODY``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from itertools import accumulate

from gsomia.core.errors import MalformedInput

__all__ = ["AEAD_TAG", "ENVELOPE_RESERVE", "FORM_BODY", "MAX_DEPTH", "MAX_ITEM_BYTES",
           "PARTNER_ROWS", "PAYLOAD_RESERVE", "PEER_BODY", "TAXII_BODY", "check_depth",
           "check_item_size", "check_text_depth", "depth", "partner_rows", "text_depth"]

FORM_BODY = 8 * 1024
TAXII_BODY = 32 * 1024 * 1024
PEER_BODY = 16 * 1024 * 1024

AEAD_TAG = 16  # AES-128-GCM's tag, added to the sealed payload
# The envelope's header fields, enc, signature and the batch's brackets, as JSON.
ENVELOPE_RESERVE = 8 * 1024
# What travels with the object in the sealed payload: label, binding and the originator's
# consents for a relay.
PAYLOAD_RESERVE = 56 * 1024
# The ciphertext goes as base64url: 4 characters per 3 bytes.
MAX_ITEM_BYTES = (PEER_BODY - ENVELOPE_RESERVE) // 4 * 3 - AEAD_TAG - PAYLOAD_RESERVE

MAX_DEPTH = 64

PARTNER_ROWS: Mapping[str, int] = {
    "standing_consents_per_partner": 1000,
    "standing_revocations_per_partner": 1000,
    "incidents_per_partner": 1000,
    "consent_requests_per_partner": 1000,
    "classification_notices_per_partner": 1000,
    "incident_window_hours": 24,
    "notice_window_hours": 24,
    "revocation_window_hours": 24,
}


def partner_rows(configured: Mapping[str, object] | None = None, *, where: str = "limits"
                 ) -> dict[str, int]:
    """``PARTNER_ROWS`` with what ``configured`` (``node.toml``'s ``[limits]``) overrides;
    MalformedInput for a name it does not know or a bound that is not a positive integer."""
    out = dict(PARTNER_ROWS)
    for name, value in (configured or {}).items():
        if name not in PARTNER_ROWS:
            raise MalformedInput(f"no limit {name!r}", where=where,
                                 expected="one of " + ", ".join(PARTNER_ROWS))
        if type(value) is not int or value < 1:
            raise MalformedInput(f"{value!r} is not a bound", where=f"{where}.{name}",
                                 expected="a positive integer")
        out[name] = value
    return out

# A JSON string (escapes included), removed before brackets are counted; written as an
# unrolled loop so the regular expression engine runs it in one pass without backtracking.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


def text_depth(raw: bytes | str) -> int:
    """How deeply the JSON text ``raw`` nests arrays and objects (0 for a scalar), counted
    without parsing it: a parser that recurses must not be handed more than it can take.

    Brackets inside strings do not count; for text that is not JSON the answer is only an
    upper bound of what a parser would meet before it fails.
    """
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def depth(value: object, limit: int | None = None) -> int:
    """How deeply ``value`` (parsed JSON) nests lists and mappings; walked without recursion.
    With ``limit``, stops as soon as the depth exceeds it."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    push = stack.append
    while stack:
        item, level = stack.pop()
        kind = type(item)
        if kind is dict:
            members: Iterable[object] = item.values()  # type: ignore[attr-defined]
        elif kind is list or kind is tuple or isinstance(item, Mapping | list | tuple):
            members = item.values() if isinstance(item, Mapping) else item  # type: ignore
        else:
            continue
        if level > deepest:
            deepest = level
            if limit is not None and deepest > limit:
                return deepest
        for member in members:
            kind = type(member)
            # Scalars are most members: skip them without a call.
            if kind is not str and kind is not int and kind is not float and \
                    kind is not bool and member is not None:
                push((member, level + 1))
    return deepest


def _too_deep(found: int, limit: int, where: str) -> MalformedInput:
    return MalformedInput(f"nested {found} levels deep" if found <= limit + 1 else
                          f"nested more than {limit + 1} levels deep", where=where,
                          expected=f"arrays and objects nested at most {limit} levels deep")


def check_depth(value: object, *, where: str, limit: int = MAX_DEPTH) -> None:
    """MalformedInput if ``value`` nests deeper than ``limit``."""
    found = depth(value, limit)
    if found > limit:
        raise _too_deep(found, limit, where)


def check_text_depth(raw: bytes | str, *, where: str, limit: int = MAX_DEPTH) -> None:
    """MalformedInput if the JSON text ``raw`` nests deeper than ``limit``: call it before
    handing the text to a parser that recurses (the standard library's ``json``)."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if data.count(b"[") + data.count(b"{") <= limit:
        return  # no deeper than its opening brackets: most documents stop here, at C speed
    found = text_depth(data)
    if found > limit:
        raise _too_deep(found, limit, where)


def check_item_size(content: bytes, *, where: str) -> None:
    """MalformedInput if an item's canonical content is larger than any partner accepts."""
    if len(content) > MAX_ITEM_BYTES:
        raise MalformedInput(
            f"the item is {len(content)} bytes as canonical JSON, more than a partner node "
            f"accepts", where=where,
            expected=f"at most {MAX_ITEM_BYTES} bytes (split it into several objects)")
