"""Ballistic trajectories: fitted to every launch of the data set, with the physics it claims."""

from __future__ import annotations

import json
import math
import time

import click
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.core.errors import MalformedInput
from gsomia.core.tracking.earth import R_MEAN, ecef_to_geodetic, great_circle_m
from gsomia.core.tracking.launches import Launch
from gsomia.core.tracking.trajectory import (
    FlightRequest,
    Trajectory,
    fit,
    fit_many,
    fly,
    infer_class,
    keplerian_launch,
    profile_for,
)
from gsomia.shell import feeds
from gsomia.shell.commands.tracking import register


@pytest.fixture(scope="module")
def fitted() -> list[tuple[Launch, Trajectory]]:
    launches = [x for x in feeds.load_launches() if x.fittable]
    start = time.perf_counter()
    trajectories = fit_many([x.flight_request() for x in launches])
    elapsed = time.perf_counter() - start
    assert elapsed < 60.0, f"fitting the data set took {elapsed:.1f} s"
    return list(zip(launches, trajectories, strict=True))


def test_every_launch_with_apogee_and_distance_is_reproduced_within_one_percent(
        fitted: list[tuple[Launch, Trajectory]]) -> None:
    # 227 records give an apogee and a distance; 11 of them say "na" (failures with no
    # figures), so 216 have numbers to fit.
    assert len(fitted) == 216
    misses = [(x, round(t.apogee_km, 1), round(t.range_km, 1)) for x, t in fitted
              if abs(t.apogee_error) > 0.01 or abs(t.range_error) > 0.01]
    assert misses == []
    for x, t in fitted:
        assert t.apogee_km == pytest.approx(x.apogee_km, rel=0.01)
        assert t.range_km == pytest.approx(x.distance_km, rel=0.01)


def test_impacts_lie_on_the_recorded_bearing_despite_the_coriolis_drift(
        fitted: list[tuple[Launch, Trajectory]]) -> None:
    worst = 0.0
    for x, t in fitted:
        lat0, lon0 = math.radians(t.launch_lat_deg), math.radians(t.launch_lon_deg)
        lat1, lon1 = math.radians(t.impact_lat_deg), math.radians(t.impact_lon_deg)
        dlon = lon1 - lon0
        b = math.degrees(math.atan2(math.sin(dlon) * math.cos(lat1), math.cos(lat0)
                                    * math.sin(lat1) - math.sin(lat0) * math.cos(lat1)
                                    * math.cos(dlon))) % 360
        off = (b - t.bearing_deg + 180) % 360 - 180
        assert t.bearing_deg == x.bearing_deg
        worst = max(worst, abs(off) * math.radians(1) * t.range_m)
    # cross-track miss under 0.1% of the range, i.e. a few hundred metres at most
    assert worst < 1_500.0


def test_fitted_samples_agree_with_the_reported_figures(
        fitted: list[tuple[Launch, Trajectory]]) -> None:
    for _, t in fitted[::10]:
        _, _, h = ecef_to_geodetic(t.positions)
        assert h[0] == pytest.approx(0.0, abs=1.0)
        assert h[-1] == pytest.approx(0.0, abs=1.0)
        assert h.max() <= t.apogee_m + 1.0
        assert h.max() > t.apogee_m * 0.995
        lat, lon, _ = ecef_to_geodetic(t.positions[-1])
        assert float(great_circle_m(math.radians(t.launch_lat_deg),
                                    math.radians(t.launch_lon_deg), lat, lon)) == \
            pytest.approx(t.range_m, rel=1e-6)
        assert 0 < t.burnout_s < t.apogee_s < t.flight_time_s


def _flight(fitted: list[tuple[Launch, Trajectory]], day: str, missile: str) -> Trajectory:
    for x, t in fitted:
        if x.missile.id == missile and day in (x.date.isoformat(), x.local_date.isoformat()):
            return t
    raise AssertionError(f"no {missile} on {day}")


@pytest.mark.parametrize(("day", "missile", "minutes"), [
    ("2017-07-28", "hwasong-14", 47),     # reported flight times (minutes)
    ("2017-11-29", "hwasong-15", 53),
    ("2022-11-18", "hwasong-17", 69),
    ("2024-10-31", "hwasong-19", 86),
])
def test_lofted_icbm_flight_times_match_the_reported_ones(
        fitted: list[tuple[Launch, Trajectory]], day: str, missile: str, minutes: float) -> None:
    assert _flight(fitted, day, missile).flight_time_s / 60 == pytest.approx(minutes, rel=0.06)


def test_the_2017_08_29_hwasong_12_over_hokkaido(fitted: list[tuple[Launch, Trajectory]]) -> None:
    t = _flight(fitted, "2017-08-29", "hwasong-12")
    # reported: ~14 minutes of flight, ~2,700 km, 550 km up, over Hokkaido into the Pacific
    assert 13 * 60 < t.flight_time_s < 17 * 60
    assert t.impact_lon_deg > 150.0
    lat, lon = t.ground_track(200)
    over = (lat > 41.5) & (lat < 43.5) & (lon > 140.0) & (lon < 143.5)
    assert over.any()


def test_kn23_flies_low_and_pulls_up(fitted: list[tuple[Launch, Trajectory]]) -> None:
    t = _flight(fitted, "2019-07-25", "hwasong-11a")
    assert t.maneuver == "pullup"
    assert t.apogee_km == pytest.approx(50.0, rel=0.01)
    ballistic = fit(FlightRequest(t.launch_lat_deg, t.launch_lon_deg, t.bearing_deg, 50.0,
                                  600.0, "SRBM", None))
    # lift in the descent carries it further: less energy, longer flight, and a flat stretch
    assert t.energy < ballistic.energy
    assert t.flight_time_s > ballistic.flight_time_s + 60
    def dive_angle(tr: Trajectory) -> np.ndarray:
        p, v = tr.state_at(np.linspace(tr.apogee_s, tr.flight_time_s, 200))
        up = p / np.linalg.norm(p, axis=1, keepdims=True)
        return np.asarray(np.degrees(np.arcsin(np.einsum("ij,ij->i", v, up)
                                               / np.linalg.norm(v, axis=1))))

    # the ballistic descent only steepens; the KN-23 dives, pulls up by several degrees,
    # glides, then dives onto the target
    g, gb = dive_angle(t), dive_angle(ballistic)
    assert np.all(np.diff(gb) <= 1e-6)
    steepest_early = g[: len(g) // 2].min()
    assert g[len(g) // 2:-20].max() > steepest_early + 5.0
    assert g[-1] < -20.0
    assert t.altitude_at(t.flight_time_s * 0.8) < 20e3


def test_flight_time_and_state_sampling_are_vectorised_and_consistent() -> None:
    t = fit(FlightRequest(39.0, 125.7, 80.0, 150.0, 650.0, "MRBM"))
    times = np.linspace(0.0, t.flight_time_s, 37)
    pos, vel = t.state_at(times)
    assert pos.shape == (37, 3) and vel.shape == (37, 3)
    assert t.position_at(times.reshape(37, 1)).shape == (37, 1, 3)
    # exact at the samples, and velocity is the derivative of position between them
    assert np.allclose(t.position_at(t.times), t.positions, atol=1e-6)
    mid = 0.5 * (t.times[10] + t.times[11])
    fd = (t.position_at(mid + 0.01) - t.position_at(mid - 0.01)) / 0.02
    assert np.allclose(fd, t.velocity_at(mid), atol=0.5)
    probe = np.array([0.0, t.burnout_s - 1, t.burnout_s + 1])
    assert t.boosting(probe).tolist() == [True, True, False]
    assert np.allclose(t.position_at(t.flight_time_s + 100), t.impact_ecef)


def test_the_earth_turns_under_a_vertical_shot() -> None:
    # A near-vertical shot comes down west of its pad (Coriolis): a coasting projectile thrown
    # up to h drifts (4/3) * omega * cos(lat) * sqrt(8 h^3 / g); the powered climb adds to it.
    t = fly(39.0, 125.7, 90.0, 0.5, 89.99, profile_for("IRBM"))
    assert t.impact_lon_deg < 125.7
    assert t.range_km > 1.0
    g = 9.5
    h = t.apogee_m
    expected = 4 / 3 * 7.292115e-5 * math.cos(math.radians(39)) * math.sqrt(8 * h ** 3 / g)
    assert expected < t.range_m < 2.0 * expected


def test_reentry_drag_slows_the_warhead() -> None:
    t = fit(FlightRequest(39.0, 125.7, 70.0, 1000.0, 4000.0, "IRBM"))
    times = np.linspace(t.apogee_s, t.flight_time_s, 2000)
    speed = np.linalg.norm(t.velocity_at(times), axis=1)
    alt = t.altitude_at(times)
    at_100km = speed[np.argmin(np.abs(alt - 100e3))]
    assert speed[-1] < 0.8 * at_100km


def test_boost_is_shaped_by_the_missile_class() -> None:
    burn = {c: profile_for(c).burn_s for c in ("SRBM", "MRBM", "IRBM", "ICBM", "SLV")}
    assert burn["SRBM"] < burn["MRBM"] < burn["IRBM"] < burn["ICBM"] <= burn["SLV"]
    assert len(profile_for("ICBM").stages) == 2 and len(profile_for("SLV").stages) == 3
    assert profile_for("SRBM", "pullup").lift_to_drag > 0
    assert profile_for("SRBM").lift_to_drag == 0
    assert profile_for("HGV").maneuver == "glide"


def test_kepler_guess_is_the_textbook_minimum_energy_case() -> None:
    # On a flat Earth in vacuum a 45-degree shot peaks at a quarter of its range.
    v, gamma = keplerian_launch(25e3, 100e3)
    assert math.degrees(gamma) == pytest.approx(45.0, abs=0.6)
    assert v == pytest.approx(math.sqrt(9.8 * 100e3), rel=0.02)
    assert infer_class(50, 600) == ("SRBM", "pullup")
    assert infer_class(6000, 1000)[0] == "ICBM"
    assert infer_class(150, 500)[0] in ("SRBM", "MRBM")


@settings(max_examples=6, deadline=None)
@given(apogee=st.floats(40.0, 3000.0), ratio=st.floats(0.15, 4.0),
       bearing=st.floats(0.0, 359.0))
def test_any_reasonable_flight_can_be_fitted(apogee: float, ratio: float,
                                             bearing: float) -> None:
    rng_km = min(apogee / ratio, 8000.0)
    cls = "ICBM" if apogee > 1500 else "IRBM" if apogee > 400 else "MRBM"
    t = fit(FlightRequest(39.0, 126.0, bearing, apogee, rng_km, cls))
    assert t.apogee_km == pytest.approx(apogee, rel=0.01)
    assert t.range_km == pytest.approx(rng_km, rel=0.01)
    assert t.range_m < math.pi * R_MEAN


@pytest.mark.parametrize("bad", [
    {"apogee_km": -5.0}, {"range_km": 0.0}, {"lat_deg": 123.0}, {"apogee_km": float("nan")},
    {"missile_class": "CRUISE"}, {"maneuver": "loop"}, {"range_km": 30_000.0},
])
def test_malformed_requests_are_refused(bad: dict[str, object]) -> None:
    args: dict[str, object] = {"lat_deg": 39.0, "lon_deg": 126.0, "bearing_deg": 90.0,
                               "apogee_km": 100.0, "range_km": 300.0, "missile_class": "SRBM"}
    args.update(bad)
    with pytest.raises(MalformedInput):
        FlightRequest(**args)  # type: ignore[arg-type]


def _cli() -> click.Group:
    @click.group()
    def cli() -> None:
        pass

    register(cli)
    return cli


def test_trajectory_command_prints_the_contract_fields() -> None:
    res = CliRunner().invoke(_cli(), ["trajectory", "--apogee-km", "550", "--range-km", "2700",
                                      "--missile", "IRBM", "--bearing", "73", "--facility",
                                      "pyongyang", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["apogee_km"] == pytest.approx(550, rel=0.01)
    assert doc["range_km"] == pytest.approx(2700, rel=0.01)
    assert 780 < doc["flight_time_s"] < 1020
    assert doc["burnout_s"] == pytest.approx(140.0)
    assert doc["impact_lon"] > 150 and [r["id"] for r in doc["overflown"]] == ["JP-01"]


def test_trajectory_command_fits_a_launch_and_refuses_nonsense() -> None:
    res = CliRunner().invoke(_cli(), ["trajectory", "--launch", "2019-07-25", "--index", "1",
                                      "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["launch"]["time_utc"] == "20:57" and doc["maneuver"] == "pullup"
    res = CliRunner().invoke(_cli(), ["trajectory", "--apogee-km", "100", "--json"])
    assert isinstance(res.exception, MalformedInput)
    res = CliRunner().invoke(_cli(), ["trajectory", "--apogee-km", "100", "--range-km", "300",
                                      "--missile", "V-2"])
    assert isinstance(res.exception, MalformedInput)
