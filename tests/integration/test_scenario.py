"""Replaying real launches: what sharing changes, enforced by labels and the release policy."""

from __future__ import annotations

import json
from collections.abc import Callable
from subprocess import CompletedProcess

import pytest

from gsomia.core.scenario import Result
from gsomia.shell import feeds
from gsomia.shell.commands.scenario import run_one

KN23_2019 = "2019-08-06"      # Hwasong-11A (KN-23) from Kwail, apogee 37 km, 450 km


@pytest.fixture(scope="module")
def kn23() -> dict[str, Result]:
    launch = feeds.find_launch(KN23_2019, 0)
    assert launch.missile.id == "hwasong-11a" and launch.apogee_km is not None
    assert launch.apogee_km < 60
    return {r: run_one(launch, r, seed=3) for r in ("none", "hub", "direct", "trilateral")}


def test_japan_alone_never_tracks_the_low_kn23_but_korea_does(kn23: dict[str, Result]) -> None:
    alone = kn23["none"].parties
    assert alone["JPN"].first_detection_s is None
    assert alone["JPN"].first_track_s is None and alone["JPN"].first_warning_s is None
    assert alone["KOR"].first_track_s is not None
    assert alone["KOR"].first_warning_s is not None


def test_under_direct_sharing_japan_tracks_and_warns(kn23: dict[str, Result]) -> None:
    jpn = kn23["direct"].parties["JPN"]
    kor = kn23["direct"].parties["KOR"]
    assert jpn.first_track_s is not None and jpn.first_warning_s is not None
    assert jpn.received.get("sensor-report", 0) > 0
    assert jpn.routes["KOR:sensor-report"].startswith("direct")
    # Japan's warning comes from Korea's reports: it cannot precede Korea's own track.
    assert kor.first_track_s is not None and jpn.first_track_s >= kor.first_track_s
    assert jpn.ipp_error_km is not None and jpn.ipp_error_km < 100


def test_hub_is_later_than_direct_for_japan(kn23: dict[str, Result]) -> None:
    hub, direct = kn23["hub"].parties["JPN"], kn23["direct"].parties["JPN"]
    assert hub.routes["KOR:sensor-report"].startswith("via USA")
    assert direct.first_warning_s is not None
    assert hub.first_warning_s is None or hub.first_warning_s >= direct.first_warning_s


def test_trilateral_carries_no_indicators_reports_or_sensor_sites(
        kn23: dict[str, Result]) -> None:
    result = kn23["trilateral"]
    for outcome in result.parties.values():
        assert set(outcome.received) <= {"launch-point", "flight-path", "impact-prediction"}
        assert not any("sensor-report" in k for k in outcome.routes)
    # and nothing Japan holds names a Korean sensor
    jpn = json.dumps(result.parties["JPN"].to_json())
    assert "kor-" not in jpn and "greenpine" not in jpn.lower()
    assert result.parties["JPN"].first_warning_s is not None


def test_indicators_cue_only_through_permitted_routes() -> None:
    launch = feeds.find_launch("2017-08-29")
    cued = {}
    for regime in ("none", "direct", "trilateral"):
        res = run_one(launch, regime, seed=11)
        cued[regime] = {p: o.cued for p, o in res.parties.items()}
        got = {p: o.received.get("pre-launch-indicator", 0) for p, o in res.parties.items()}
        if regime in ("none", "trilateral"):
            assert got == {"JPN": 0, "KOR": 0, "USA": 0}
        else:
            assert got["JPN"] > 0 and got["KOR"] > 0
    # sharing can only add evidence, so it never removes a cue
    for p in ("JPN", "KOR"):
        assert cued["direct"][p] or not cued["none"][p]


def test_the_2017_hwasong12_warns_japan_for_hokkaido() -> None:
    res = run_one(feeds.find_launch("2017-08-29"), "direct", seed=0)
    jpn = res.parties["JPN"]
    assert jpn.first_warning_s is not None
    issued = [w for w in jpn.warnings if w.action == "issued"]
    assert issued and "Hokkaido" in issued[0].regions and issued[0].level == "alert"
    assert 60 < jpn.first_warning_s < res.scenario.trajectory.flight_time_s


def test_scenario_run_command(gsomia: Callable[..., CompletedProcess[str]]) -> None:
    out = gsomia("scenario", "run", "--launch", KN23_2019, "--index", "0", "--regime",
                 "direct", "--seed", "3", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    for party in ("JPN", "KOR", "USA"):
        entry = doc["parties"][party]
        for key in ("first_detection_s", "first_track_s", "first_ipp_s", "first_warning_s",
                    "ipp_error_km", "warnings"):
            assert key in entry
    assert doc["parties"]["JPN"]["first_warning_s"] is not None
    bad = gsomia("scenario", "run", "--launch", "1900-01-01", "--regime", "direct")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
