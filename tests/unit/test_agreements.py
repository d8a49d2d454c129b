"""Agreements as data: the real timeline, equivalence, topology, and schema errors."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from gsomia.core.agreements import Catalogue, in_force_periods, status
from gsomia.core.errors import MalformedInput, NoEquivalent
from gsomia.core.types import instant
from gsomia.shell.catalogue import load_catalogue

SHIPPED = {"jpn-kor-gsomia-2016", "usa-jpn-gsomia-2007", "usa-kor-gsomia-1987", "tisa-2014",
           "trilateral-mwd-2023"}


def test_the_five_agreements_ship(shipped: Catalogue) -> None:
    assert set(shipped.agreements) == SHIPPED
    for a in shipped.agreements.values():
        assert "dprk-missile" in a.purposes
        assert a.term_years == 1 and a.automatic_renewal and a.notice_days == 90


@pytest.mark.parametrize(("day", "state", "terminates_on"), [
    ("2016-11-22", "pending", None),
    ("2016-11-23", "in-force", None),
    ("2017-05-01", "in-force", None),
    ("2019-08-22", "in-force", None),          # announced, but the written notice is the 23rd
    ("2019-08-23", "notice-given", "2019-11-23"),
    ("2019-10-01", "notice-given", "2019-11-23"),
    ("2019-11-21", "notice-given", "2019-11-23"),
    ("2019-11-22", "in-force", None),          # suspended about six hours before expiry
    ("2019-11-24", "in-force", None),
    ("2021-06-01", "in-force", None),
    ("2023-04-01", "in-force", None),
])
def test_japan_rok_gsomia_real_history(shipped: Catalogue, day: str, state: str,
                                       terminates_on: str | None) -> None:
    st = status(shipped.get("jpn-kor-gsomia-2016"), instant(day))
    assert st.state == state
    assert (st.terminates_on.isoformat() if st.terminates_on else None) == terminates_on


def test_suspension_then_withdrawal_is_recorded(shipped: Catalogue) -> None:
    a = shipped.get("jpn-kor-gsomia-2016")
    assert status(a, instant("2020-01-01")).notice_suspended is True
    assert status(a, instant("2023-03-21")).notice_suspended is False
    assert in_force_periods(a) == [(date(2016, 11, 23), None)]


def test_without_the_suspension_the_agreement_would_have_ended(tmp_path: Path) -> None:
    text = (Path(__file__).parents[2] / "src/gsomia/data/agreements/jpn-kor-gsomia-2016.yaml"
            ).read_text("utf-8")
    kept = [line for line in text.splitlines()
            if "suspension-of-notice" not in line and "withdrawal-of-notice" not in line]
    (tmp_path / "x.yaml").write_text("\n".join(kept).replace("jpn-kor-gsomia-2016",
                                                             "jpn-kor-what-if"), "utf-8")
    a = load_catalogue([tmp_path]).get("jpn-kor-what-if")
    assert status(a, instant("2019-11-22")).state == "notice-given"
    assert status(a, instant("2019-11-23")).state == "terminated"
    assert status(a, instant("2023-04-01")).state == "terminated"
    assert not a.in_force_at(instant("2019-11-23T00:00:00Z"))
    assert a.in_force_at(instant("2019-11-22T23:59:59Z"))
    assert in_force_periods(a) == [(date(2016, 11, 23), date(2019, 11, 23))]


@pytest.mark.parametrize(("agreement", "day", "state"), [
    ("usa-kor-gsomia-1987", "1987-09-23", "pending"),
    ("usa-kor-gsomia-1987", "1987-09-24", "in-force"),
    ("usa-jpn-gsomia-2007", "2007-08-09", "pending"),
    ("usa-jpn-gsomia-2007", "2007-08-10", "in-force"),
    ("tisa-2014", "2014-12-28", "pending"),
    ("tisa-2014", "2014-12-29", "in-force"),
    ("trilateral-mwd-2023", "2023-12-18", "pending"),
    ("trilateral-mwd-2023", "2023-12-19", "in-force"),
])
def test_neighbours_timelines(shipped: Catalogue, agreement: str, day: str, state: str) -> None:
    assert status(shipped.get(agreement), instant(day)).state == state


def test_article_4_equivalence(shipped: Catalogue) -> None:
    a = shipped.get("jpn-kor-gsomia-2016")
    assert a.equivalent("JPN", "秘", "KOR") == "군사III급비밀"
    assert a.equivalent("JPN", "極秘", "KOR") == "군사II급비밀"
    assert a.equivalent("JPN", "特定秘密", "KOR") == "군사II급비밀"
    assert a.equivalent("KOR", "군사II급비밀", "JPN") == "極秘"
    assert a.equivalent("KOR", "군사III급비밀", "JPN") == "秘"
    with pytest.raises(NoEquivalent):
        a.equivalent("KOR", "군사I급비밀", "JPN")
    with pytest.raises(NoEquivalent):
        a.equivalent("JPN", "機密", "KOR")
    us = shipped.get("usa-kor-gsomia-1987")
    assert us.equivalent("USA", "TOP SECRET", "KOR") == "군사I급비밀"


def test_topologies(shipped: Catalogue) -> None:
    tisa = shipped.get("tisa-2014")
    assert tisa.carries("KOR", "USA") and tisa.carries("USA", "JPN")
    assert not tisa.carries("KOR", "JPN") and not tisa.carries("JPN", "KOR")
    assert shipped.get("trilateral-mwd-2023").carries("KOR", "JPN")
    assert [a.id for a in shipped.channels("KOR", "JPN")] == ["jpn-kor-gsomia-2016",
                                                             "trilateral-mwd-2023"]
    assert shipped.channels("KOR", "KOR") == ()


GOOD = """\
id: aus-jpn-test
title: A user agreement
legally_binding: true
parties: [JPN, KOR]
topology: bilateral
highest_level: CONFIDENTIAL
equivalence:
  - english: CONFIDENTIAL
    levels: {JPN: [秘], KOR: [군사III급비밀]}
purposes: {dprk-missile: x}
term: {years: 1, automatic_renewal: true, notice_days: 90}
history:
  - {date: 2020-01-01, event: entry-into-force}
"""


def test_user_agreements_load_from_a_folder(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text(GOOD, "utf-8")
    cat = load_catalogue([tmp_path])
    assert "aus-jpn-test" in cat.agreements and set(cat.agreements) >= SHIPPED


@pytest.mark.parametrize(("old", "new", "field", "expected"), [
    ("topology: bilateral", "topology: star", "topology", "one of bilateral, hub, mesh"),
    ("2020-01-01, event: entry", "2020-13-01, event: entry", "history[0].date", "YYYY-MM-DD"),
    ("event: entry-into-force", "event: started", "history[0].event", "one of signature"),
    ("[秘]", "[極秘]", "equivalence[0].levels.JPN", ""),
    ("[秘]", "[ひみつ]", "equivalence[0].levels.JPN", "one of 機密"),
    ("highest_level: CONFIDENTIAL", "highest_level: SECRET", "highest_level", "CONFIDENTIAL"),
    ("parties: [JPN, KOR]", "parties: [JPN, Korea]", "parties[1]", "[A-Z]{3}"),
    ("title: A user agreement\n", "", "(top level)", "present"),
    ("notice_days: 90", "notice_days: ninety", "term.notice_days", "integer"),
])
def test_invalid_files_name_file_field_and_expectation(tmp_path: Path, old: str, new: str,
                                                       field: str, expected: str) -> None:
    assert old in GOOD
    (tmp_path / "bad.yaml").write_text(GOOD.replace(old, new), "utf-8")
    with pytest.raises(MalformedInput) as caught:
        load_catalogue([tmp_path])
    message = str(caught.value)
    assert "bad.yaml" in message
    assert field in message
    assert expected in message


def test_not_yaml_and_duplicate_ids_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("id: [unclosed", "utf-8")
    with pytest.raises(MalformedInput, match=r"a.yaml:1:"):
        load_catalogue([tmp_path])
    (tmp_path / "a.yaml").write_text(GOOD.replace("aus-jpn-test", "tisa-2014"), "utf-8")
    with pytest.raises(MalformedInput, match="defined twice"):
        load_catalogue([tmp_path])
    with pytest.raises(MalformedInput, match="not a folder"):
        load_catalogue([tmp_path / "missing"])
