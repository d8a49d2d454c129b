"""Security labels: canonical form, markings in English and national form, parsing errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gsomia.core.agreements import Catalogue
from gsomia.core.errors import MalformedInput
from gsomia.core.labels import SecurityLabel, order_rel_to, rank_of


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
        bad.checked(shipped.schemes)


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
def test_bad_labels_name_the_field(doc: object, where: str) -> None:
    with pytest.raises(MalformedInput, match=where.replace("[", r"\[").replace("]", r"\]")):
        SecurityLabel.from_json(doc)


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
    assert SecurityLabel.from_json(label.to_json()) == label
    assert list(label.to_json()["rel_to"]) == sorted(label.rel_to)


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2030, 1, 1),
                    timezones=st.just(UTC)))
def test_instants_read_back_to_the_same_text(at: datetime) -> None:
    from gsomia.core.types import instant, iso

    assert iso(instant(iso(at))) == iso(at)
