"""What gsomia signs, binds and encrypts: RFC 8785 bytes, Ed25519, label binding, HPKE envelopes.

Keys are always passed in (``cryptography`` key objects); nothing here reads a file, a clock
or the environment. The only randomness drawn is the HPKE ephemeral key inside :func:`seal`
and the two key-generation helpers.

Every signature covers ``context ‖ 0x00 ‖ message`` with a context string per kind of signed
thing, so a signature made for one purpose (a label binding, an envelope, a receipt, a
consent, a tree head) can never be replayed as another.

JSON forms: signatures, nonces, HPKE ``enc`` and ciphertexts are unpadded base64url; key
fingerprints are lowercase hex (SHA-256 of the raw 32-byte public key).

HPKE is ``cryptography``'s own RFC 9180 implementation (``hazmat.primitives.hpke``, new in
cryptography 47), so no other HPKE package is needed; the tests check it against an RFC 9180
reference that reproduces the RFC's Appendix A.1.1 vector.

Public API (stable; the store, the exchange and the CLI call it):

- bytes and keys: :func:`canonical`, :func:`sha256`, :func:`b64u`, :func:`from_b64u`,
  :func:`raw_public`, :func:`fingerprint`, :func:`ed25519_public_from_raw`,
  :func:`x25519_public_from_raw`, :func:`new_signing_key`, :func:`new_envelope_key`,
  :func:`sign`, :func:`verify`
- STANAG 4778-style binding: :class:`Binding`, :func:`binding_digest`, :func:`bind`,
  :func:`verify_binding`
- HPKE (RFC 9180): :func:`seal`, :func:`open_`
- exchange documents: :class:`Envelope`, :func:`seal_envelope`, :func:`open_envelope`,
  :func:`envelope_digest`, :class:`Receipt`, :func:`make_receipt`, :func:`verify_receipt`,
  :class:`Consent`, :func:`grant_consent`, :func:`verify_consent`
- standing consents: :class:`StandingConsent`, :func:`grant_standing_consent`,
  :func:`verify_standing_consent`, :class:`StandingRevocation`,
  :func:`revoke_standing_consent`, :func:`verify_standing_revocation`
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import orjson
import rfc8785
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gsomia.core.errors import MalformedInput, ProofInvalid
from gsomia.core.limits import MAX_DEPTH, check_text_depth
from gsomia.core.types import Party, instant, iso, party

__all__ = [
    "BINDING_CONTEXT",
    "BINDING_SIGNATURE_FAILS",
    "CONSENT_CONTEXT",
    "ENVELOPE_CONTEXT",
    "HPKE_SUITE_NAME",
    "RECEIPT_CONTEXT",
    "SIGNATURE_ALGORITHM",
    "STANDING_CONSENT_CONTEXT",
    "STANDING_REVOCATION_CONTEXT",
    "Binding",
    "Consent",
    "Envelope",
    "PublicKey",
    "Receipt",
    "SignatureCheck",
    "StandingConsent",
    "StandingRevocation",
    "b64u",
    "bind",
    "binding_check",
    "binding_digest",
    "binding_digest_of",
    "canonical",
    "ed25519_public_from_raw",
    "envelope_check",
    "envelope_digest",
    "envelope_signature_fails",
    "fingerprint",
    "from_b64u",
    "grant_consent",
    "grant_standing_consent",
    "make_receipt",
    "new_envelope_key",
    "new_signing_key",
    "open_",
    "open_checked_envelope",
    "open_envelope",
    "raw_public",
    "receipt_check",
    "receipt_matches",
    "receipt_signature_fails",
    "revoke_standing_consent",
    "seal",
    "seal_envelope",
    "sha256",
    "sign",
    "signed_message",
    "verify",
    "verify_binding",
    "verify_binding_bytes",
    "verify_checks",
    "verify_consent",
    "verify_receipt",
    "verify_standing_consent",
    "verify_standing_revocation",
    "x25519_public_from_raw",
]

SIGNATURE_ALGORITHM = "Ed25519"
BINDING_CONTEXT = b"gsomia/label-binding/v1"
ENVELOPE_CONTEXT = b"gsomia/envelope/v1"
RECEIPT_CONTEXT = b"gsomia/receipt/v1"
CONSENT_CONTEXT = b"gsomia/consent/v1"
STANDING_CONSENT_CONTEXT = b"gsomia/standing-consent/v1"
STANDING_REVOCATION_CONTEXT = b"gsomia/standing-revocation/v1"
HPKE_SUITE_NAME = "DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM"

_HPKE_CONTEXT = b"gsomia/hpke/v1"
_HPKE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_128_GCM)
_ENC_LENGTH = 32  # Nenc of DHKEM(X25519, HKDF-SHA256), RFC 9180 §7.1
_SAFE_INT = 2**53 - 1  # RFC 8785 numbers are IEEE 754 doubles: larger ints lose precision


# ---- canonical bytes ----------------------------------------------------------------------

# json with sorted keys produces exactly the RFC 8785 bytes when every key is ASCII (UTF-16
# and code-point order agree), there are no floats (ES6 number formatting differs) and every
# integer is in the safe range. rfc8785 is pure Python and about 4x slower, and the audit log
# canonicalises a million leaves on `audit verify`, so plain values take this path; the
# property tests check both paths give identical bytes.
_FAST = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":"), check_circular=False
)


def _unsupported(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON")


def _make_c_encoder() -> Callable[[object], str]:
    # JSONEncoder.encode builds a fresh C encoder on every call; building it once saves a
    # third of the time on small objects. Fall back where CPython's _json is missing.
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return _FAST.encode
    chunks = make(None, _unsupported, json.encoder.encode_basestring, None, ":", ",", True,
                  False, False)
    join = "".join
    return lambda value: join(chunks(value, 0))


_encode_plain = _make_c_encoder()
_SORTED = orjson.OPT_SORT_KEYS


def _encode_plain_bytes(value: object) -> bytes:
    # orjson writes a plain value (ASCII keys, sorted; no floats; safe integers; exact
    # dict, list, tuple, str, int, bool, None) as the C encoder does, byte for byte, in a
    # tenth of the time: every envelope, receipt, binding and audit leaf is canonicalised
    # several times on its way. What orjson refuses (a lone surrogate, nesting past its
    # limit) takes the C encoder's path, which raises as before.
    try:
        return orjson.dumps(value, option=_SORTED)
    except orjson.JSONEncodeError:
        return _encode_plain(value).encode("utf-8")


def _plain(value: object) -> bool:
    # Hot path of audit verification: strings, booleans and nulls are checked inline.
    kind = type(value)
    if kind is dict:
        for key, member in value.items():  # type: ignore[attr-defined]
            if type(key) is not str or not key.isascii():
                return False
            t = type(member)
            if not (t is str or t is bool or member is None or _plain(member)):
                return False
        return True
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return -_SAFE_INT <= value <= _SAFE_INT  # type: ignore[operator]
    if kind is list or kind is tuple:
        for member in value:  # type: ignore[attr-defined]
            t = type(member)
            if not (t is str or t is bool or member is None or _plain(member)):
                return False
        return True
    return False


def _float_text(value: float) -> str | None:
    """RFC 8785's text of a finite float whose shortest repr is written without an
    exponent (1e-4 <= |x| < 1e16, or zero), None otherwise. In that range ECMAScript's
    Number::toString gives the same shortest digits, and writes an integral value with no
    ".0"; zero of either sign is "0"."""
    if value == 0:
        return "0"
    text = float.__repr__(value)
    if "e" in text or "n" in text:  # an exponent, or inf/nan (refused on the slow path)
        return None
    return text[:-2] if text.endswith(".0") else text


def _with_floats(value: object) -> object | None:
    """``value`` with each float as an orjson fragment of its RFC 8785 text, for orjson to
    write with sorted keys: the plain path's rules (ASCII keys, safe integers, exact JSON
    types) plus floats :func:`_float_text` writes; None if anything else is met (a sensor
    report's numbers are all such floats; rfc8785, pure Python, took ten times longer)."""
    kind = type(value)
    if kind is float:
        text = _float_text(value)  # type: ignore[arg-type]
        return None if text is None else orjson.Fragment(text)
    if kind is dict:
        out: dict[str, object] = {}
        for key, member in value.items():  # type: ignore[attr-defined]
            if type(key) is not str or not key.isascii():
                return None
            t = type(member)
            if t is str or t is bool or member is None:
                out[key] = member
                continue
            got = _with_floats(member)
            if got is None:
                return None
            out[key] = got
        return out
    if kind is list or kind is tuple:
        items: list[object] = []
        for member in value:  # type: ignore[attr-defined]
            t = type(member)
            if t is str or t is bool or member is None:
                items.append(member)
                continue
            got = _with_floats(member)
            if got is None:
                return None
            items.append(got)
        return items
    if kind is str or kind is bool:
        return value
    if kind is int:
        return value if -_SAFE_INT <= value <= _SAFE_INT else None  # type: ignore[operator]
    return None  # None itself is handled by the callers, with str and bool


def _normalise(value: object, where: str) -> object:
    """Turn mappings and sequences into dicts and lists; refuse what JSON cannot hold."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        if not -_SAFE_INT <= value <= _SAFE_INT:
            raise MalformedInput(
                f"integer {value} is outside the range JSON numbers hold exactly", where=where,
                expected=f"an integer between -{_SAFE_INT} and {_SAFE_INT}",
            )
        return int(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise MalformedInput(f"{value!r} is not a JSON number", where=where,
                                 expected="a finite number")
        return float(value)
    if isinstance(value, Mapping):
        out: dict[str, object] = {}
        for key, member in value.items():
            if not isinstance(key, str):
                raise MalformedInput(f"object key {key!r} is not a string", where=where,
                                     expected="string keys only")
            out[str.__str__(key)] = _normalise(member, f"{where}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [_normalise(member, f"{where}[{i}]") for i, member in enumerate(value)]
    raise MalformedInput(
        f"a {type(value).__name__} cannot be represented in JSON", where=where,
        expected="objects, arrays, strings, finite numbers, true, false or null",
    )


def canonical(obj: object, *, where: str = "value") -> bytes:
    """Return the RFC 8785 (JSON Canonicalization Scheme) bytes of ``obj``.

    Accepts mappings with string keys, lists and tuples, strings, booleans, None, integers
    within ±(2**53 - 1) and finite floats. Anything else (bytes, sets, NaN, a lone surrogate,
    a non-string key, a huge integer) raises :class:`MalformedInput` naming ``where``.
    """
    try:
        if _plain(obj):
            try:
                return _encode_plain_bytes(obj)
            except UnicodeEncodeError:
                raise MalformedInput("text contains a lone surrogate, which UTF-8 cannot "
                                     "carry", where=where, expected="valid Unicode text"
                                     ) from None
        fast = _with_floats(obj) if obj is not None else None
        if fast is not None:
            try:
                return orjson.dumps(fast, option=_SORTED)
            except orjson.JSONEncodeError:
                pass  # a lone surrogate, or nesting past orjson's limit: the path below
        normal = _normalise(obj, where)
        try:
            return rfc8785.dumps(normal)  # type: ignore[arg-type]
        except rfc8785.CanonicalizationError as exc:
            raise MalformedInput(f"cannot be canonicalised: {exc}", where=where,
                                 expected="a value RFC 8785 JSON can represent") from None
    except RecursionError:
        # The last line: every entry point bounds nesting first (gsomia.core.limits), but a
        # value nested deeper than the interpreter's stack is bad input, never a crash.
        raise MalformedInput("nested too deeply to canonicalise", where=where,
                             expected=f"arrays and objects nested at most {MAX_DEPTH} "
                                      "levels deep") from None


def sha256(data: bytes) -> bytes:
    """SHA-256 of ``data``."""
    return hashlib.sha256(data).digest()


def b64u(data: bytes) -> str:
    """Unpadded base64url text of ``data`` (RFC 4648 §5, as in JOSE)."""
    # base64.urlsafe_b64encode's own steps, without its two Python layers: an envelope and
    # its receipt are written in base64url some forty times on their way.
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=") \
        .decode("ascii")


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def from_b64u(text: object, *, where: str = "value") -> bytes:
    """Decode unpadded base64url; refuse padding, other alphabets and non-canonical forms."""
    # binascii's strict decoder in place of a pattern match, base64's Python layers and a
    # re-encoding of the whole text: an envelope's ciphertext (some 1,600 characters) was
    # decoded at 15 µs, on the path of every item a partner sends.
    raw = text.encode("ascii", "replace") if isinstance(text, str) else b"="
    if b"=" in raw or b"+" in raw or b"/" in raw or len(raw) % 4 == 1:
        raise MalformedInput(f"{text!r} is not base64url", where=where,
                             expected="unpadded base64url text (A-Z a-z 0-9 - _)")
    try:
        data = binascii.a2b_base64(raw.translate(_FROM_URLSAFE) + b"=" * (-len(raw) % 4),
                                   strict_mode=True)
    except (binascii.Error, ValueError):
        raise MalformedInput(f"{text!r} is not base64url", where=where,
                             expected="unpadded base64url text") from None
    tail = len(raw) % 4
    if tail and raw[-1] not in _LAST_OF[tail]:
        # Unused low bits set in the last character: several texts would decode to the
        # same bytes (full groups of four decode one to one, so only the last is checked).
        raise MalformedInput(f"{text!r} is not canonical base64url", where=where,
                             expected="the canonical unpadded encoding")
    return data


_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
# The characters that may end a text of 2 or 3 (mod 4) characters: those whose bits past
# the data (4 and 2 of their 6) are zero.
_LAST_OF = {2: frozenset(b"AQgw"), 3: frozenset(b"AEIMQUYcgkosw048")}


# ---- keys and signatures ------------------------------------------------------------------

PublicKey = Ed25519PublicKey | X25519PublicKey


def new_signing_key() -> Ed25519PrivateKey:
    """A fresh Ed25519 key (label binding, envelopes, receipts, consents, tree heads)."""
    return Ed25519PrivateKey.generate()


def new_envelope_key() -> X25519PrivateKey:
    """A fresh X25519 key that partners seal envelopes to."""
    return X25519PrivateKey.generate()


def raw_public(key: PublicKey | Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    """The raw 32-byte public key (RFC 8032 / RFC 7748 encoding) of a key or key pair."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey | X25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def fingerprint(key: PublicKey | Ed25519PrivateKey | X25519PrivateKey | bytes) -> str:
    """Lowercase hex SHA-256 of the raw public key; raw bytes are taken as the public key."""
    if isinstance(key, bytes):
        return hashlib.sha256(key).hexdigest()
    # Every envelope and receipt names both parties' keys: derive each key's public bytes
    # once. Keyed by the object, which the entry keeps alive, so an id is never reused.
    cached = _FINGERPRINTS.get(id(key))
    if cached is not None and cached[0] is key:
        return cached[1]
    found = hashlib.sha256(raw_public(key)).hexdigest()
    if len(_FINGERPRINTS) >= 256:
        _FINGERPRINTS.clear()
    _FINGERPRINTS[id(key)] = (key, found)
    return found


_FINGERPRINTS: dict[int, tuple[object, str]] = {}


def ed25519_public_from_raw(raw: bytes, *, where: str = "public key") -> Ed25519PublicKey:
    """Load a raw 32-byte Ed25519 public key, or raise MalformedInput."""
    if not isinstance(raw, bytes) or len(raw) != 32:
        raise MalformedInput("not a raw Ed25519 public key", where=where, expected="32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def x25519_public_from_raw(raw: bytes, *, where: str = "public key") -> X25519PublicKey:
    """Load a raw 32-byte X25519 public key, or raise MalformedInput."""
    if not isinstance(raw, bytes) or len(raw) != 32:
        raise MalformedInput("not a raw X25519 public key", where=where, expected="32 bytes")
    return X25519PublicKey.from_public_bytes(raw)


def signed_message(context: bytes, message: bytes) -> bytes:
    """The bytes actually signed: ``context ‖ 0x00 ‖ message`` (contexts contain no NUL)."""
    return context + b"\x00" + message


def sign(key: Ed25519PrivateKey, message: bytes) -> bytes:
    """Ed25519 signature (64 bytes) over ``message`` exactly as given."""
    return key.sign(message)


def verify(public_key: Ed25519PublicKey, signature: bytes, message: bytes) -> None:
    """Verify an Ed25519 signature; raise :class:`ProofInvalid` if it does not verify."""
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        raise ProofInvalid("Ed25519 signature does not verify") from None


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """One Ed25519 verification, detached from the object signed so a batch of them can be
    verified elsewhere (another process) with public keys only: the raw 32-byte public key,
    the signature and the exact bytes signed."""

    public: bytes
    signature: bytes
    message: bytes


def verify_checks(checks: Sequence[SignatureCheck]) -> list[bool]:
    """Whether each signature verifies, in order; one key object per distinct key."""
    loaded: dict[bytes, Ed25519PublicKey | None] = {}
    out: list[bool] = []
    for check in checks:
        if check.public not in loaded:
            try:
                loaded[check.public] = Ed25519PublicKey.from_public_bytes(check.public)
            except ValueError:
                loaded[check.public] = None
        key = loaded[check.public]
        try:
            if key is None:
                raise InvalidSignature
            key.verify(check.signature, check.message)
            out.append(True)
        except InvalidSignature:
            out.append(False)
    return out


def _check_key(claimed: str, public_key: Ed25519PublicKey, who: str) -> None:
    actual = fingerprint(public_key)
    if not hmac.compare_digest(claimed, actual):
        raise ProofInvalid(
            f"{who} names signing key {claimed[:16]}…, but the key given is {actual[:16]}…"
        )


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise MalformedInput(f"{value!r} is not a non-empty string", where=where,
                             expected="a non-empty string")
    return value


def _at(value: object, where: str) -> datetime:
    # Milliseconds are what iso() renders, so a parsed copy equals the signed original.
    if not isinstance(value, str | datetime):
        raise MalformedInput(f"{value!r} is not an instant", where=where,
                             expected="an ISO 8601 date-time")
    at = instant(value, where=where)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def _fields(data: object, cls: str, names: tuple[str, ...]) -> Mapping[str, Any]:
    if isinstance(data, str | bytes):
        check_text_depth(data, where=cls)
        try:
            data = json.loads(data)
        except ValueError:
            raise MalformedInput(f"{cls} is not JSON", where=cls, expected="a JSON object") \
                from None
    if not isinstance(data, Mapping):
        raise MalformedInput(f"{cls} is not a JSON object", where=cls, expected="a JSON object")
    missing = [n for n in names if n not in data]
    extra = sorted(set(data) - set(names))
    if missing or extra:
        raise MalformedInput(
            f"{cls} has missing members {missing} or unknown members {extra}", where=cls,
            expected="members " + ", ".join(names),
        )
    return data


def _signature(value: object, where: str) -> bytes:
    sig = from_b64u(value, where=where)
    if len(sig) != 64:
        raise MalformedInput("not an Ed25519 signature", where=where, expected="64 bytes")
    return sig


def _fingerprint_text(value: object, where: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{64}", value):
        raise MalformedInput(f"{value!r} is not a key fingerprint", where=where,
                             expected="64 lowercase hex digits")
    return value


# ---- label binding (STANAG 4778 style) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Binding:
    """The originator's signature binding a security label to its content.

    ``digest`` is :func:`binding_digest` of the label and content at signing time (kept so a
    reader can see what was bound; verification always recomputes it). ``key`` is the
    fingerprint of the originator's Ed25519 public key.
    """

    algorithm: str
    key: str
    signature: bytes
    digest: bytes

    def to_json(self) -> dict[str, str]:
        """``{"algorithm", "key", "digest", "signature"}``; bytes as unpadded base64url."""
        return {"algorithm": self.algorithm, "key": self.key, "digest": b64u(self.digest),
                "signature": b64u(self.signature)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str | bytes) -> Binding:
        """Parse :meth:`to_json` output (a mapping or JSON text); raise MalformedInput."""
        d = _fields(data, "binding", ("algorithm", "key", "digest", "signature"))
        if d["algorithm"] != SIGNATURE_ALGORITHM:
            raise MalformedInput(f"unknown binding algorithm {d['algorithm']!r}",
                                 where="binding.algorithm", expected=SIGNATURE_ALGORITHM)
        digest = from_b64u(d["digest"], where="binding.digest")
        if len(digest) != 32:
            raise MalformedInput("not a SHA-256 digest", where="binding.digest",
                                 expected="32 bytes")
        return cls(SIGNATURE_ALGORITHM, _fingerprint_text(d["key"], "binding.key"),
                   _signature(d["signature"], "binding.signature"), digest)


def binding_digest(label: Mapping[str, Any], content: Mapping[str, Any]) -> bytes:
    """SHA-256(context ‖ 0x00 ‖ SHA-256(canonical(label)) ‖ SHA-256(canonical(content))).

    Each part is hashed on its own to a fixed 32 bytes before the pair is hashed, so no bytes
    can move between label and content and keep the digest.
    """
    return binding_digest_of(canonical(label, where="label"),
                             canonical(content, where="content"))


def binding_digest_of(label: bytes, content: bytes) -> bytes:
    """:func:`binding_digest` of label and content already in RFC 8785 bytes."""
    return sha256(BINDING_CONTEXT + b"\x00" + sha256(label) + sha256(content))


def bind(label: Mapping[str, Any], content: Mapping[str, Any], key: Ed25519PrivateKey) -> Binding:
    """Sign the binding of ``label`` to ``content`` with the originator's key."""
    digest = binding_digest(label, content)
    return Binding(SIGNATURE_ALGORITHM, fingerprint(key),
                   sign(key, signed_message(BINDING_CONTEXT, digest)), digest)


def verify_binding(label: Mapping[str, Any], content: Mapping[str, Any], binding: Binding,
                   public_key: Ed25519PublicKey) -> None:
    """Check that the originator bound exactly this label to exactly this content.

    Fails closed: raises :class:`ProofInvalid` if the algorithm is unknown, the binding names
    another key, the label or content changed, or the signature does not verify.
    """
    verify_binding_bytes(canonical(label, where="label"), canonical(content, where="content"),
                         binding, public_key)


def verify_binding_bytes(label: bytes, content: bytes, binding: Binding,
                         public_key: Ed25519PublicKey) -> None:
    """:func:`verify_binding` over label and content already in RFC 8785 bytes.

    A node receiving a batch needs those bytes anyway to store the items, so it canonicalises
    each once instead of twice.
    """
    check = binding_check(label, content, binding, public_key)
    try:
        public_key.verify(check.signature, check.message)
    except InvalidSignature:
        raise ProofInvalid(BINDING_SIGNATURE_FAILS) from None


BINDING_SIGNATURE_FAILS = "the originator's binding signature does not verify"


def binding_check(label: bytes, content: bytes, binding: Binding,
                  public_key: Ed25519PublicKey) -> SignatureCheck:
    """Every check of :func:`verify_binding_bytes` but the signature's, which is returned to
    be verified (fail closed: an item is bound only once that check says yes)."""
    if binding.algorithm != SIGNATURE_ALGORITHM:
        raise ProofInvalid(f"binding algorithm {binding.algorithm!r} is not {SIGNATURE_ALGORITHM}")
    _check_key(binding.key, public_key, "the binding")
    digest = binding_digest_of(label, content)
    if not hmac.compare_digest(digest, binding.digest):
        raise ProofInvalid("label or content changed since the originator bound them")
    return SignatureCheck(raw_public(public_key), binding.signature,
                          signed_message(BINDING_CONTEXT, digest))


# ---- HPKE (RFC 9180) ----------------------------------------------------------------------


def _hpke_info(info: bytes, aad: bytes) -> bytes:
    # cryptography's HPKE is single-shot with no public AAD argument; RFC 9180 §8.1 has
    # single-shot users carry associated data in ``info``, which the key schedule
    # authenticates. Length-prefixing ``info`` and hashing ``aad`` keeps the pair unambiguous.
    return _HPKE_CONTEXT + b"\x00" + len(info).to_bytes(4, "big") + info + sha256(aad)


def seal(recipient_public: X25519PublicKey, info: bytes, aad: bytes,
         plaintext: bytes) -> tuple[bytes, bytes]:
    """HPKE base-mode seal to ``recipient_public``: returns ``(enc, ciphertext)``.

    Suite: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM. ``info`` and ``aad`` are
    both authenticated (through the RFC 9180 ``info`` input, see ``_hpke_info``). Draws a
    fresh ephemeral key: the one place the core uses randomness.
    """
    sealed = _HPKE.encrypt(plaintext, recipient_public, info=_hpke_info(info, aad))
    return sealed[:_ENC_LENGTH], sealed[_ENC_LENGTH:]


def open_(recipient_private: X25519PrivateKey, enc: bytes, info: bytes, aad: bytes,
          ciphertext: bytes) -> bytes:
    """Open what :func:`seal` produced; raise :class:`ProofInvalid` on any mismatch."""
    if len(enc) != _ENC_LENGTH:
        raise ProofInvalid(f"HPKE enc is {len(enc)} bytes, expected {_ENC_LENGTH}")
    try:
        return _HPKE.decrypt(enc + ciphertext, recipient_private, info=_hpke_info(info, aad))
    except (InvalidTag, ValueError):
        raise ProofInvalid(
            "HPKE ciphertext does not open: wrong key, or enc, info, aad or ciphertext changed"
        ) from None


# ---- envelopes ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Envelope:
    """An item sealed to one partner node and signed by the sending node.

    The header (every field but ``enc``, ``ciphertext`` and ``signature``) is the HPKE
    associated data; the signature covers the header, ``enc`` and the ciphertext's SHA-256.
    ``sender_key`` / ``recipient_key`` are fingerprints of the sender's Ed25519 key and the
    recipient's X25519 key. ``nonce`` is chosen by the sender (unique per envelope) so the
    recipient can refuse replays.
    """

    sender: Party
    recipient: Party
    item_id: str
    version: str
    nonce: bytes
    sent_at: datetime
    sender_key: str
    recipient_key: str
    enc: bytes
    ciphertext: bytes
    signature: bytes

    def header(self) -> dict[str, str]:
        """The associated data, as a JSON object."""
        return {"v": ENVELOPE_CONTEXT.decode(), "sender": self.sender,
                "recipient": self.recipient, "item_id": self.item_id, "version": self.version,
                "nonce": b64u(self.nonce), "sent_at": iso(self.sent_at),
                "sender_key": self.sender_key, "recipient_key": self.recipient_key}

    def to_json(self) -> dict[str, str]:
        """Header plus ``enc``, ``ciphertext`` and ``signature`` (base64url)."""
        out = self.header()
        del out["v"]
        out.update(enc=b64u(self.enc), ciphertext=b64u(self.ciphertext),
                   signature=b64u(self.signature))
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str | bytes) -> Envelope:
        """Parse :meth:`to_json` output; raise MalformedInput on a bad shape."""
        d = _fields(data, "envelope", _ENVELOPE_FIELDS)
        nonce = from_b64u(d["nonce"], where="envelope.nonce")
        _check_nonce(nonce)
        return cls(
            party(d["sender"], where="envelope.sender"),
            party(d["recipient"], where="envelope.recipient"),
            _text(d["item_id"], "envelope.item_id"), _text(d["version"], "envelope.version"),
            nonce, _at(d["sent_at"], "envelope.sent_at"),
            _fingerprint_text(d["sender_key"], "envelope.sender_key"),
            _fingerprint_text(d["recipient_key"], "envelope.recipient_key"),
            from_b64u(d["enc"], where="envelope.enc"),
            from_b64u(d["ciphertext"], where="envelope.ciphertext"),
            _signature(d["signature"], "envelope.signature"),
        )


_ENVELOPE_FIELDS = ("sender", "recipient", "item_id", "version", "nonce", "sent_at",
                    "sender_key", "recipient_key", "enc", "ciphertext", "signature")


def _check_nonce(nonce: bytes) -> None:
    if not 16 <= len(nonce) <= 64:
        raise MalformedInput(f"nonce is {len(nonce)} bytes", where="nonce",
                             expected="16 to 64 bytes, unique per envelope")


def _envelope_message(header: Mapping[str, str], enc: bytes, ciphertext: bytes) -> bytes:
    return _envelope_message_of(canonical(header), enc, ciphertext)


def _envelope_message_of(header: bytes, enc: bytes, ciphertext: bytes) -> bytes:
    """:func:`_envelope_message` of the header's RFC 8785 bytes."""
    return signed_message(ENVELOPE_CONTEXT, sha256(header) + sha256(enc) + sha256(ciphertext))


def seal_envelope(*, sender: Party, recipient: Party, item_id: str, version: str, nonce: bytes,
                  sent_at: datetime, payload: Mapping[str, Any], sender_key: Ed25519PrivateKey,
                  recipient_public: X25519PublicKey) -> Envelope:
    """Encrypt ``payload`` (canonical JSON) to the recipient with HPKE and sign the result.

    ``version`` names the item version (e.g. the STIX ``modified`` timestamp); ``nonce`` is
    16-64 bytes the caller makes unique (e.g. ``os.urandom(16)``); ``sent_at`` is kept to
    the millisecond.
    """
    sender, recipient = party(sender, where="sender"), party(recipient, where="recipient")
    _check_nonce(nonce)
    probe = Envelope(sender, recipient, _text(item_id, "item_id"), _text(version, "version"),
                     nonce, _at(sent_at, "sent_at"), fingerprint(sender_key),
                     fingerprint(recipient_public), b"", b"", b"")
    # The header's bytes are both the HPKE associated data and part of what is signed:
    # made once, for every envelope a node sends.
    header = canonical(probe.header())
    enc, ciphertext = seal(recipient_public, ENVELOPE_CONTEXT, header,
                           canonical(payload, where="payload"))
    signature = sign(sender_key, _envelope_message_of(header, enc, ciphertext))
    return replace(probe, enc=enc, ciphertext=ciphertext, signature=signature)


def open_envelope(envelope: Envelope, *, recipient: Party, recipient_private: X25519PrivateKey,
                  sender_public: Ed25519PublicKey) -> dict[str, Any]:
    """Verify, check the addressee, decrypt; return the payload object.

    Steps, each raising :class:`ProofInvalid` with its reason: (1) the envelope names the
    sender's key; (2) the sender's signature over header, enc and ciphertext verifies;
    (3) it is addressed to ``recipient`` and (4) sealed to this node's key; (5) it decrypts;
    (6) the plaintext is a JSON object nested no deeper than an item may be (else
    MalformedInput). Replay (a nonce seen before) is the caller's check.
    """
    check = envelope_check(envelope, sender_public)
    try:
        sender_public.verify(check.signature, check.message)
    except InvalidSignature:
        raise ProofInvalid(envelope_signature_fails(envelope)) from None
    return open_checked_envelope(envelope, recipient=recipient,
                                 recipient_private=recipient_private)


def envelope_signature_fails(envelope: Envelope) -> str:
    return (f"sender signature does not verify: the envelope header or ciphertext was changed "
            f"or {envelope.sender} did not sign it")


def envelope_check(envelope: Envelope, sender_public: Ed25519PublicKey) -> SignatureCheck:
    """Step (1) of :func:`open_envelope`, and the sender's signature to verify (step 2)."""
    _check_key(envelope.sender_key, sender_public, f"the envelope from {envelope.sender}")
    return SignatureCheck(raw_public(sender_public), envelope.signature,
                          _envelope_message(envelope.header(), envelope.enc,
                                            envelope.ciphertext))


def open_checked_envelope(envelope: Envelope, *, recipient: Party,
                          recipient_private: X25519PrivateKey) -> dict[str, Any]:
    """Steps (3) to (6) of :func:`open_envelope`. Decrypting an envelope whose signature is
    not yet verified reveals nothing the AEAD does not authenticate; the caller accepts its
    payload only once :func:`envelope_check`'s signature verified."""
    header = envelope.header()
    if envelope.recipient != recipient:
        raise ProofInvalid(f"envelope is addressed to {envelope.recipient}, not to {recipient}")
    ours = fingerprint(recipient_private)
    if not hmac.compare_digest(envelope.recipient_key, ours):
        raise ProofInvalid(
            f"envelope is sealed to key {envelope.recipient_key[:16]}…, not to this node's "
            f"key {ours[:16]}…"
        )
    plaintext = open_(recipient_private, envelope.enc, ENVELOPE_CONTEXT, canonical(header),
                      envelope.ciphertext)
    # The payload wraps the object in one more level: {"object": {...}, ...}.
    check_text_depth(plaintext, where="envelope payload", limit=MAX_DEPTH + 1)
    try:
        payload = json.loads(plaintext, object_pairs_hook=_no_duplicates,
                             parse_constant=_no_constant)
    except ValueError as exc:
        raise ProofInvalid(f"envelope payload is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ProofInvalid("envelope payload is not a JSON object")
    return payload


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate member names")
    return out


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def envelope_digest(envelope: Envelope) -> bytes:
    """SHA-256 of the envelope's canonical JSON, signature included: names one delivery."""
    return sha256(canonical(envelope.to_json()))


# ---- receipts -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Receipt:
    """The recipient's signed acknowledgement that it verified and stored one envelope."""

    item_id: str
    version: str
    sender: Party
    recipient: Party
    nonce: bytes
    envelope_digest: bytes
    received_at: datetime
    key: str
    signature: bytes

    def body(self) -> dict[str, str]:
        """What the recipient signs (everything but the signature)."""
        return {"item_id": self.item_id, "version": self.version, "sender": self.sender,
                "recipient": self.recipient, "nonce": b64u(self.nonce),
                "envelope_digest": b64u(self.envelope_digest),
                "received_at": iso(self.received_at), "key": self.key}

    def to_json(self) -> dict[str, str]:
        """:meth:`body` plus ``signature`` (base64url)."""
        return {**self.body(), "signature": b64u(self.signature)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str | bytes) -> Receipt:
        """Parse :meth:`to_json` output; raise MalformedInput on a bad shape."""
        d = _fields(data, "receipt", ("item_id", "version", "sender", "recipient", "nonce",
                                      "envelope_digest", "received_at", "key", "signature"))
        return cls(_text(d["item_id"], "receipt.item_id"), _text(d["version"], "receipt.version"),
                   party(d["sender"], where="receipt.sender"),
                   party(d["recipient"], where="receipt.recipient"),
                   from_b64u(d["nonce"], where="receipt.nonce"),
                   from_b64u(d["envelope_digest"], where="receipt.envelope_digest"),
                   _at(d["received_at"], "receipt.received_at"),
                   _fingerprint_text(d["key"], "receipt.key"),
                   _signature(d["signature"], "receipt.signature"))


def make_receipt(envelope: Envelope, *, received_at: datetime,
                 key: Ed25519PrivateKey, digest: bytes | None = None) -> Receipt:
    """Sign a receipt for ``envelope`` with the recipient node's Ed25519 key (``digest``:
    its :func:`envelope_digest`, when the caller computed it already)."""
    unsigned = Receipt(envelope.item_id, envelope.version, envelope.sender, envelope.recipient,
                       envelope.nonce, digest if digest is not None else envelope_digest(envelope),
                       _at(received_at, "received_at"), fingerprint(key), b"")
    signature = sign(key, signed_message(RECEIPT_CONTEXT, canonical(unsigned.body())))
    return replace(unsigned, signature=signature)


def verify_receipt(receipt: Receipt, public_key: Ed25519PublicKey, *,
                   envelope: Envelope | None = None) -> None:
    """Check the recipient signed ``receipt`` (and, if given, that it is for ``envelope``)."""
    check = receipt_check(receipt, public_key)
    try:
        public_key.verify(check.signature, check.message)
    except InvalidSignature:
        raise ProofInvalid(receipt_signature_fails(receipt)) from None
    if envelope is not None:
        receipt_matches(receipt, envelope)


def receipt_signature_fails(receipt: Receipt) -> str:
    return f"receipt signature by {receipt.recipient} does not verify"


def receipt_check(receipt: Receipt, public_key: Ed25519PublicKey) -> SignatureCheck:
    """The key check of :func:`verify_receipt`, and the signature to verify."""
    _check_key(receipt.key, public_key, f"the receipt from {receipt.recipient}")
    return SignatureCheck(raw_public(public_key), receipt.signature,
                          signed_message(RECEIPT_CONTEXT, canonical(receipt.body())))


def receipt_matches(receipt: Receipt, envelope: Envelope, *,
                    digest: bytes | None = None) -> None:
    """Raise :class:`ProofInvalid` unless ``receipt`` acknowledges ``envelope`` (``digest``:
    its :func:`envelope_digest`, when the caller kept it)."""
    if not hmac.compare_digest(receipt.envelope_digest,
                               digest if digest is not None else envelope_digest(envelope)):
        raise ProofInvalid("receipt acknowledges a different envelope")


# ---- consents -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Consent:
    """The originator's signed written consent to release one item to one third party."""

    item_id: str
    originator: Party
    recipient: Party
    granted_at: datetime
    key: str
    signature: bytes

    def body(self) -> dict[str, str]:
        """What the originator signs (everything but the signature)."""
        return {"item_id": self.item_id, "originator": self.originator,
                "recipient": self.recipient, "granted_at": iso(self.granted_at), "key": self.key}

    def to_json(self) -> dict[str, str]:
        """:meth:`body` plus ``signature``; a superset of the release request's consent shape."""
        return {**self.body(), "signature": b64u(self.signature)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str | bytes) -> Consent:
        """Parse :meth:`to_json` output; raise MalformedInput on a bad shape."""
        d = _fields(data, "consent",
                    ("item_id", "originator", "recipient", "granted_at", "key", "signature"))
        return cls(_text(d["item_id"], "consent.item_id"),
                   party(d["originator"], where="consent.originator"),
                   party(d["recipient"], where="consent.recipient"),
                   _at(d["granted_at"], "consent.granted_at"),
                   _fingerprint_text(d["key"], "consent.key"),
                   _signature(d["signature"], "consent.signature"))


def grant_consent(*, item_id: str, originator: Party, recipient: Party, granted_at: datetime,
                  key: Ed25519PrivateKey) -> Consent:
    """Sign the originator's consent to release ``item_id`` to ``recipient``."""
    unsigned = Consent(_text(item_id, "item_id"), party(originator, where="originator"),
                       party(recipient, where="recipient"), _at(granted_at, "granted_at"),
                       fingerprint(key), b"")
    signature = sign(key, signed_message(CONSENT_CONTEXT, canonical(unsigned.body())))
    return replace(unsigned, signature=signature)


def verify_consent(consent: Consent, originator_public: Ed25519PublicKey, *,
                   item_id: str | None = None, originator: Party | None = None,
                   recipient: Party | None = None) -> None:
    """Check the originator signed ``consent``, and that it covers what the caller expects.

    Raises :class:`ProofInvalid` if the signature does not verify or the consent is for
    another item, originator or recipient than the ones given.
    """
    _check_key(consent.key, originator_public, f"the consent from {consent.originator}")
    try:
        originator_public.verify(consent.signature,
                                 signed_message(CONSENT_CONTEXT, canonical(consent.body())))
    except InvalidSignature:
        raise ProofInvalid(f"consent signature by {consent.originator} does not verify") from None
    for name, expected in (("item", item_id), ("originator", originator),
                           ("recipient", recipient)):
        actual = getattr(consent, "item_id" if name == "item" else name)
        if expected is not None and actual != expected:
            raise ProofInvalid(f"consent is for {name} {actual}, not {expected}")


# ---- standing consents ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StandingConsent:
    """The originator's signed standing consent: the relay of its items of ``categories``
    (label categories), marked for ``purpose``, to ``recipient``, from ``not_before`` until
    ``not_after`` (exclusive), unless revoked earlier (:class:`StandingRevocation`)."""

    id: str
    originator: Party
    recipient: Party
    categories: tuple[str, ...]
    purpose: str
    not_before: datetime
    not_after: datetime
    granted_at: datetime
    key: str
    signature: bytes

    def body(self) -> dict[str, Any]:
        """What the originator signs (everything but the signature)."""
        return {"id": self.id, "originator": self.originator, "recipient": self.recipient,
                "categories": list(self.categories), "purpose": self.purpose,
                "not_before": iso(self.not_before), "not_after": iso(self.not_after),
                "granted_at": iso(self.granted_at), "key": self.key}

    def to_json(self) -> dict[str, Any]:
        return {**self.body(), "signature": b64u(self.signature)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str | bytes) -> StandingConsent:
        """Parse :meth:`to_json` output; raise MalformedInput on a bad shape."""
        d = _fields(data, "standing consent",
                    ("id", "originator", "recipient", "categories", "purpose", "not_before",
                     "not_after", "granted_at", "key", "signature"))
        return _standing(
            _text(d["id"], "standing consent.id"),
            party(d["originator"], where="standing consent.originator"),
            party(d["recipient"], where="standing consent.recipient"),
            d["categories"], _text(d["purpose"], "standing consent.purpose"),
            _at(d["not_before"], "standing consent.not_before"),
            _at(d["not_after"], "standing consent.not_after"),
            _at(d["granted_at"], "standing consent.granted_at"),
            _fingerprint_text(d["key"], "standing consent.key"),
            _signature(d["signature"], "standing consent.signature"))


def _standing(consent_id: str, originator: Party, recipient: Party, categories: object,
              purpose: str, not_before: datetime, not_after: datetime, granted_at: datetime,
              key: str, signature: bytes) -> StandingConsent:
    if not isinstance(categories, list | tuple) or not categories or \
            not all(isinstance(c, str) and c for c in categories):
        raise MalformedInput("categories must be a non-empty list of label categories",
                             where="standing consent.categories",
                             expected='e.g. ["flight-path", "impact-prediction"]')
    if len(set(categories)) != len(categories) or list(categories) != sorted(categories):
        # One spelling per consent: the signed bytes and the parsed value agree.
        raise MalformedInput("categories must be sorted and without repeats",
                             where="standing consent.categories")
    if originator == recipient:
        raise MalformedInput(f"the originator {originator} is also the recipient",
                             where="standing consent.recipient",
                             expected="a third party")
    if not_after <= not_before:
        raise MalformedInput(f"validity ends ({iso(not_after)}) before it begins "
                             f"({iso(not_before)})", where="standing consent.not_after",
                             expected="an instant after not_before")
    return StandingConsent(consent_id, originator, recipient, tuple(categories), purpose,
                           not_before, not_after, granted_at, key, signature)


def grant_standing_consent(*, consent_id: str, originator: Party, recipient: Party,
                           categories: tuple[str, ...] | list[str], purpose: str,
                           not_before: datetime, not_after: datetime, granted_at: datetime,
                           key: Ed25519PrivateKey) -> StandingConsent:
    """Sign the originator's standing consent."""
    unsigned = _standing(_text(consent_id, "id"), party(originator, where="originator"),
                         party(recipient, where="recipient"), sorted(set(categories)),
                         _text(purpose, "purpose"), _at(not_before, "not_before"),
                         _at(not_after, "not_after"), _at(granted_at, "granted_at"),
                         fingerprint(key), b"")
    signature = sign(key, signed_message(STANDING_CONSENT_CONTEXT, canonical(unsigned.body())))
    return replace(unsigned, signature=signature)


def verify_standing_consent(consent: StandingConsent, originator_public: Ed25519PublicKey, *,
                            originator: Party | None = None) -> None:
    """Check ``originator`` (if given) is the consent's originator and signed it; raises
    :class:`ProofInvalid` otherwise (a consent signed by another party's key included)."""
    if originator is not None and consent.originator != originator:
        raise ProofInvalid(f"standing consent is from {consent.originator}, not {originator}")
    _check_key(consent.key, originator_public, f"the standing consent from {consent.originator}")
    try:
        originator_public.verify(consent.signature, signed_message(
            STANDING_CONSENT_CONTEXT, canonical(consent.body())))
    except InvalidSignature:
        raise ProofInvalid(f"standing consent signature by {consent.originator} does not "
                           "verify") from None


@dataclass(frozen=True, slots=True)
class StandingRevocation:
    """The originator's signed revocation of its standing consent ``consent_id``."""

    consent_id: str
    originator: Party
    revoked_at: datetime
    key: str
    signature: bytes

    def body(self) -> dict[str, str]:
        return {"consent_id": self.consent_id, "originator": self.originator,
                "revoked_at": iso(self.revoked_at), "key": self.key}

    def to_json(self) -> dict[str, str]:
        return {**self.body(), "signature": b64u(self.signature)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str | bytes) -> StandingRevocation:
        d = _fields(data, "standing revocation",
                    ("consent_id", "originator", "revoked_at", "key", "signature"))
        return cls(_text(d["consent_id"], "standing revocation.consent_id"),
                   party(d["originator"], where="standing revocation.originator"),
                   _at(d["revoked_at"], "standing revocation.revoked_at"),
                   _fingerprint_text(d["key"], "standing revocation.key"),
                   _signature(d["signature"], "standing revocation.signature"))


def revoke_standing_consent(*, consent_id: str, originator: Party, revoked_at: datetime,
                            key: Ed25519PrivateKey) -> StandingRevocation:
    unsigned = StandingRevocation(_text(consent_id, "consent_id"),
                                  party(originator, where="originator"),
                                  _at(revoked_at, "revoked_at"), fingerprint(key), b"")
    signature = sign(key, signed_message(STANDING_REVOCATION_CONTEXT,
                                         canonical(unsigned.body())))
    return replace(unsigned, signature=signature)


def verify_standing_revocation(revocation: StandingRevocation,
                               originator_public: Ed25519PublicKey, *,
                               originator: Party | None = None) -> None:
    if originator is not None and revocation.originator != originator:
        raise ProofInvalid(f"revocation is from {revocation.originator}, not {originator}")
    _check_key(revocation.key, originator_public,
               f"the revocation from {revocation.originator}")
    try:
        originator_public.verify(revocation.signature, signed_message(
            STANDING_REVOCATION_CONTEXT, canonical(revocation.body())))
    except InvalidSignature:
        raise ProofInvalid(f"revocation signature by {revocation.originator} does not "
                           "verify") from None
