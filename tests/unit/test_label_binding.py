"""STANAG 4778-style binding of a security label to its content: any change breaks it."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.core.crypto import (
    bind,
    binding_digest,
    fingerprint,
    new_signing_key,
    verify_binding,
)
from gsomia.core.errors import ProofInvalid
from gsomia.core.labels import SecurityLabel

KEY = new_signing_key()
OTHER = new_signing_key()
LABEL = SecurityLabel("KOR", "군사II급비밀", frozenset({"KOR", "JPN"}), "dprk-missile")
CONTENT = {"type": "indicator", "spec_version": "2.1",
           "id": "indicator--1f6d9e0e-5f1e-4a43-9d3c-2b1c0f0e7a11",
           "created": "2017-08-28T20:40:00.000Z", "modified": "2017-08-28T20:40:00.000Z",
           "name": "TEL movement near Sunan", "pattern": "[x-dprk-site:name = 'Sunan']",
           "pattern_type": "stix", "valid_from": "2017-08-28T20:40:00Z"}


def test_a_bound_label_verifies_with_its_originators_key_only() -> None:
    binding = bind(LABEL.to_json(), CONTENT, KEY)
    # The digest is of exactly this label and this content, and names the signing key.
    assert binding.digest == binding_digest(LABEL.to_json(), CONTENT)
    assert binding.key == fingerprint(KEY)
    verify_binding(LABEL.to_json(), CONTENT, binding, KEY.public_key())
    with pytest.raises(ProofInvalid):
        verify_binding(LABEL.to_json(), CONTENT, binding, OTHER.public_key())


label_changes = st.sampled_from([
    lambda lab: replace(lab, level="군사III급비밀"),
    lambda lab: replace(lab, rel_to=lab.rel_to | {"USA"}),
    lambda lab: replace(lab, rel_to=frozenset({"KOR"})),
    lambda lab: replace(lab, purpose="regional-security"),
    lambda lab: replace(lab, caveats=frozenset({"NOFORN"})),
    lambda lab: replace(lab, originator="JPN"),
    lambda lab: replace(lab, policy="tisa-2014"),
    lambda lab: replace(lab, category="impact-prediction"),
    lambda lab: lab.remarked("JPN", "極秘"),
])


@settings(max_examples=50, deadline=None)
@given(label_changes)
def test_any_label_change_breaks_the_binding(change: object) -> None:
    binding = bind(LABEL.to_json(), CONTENT, KEY)
    changed = change(LABEL)  # type: ignore[operator]
    assert changed != LABEL
    with pytest.raises(ProofInvalid):
        verify_binding(changed.to_json(), CONTENT, binding, KEY.public_key())


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(sorted(CONTENT)), st.text(max_size=20))
def test_any_content_change_breaks_the_binding(field: str, value: str) -> None:
    binding = bind(LABEL.to_json(), CONTENT, KEY)
    tampered = {**CONTENT, field: value}
    if tampered == CONTENT:
        return
    with pytest.raises(ProofInvalid):
        verify_binding(LABEL.to_json(), tampered, binding, KEY.public_key())


def test_another_key_does_not_verify() -> None:
    binding = bind(LABEL.to_json(), CONTENT, KEY)
    with pytest.raises(ProofInvalid):
        verify_binding(LABEL.to_json(), CONTENT, binding, OTHER.public_key())
