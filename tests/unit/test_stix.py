"""Labels as STIX 2.1 extension-based marking definitions, checked by stix2-validator."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gsomia.core.agreements import Catalogue
from gsomia.core.errors import MalformedInput
from gsomia.core.labels import SecurityLabel
from gsomia.core.stix import (
    EXTENSION_DEFINITION,
    IDENTITY,
    apply_marking,
    label_from_marking,
    label_marking,
)

AT = datetime(2017, 8, 29, 6, 0, tzinfo=UTC)


def valid(obj: dict[str, object]) -> bool:
    # Imported here, not at the top: every test worker collects this file, and the import
    # costs ~2 s of CPU (jsonschema's format grammars); only the worker running it pays.
    from stix2validator import ValidationOptions, validate_instance

    result = validate_instance(obj, ValidationOptions(strict=False))
    return bool(result.is_valid)


@pytest.mark.parametrize("caveats", [frozenset(), frozenset({"NOFORN"})])
def test_marking_validates_and_round_trips(shipped: Catalogue, caveats: frozenset[str]) -> None:
    label = SecurityLabel("KOR", "군사II급비밀", frozenset({"KOR", "JPN", "USA"}),
                          "dprk-missile", caveats, created=AT)
    marking = label_marking(label, label.english_marking(shipped.schemes), created=AT)
    assert marking["name"].startswith("SECRET//")
    assert valid(marking) and valid(EXTENSION_DEFINITION) and valid(IDENTITY)
    assert label_from_marking(marking, shipped.vocabulary) == label


def test_equal_labels_share_a_marking_and_different_ones_do_not() -> None:
    a = SecurityLabel("JPN", "秘", frozenset({"JPN", "KOR"}), "dprk-missile")
    b = SecurityLabel("JPN", "秘", frozenset({"KOR", "JPN"}), "dprk-missile")
    c = SecurityLabel("JPN", "極秘", frozenset({"JPN", "KOR"}), "dprk-missile")
    assert label_marking(a, "x", created=AT)["id"] == label_marking(b, "x", created=AT)["id"]
    assert label_marking(a, "x", created=AT)["id"] != label_marking(c, "x", created=AT)["id"]


def test_applying_a_marking_to_an_indicator() -> None:
    label = SecurityLabel("JPN", "秘", frozenset({"JPN", "KOR"}), "dprk-missile")
    marking = label_marking(label, "CONFIDENTIAL//REL TO JPN, KOR", created=AT)
    indicator = {
        "type": "indicator", "spec_version": "2.1",
        "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
        "created": "2017-08-29T06:00:00.000Z", "modified": "2017-08-29T06:00:00.000Z",
        "name": "TEL activity at Sunan", "pattern": "[x-dprk-site:name = 'Sunan']",
        "pattern_type": "stix", "valid_from": "2017-08-29T06:00:00Z",
    }
    marked = apply_marking(indicator, marking)
    assert marked["object_marking_refs"] == [marking["id"]]
    assert apply_marking(marked, marking)["object_marking_refs"] == [marking["id"]]


def test_foreign_markings_are_refused(shipped: Catalogue) -> None:
    tlp = {"type": "marking-definition", "id": "marking-definition--x", "definition_type": "tlp",
           "definition": {"tlp": "red"}}
    with pytest.raises(MalformedInput, match="no gsomia security label"):
        label_from_marking(tlp, shipped.vocabulary)
    with pytest.raises(MalformedInput):
        label_from_marking({"type": "indicator"}, shipped.vocabulary)
    with pytest.raises(MalformedInput, match="no gsomia security label"):
        label_from_marking({"type": "marking-definition", "extensions": []}, shipped.vocabulary)
