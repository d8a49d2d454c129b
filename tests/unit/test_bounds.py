"""The bounds of :mod:`gsomia.core.limits`: nesting counted on text and on values agrees,
the item bound fits a sealed envelope under the peer body bound, and nothing that walks JSON
(canonical bytes, opening an envelope) meets a RecursionError."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.core import crypto, limits
from gsomia.core.errors import MalformedInput
from gsomia.core.stix import check_spec_version

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.text(alphabet=st.sampled_from('ab[]{}"\\\n,:é'), max_size=8),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(alphabet=st.sampled_from('k[]{}"\\'), max_size=3), inner,
                      max_size=3),
    max_leaves=30)


@given(json_values)
def test_depth_of_the_text_is_the_depth_of_the_value(value: Any) -> None:
    assert limits.text_depth(json.dumps(value)) == limits.depth(value)
    assert limits.text_depth(json.dumps(value, ensure_ascii=False).encode()) \
        == limits.depth(value)


@settings(max_examples=30)
@given(st.integers(0, 3000), st.booleans())
def test_nesting_over_the_bound_is_malformed_input_never_a_recursion_error(
        levels: int, objects: bool) -> None:
    if objects:
        text, expected = '{"k":' * levels + '{"k":1}' + "}" * levels, levels + 1
    else:
        text, expected = "[" * levels + "1" + "]" * levels, levels
    assert limits.text_depth(text) == expected
    if expected > limits.MAX_DEPTH:
        with pytest.raises(MalformedInput, match="nested"):
            limits.check_text_depth(text, where="body")
    else:
        limits.check_text_depth(text, where="body")
        assert limits.depth(json.loads(text)) == expected


def test_canonical_refuses_a_value_deeper_than_the_stack_as_bad_input() -> None:
    value: Any = "bottom"
    for _ in range(5000):
        value = [value]
    with pytest.raises(MalformedInput, match="nested"):
        crypto.canonical(value, where="object")
    assert limits.depth(value, limits.MAX_DEPTH) == limits.MAX_DEPTH + 1


def test_an_envelope_holding_a_deep_payload_is_refused_on_opening() -> None:
    sender, recipient = crypto.new_signing_key(), crypto.new_envelope_key()
    envelope = crypto.seal_envelope(
        sender="KOR", recipient="JPN", item_id="indicator--1", version="v1",
        nonce=os.urandom(16), sent_at=datetime(2026, 1, 1, tzinfo=UTC),
        payload={"object": {"deep": json.loads("[" * 60 + "]" * 60)}}, sender_key=sender,
        recipient_public=recipient.public_key())
    crypto.open_envelope(envelope, recipient="JPN", recipient_private=recipient,
                         sender_public=sender.public_key())
    plaintext = b'{"object":' + b"[" * 3000 + b"]" * 3000 + b"}"
    header = crypto.canonical(envelope.header())
    enc, ciphertext = crypto.seal(recipient.public_key(), crypto.ENVELOPE_CONTEXT, header,
                                  plaintext)
    message = crypto.signed_message(crypto.ENVELOPE_CONTEXT, crypto.sha256(header)
                                    + crypto.sha256(enc) + crypto.sha256(ciphertext))
    from dataclasses import replace

    deep = replace(envelope, enc=enc, ciphertext=ciphertext,
                   signature=crypto.sign(sender, message))
    with pytest.raises(MalformedInput, match="nested"):
        crypto.open_envelope(deep, recipient="JPN", recipient_private=recipient,
                             sender_public=sender.public_key())


def test_the_largest_item_fits_one_peer_request_sealed() -> None:
    """The bound at publish and the bound at the partner's door are one: an item of
    MAX_ITEM_BYTES, with a label, binding and consents, sealed, posted as a batch of one,
    is within PEER_BODY."""
    key, recipient = crypto.new_signing_key(), crypto.new_envelope_key()
    overhead = len(crypto.canonical({"description": ""}))
    obj = {"description": "x" * (limits.MAX_ITEM_BYTES - overhead)}
    assert len(crypto.canonical(obj)) == limits.MAX_ITEM_BYTES
    label = {"originator": "KOR", "level": "군사II급비밀", "rel_to": ["JPN", "KOR", "USA"],
             "purpose": "dprk-missile", "caveats": ["ORCON"], "policy": "x" * 100,
             "category": "y" * 100, "created": "2026-01-01T00:00:00.000Z"}
    binding = crypto.bind(label, obj, key).to_json()
    consent = crypto.grant_consent(item_id="indicator--1", originator="KOR", recipient="USA",
                                   granted_at=datetime(2026, 1, 1, tzinfo=UTC), key=key)
    envelope = crypto.seal_envelope(
        sender="JPN", recipient="USA", item_id="indicator--" + "1" * 36, version="v" * 30,
        nonce=os.urandom(64), sent_at=datetime(2026, 1, 1, tzinfo=UTC),
        payload={"object": obj, "label": label, "binding": binding,
                 "consents": [consent.to_json()] * 20},
        sender_key=key, recipient_public=recipient.public_key())
    body = json.dumps({"envelopes": [envelope.to_json()]})
    assert len(body) <= limits.PEER_BODY
    with pytest.raises(MalformedInput, match="partner"):
        limits.check_item_size(b"x" * (limits.MAX_ITEM_BYTES + 1), where="object")


@pytest.mark.parametrize(("obj", "ok"), [
    ({"type": "indicator", "spec_version": "2.1", "created": "x"}, True),
    ({"type": "indicator", "spec_version": "2.0", "created": "x"}, False),
    ({"type": "indicator", "spec_version": 2.1, "created": "x"}, False),
    ({"type": "indicator", "created": "x"}, False),   # STIX 2.0 objects carry none
    ({"type": "ipv4-addr", "value": "10.0.0.1"}, True),  # an observable defaults to 2.1
    ({"type": "ipv4-addr", "spec_version": "2.0", "value": "10.0.0.1"}, False),
    ({"type": "ipv4-addr", "spec_version": None, "value": "10.0.0.1"}, False),
])
def test_only_stix_2_1(obj: dict[str, Any], ok: bool) -> None:
    if ok:
        check_spec_version(obj, where="object")
    else:
        with pytest.raises(MalformedInput, match=r"2\.1"):
            check_spec_version(obj, where="object")
