"""Canonical bytes, signatures, label binding, HPKE and the signed exchange documents."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import string
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.core import crypto
from gsomia.core.crypto import (
    Binding,
    Consent,
    Envelope,
    Receipt,
    b64u,
    bind,
    binding_digest,
    canonical,
    envelope_digest,
    fingerprint,
    from_b64u,
    grant_consent,
    make_receipt,
    open_,
    open_envelope,
    raw_public,
    seal,
    seal_envelope,
    sign,
    verify,
    verify_binding,
    verify_consent,
    verify_receipt,
)
from gsomia.core.errors import MalformedInput, ProofInvalid


def key(n: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([n]) * 32)


def xkey(n: int) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(bytes([n]) * 32)


KOR, JPN, USA = key(1), key(2), key(3)
KOR_X, JPN_X, USA_X = xkey(11), xkey(12), xkey(13)
AT = datetime(2017, 3, 1, 0, 0, 0, 123000, tzinfo=UTC)

LABEL: dict[str, Any] = {"originator": "KOR", "level": "군사II급비밀", "rel_to": ["KOR", "JPN"],
         "purpose": "dprk-missile", "caveats": [], "policy": "jpn-kor-gsomia-2016"}
CONTENT: dict[str, Any] = {"type": "indicator", "spec_version": "2.1",
           "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
           "created": "2017-03-01T00:00:00.000Z", "modified": "2017-03-01T00:00:00.000Z",
           "name": "TEL at Sohae", "pattern": "[x-launch:site = 'Sohae']",
           "pattern_type": "stix", "valid_from": "2017-03-01T00:00:00Z", "confidence": 85}


# ---- canonical JSON -----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_canonical_is_rfc8785(value: Any) -> None:
    # Lone surrogates are not text; both sides refuse them (below).
    try:
        expected = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:
        with pytest.raises(MalformedInput):
            canonical(value)
        return
    assert canonical(value) == expected


@settings(max_examples=200, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.text(st.characters(codec="utf-8")),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(st.characters(codec="ascii"), max_size=6), inner, max_size=4),
    max_leaves=20))
def test_the_fast_path_gives_the_rfc8785_bytes(value: Any) -> None:
    assert crypto._plain(value)
    assert canonical(value) == rfc8785.dumps(value)


# Floats in and around the range written without an exponent (a sensor report's numbers),
# its edges, zeros of both signs and the extremes: the float path must agree with rfc8785.
_floats = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.0, -0.0, 1e-4, 9.999999999999999e-05, 1e16, 9999999999999998.0, 1e21, 5e-324,
     1.7976931348623157e308, 2.0**53, -(2.0**53) - 2, 812345.123, 45.123456789, 0.1])


@settings(max_examples=200, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | _floats
    | st.text(st.characters(codec="utf-8")),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(st.characters(codec="ascii"), max_size=6), inner, max_size=4),
    max_leaves=20))
def test_the_float_path_gives_the_rfc8785_bytes(value: Any) -> None:
    assert canonical(value) == rfc8785.dumps(value)


def test_a_sensor_reports_floats_take_the_float_path() -> None:
    report: dict[str, Any] = {"type": "note", "x_gsomia_sensor_report": {
        "t": [0.0, 0.5, 1.0], "z": [[812345.123, 45.123456789, -12.5]], "cov": [[1.0e4, 0.001]]}}
    assert not crypto._plain(report)
    assert crypto._with_floats(report) is not None
    assert canonical(report) == rfc8785.dumps(report)
    # An exponent or a non-ASCII key: the float path declines, rfc8785 writes it.
    for declined in ({"x": 1e-5}, {"x": 1e16}, {"\u00e9": 0.5}):
        assert crypto._with_floats(declined) is None
        assert canonical(declined) == rfc8785.dumps(declined)
    # An unsafe integer beside a float: declined, and refused as before.
    assert crypto._with_floats({"x": [0.5, 2**53]}) is None
    with pytest.raises(MalformedInput):
        canonical({"x": [0.5, 2**53]})


def test_canonical_known_answers() -> None:
    assert canonical({"b": [1, True, None], "a": "é\n", "c": {"z": 1, "y": 2}}) == \
        '{"a":"é\\n","b":[1,true,null],"c":{"y":2,"z":1}}'.encode()
    # RFC 8785 sorts by UTF-16 code units: U+1F600 (surrogates D83D…) before U+FB01.
    assert canonical({"\ufb01": 1, "\U0001f600": 2}) == '{"😀":2,"ﬁ":1}'.encode()
    assert canonical({"n": 1e21, "m": 0.1, "z": -0.0}) == b'{"m":0.1,"n":1e+21,"z":0}'
    # Beside floats too (the float path takes ASCII keys only: orjson sorts by code point,
    # which puts U+FB01 first), and floats at the edges of the range written without an
    # exponent (finalreview28b).
    assert canonical({"\ufb01": 0.5, "\U0001f600": 100.0}) == '{"😀":100,"ﬁ":0.5}'.encode()
    assert canonical([1e15 + 0.5, 1e16 - 2, 1e16, 1e-4, 1e-7, 5e-324, -0.0]) == \
        b"[1000000000000000.5,9999999999999998,10000000000000000,0.0001,1e-7,5e-324,0]"
    assert canonical((1, 2)) == b"[1,2]"


@pytest.mark.parametrize("bad", [
    float("nan"), float("inf"), 2**53, -(2**53), b"bytes", {1, 2}, {1: "x"}, "\ud800",
    {"a": [object()]}, datetime(2017, 1, 1),
])
def test_canonical_refuses_what_json_cannot_hold(bad: object) -> None:
    with pytest.raises(MalformedInput):
        canonical({"x": bad})


# ---- base64url and keys -------------------------------------------------------------------


@given(st.binary(max_size=80))
def test_b64u_round_trips(data: bytes) -> None:
    text = b64u(data)
    assert "=" not in text and from_b64u(text) == data


@pytest.mark.parametrize("bad", ["AAA=", "A+/B", "A", "AB", "ab c", 7, None])
def test_from_b64u_refuses_other_forms(bad: object) -> None:
    # "AB" has unused low bits set: "AA" is the one canonical text for b"\x00".
    with pytest.raises(MalformedInput):
        from_b64u(bad)


def _reference_b64u(text: str) -> bytes | None:
    """The decoder from_b64u replaced (pattern, base64 module, whole text encoded again):
    the bytes it accepted a text as, or None for a refusal."""
    if not re.match(r"^[A-Za-z0-9_-]*$", text) or len(text) % 4 == 1:
        return None
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return None
    return data if b64u(data) == text else None


@settings(max_examples=400)
@given(st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + "-_", max_size=12),
    st.text(alphabet="AQgw-_/+=\n \u00e9\x00.", max_size=9),
    st.binary(max_size=40).map(b64u).flatmap(
        lambda t: st.integers(0, max(0, len(t))).map(lambda i: t[:i]))))
def test_from_b64u_accepts_what_the_reference_did_and_nothing_else(text: str) -> None:
    # A partner's envelope fields pass through it: the faster decoder must refuse each
    # text the old one refused (other alphabets, padding, a set unused bit) and decode
    # the rest to the same bytes.
    expected = _reference_b64u(text)
    if expected is None:
        with pytest.raises(MalformedInput):
            from_b64u(text)
    else:
        assert from_b64u(text) == expected


def test_fingerprint_is_sha256_of_the_raw_public_key() -> None:
    raw = raw_public(KOR)
    assert len(raw) == 32
    assert fingerprint(KOR) == fingerprint(KOR.public_key()) == fingerprint(raw) \
        == hashlib.sha256(raw).hexdigest()
    assert fingerprint(KOR) != fingerprint(JPN)
    assert crypto.ed25519_public_from_raw(raw) == KOR.public_key()
    assert crypto.x25519_public_from_raw(raw_public(KOR_X)) == KOR_X.public_key()
    with pytest.raises(MalformedInput):
        crypto.ed25519_public_from_raw(raw[:31])


def test_sign_and_verify() -> None:
    sig = sign(KOR, b"message")
    verify(KOR.public_key(), sig, b"message")
    for bad_key, bad_sig, msg in [(JPN.public_key(), sig, b"message"),
                                  (KOR.public_key(), sig, b"messagE"),
                                  (KOR.public_key(), bytes([sig[0] ^ 1]) + sig[1:], b"message")]:
        with pytest.raises(ProofInvalid):
            verify(bad_key, bad_sig, msg)


def test_fresh_keys_differ() -> None:
    assert raw_public(crypto.new_signing_key()) != raw_public(crypto.new_signing_key())
    assert raw_public(crypto.new_envelope_key()) != raw_public(crypto.new_envelope_key())


# ---- label binding ------------------------------------------------------------------------


def test_binding_verifies_and_round_trips() -> None:
    b = bind(LABEL, CONTENT, KOR)
    verify_binding(LABEL, CONTENT, b, KOR.public_key())
    assert b.key == fingerprint(KOR) and b.algorithm == "Ed25519"
    assert b.digest == binding_digest(LABEL, CONTENT)
    again = Binding.from_json(json.dumps(b.to_json()))
    assert again == b
    verify_binding(LABEL, CONTENT, again, KOR.public_key())
    # Key order and formatting of the inputs do not matter; their values do.
    verify_binding(dict(reversed(LABEL.items())), json.loads(json.dumps(CONTENT)), b,
                   KOR.public_key())


@pytest.mark.parametrize("change", [
    ("label", "level", "군사III급비밀"), ("label", "rel_to", ["KOR", "JPN", "USA"]),
    ("label", "originator", "JPN"), ("label", "purpose", "other"), ("label", "caveats", ["X"]),
    ("content", "name", "TEL at Sohae "), ("content", "confidence", 86),
    ("content", "extra", None),
])
def test_any_change_to_label_or_content_breaks_the_binding(change: tuple[str, str, Any]) -> None:
    b = bind(LABEL, CONTENT, KOR)
    which, field, value = change
    label, content = dict(LABEL), dict(CONTENT)
    (label if which == "label" else content)[field] = value
    with pytest.raises(ProofInvalid, match="changed"):
        verify_binding(label, content, b, KOR.public_key())


def test_a_forged_or_misattributed_binding_fails() -> None:
    b = bind(LABEL, CONTENT, KOR)
    pub = KOR.public_key()
    flipped = replace(b, signature=bytes([b.signature[0] ^ 1]) + b.signature[1:])
    with pytest.raises(ProofInvalid, match="does not verify"):
        verify_binding(LABEL, CONTENT, flipped, pub)
    # Someone else's key: named key does not match.
    with pytest.raises(ProofInvalid, match="key"):
        verify_binding(LABEL, CONTENT, b, JPN.public_key())
    # JPN re-binds a changed label with its own key but claims KOR's fingerprint.
    forged = replace(bind({**LABEL, "rel_to": ["KOR", "JPN", "USA"]}, CONTENT, JPN),
                     key=fingerprint(KOR))
    with pytest.raises(ProofInvalid):
        verify_binding({**LABEL, "rel_to": ["KOR", "JPN", "USA"]}, CONTENT, forged, pub)
    # The digest field is informative: changing it alone is caught.
    with pytest.raises(ProofInvalid):
        verify_binding(LABEL, CONTENT, replace(b, digest=bytes(32)), pub)
    with pytest.raises(ProofInvalid):
        verify_binding(LABEL, CONTENT, replace(b, algorithm="RSA"), pub)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=3),
       st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=3),
       st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=3),
       st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=3))
def test_distinct_label_content_pairs_have_distinct_digests(
        l1: dict[str, str], c1: dict[str, str], l2: dict[str, str], c2: dict[str, str]) -> None:
    if (l1, c1) != (l2, c2):
        assert binding_digest(l1, c1) != binding_digest(l2, c2)
    if l1 != c1:
        assert binding_digest(l1, c1) != binding_digest(c1, l1)


def test_binding_digest_framing_is_pinned() -> None:
    """Other implementations must reproduce this exactly: hash each part, then the pair."""
    expected = hashlib.sha256(
        b"gsomia/label-binding/v1\x00"
        + hashlib.sha256(rfc8785.dumps(LABEL)).digest()
        + hashlib.sha256(rfc8785.dumps(CONTENT)).digest()).digest()
    assert binding_digest(LABEL, CONTENT) == expected
    b = bind(LABEL, CONTENT, KOR)
    verify(KOR.public_key(), b.signature, b"gsomia/label-binding/v1\x00" + expected)


def test_a_binding_signature_is_not_a_signature_of_anything_else() -> None:
    b = bind(LABEL, CONTENT, KOR)
    # Bare digest signed without the context would be a different message.
    with pytest.raises(ProofInvalid):
        verify(KOR.public_key(), b.signature, b.digest)


@pytest.mark.parametrize("bad", [
    {}, {"algorithm": "Ed25519"}, "not json", [],
    {"algorithm": "Ed25519", "key": "zz", "digest": "AA", "signature": "AA"},
    {"algorithm": "Ed448", "key": "0" * 64, "digest": b64u(bytes(32)),
     "signature": b64u(bytes(64))},
    {"algorithm": "Ed25519", "key": "0" * 64, "digest": b64u(bytes(31)),
     "signature": b64u(bytes(64))},
    {"algorithm": "Ed25519", "key": "0" * 64, "digest": b64u(bytes(32)),
     "signature": b64u(bytes(64)), "extra": 1},
])
def test_binding_from_json_refuses_bad_shapes(bad: Any) -> None:
    with pytest.raises(MalformedInput):
        Binding.from_json(bad)


def test_canonical_errors_name_the_part() -> None:
    with pytest.raises(MalformedInput, match="content"):
        bind(LABEL, {"x": float("nan")}, KOR)


# ---- HPKE -------------------------------------------------------------------------------


def test_hpke_round_trip_and_every_change_fails() -> None:
    enc, ct = seal(JPN_X.public_key(), b"info", b"aad", b"secret")
    assert len(enc) == 32 and len(ct) == len(b"secret") + 16
    assert open_(JPN_X, enc, b"info", b"aad", ct) == b"secret"
    enc2, ct2 = seal(JPN_X.public_key(), b"info", b"aad", b"secret")
    assert enc2 != enc and ct2 != ct  # fresh ephemeral key each time
    cases = [
        (KOR_X, enc, b"info", b"aad", ct),
        (JPN_X, bytes([enc[0] ^ 1]) + enc[1:], b"info", b"aad", ct),
        (JPN_X, enc, b"infO", b"aad", ct),
        (JPN_X, enc, b"info", b"aaD", ct),
        (JPN_X, enc, b"info", b"aad", ct[:-1] + bytes([ct[-1] ^ 1])),
        (JPN_X, enc, b"info", b"aad", ct[:5]),
        (JPN_X, enc[:31], b"info", b"aad", ct),
        (JPN_X, enc2, b"info", b"aad", ct),
        # info and aad are framed: moving bytes from one to the other does not open
        (JPN_X, enc, b"inf", b"oaad", ct),
    ]
    for args in cases:
        with pytest.raises(ProofInvalid):
            open_(*args)


# RFC 9180 Appendix A.1.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, base mode.
A11 = {k: bytes.fromhex(v) for k, v in {
    "info": "4f6465206f6e2061204772656369616e2055726e",
    "skEm": "52c4a758a802cd8b936eceea314432798d5baf2d7e9235dc084ab1b9cfa2f736",
    "pkEm": "37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431",
    "skRm": "4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8",
    "pkRm": "3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d",
    "shared_secret": "fe0e18c9f024ce43799ae393c7e8fe8fce9d218875e8227b0187c04e7d2ea1fc",
    "key": "4531685d41d65f03dc48f6b8302c05b0",
    "base_nonce": "56d890e5accaaf011cff4b7d",
    "pt": "4265617574792069732074727574682c20747275746820626561757479",
    "aad0": "436f756e742d30",
    "ct0": "f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a9"
           "6d8770ac83d07bea87e13c512a",
}.items()}


class RefHPKE:
    """RFC 9180 base mode written from the RFC's pseudocode, with a chosen ephemeral key."""

    KEM_ID = b"KEM" + (0x0020).to_bytes(2, "big")
    SUITE = b"HPKE" + (0x0020).to_bytes(2, "big") + (1).to_bytes(2, "big") \
        + (1).to_bytes(2, "big")

    @staticmethod
    def extract(salt: bytes, ikm: bytes) -> bytes:
        return hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()

    @staticmethod
    def expand(prk: bytes, info: bytes, n: int) -> bytes:
        out, t, i = b"", b"", 1
        while len(out) < n:
            t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
            out, i = out + t, i + 1
        return out[:n]

    @classmethod
    def labeled_extract(cls, suite: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
        return cls.extract(salt, b"HPKE-v1" + suite + label + ikm)

    @classmethod
    def labeled_expand(cls, suite: bytes, prk: bytes, label: bytes, info: bytes,
                       n: int) -> bytes:
        return cls.expand(prk, n.to_bytes(2, "big") + b"HPKE-v1" + suite + label + info, n)

    @classmethod
    def shared_secret(cls, dh: bytes, enc: bytes, pk_r: bytes) -> bytes:
        eae_prk = cls.labeled_extract(cls.KEM_ID, b"", b"eae_prk", dh)
        return cls.labeled_expand(cls.KEM_ID, eae_prk, b"shared_secret", enc + pk_r, 32)

    @classmethod
    def schedule(cls, shared: bytes, info: bytes) -> tuple[bytes, bytes]:
        ctx = b"\x00" + cls.labeled_extract(cls.SUITE, b"", b"psk_id_hash", b"") \
            + cls.labeled_extract(cls.SUITE, b"", b"info_hash", info)
        secret = cls.labeled_extract(cls.SUITE, shared, b"secret", b"")
        return (cls.labeled_expand(cls.SUITE, secret, b"key", ctx, 16),
                cls.labeled_expand(cls.SUITE, secret, b"base_nonce", ctx, 12))

    @classmethod
    def seal(cls, sk_e: X25519PrivateKey, pk_r: X25519PublicKey, info: bytes, aad: bytes,
             pt: bytes) -> tuple[bytes, bytes, bytes, bytes, bytes]:
        enc = raw_public(sk_e)
        shared = cls.shared_secret(sk_e.exchange(pk_r), enc, raw_public(pk_r))
        key, nonce = cls.schedule(shared, info)
        return enc, shared, key, nonce, AESGCM(key).encrypt(nonce, pt, aad)

    @classmethod
    def open(cls, sk_r: X25519PrivateKey, enc: bytes, info: bytes, aad: bytes,
             ct: bytes) -> bytes:
        shared = cls.shared_secret(sk_r.exchange(X25519PublicKey.from_public_bytes(enc)), enc,
                                   raw_public(sk_r))
        key, nonce = cls.schedule(shared, info)
        return AESGCM(key).decrypt(nonce, ct, aad)


def test_the_reference_reproduces_rfc9180_a11() -> None:
    sk_e = X25519PrivateKey.from_private_bytes(A11["skEm"])
    sk_r = X25519PrivateKey.from_private_bytes(A11["skRm"])
    assert raw_public(sk_r) == A11["pkRm"]
    enc, shared, key_, nonce, ct = RefHPKE.seal(sk_e, sk_r.public_key(), A11["info"],
                                                A11["aad0"], A11["pt"])
    assert (enc, shared, key_, nonce, ct) == (A11["pkEm"], A11["shared_secret"], A11["key"],
                                              A11["base_nonce"], A11["ct0"])


def test_our_hpke_is_rfc9180_with_framed_info() -> None:
    """cryptography's sealing opens with the RFC reference, and the other way round."""
    info, aad, pt = b"gsomia/envelope/v1", b'{"sender":"KOR"}', b"the item"
    framed = crypto._hpke_info(info, aad)
    enc, ct = seal(JPN_X.public_key(), info, aad, pt)
    assert RefHPKE.open(JPN_X, enc, framed, b"", ct) == pt
    sk_e = X25519PrivateKey.from_private_bytes(A11["skEm"])
    enc2, *_, ct2 = RefHPKE.seal(sk_e, JPN_X.public_key(), framed, b"", pt)
    assert open_(JPN_X, enc2, info, aad, ct2) == pt


# ---- envelopes --------------------------------------------------------------------------

PAYLOAD = {"label": LABEL, "content": CONTENT, "binding": bind(LABEL, CONTENT, KOR).to_json()}
NONCE = bytes(range(16))


def sealed(**over: Any) -> Envelope:
    args: dict[str, Any] = dict(sender="KOR", recipient="JPN", item_id=CONTENT["id"],
                                version=CONTENT["modified"], nonce=NONCE, sent_at=AT,
                                payload=PAYLOAD, sender_key=KOR,
                                recipient_public=JPN_X.public_key())
    args.update(over)
    return seal_envelope(**args)


def opened(env: Envelope, **over: Any) -> dict[str, Any]:
    args: dict[str, Any] = dict(recipient="JPN", recipient_private=JPN_X,
                                sender_public=KOR.public_key())
    args.update(over)
    return open_envelope(env, **args)


def test_envelope_round_trip() -> None:
    env = sealed()
    assert opened(env) == PAYLOAD
    again = Envelope.from_json(json.dumps(env.to_json()))
    assert again == env and opened(again) == PAYLOAD
    assert env.sender_key == fingerprint(KOR) and env.recipient_key == fingerprint(JPN_X)
    # Nothing of the payload shows in the clear.
    assert b"Sohae" not in json.dumps(env.to_json()).encode()


@pytest.mark.parametrize("field,value", [
    ("sender", "USA"), ("recipient", "USA"), ("item_id", "indicator--other"),
    ("version", "2017-03-02T00:00:00.000Z"), ("nonce", bytes(16)),
    ("sent_at", AT + timedelta(seconds=1)), ("recipient_key", fingerprint(USA_X)),
])
def test_a_changed_header_is_refused(field: str, value: Any) -> None:
    env = replace(sealed(), **{field: value})
    with pytest.raises(ProofInvalid, match="signature does not verify"):
        opened(env)


def test_changed_ciphertext_enc_or_signature_is_refused() -> None:
    env = sealed()
    for bad in (replace(env, ciphertext=env.ciphertext[:-1] + bytes([env.ciphertext[-1] ^ 1])),
                replace(env, enc=bytes([env.enc[0] ^ 1]) + env.enc[1:]),
                replace(env, signature=bytes(64))):
        with pytest.raises(ProofInvalid, match="signature does not verify"):
            opened(bad)


def test_misaddressed_and_wrong_key_envelopes_are_refused() -> None:
    env = sealed()
    with pytest.raises(ProofInvalid, match="addressed to JPN, not to USA"):
        opened(env, recipient="USA", recipient_private=USA_X)
    with pytest.raises(ProofInvalid, match="sealed to key"):
        opened(env, recipient_private=USA_X)
    with pytest.raises(ProofInvalid, match="names signing key"):
        opened(env, sender_public=USA.public_key())


def test_a_resigned_envelope_does_not_open() -> None:
    """USA re-signs KOR's envelope as its own: the HPKE associated data still says KOR."""
    env = sealed()
    header = {**env.header(), "sender": "USA", "sender_key": fingerprint(USA)}
    forged = replace(env, sender="USA", sender_key=fingerprint(USA),
                     signature=sign(USA, crypto._envelope_message(header, env.enc,
                                                                   env.ciphertext)))
    with pytest.raises(ProofInvalid, match="does not open"):
        opened(forged, sender_public=USA.public_key())


def test_sealing_checks_its_inputs() -> None:
    with pytest.raises(MalformedInput):
        sealed(nonce=b"short")
    with pytest.raises(MalformedInput):
        sealed(sender="Korea")
    with pytest.raises(MalformedInput):
        sealed(payload={"x": {1, 2}})
    with pytest.raises(MalformedInput):
        Envelope.from_json({**sealed().to_json(), "nonce": "AA"})


# ---- receipts and consents ----------------------------------------------------------------


def test_receipt_signed_by_the_recipient_for_that_envelope() -> None:
    env = sealed()
    r = make_receipt(env, received_at=AT + timedelta(milliseconds=5), key=JPN)
    verify_receipt(r, JPN.public_key(), envelope=env)
    assert r.envelope_digest == envelope_digest(env) and r.nonce == env.nonce
    again = Receipt.from_json(json.dumps(r.to_json()))
    assert again == r
    verify_receipt(again, JPN.public_key())
    with pytest.raises(ProofInvalid, match="different envelope"):
        verify_receipt(r, JPN.public_key(), envelope=sealed(nonce=bytes(16)))
    with pytest.raises(ProofInvalid):
        verify_receipt(replace(r, item_id="indicator--other"), JPN.public_key())
    with pytest.raises(ProofInvalid):
        verify_receipt(replace(r, received_at=AT), JPN.public_key())
    with pytest.raises(ProofInvalid):
        verify_receipt(r, KOR.public_key())


def test_consent_signed_by_the_originator() -> None:
    c = grant_consent(item_id=CONTENT["id"], originator="KOR", recipient="USA",
                      granted_at=AT, key=KOR)
    verify_consent(c, KOR.public_key(), item_id=CONTENT["id"], originator="KOR",
                   recipient="USA")
    again = Consent.from_json(c.to_json())
    assert again == c
    assert {"item_id", "originator", "recipient"} <= set(c.to_json())
    with pytest.raises(ProofInvalid, match="recipient USA, not JPN"):
        verify_consent(c, KOR.public_key(), recipient="JPN")
    with pytest.raises(ProofInvalid, match="item"):
        verify_consent(c, KOR.public_key(), item_id="indicator--other")
    with pytest.raises(ProofInvalid):
        verify_consent(replace(c, recipient="JPN"), KOR.public_key())
    # A holder cannot grant consent in the originator's name.
    by_jpn = grant_consent(item_id=CONTENT["id"], originator="KOR", recipient="USA",
                           granted_at=AT, key=JPN)
    with pytest.raises(ProofInvalid):
        verify_consent(by_jpn, KOR.public_key())
    with pytest.raises(ProofInvalid):
        verify_consent(replace(by_jpn, key=fingerprint(KOR)), KOR.public_key())


def test_a_signature_made_for_one_kind_does_not_verify_as_another() -> None:
    c = grant_consent(item_id="x", originator="KOR", recipient="USA", granted_at=AT, key=KOR)
    body = canonical(c.body())
    for context in (crypto.RECEIPT_CONTEXT, crypto.BINDING_CONTEXT, crypto.ENVELOPE_CONTEXT):
        with pytest.raises(ProofInvalid):
            verify(KOR.public_key(), c.signature, crypto.signed_message(context, body))
    verify(KOR.public_key(), c.signature, crypto.signed_message(crypto.CONSENT_CONTEXT, body))


def test_instants_are_kept_to_the_millisecond() -> None:
    c = grant_consent(item_id="x", originator="KOR", recipient="USA",
                      granted_at=AT.replace(microsecond=123456), key=KOR)
    assert c.granted_at.microsecond == 123000
    assert c.to_json()["granted_at"] == "2017-03-01T00:00:00.123Z"
    assert Consent.from_json(c.to_json()) == c


@settings(max_examples=200, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.text(st.characters(codec="utf-8")),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(st.characters(codec="ascii"), max_size=6), inner, max_size=4),
    max_leaves=20))
def test_orjson_writes_a_plain_value_as_the_c_encoder_does(value: Any) -> None:
    assert crypto._plain(value)
    assert crypto._encode_plain_bytes(value) == crypto._encode_plain(value).encode("utf-8")


def test_what_orjson_refuses_takes_the_c_encoders_path() -> None:
    # Nested past orjson's limit: the same bytes as before, not an error.
    deep: Any = 1
    for _ in range(300):
        deep = [deep]
    assert crypto._encode_plain_bytes(deep) == b"[" * 300 + b"1" + b"]" * 300
    with pytest.raises(MalformedInput):
        canonical({"x": "\udc00"})
