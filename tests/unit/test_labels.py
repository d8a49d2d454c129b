"""Security labels: canonical form, markings in English and national form, parsing errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gsomia.core.agreements import Catalogue
from gsomia.core.errors import MalformedInput
from gsomia.core.labels import SecurityLabel, order_rel_to, rank_of
from gsomia.core.policy import ReleaseRequest, decide
from gsomia.shell.catalogue import load_catalogue


def test_english_and_national_markings(shipped: Catalogue) -> None:
    label = SecurityLabel("KOR", "군사II급비밀", frozenset({"KOR", "JPN", "USA"}), "dprk-missile")
    assert label.english_marking(shipped.schemes) == "SECRET//REL TO USA, JPN, KOR"
    assert label.national_marking() == "군사II급비밀//REL TO USA, JPN, KOR"
    received = label.remarked("JPN", "極秘")
    assert received.originator == "KOR"
    assert received.national_marking() == "極秘//FGI KOR//REL TO USA, JPN, KOR"
    assert received.english_marking(shipped.schemes) == "SECRET//REL TO USA, JPN, KOR"
    assert rank_of(received, shipped.schemes) == rank_of(label, shipped.schemes) == 2


def test_caveats_appear_in_marking(shipped: Catalogue) -> None:
    label = SecurityLabel("USA", "SECRET", frozenset({"USA"}), "dprk-missile",
                          frozenset({"NOFORN"}))
    assert label.english_marking(shipped.schemes) == "SECRET//NOFORN//REL TO USA"


def test_order_rel_to_puts_usa_first() -> None:
    assert order_rel_to(["KOR", "USA", "JPN", "AUS"]) == ("USA", "AUS", "JPN", "KOR")


def test_level_must_exist_in_its_scheme(shipped: Catalogue) -> None:
    bad = SecurityLabel("KOR", "極秘", frozenset({"KOR"}), "dprk-missile")
    with pytest.raises(MalformedInput, match="not a KOR classification level"):
        shipped.vocabulary.check(bad)


@pytest.mark.parametrize(("doc", "where"), [
    ({"level": "秘", "rel_to": ["JPN"], "purpose": "x"}, "label.originator"),
    ({"originator": "Japan", "level": "秘", "rel_to": ["JPN"], "purpose": "x"},
     "label.originator"),
    ({"originator": "JPN", "level": "秘", "rel_to": [], "purpose": "x"}, "label.rel_to"),
    ({"originator": "JPN", "level": "秘", "rel_to": ["jp"], "purpose": "x"}, "label.rel_to[0]"),
    ({"originator": "JPN", "level": 3, "rel_to": ["JPN"], "purpose": "x"}, "label.level"),
    ({"originator": "JPN", "level": "秘", "rel_to": ["JPN"], "purpose": "x", "colour": 1},
     "unknown label field"),
    ({"originator": "JPN", "level": "秘", "rel_to": ["JPN"], "purpose": "x",
      "created": "yesterday"}, "label.created"),
    ("not an object", "label"),
])
def test_bad_labels_name_the_field(shipped: Catalogue, doc: object, where: str) -> None:
    with pytest.raises(MalformedInput, match=where.replace("[", r"\[").replace("]", r"\]")):
        SecurityLabel.from_json(doc, shipped.vocabulary)


trigraphs = st.sampled_from(["JPN", "KOR", "USA", "AUS", "GBR"])
labels = st.builds(
    SecurityLabel,
    originator=trigraphs,
    level=st.sampled_from(["秘", "極秘", "군사II급비밀", "SECRET"]),
    rel_to=st.frozensets(trigraphs, min_size=1),
    purpose=st.sampled_from(["dprk-missile", "regional-security"]),
    caveats=st.frozensets(st.sampled_from(["NOFORN", "ORCON"])),
    scheme=trigraphs,
    policy=st.none() | st.just("tisa-2014"),
    category=st.none() | st.just("impact-prediction"),
    created=st.none() | st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2030, 1, 1),
                                     timezones=st.just(UTC)).map(
                                         lambda d: d.replace(microsecond=0)),
)


@given(labels)
def test_canonical_form_round_trips(label: SecurityLabel) -> None:
    assert SecurityLabel.from_stored(label.to_json()) == label
    assert list(label.to_json()["rel_to"]) == sorted(label.rel_to)


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2030, 1, 1),
                    timezones=st.just(UTC)))
def test_instants_read_back_to_the_same_text(at: datetime) -> None:
    from gsomia.core.types import instant, iso

    assert iso(instant(iso(at))) == iso(at)


# ---- issue 10, finding 8: a label holds only values the agreements know ----------------------

CATALOGUE = load_catalogue()
KNOWN = CATALOGUE.vocabulary
PARTIES = sorted(KNOWN.parties)


@st.composite
def known_label_docs(draw: st.DrawFn) -> dict[str, Any]:
    """A label every value of which the shipped catalogue knows."""
    originator = draw(st.sampled_from(PARTIES))
    scheme = KNOWN.schemes[originator]
    doc: dict[str, Any] = {
        "originator": originator,
        "level": draw(st.sampled_from([lv.name for lv in scheme.levels])),
        "rel_to": sorted(draw(st.sets(st.sampled_from(PARTIES), min_size=1))),
        "purpose": draw(st.sampled_from(sorted(KNOWN.purposes))),
        "caveats": sorted(draw(st.sets(st.sampled_from(sorted(KNOWN.caveats))))),
    }
    if draw(st.booleans()):
        doc["category"] = draw(st.sampled_from(sorted(KNOWN.categories)))
    policies = [p for p, scope in KNOWN.policies.items()
                if originator in scope.parties and doc["purpose"] in scope.purposes]
    if bool(policies) and draw(st.booleans()):
        doc["policy"] = draw(st.sampled_from(sorted(policies)))
    return doc


not_a_party = st.text(max_size=5).filter(lambda t: t not in KNOWN.parties) | \
    st.from_regex(r"\A[A-Z]{3}\Z").filter(lambda t: t not in KNOWN.parties)
not_a_purpose = st.text(max_size=20).filter(lambda t: t not in KNOWN.purposes)


@st.composite
def unknown_label_docs(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A known label with one field given a value no agreement knows; and that field."""
    doc = draw(known_label_docs())
    field = draw(st.sampled_from(["rel_to", "purpose", "originator", "caveats", "category",
                                  "policy", "level"]))
    if field == "rel_to":
        doc["rel_to"] = [*doc["rel_to"], draw(not_a_party)]
    elif field == "purpose":
        doc["purpose"] = draw(not_a_purpose)
        doc.pop("policy", None)
    elif field == "originator":
        doc["originator"] = draw(not_a_party)
    elif field == "caveats":
        doc["caveats"] = [*doc["caveats"],
                          draw(st.text(max_size=8).filter(lambda t: t not in KNOWN.caveats))]
    elif field == "category":
        doc["category"] = draw(st.text(max_size=20).filter(
            lambda t: t not in KNOWN.categories))
    elif field == "policy":
        doc["policy"] = draw(st.text(max_size=20).filter(lambda t: t not in KNOWN.policies))
    else:
        doc["level"] = draw(st.text(min_size=1, max_size=8).filter(
            lambda t: not KNOWN.schemes[doc["originator"]].has(t)))
    return doc, field


@given(known_label_docs())
def test_a_label_of_known_values_parses(doc: dict[str, Any]) -> None:
    label = SecurityLabel.from_json(doc, KNOWN)
    assert label.to_json() == {**doc, "caveats": sorted(doc["caveats"])}


@given(unknown_label_docs())
def test_a_label_with_an_unknown_value_never_parses_nor_reaches_a_decision(
        case: tuple[dict[str, Any], str]) -> None:
    doc, field = case
    with pytest.raises(MalformedInput) as caught:
        SecurityLabel.from_json(doc, KNOWN)
    assert caught.value.where.startswith(f"label.{field}")
    assert caught.value.expected
    request = {"item_id": "indicator--1", "label": doc, "sender": doc["originator"],
               "recipient": "JPN", "at": "2024-01-01"}
    with pytest.raises(MalformedInput):
        ReleaseRequest.from_json(request, CATALOGUE)


@given(st.sampled_from(PARTIES), st.sampled_from(PARTIES) | not_a_party,
       st.sampled_from(PARTIES) | not_a_party)
def test_a_release_request_names_only_known_parties(originator: str, sender: str,
                                                    recipient: str) -> None:
    doc = {"item_id": "indicator--1", "sender": sender, "recipient": recipient,
           "at": "2024-01-01",
           "label": {"originator": originator, "level": KNOWN.schemes[originator].levels[0].name,
                     "rel_to": PARTIES, "purpose": "dprk-missile"}}
    if sender in KNOWN.parties and recipient in KNOWN.parties:
        decide(ReleaseRequest.from_json(doc, CATALOGUE), CATALOGUE)
        return
    with pytest.raises(MalformedInput) as caught:
        ReleaseRequest.from_json(doc, CATALOGUE)
    assert caught.value.where == ("sender" if sender not in KNOWN.parties else "recipient")


def test_every_shipped_sensor_label_holds_known_values() -> None:
    from gsomia.shell.feeds import load_sensors

    for sensor in load_sensors():
        for label in (sensor.label, sensor.report_label):
            assert SecurityLabel.from_json(label.to_json(), KNOWN) == label
