"""Measures of warnings against the true flight (``gsomia evaluate``)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gsomia.core import measures as M
from gsomia.core.tracking.trajectory import fit
from gsomia.core.warning import Warning
from gsomia.shell import feeds

ATLAS = feeds.load_geography()


def test_the_2017_hwasong12_crossed_hokkaido_and_no_korean_land() -> None:
    traj = fit(feeds.find_launch("2017-08-29").flight_request())
    jpn = M.truth(traj, ATLAS, "JPN")
    assert "Hokkaido" in jpn.regions
    assert jpn.passed_s is not None and 0.0 < jpn.passed_s < traj.flight_time_s
    assert M.truth(traj, ATLAS, "KOR") == M.Truth((), None)
    assert set(jpn.regions) <= set(M.truth(traj, ATLAS, "USA").regions)


def test_a_short_range_missile_into_the_east_sea_crosses_nobodys_land() -> None:
    launch = feeds.find_launch("2019-05-09", 0)
    traj = fit(launch.flight_request())
    for party in ("JPN", "KOR", "USA"):
        assert M.truth(traj, ATLAS, party).regions == ()


def alert(at: float, regions: tuple[str, ...], level: str = "alert",
          action: str = "issued") -> Warning:
    return Warning("JPN", action, at, "t", regions, level)  # type: ignore[arg-type]


LAND = M.land_names(ATLAS)
EEZ = "JPN exclusive economic zone (approximate)"


def test_row_measures_count_land_alerts_not_notices_nor_sea_alerts() -> None:
    tr = M.Truth(("Hokkaido",), 400.0)
    assert "Hokkaido" in LAND and EEZ not in LAND and EEZ in {r.name for r in ATLAS.regions}
    notice = M.row_measures([alert(200.0, ("Hokkaido",), level="notice")], tr, LAND)
    assert notice["first_land_alert_s"] is None and not notice["alerted_right_regions"]
    sea = M.row_measures([alert(190.0, (EEZ,))], tr, LAND)
    assert sea["first_land_alert_s"] is None and sea["land_alert_regions"] == ""
    wrong = M.row_measures([alert(200.0, ("Aomori",))], tr, LAND)
    assert wrong["first_land_alert_s"] == 200.0 and not wrong["alerted_right_regions"]
    right = M.row_measures([alert(200.0, ("Aomori", EEZ)),
                            alert(230.0, ("Aomori", "Hokkaido"), action="updated")], tr, LAND)
    assert right["alerted_right_regions"] and right["land_alert_regions"] == "Aomori; Hokkaido"
    assert right["passed_message_s"] is None and right["missile_passed_s"] == 400.0


def row(true: str, first: float | None, right: bool, seed: int = 0,
        err: float | None = None) -> dict[str, Any]:
    return {"true_land_regions": true, "first_land_alert_s": first,
            "alerted_right_regions": right, "ipp_error_km": err, "passed_message_s": None,
            "missile_passed_s": 400.0 if true else None, "regime": "direct", "party": "JPN",
            "seed": seed}


def test_recall_false_alerts_and_times_over_launches() -> None:
    rows = [row("Hokkaido", 200.0, True, err=10.0), row("Hokkaido", 260.0, False),
            row("Okinawa", None, False), row("", 300.0, False, err=30.0), row("", None, False)]
    m = M.seed_measures(rows)
    assert m["crossing"] == 3
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["recall_right_regions"] == pytest.approx(1 / 3)
    assert m["false_land_alerts"] == 1.0
    assert m["first_land_alert_median_s"] == 230.0 and m["first_land_alert_worst_s"] == 260.0
    assert m["impact_error_median_km"] == 20.0
    assert m["passed_delay_median_s"] is None


def test_intervals_over_seeds() -> None:
    assert M.interval([0.5])["low"] is None
    iv = M.interval([1.0, 1.0, 1.0])
    assert iv["mean"] == 1.0 and iv["low"] == iv["high"] == 1.0
    wide = M.interval([10.0, 11.0])
    assert wide["low"] < 10.0 < 11.0 < wide["high"]     # t with 1 degree of freedom: 12.7
    # clipped to what a share or a count can be
    assert M.interval([0.0, 1.0], upper=1.0) | {"mean": 0} == {
        "mean": 0, "low": 0.0, "high": 1.0, "seeds": 2}
    rows = [row("Hokkaido", 200.0, True, seed=s) for s in range(3)]
    out = M.summarise(rows, ["direct"], ["JPN"])
    assert out["direct"]["JPN"]["recall"]["mean"] == 1.0
    assert out["direct"]["JPN"]["passed_delay_median_s"] == M.NOT_AVAILABLE


@given(st.lists(st.floats(-2000.0, 2000.0), min_size=2, max_size=12))
def test_an_interval_holds_its_mean_even_below_zero(values: list[float]) -> None:
    """A passed message can come before the missile has passed (a negative delay): its
    interval was clipped at 0, above a negative mean, and evaluate's plot of the 216
    launches x 10 seeds stopped on the negative error bar."""
    iv = M.interval(values, lower=float("-inf"))
    assert iv["low"] <= iv["mean"] <= iv["high"]
    clipped = M.interval([abs(v) for v in values])
    assert 0.0 <= clipped["low"] <= clipped["mean"] <= clipped["high"]


def test_the_passed_message_is_the_first_that_names_land() -> None:
    """A stage's drop zone or the high seas passing first is not the missile passing the
    party's territory."""
    tr = M.Truth(("Hokkaido",), 560.0)
    log = [alert(150.0, ("Hokkaido",)),
           alert(300.0, ("first stage drop zone",), action="passed", level="information"),
           alert(420.0, ("high seas",), action="passed", level="information"),
           alert(575.0, ("Hokkaido",), action="passed")]
    row = M.row_measures(log, tr, LAND)
    assert row["passed_message_s"] == 575.0 and row["missile_passed_s"] == 560.0
    assert M.passed_message_s(log) == 300.0        # without land: any message that passed
    # passing the first of two regions is not passing the territory
    first_of_two = Warning("JPN", "passed", 500.0, "t", ("Aomori",), "alert",
                           active=("Hokkaido",))
    assert M.row_measures([log[0], first_of_two, *log[1:]], tr, LAND)[
        "passed_message_s"] == 575.0
    # nor is passing one region before another is alerted
    early = [alert(100.0, ("Aomori",)), alert(140.0, ("Aomori",), action="passed"), *log]
    assert M.row_measures(early, tr, LAND)["passed_message_s"] == 575.0
    lost = [*early[:-1], alert(540.0, ("Hokkaido",), action="retracted")]
    assert M.row_measures(lost, tr, LAND)["passed_message_s"] is None
