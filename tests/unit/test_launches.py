"""The launch data set: parsing, counts, and finding a launch by its UTC or Korean date."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time

import click
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from gsomia.core.errors import MalformedInput
from gsomia.core.tracking import launches as L
from gsomia.shell import feeds
from gsomia.shell.commands.tracking import register


def test_the_shipped_data_set_parses_whole() -> None:
    all_ = feeds.load_launches()
    assert len(all_) == 339
    with_figures = [x for x in all_ if x.apogee_km is not None and x.distance_km is not None]
    assert len(with_figures) == 216
    assert sum(x.fittable for x in all_) == 216
    assert {x.missile_class for x in all_} <= {"SRBM", "MRBM", "IRBM", "ICBM", "SLBM", "SLV",
                                                 "HGV"}
    assert all(-90 <= x.facility.lat_deg <= 90 for x in all_)
    assert {x.date_precision for x in all_} == {"day", "month"}


def test_the_2017_08_29_launch_is_found_by_its_korean_date() -> None:
    x = feeds.find_launch("2017-08-29")
    assert x.missile.id == "hwasong-12"
    assert x.launched_at == datetime(2017, 8, 28, 20, 58, tzinfo=UTC)
    assert x.local_date == date(2017, 8, 29)
    assert feeds.find_launch("2017-08-28") == x
    assert (x.apogee_km, x.distance_km, x.bearing_deg) == (550.0, 2700.0, 73.0)
    req = x.flight_request()
    assert (req.missile_class, req.apogee_km, req.range_km) == ("IRBM", 550.0, 2700.0)


def test_index_picks_among_several_that_day_in_time_order() -> None:
    day = L.on_date(feeds.load_launches(), date(2019, 7, 25))
    assert [x.utc_time for x in day] == [time(20, 34), time(20, 57)]
    assert feeds.find_launch("2019-07-25", 1).utc_time == time(20, 57)
    assert feeds.find_launch("2019-07-25").utc_time == time(20, 34)
    with pytest.raises(MalformedInput, match="index 2"):
        feeds.find_launch("2019-07-25", 2)
    with pytest.raises(MalformedInput, match="no launch"):
        feeds.find_launch("2001-01-01")
    with pytest.raises(MalformedInput):
        feeds.find_launch("yesterday")


@given(st.sampled_from([x for x in feeds.load_launches() if x.launched_at is not None]))
def test_every_timed_launch_is_found_on_its_utc_and_its_local_date(x: L.Launch) -> None:
    for day in (x.date, x.local_date):
        assert x in L.on_date(feeds.load_launches(), day)


@given(st.sampled_from(list(feeds.load_launches())))
def test_a_launch_is_named_by_its_local_date_with_its_utc_beside_it(x: L.Launch) -> None:
    """Headers name the date asked for (Korea/Japan) and the data set's (UTC), never one of
    them alone."""
    text = x.when()
    if x.launched_at is None:
        assert text == f"{x.date.isoformat()} (UTC date; time unknown)"
    else:
        assert text.startswith(f"{x.local_date.isoformat()} ")
        assert f"({x.launched_at:%Y-%m-%d %H:%M} UTC)" in text


def test_the_2017_08_29_launch_is_named_for_both_dates() -> None:
    assert feeds.find_launch("2017-08-29").when() == \
        "2017-08-29 05:58 Korea/Japan time (2017-08-28 20:58 UTC)"


def test_month_only_records_are_never_matched_by_a_day() -> None:
    month = [x for x in feeds.load_launches() if x.date_precision == "month"]
    assert month and all(x not in L.on_date(feeds.load_launches(), x.date) for x in month)
    assert month[0].to_json()["date"] == "1984-09"


@pytest.mark.parametrize(("text", "value"), [
    ("21:13 (UTC)", time(21, 13)), ("04:24 (UTC)", time(4, 24)), ("unknown", None),
    ("9:05 (UTC)", time(9, 5)),
])
def test_utc_times(text: str, value: time | None) -> None:
    assert L.utc_time(text, where="t") == value


@pytest.mark.parametrize("text", ["24:00 (UTC)", "21:13", "21:13 (KST)", 2113, None])
def test_bad_utc_times_are_refused(text: object) -> None:
    with pytest.raises(MalformedInput):
        L.utc_time(text, where="t")


@pytest.mark.parametrize(("raw", "value"), [
    (550, 550.0), (2111.5, 2111.5), ("100", 100.0), ("unknown", None), ("na", None),
])
def test_numbers(raw: object, value: float | None) -> None:
    assert L.number(raw, where="n") == value


@pytest.mark.parametrize("raw", ["far", True, [1], {"km": 3}])
def test_bad_numbers_are_refused(raw: object) -> None:
    with pytest.raises(MalformedInput):
        L.number(raw, where="n")


def test_records_naming_unknown_facilities_or_missiles_are_refused() -> None:
    fac = {"facilities": {"sohae": {"name": "Sohae", "lat": 39.66, "lon": 124.7}}}
    mis = {"unha-3": {"name": "Unha-3", "type": "SLV"}}
    rec = {"date": "2012-12-12", "time": "00:49 (UTC)", "missile": "unha-3",
           "facility": "sohae", "apogee": 581, "distance": 2600, "bearing": 181,
           "outcome": "success", "landing": "na", "description": ""}
    ok = L.launches({"timeBins": [{"year": 2012, "data": [rec]}]}, fac, mis)
    assert ok[0].launched_at == datetime(2012, 12, 12, 0, 49, tzinfo=UTC)
    for bad in ({"facility": "nowhere"}, {"missile": "v-2"}, {"date": "12/12/2012"}):
        with pytest.raises(MalformedInput):
            L.launches({"timeBins": [{"year": 2012, "data": [{**rec, **bad}]}]}, fac, mis)
    with pytest.raises(MalformedInput):
        L.launches({"bins": []}, fac, mis)
    with pytest.raises(MalformedInput):
        L.facilities({"facilities": {"x": {"lat": 123, "lon": 0}}})
    with pytest.raises(MalformedInput):
        L.launches({"timeBins": [{"year": 2012, "data": [{**rec, "apogee": "unknown"}]}]},
                   fac, mis)[0].flight_request()


def _cli() -> click.Group:
    @click.group()
    def cli() -> None:
        pass

    register(cli)
    return cli


def test_launches_command_lists_a_year() -> None:
    res = CliRunner().invoke(_cli(), ["launches", "--year", "2017", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["count"] == len(doc["launches"]) > 10
    assert all(r["date"].startswith("2017") for r in doc["launches"])
    hw12 = [r for r in doc["launches"] if r["launched_at"] == "2017-08-28T20:58:00Z"]
    assert hw12 and hw12[0]["local_date"] == "2017-08-29"
    res = CliRunner().invoke(_cli(), ["launches", "--date", "2019-07-25", "--fittable"])
    assert res.exit_code == 0 and res.output.count("Hwasong-11A") == 2
