"""Sensors: horizon geometry by hand, who sees which flight, and the noisy reports they make."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.core.errors import MalformedInput
from gsomia.core.tracking import sensors as S
from gsomia.core.tracking.earth import A, geodetic_to_ecef
from gsomia.core.tracking.trajectory import Trajectory, fit
from gsomia.shell import feeds

CATALOGUE = feeds.load_sensors()


def sensor(sid: str) -> S.Sensor:
    return next(s for s in CATALOGUE if s.id == sid)


def bare(**kw: Any) -> S.Sensor:
    """A ground radar at the equator, 0E, with no limits but the ones a test sets."""
    base = replace(sensor("jpn-fps5-sado"), lat_deg=0.0, lon_deg=0.0, height_m=0.0,
                   max_range_km=1e6, min_elevation_deg=0.0, sector=None)
    return replace(base, **kw)


def on_equator(lon_deg: float, h: float) -> np.ndarray:
    return geodetic_to_ecef(0.0, math.radians(lon_deg), h)


@pytest.fixture(scope="module")
def kn23_hodo() -> Trajectory:
    return fit(feeds.find_launch("2019-07-25", 0).flight_request())


@pytest.fixture(scope="module")
def kn23_kwail() -> Trajectory:
    return fit(feeds.find_launch("2019-08-06", 0).flight_request())


@pytest.fixture(scope="module")
def hwasong12() -> Trajectory:
    return fit(feeds.find_launch("2017-08-29").flight_request())


# --- catalogue --------------------------------------------------------------------------------


def test_the_catalogue_has_every_kind_the_issue_names() -> None:
    ids = {s.id for s in CATALOGUE}
    assert {"kor-greenpine-jincheon", "kor-greenpine-boseong", "jpn-fps5-shimokoshiki",
            "jpn-fps5-sado", "jpn-fps5-ominato", "jpn-fps5-yozadake",
            "usa-sbirs-geo"} <= ids
    assert any(s.owner == "KOR" and s.platform == "ship" for s in CATALOGUE)
    assert any(s.owner == "JPN" and s.platform == "ship" for s in CATALOGUE)
    assert any(s.id.startswith("jpn-fps3") for s in CATALOGUE)
    for s in CATALOGUE:
        if s.id.startswith("jpn-fps5"):
            assert 4.0 <= (s.min_elevation_deg or 0) <= 6.0
        if "greenpine" in s.id:
            assert s.max_range_km == pytest.approx(800, rel=0.15)
    sat = sensor("usa-sbirs-geo")
    assert sat.boost_only and sat.kind == "infrared" and 45 <= sat.latency_s <= 90


def test_a_sensors_type_and_place_stay_with_its_owner() -> None:
    for s in CATALOGUE:
        assert s.label.originator == s.owner
        assert s.label.rel_to == frozenset({s.owner})
        assert s.label.category == "sensor-location" and s.report_label.category == "sensor-report"
        assert s.report_label.originator == s.owner
        assert s.owner in s.report_label.rel_to
        assert s.report_label.to_json()["purpose"] == "dprk-missile"
    assert len(set(CATALOGUE)) == len(CATALOGUE)     # sensors are hashable values


def _entry(**kw: Any) -> dict[str, Any]:
    e = {"id": "x", "name": "x", "owner": "KOR", "kind": "radar", "platform": "ground",
         "lat": 37.0, "lon": 127.0, "height_m": 0, "max_range_km": 500,
         "min_elevation_deg": 1, "sector": None, "min_target_altitude_km": 0,
         "boost_only": False, "revisit_s": 5, "cued_revisit_s": 1, "latency_s": 5,
         "cued_latency_s": 2, "p_detect": 0.9, "cued_p_detect": 0.95, "sigma_range_m": 30,
         "sigma_az_deg": 0.1, "sigma_el_deg": 0.1, "sigma_los_urad": None,
         "label": {"originator": "KOR", "level": "군사II급비밀", "rel_to": ["KOR"],
                   "purpose": "dprk-missile", "category": "sensor-location"},
         "report_label": {"originator": "KOR", "level": "군사III급비밀", "rel_to": ["KOR"],
                          "purpose": "dprk-missile", "category": "sensor-report"}}
    e.update(kw)
    return e


@pytest.mark.parametrize("bad", [
    {"kind": "sonar"}, {"lat": 95}, {"p_detect": 1.5}, {"sigma_range_m": None},
    {"owner": "Korea"}, {"label": {"originator": "JPN", "level": "秘", "rel_to": ["JPN"],
               "purpose": "dprk-missile"}},
    {"sector": {"boresight_deg": 0}}, {"revisit_s": "fast"},
])
def test_bad_catalogue_entries_are_refused(bad: dict[str, Any]) -> None:
    assert S.sensor_from(_entry()).id == "x"
    with pytest.raises(MalformedInput):
        S.sensor_from(_entry(**bad))
    with pytest.raises(MalformedInput, match="duplicate"):
        S.catalogue({"sensors": [_entry(), _entry()]})


# --- geometry by hand ---------------------------------------------------------------------------


def test_a_100_km_target_rises_over_the_horizon_where_the_sum_of_tangents_says() -> None:
    # Along the equator the Earth's section is a circle of radius A, so a target h above a
    # ground sensor clears the horizon when cos(dlon) >= A / (A + h).
    h = 100e3
    edge = math.degrees(math.acos(A / (A + h)))
    assert edge * math.radians(1) * A == pytest.approx(S.horizon_ground_distance_m(h), rel=1e-9)
    assert S.horizon_ground_distance_m(h) / 1e3 == pytest.approx(1_122.13, abs=0.01)
    radar = bare()
    assert S.visible(radar, on_equator(edge - 0.02, h))
    assert not S.visible(radar, on_equator(edge + 0.02, h))
    # a mast 30 m up sees further: sum of both tangent arcs, for a sensor with no elevation limit
    mast = bare(height_m=30.0, min_elevation_deg=None)
    far = math.degrees(S.horizon_ground_distance_m(h, 30.0) / A)
    assert S.visible(mast, on_equator(far - 0.02, h))
    assert not S.visible(mast, on_equator(far + 0.02, h))


def test_minimum_elevation_by_hand() -> None:
    # Elevation of a target h up at central angle c from a surface sensor on a sphere:
    # tan(el) = (cos c - R/(R+h)) / sin c.
    h, c = 50e3, math.radians(4.0)
    el = math.degrees(math.atan2(math.cos(c) - A / (A + h), math.sin(c)))
    assert S.visible(bare(min_elevation_deg=el - 0.05), on_equator(4.0, h))
    assert not S.visible(bare(min_elevation_deg=el + 0.05), on_equator(4.0, h))


def test_fps5_minimum_elevation_hides_a_low_flight_far_away() -> None:
    sado = sensor("jpn-fps5-sado")
    # 50 km up, ~650 km west of Sado over the Sea of Japan: above the horizon, below 5 degrees
    lat, lon = math.radians(38.5), math.radians(131.0)
    target = geodetic_to_ecef(lat, lon, 50e3)
    assert S.visible(replace(sado, min_elevation_deg=0.0), target)
    assert not S.visible(sado, target)
    _, _, el = S.look_angles(sado, target)
    assert 0.0 < math.degrees(float(el)) < 5.0


def test_max_range_sector_and_cloud_tops() -> None:
    r = bare(max_range_km=300.0)
    assert S.visible(r, on_equator(2.0, 100e3))          # ~220 km away
    assert not S.visible(r, on_equator(3.0, 100e3))      # ~330 km away
    north = bare(sector=S.Sector(0.0, 60.0))
    assert not S.visible(north, on_equator(2.0, 100e3))  # due east: outside the face
    assert S.visible(north, geodetic_to_ecef(math.radians(2.0), 0.0, 100e3))
    ir = sensor("usa-sbirs-geo")
    assert not S.visible(ir, geodetic_to_ecef(math.radians(39), math.radians(126), 5e3))
    assert S.visible(ir, geodetic_to_ecef(math.radians(39), math.radians(126), 20e3))
    # and the satellite cannot see through the Earth
    assert not S.visible(ir, geodetic_to_ecef(0.0, math.radians(-70), 100e3))


def test_visibility_is_vectorised() -> None:
    pts = np.stack([on_equator(x, 100e3) for x in np.linspace(0.5, 20.0, 12)])
    assert S.visible(bare(), pts).shape == (12,)
    assert S.visible(bare(), pts.reshape(3, 4, 3)).shape == (3, 4)
    assert S.visible(bare(), pts).tolist() == [S.visible(bare(), p).item() for p in pts]


@settings(max_examples=60)
@given(lat=st.floats(-60, 60), lon=st.floats(-180, 180), h=st.floats(0, 2e6),
       lat2=st.floats(-60, 60), lon2=st.floats(-180, 180), h2=st.floats(0, 2e6))
def test_line_of_sight_is_symmetric(lat: float, lon: float, h: float, lat2: float,
                                    lon2: float, h2: float) -> None:
    a = geodetic_to_ecef(math.radians(lat), math.radians(lon), h)
    b = geodetic_to_ecef(math.radians(lat2), math.radians(lon2), h2)
    assert S.line_of_sight_clear(a, b) == S.line_of_sight_clear(b, a)


@settings(max_examples=40)
@given(r1=st.floats(10, 3000), r2=st.floats(10, 3000), dlon=st.floats(0.1, 30),
       h=st.floats(1e3, 1e6))
def test_a_longer_reach_never_sees_less(r1: float, r2: float, dlon: float, h: float) -> None:
    lo, hi = sorted((r1, r2))
    target = on_equator(dlon, h)
    assert not S.visible(bare(max_range_km=lo), target) or S.visible(bare(max_range_km=hi),
                                                                      target)


# --- who sees which flight ------------------------------------------------------------------


def by_party(cov: dict[str, S.Coverage]) -> dict[str, list[S.Coverage]]:
    out: dict[str, list[S.Coverage]] = {}
    for c in cov.values():
        if c.sees:
            out.setdefault(c.owner, []).append(c)
    return out


def test_green_pine_sees_the_early_low_flight_from_the_peninsula(kn23_hodo: Trajectory) -> None:
    cov = S.coverage(CATALOGUE, kn23_hodo)["kor-greenpine-jincheon"]
    assert cov.first_visible_s is not None and cov.first_visible_s < 45.0
    assert kn23_hodo.altitude_at(cov.first_visible_s) < 15e3
    assert cov.visible_s > 120.0


def test_2019_kn23_japan_alone_barely_or_never_sees_while_korea_does(
        kn23_hodo: Trajectory, kn23_kwail: Trajectory) -> None:
    # 2019-08-06 (KST), Hwasong-11A from Kwail, 37 km apogee: no Japanese sensor at all
    kwail = by_party(S.coverage(CATALOGUE, kn23_kwail))
    assert "JPN" not in kwail
    assert len(kwail["KOR"]) >= 3
    assert min(c.first_visible_s or 1e9 for c in kwail["KOR"]) < 45.0
    jpn_ids = [s.id for s in S.of_party(CATALOGUE, "JPN")]
    assert S.detecting_sensors(S.of_party(CATALOGUE, "JPN"), kn23_kwail) == []
    assert set(S.detecting_sensors(CATALOGUE, kn23_kwail)).isdisjoint(jpn_ids)
    # 2019-07-25 (KST) from Hodo, 50 km apogee: Japan only late and briefly, Korea at once
    hodo = by_party(S.coverage(CATALOGUE, kn23_hodo))
    kor_first = min(c.first_visible_s or 1e9 for c in hodo["KOR"])
    jpn_first = min(c.first_visible_s or 1e9 for c in hodo.get("JPN", []))
    assert kor_first < 45.0
    assert jpn_first > kor_first + 100.0
    assert all(c.visible_s < 0.3 * kn23_hodo.flight_time_s for c in hodo.get("JPN", []))
    assert not any(c.sensor_id.startswith("jpn-fps5") for c in hodo.get("JPN", []))


def test_japan_sees_the_high_2017_hwasong_12_well(hwasong12: Trajectory) -> None:
    cov = S.coverage(CATALOGUE, hwasong12)
    assert cov["jpn-fps5-sado"].visible_s > 300
    kor, jpn = cov["kor-greenpine-jincheon"], cov["jpn-fps5-sado"]
    assert kor.first_visible_s is not None and jpn.first_visible_s is not None
    assert kor.first_visible_s < jpn.first_visible_s


def test_the_infrared_satellite_sees_the_boost_only(hwasong12: Trajectory) -> None:
    cov = S.coverage(CATALOGUE, hwasong12)["usa-sbirs-geo"]
    assert cov.sees
    assert cov.last_visible_s is not None and cov.last_visible_s <= hwasong12.burnout_s
    assert cov.first_visible_s is not None and cov.first_visible_s < 60.0


# --- measurements -------------------------------------------------------------------------------


def test_observe_is_deterministic_given_the_generator(hwasong12: Trajectory) -> None:
    s = sensor("kor-greenpine-jincheon")
    a = S.observe(s, hwasong12, 0, 600, np.random.default_rng(7))
    b = S.observe(s, hwasong12, 0, 600, np.random.default_rng(7))
    c = S.observe(s, hwasong12, 0, 600, np.random.default_rng(8))
    assert np.array_equal(a.values, b.values) and np.array_equal(a.times, b.times)
    assert not np.array_equal(a.times, c.times)


def test_radar_noise_and_detection_match_the_catalogue(hwasong12: Trajectory) -> None:
    s = replace(sensor("kor-greenpine-jincheon"), revisit_s=0.25)
    m = S.observe(s, hwasong12, 0, hwasong12.flight_time_s, np.random.default_rng(1))
    assert m.kind == "rae" and len(m) > 500
    assert np.all(np.diff(m.times) > 0)
    assert np.allclose(m.report_times - m.times, s.latency_s)
    truth_r, truth_az, truth_el = S.look_angles(s, m.truth_ecef)
    z = (m.values - np.stack([truth_r, truth_az, truth_el], axis=-1)) / m.sigmas
    z[:, 1] = (z[:, 1] * m.sigmas[:, 1] + np.pi) % (2 * np.pi) - np.pi
    z[:, 1] /= m.sigmas[:, 1]
    assert np.all(np.abs(z.mean(axis=0)) < 0.15)
    assert np.allclose(z.std(axis=0), 1.0, atol=0.1)
    # detections / visible scans ~ p_detect
    scans = np.arange(0, hwasong12.flight_time_s, s.revisit_s)
    seen = S.visible_along(s, hwasong12, scans).sum()
    assert len(m) / seen == pytest.approx(s.p_detect, abs=0.05)
    assert np.allclose(np.linalg.norm(m.positions_ecef() - m.truth_ecef, axis=1).mean(),
                       0.0, atol=3_000.0)


def test_infrared_reports_are_angles_only_during_boost(hwasong12: Trajectory) -> None:
    s = sensor("usa-sbirs-geo")
    m = S.observe(s, hwasong12, 0, hwasong12.flight_time_s, np.random.default_rng(3),
                  cued=True)
    assert m.kind == "los" and len(m) > 10
    assert np.isnan(m.values[:, 0]).all()
    assert m.times.max() <= hwasong12.burnout_s
    assert np.allclose(m.report_times - m.times, s.cued_latency_s)
    true_dir = m.truth_ecef - m.sensor_ecef
    true_dir /= np.linalg.norm(true_dir, axis=1, keepdims=True)
    miss = np.degrees(np.arccos(np.clip(np.einsum("ij,ij->i", m.los_ecef(), true_dir), -1, 1)))
    assert np.all(miss * 3600 < 60)   # tens of microradians, i.e. a few arcseconds


def test_a_cue_speeds_up_revisits_and_reports(hwasong12: Trajectory) -> None:
    s = sensor("jpn-fps5-sado")
    plain = S.observe(s, hwasong12, 0, 900, np.random.default_rng(5))
    cued = S.observe(s, hwasong12, 0, 900, np.random.default_rng(5), cued=True)
    assert len(cued) > 2 * len(plain)
    assert (cued.report_times - cued.times).max() < (plain.report_times - plain.times).min()
    late = S.observe(s, hwasong12, 0, 900, np.random.default_rng(5), cue_s=400.0)
    gaps_before = np.diff(late.times[late.times < 400])
    gaps_after = np.diff(late.times[late.times > 400])
    assert gaps_before.min() >= s.revisit_s - 1e-6
    assert np.allclose(gaps_after[gaps_after < 2 * s.cued_revisit_s], s.cued_revisit_s)
    assert np.all((late.report_times - late.times)[late.times >= 400] == s.cued_latency_s)


def test_no_reports_outside_the_flight(hwasong12: Trajectory) -> None:
    s = sensor("kor-greenpine-jincheon")
    m = S.observe(s, hwasong12, 2_000, 3_000, np.random.default_rng(0))
    assert len(m) == 0 and m.values.shape == (0, 3)
