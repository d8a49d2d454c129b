"""The node's own STIX 2.1 check (``stix_check.check_stix``: the OASIS schemas shipped in
stix2-validator, compiled by jsonschema-rs, plus the MUST rules the schemas do not make)
refuses everything stix2-validator refuses: on the objects of the test suite and examples,
and on Hypothesis-made variants of valid objects of every kind. It may refuse more."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gsomia.core.errors import MalformedInput
from gsomia.shell.node import validate_stix
from gsomia.shell.stix_check import check_stix

ROOT = Path(__file__).resolve().parents[2]
T0, T1 = "2024-03-01T08:00:00.000Z", "2024-03-01T09:00:00.000Z"
_ID = "--6ba7b810-9dad-41d1-80b4-00c04fd430c8"
_REF = "identity--e8b2ad8a-3c5b-4d1f-9a70-1f0c4a5f2b11"

VALID: list[dict[str, Any]] = [
    {"type": "indicator", "spec_version": "2.1", "id": "indicator" + _ID, "created": T0,
     "modified": T1, "name": "TEL at Sinpo", "pattern": "[x-dprk-site:name = 'Sinpo']",
     "pattern_type": "stix", "valid_from": "2024-03-01T08:00:00Z",
     "indicator_types": ["malicious-activity"], "confidence": 80, "labels": ["missile"]},
    {"type": "malware", "spec_version": "2.1", "id": "malware" + _ID, "created": T0,
     "modified": T0, "name": "Lazarus loader", "is_family": True,
     "malware_types": ["remote-access-trojan"]},
    {"type": "report", "spec_version": "2.1", "id": "report" + _ID, "created": T0,
     "modified": T0, "name": "Launch", "published": T1, "report_types": ["threat-report"],
     "object_refs": ["indicator" + _ID]},
    {"type": "identity", "spec_version": "2.1", "id": "identity" + _ID, "created": T0,
     "modified": T0, "name": "JSDF", "identity_class": "organization"},
    {"type": "relationship", "spec_version": "2.1", "id": "relationship" + _ID,
     "created": T0, "modified": T0, "relationship_type": "indicates",
     "source_ref": "indicator" + _ID, "target_ref": "malware" + _ID},
    {"type": "sighting", "spec_version": "2.1", "id": "sighting" + _ID, "created": T0,
     "modified": T0, "sighting_of_ref": "indicator" + _ID, "count": 3,
     "first_seen": T0, "last_seen": T1},
    {"type": "location", "spec_version": "2.1", "id": "location" + _ID, "created": T0,
     "modified": T0, "latitude": 39.66, "longitude": 124.7, "precision": 50.0},
    {"type": "note", "spec_version": "2.1", "id": "note" + _ID, "created": T0,
     "modified": T0, "content": "Seen again", "object_refs": ["indicator" + _ID],
     "created_by_ref": _REF},
    {"type": "threat-actor", "spec_version": "2.1", "id": "threat-actor" + _ID,
     "created": T0, "modified": T0, "name": "Unit 121",
     "threat_actor_types": ["nation-state"]},
    {"type": "vulnerability", "spec_version": "2.1", "id": "vulnerability" + _ID,
     "created": T0, "modified": T0, "name": "CVE-2024-0001",
     "external_references": [{"source_name": "cve", "external_id": "CVE-2024-0001"}]},
    {"type": "observed-data", "spec_version": "2.1", "id": "observed-data" + _ID,
     "created": T0, "modified": T0, "first_observed": T0, "last_observed": T1,
     "number_observed": 1, "object_refs": ["ipv4-addr" + _ID]},
    {"type": "ipv4-addr", "spec_version": "2.1", "id": "ipv4-addr" + _ID,
     "value": "198.51.100.3"},
    {"type": "file", "spec_version": "2.1", "id": "file" + _ID, "name": "a.exe",
     "hashes": {"SHA-256": "a" * 64}},
    {"type": "campaign", "spec_version": "2.1", "id": "campaign" + _ID, "created": T0,
     "modified": T0, "name": "Summer", "first_seen": T0, "last_seen": T1},
    {"type": "x-dprk-launch", "spec_version": "2.1", "id": "x-dprk-launch" + _ID,
     "created": T0, "modified": T0, "x_site": "Sohae"},
    {"type": "software", "spec_version": "2.1", "id": "software" + _ID, "name": "loader",
     "languages": ["kor"], "cpe": "cpe:2.3:a:acme:loader:1.0:*:*:*:*:*:*:*"},
    {"type": "artifact", "spec_version": "2.1", "id": "artifact" + _ID,
     "mime_type": "application/zip", "url": "https://example.org/a.zip",
     "hashes": {"SHA-256": "b" * 64}},
    {"type": "process", "spec_version": "2.1", "id": "process" + _ID, "pid": 4},
    {"type": "email-addr", "spec_version": "2.1", "id": "email-addr" + _ID,
     "value": "kim@example.org"},
    {"type": "domain-name", "spec_version": "2.1", "id": "domain-name" + _ID,
     "value": "example.org"},
    {"type": "directory", "spec_version": "2.1", "id": "directory" + _ID, "path": "/tmp",
     "path_enc": "UTF-8"},
    {"type": "network-traffic", "spec_version": "2.1", "id": "network-traffic" + _ID,
     "protocols": ["tcp"], "src_ref": "ipv4-addr" + _ID, "start": T0, "end": T1},
    {"type": "language-content", "spec_version": "2.1", "id": "language-content" + _ID,
     "created": T0, "modified": T0, "object_ref": "indicator" + _ID,
     "object_modified": T1, "contents": {"ko": {"name": "이동식 발사대"}}},
    {"type": "grouping", "spec_version": "2.1", "id": "grouping" + _ID, "created": T0,
     "modified": T0, "context": "suspicious-activity", "object_refs": ["indicator" + _ID],
     "lang": "en", "granular_markings": [
         {"marking_ref": "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
          "selectors": ["object_refs.[0]", "context"]}]},
]

_JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False, width=32),
    st.sampled_from(["", "x", "2024-13-01T00:00:00Z", "2024-03-01T08:00:00.000Z",
                     "2024-03-01 08:00:00", "indicator--not-a-uuid", "identity" + _ID,
                     "malicious-activity", "stix", "2.0", "2.1", "http://a", "a" * 300]),
    st.lists(st.sampled_from(["a", "indicator" + _ID, ""]), max_size=2),
    st.dictionaries(st.sampled_from(["a", "SHA-256", "x_y", ""]),
                    st.sampled_from(["a", "b" * 64, ""]), max_size=2),
)
_JUNK = st.one_of(_JUNK, st.sampled_from([
    "en", "ko", "xx-yy", "kor", "UTF-8", "no-such-set", "application/x-nothing", "text/plain",
    "cpe:2.3:a:x", "cpe:/a:acme:loader:1.0", ["object_refs.[3]"], ["nothing.here"],
    [{"marking_ref": "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
      "selectors": ["name", "object_refs.[9]"]}], {"ko": {"Bad Key": "x"}},
    "[a:name = 'x']", "[ipv4-addr:Value = '1.2.3.4']", "[file:hashes.'SHA-256' = 'zz']",
    "2024-03-01T08:00:60Z", "2024-03-01T08:00:00Z", "2024-03-01T07:00:00.000Z",
    "not a uri", "user@example.org", "no-at-sign", "-bad-.example", "例え.jp"]))
_NAMES = st.sampled_from(["x_gsomia_note", "x_a", "X_upper", "custom", "a", "ab",
                          "lang", "languages", "mime_type", "path_enc", "name_enc", "cpe",
                          "selectors", "contents", "pattern", "pattern_version", "start",
                          "end", "object_modified", "url", "value",
                          "x-dash", "with space", "n" * 251, "extensions", "granular_markings",
                          "object_marking_refs", "created_by_ref", "lang", "revoked",
                          "external_references", "confidence", "labels"])


@st.composite
def variants(draw: st.DrawFn) -> dict[str, Any]:
    obj: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["drop", "set", "add", "retime", "reid"]))
        keys = sorted(obj)
        if how == "drop" and keys:
            obj.pop(draw(st.sampled_from(keys)))
        elif how == "set" and keys:
            obj[draw(st.sampled_from(keys))] = draw(_JUNK)
        elif how == "add":
            obj[draw(_NAMES)] = draw(_JUNK)
        elif how == "retime":
            name = draw(st.sampled_from(["created", "modified", "valid_from", "valid_until",
                                         "first_seen", "last_seen", "published"]))
            obj[name] = draw(st.sampled_from([T0, T1, "2024-02-30T00:00:00Z",
                                              "2024-03-01T08:00:00+09:00", "2023-01-01T00:00:00Z",
                                              "2024-03-01T08:00:00.123456789Z"]))
        else:
            kind = str(obj.get("type", "indicator"))
            obj["id"] = draw(st.sampled_from([f"{kind}--bad", f"malware{_ID}", kind + _ID,
                                              f"{kind}--6BA7B810-9DAD-41D1-80B4-00C04FD430C8",
                                              f"{kind}--00000000-0000-0000-0000-000000000000"]))
    return obj


def _refuses(check: Callable[[dict[str, Any]], None], obj: dict[str, Any]) -> bool:
    try:
        check(obj)
    except MalformedInput:
        return True
    return False


def _corpus() -> list[dict[str, Any]]:
    """STIX objects of the examples and of the tests' JSON assets."""
    out: list[dict[str, Any]] = list(VALID)
    for path in [*sorted((ROOT / "examples").glob("*.json"))]:
        doc = json.loads(path.read_text("utf-8"))
        objs = doc.get("objects", [doc]) if isinstance(doc, dict) else doc
        out.extend(o for o in objs if isinstance(o, dict) and "type" in o)
    return out


@pytest.mark.parametrize("obj", _corpus(), ids=lambda o: str(o.get("id", "?"))[:40])
def test_the_corpus_is_judged_alike(obj: dict[str, Any]) -> None:
    assert _refuses(check_stix, obj) == _refuses(validate_stix, obj)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(variants())
def test_whatever_stix2_validator_refuses_the_node_refuses(obj: dict[str, Any]) -> None:
    if _refuses(validate_stix, obj):
        assert _refuses(check_stix, obj), json.dumps(obj)
