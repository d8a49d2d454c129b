"""Alert areas drawn as corridors: the possible ground paths of a track, the regions they name,
how they narrow, retract with a reason, and pass."""

from __future__ import annotations

import math
from dataclasses import replace
from functools import cache

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gsomia.core.tracking import earth
from gsomia.core.tracking.geography import TERRITORY_KINDS, atlas
from gsomia.core.tracking.impact import Corridor, chi2_6_quantile, corridors
from gsomia.core.tracking.predictor import rk4_step
from gsomia.core.tracking.trajectory import Trajectory, fit
from gsomia.core.tracking.types import Ellipse, GroundPoint
from gsomia.core.warning import (
    HIGH_SEAS,
    IMPACT,
    OVERFLIGHT,
    PREDICTED_PASSING,
    WarningCentre,
    regions_in_corridor,
)
from gsomia.shell import feeds


@cache
def hokkaido_flight() -> Trajectory:
    """The 2017-08-29 Hwasong-12 over Hokkaido."""
    return fit(feeds.find_launch("2017-08-29", 0).flight_request())


def coasting_state(t: float) -> np.ndarray:
    pos, vel = hokkaido_flight().state_at(t)
    return np.concatenate([pos, vel])


def covariance(pos_sigma_m: float, vel_sigma_m_s: float) -> np.ndarray:
    return np.diag([pos_sigma_m**2] * 3 + [vel_sigma_m_s**2] * 3)


def corridor_of(t: float, P: np.ndarray, probability: float = 0.99) -> Corridor:
    got = corridors(coasting_state(t)[None], P[None], np.array([t]),
                    probability=probability)[0]
    assert got is not None
    return got


def true_ground_path(t0: float, n: int = 120) -> tuple[np.ndarray, np.ndarray]:
    traj = hokkaido_flight()
    tt = np.linspace(t0, traj.flight_time_s, n)
    lat, lon, _ = earth.ecef_to_geodetic(traj.position_at(tt))
    return np.degrees(lat), np.degrees(lon)


def test_chi_square_quantile_matches_tables() -> None:
    # Tabulated chi-square quantiles with 6 degrees of freedom.
    assert chi2_6_quantile(0.95) == pytest.approx(12.592, abs=1e-3)
    assert chi2_6_quantile(0.99) == pytest.approx(16.812, abs=1e-3)
    with pytest.raises(ValueError):
        chi2_6_quantile(1.0)


def test_the_corridor_of_a_known_flight_contains_its_true_path() -> None:
    traj = hokkaido_flight()
    t0 = traj.burnout_s + 30.0
    c = corridor_of(t0, covariance(1_000.0, 10.0))
    lat, lon = true_ground_path(t0)
    assert c.contains(lat, lon).all()
    # and the mean impact is where the flight comes down
    miss = earth.great_circle_m(math.radians(float(c.lat_deg[-1])),
                                math.radians(float(c.lon_deg[-1])),
                                math.radians(traj.impact_lat_deg),
                                math.radians(traj.impact_lon_deg))
    assert float(miss) < 20_000.0
    # a corridor is not the whole map: a point 300 km off the path is outside
    assert not c.contains(float(lat[60]) + 3.0, float(lon[60])).any()


def test_a_corridor_keeps_its_axes_and_a_widened_copy_computes_its_own() -> None:
    """A corridor computes its axes and densified form once (regions_in_corridor asks for
    them on every pass); the warning centre's wider copy (``replace``, twice the buffer) must
    not inherit the narrow ones."""
    rng = np.random.default_rng(3)
    k = 30
    a = rng.normal(0.0, 1.0, (k, 2, 2)) * 2e4
    args = (0.99, 0.0, np.arange(k, dtype=float), 35.0 + np.linspace(0.0, 5.0, k),
            130.0 + np.linspace(0.0, 8.0, k), a @ a.transpose(0, 2, 1), 3_000.0)
    c = Corridor(*args)
    axes, v = c.semi_axes_m()
    dense = c.densified()
    assert c.semi_axes_m()[0] is axes and c.densified() is dense
    fresh_axes, fresh_v = Corridor(*args).semi_axes_m()
    assert (fresh_axes == axes).all() and (fresh_v == v).all()
    assert (Corridor(*args).densified().spread == dense.spread).all()
    wide = replace(c, buffer_m=6_000.0)
    wide_axes, _ = wide.semi_axes_m()
    assert np.allclose(wide_axes, axes + 3_000.0)
    assert wide.densified().buffer_m == 6_000.0 and wide.densified() is not dense


def test_the_corridor_narrows_as_the_covariance_shrinks() -> None:
    t0 = hokkaido_flight().burnout_s + 30.0
    wide = corridor_of(t0, covariance(4_000.0, 40.0))
    narrow = corridor_of(t0, covariance(1_000.0, 10.0))
    wide_axes, _ = wide.semi_axes_m()
    narrow_axes, _ = narrow.semi_axes_m()
    assert (narrow_axes <= wide_axes + 1e-6).all()
    assert narrow_axes[-1].max() < 0.5 * wide_axes[-1].max()
    lat, lon = narrow.outline()
    assert wide.contains(lat, lon).all()
    lat, lon = wide.outline()
    assert not narrow.contains(lat, lon).all()


# --- the warning centre ----------------------------------------------------------------------

def straight_corridor(t0: float, lat0: float, lon0: float, lat1: float, lon1: float,
                      width_m: float, n: int = 40) -> Corridor:
    """A corridor along a straight line (degrees), ``n`` sections over 400 s, of one width."""
    f = np.linspace(0.0, 1.0, n)
    spread = np.repeat((width_m**2 * np.eye(2))[None], n, axis=0)
    return Corridor(0.99, t0, t0 + 400.0 * f, lat0 + f * (lat1 - lat0),
                    lon0 + f * (lon1 - lon0), spread, 20_000.0)


def impact(c: Corridor, semi_major_km: float = 30.0) -> GroundPoint:
    return GroundPoint(float(c.lat_deg[-1]), float(c.lon_deg[-1]), c.impact_time, 2.0,
                       Ellipse(semi_major_km, semi_major_km / 2, 90.0, 2.0))


def feed(centre: WarningCentre, at: float, track: str, c: Corridor) -> None:
    """Two identical predictions in a row: the second is credible."""
    centre.assess(at - 1.0, track, impact(c), None, c)
    centre.assess(at, track, impact(c), None, c)


# From the Sea of Japan over Hokkaido (about 42.5N) into the Pacific.
OVER_HOKKAIDO = (41.0, 135.0, 42.6, 150.0)


def test_a_corridor_over_hokkaido_alerts_it_with_the_reason() -> None:
    centre = WarningCentre("JPN", feeds.load_geography())
    feed(centre, 200.0, "t1", straight_corridor(200.0, *OVER_HOKKAIDO, 30_000.0))
    issued = [w for w in centre.log if w.action == "issued" and w.level == "alert"]
    assert issued and "Hokkaido" in issued[0].regions
    assert issued[0].reason == OVERFLIGHT
    assert centre.named["Hokkaido"].level == "alert"
    # the impact, far in the Pacific, names nothing more than the high seas at most
    assert all(w.level != "notice" for w in centre.log)


def test_narrowing_retracts_only_what_is_no_longer_possible_and_says_why() -> None:
    centre = WarningCentre("JPN", feeds.load_geography())
    # A wide corridor towards northern Honshu: Aomori and its neighbours are possible.
    wide = straight_corridor(200.0, 40.6, 134.0, 40.8, 150.0, 150_000.0)
    feed(centre, 200.0, "t1", wide)
    before = {n for n, a in centre.named.items() if a.level == "alert"}
    assert {"Aomori", "Akita"} <= before
    # The track converges on a narrow path over Aomori only.
    narrow = straight_corridor(210.0, 41.0, 134.0, 41.0, 150.0, 5_000.0)
    feed(centre, 210.0, "t1", narrow)
    after = {n for n, a in centre.named.items() if a.level == "alert"}
    assert "Aomori" in after and after < before
    retracted = [w for w in centre.log if w.action == "retracted" and w.level == "alert"]
    assert retracted and "Akita" in {r for w in retracted for r in w.regions}
    assert all(w.reason == "no longer under the possible path" for w in retracted)
    assert not {r for w in retracted for r in w.regions} & after
    assert all("Aomori" in w.active for w in retracted)


def test_a_region_flown_past_is_passed_not_retracted() -> None:
    centre = WarningCentre("JPN", feeds.load_geography())
    first = straight_corridor(200.0, *OVER_HOKKAIDO, 20_000.0)
    feed(centre, 200.0, "t1", first)
    assert "Hokkaido" in centre.named
    # Later the same track is far beyond Hokkaido, over the Pacific.
    later = straight_corridor(600.0, 43.2, 152.0, 43.6, 158.0, 20_000.0)
    feed(centre, 600.0, "t1", later)
    passed = [w for w in centre.log if w.action == "passed"]
    assert passed and "Hokkaido" in passed[0].regions
    assert passed[0].reason == "the missile has passed"
    assert not [w for w in centre.log if w.action == "retracted"]
    assert "Hokkaido" not in centre.named


def test_a_lost_track_retracts_with_the_reason_unless_another_sustains() -> None:
    """What a lost track named that the missile can no longer be over (its notices, the
    land already behind it) goes at the loss; the land still ahead stays alerted (below)."""
    centre = WarningCentre("JPN", feeds.load_geography())
    c = straight_corridor(200.0, 40.0, 128.5, 40.2, 137.0, 5_000.0)   # into the EEZ
    feed(centre, 200.0, "t1", c)
    feed(centre, 201.0, "t2", c)
    assert centre.lost(205.0, "t1") is None            # t2 still sustains it
    w = centre.lost(206.0, "t2")
    assert w is not None and w.action == "retracted" and w.reason == "track lost"
    assert w.level == "notice" and centre.regions is None


def test_a_lost_track_keeps_the_land_ahead_alerted_until_its_predicted_passing() -> None:
    """Radars lose a missile under their horizon while it flies on: a loss before the
    missile reaches Hokkaido neither retracts Hokkaido nor says it has passed; the alert
    stands until the latest time the corridor had the missile over it, and is then passed,
    at that time, saying it was predicted."""
    centre = WarningCentre("JPN", feeds.load_geography())
    c = straight_corridor(200.0, *OVER_HOKKAIDO, 20_000.0)
    feed(centre, 200.0, "t1", c)
    until = centre.named["Hokkaido"].until_s
    assert until > 300.0
    centre.lost(250.0, "t1")
    assert "Hokkaido" in centre.named
    assert not [w for w in centre.log if "Hokkaido" in w.regions
                and w.action in ("retracted", "passed")]
    centre.tick(until - 1.0)        # Aomori, at the corridor's edge, may pass before
    assert "Hokkaido" in centre.named
    w = centre.tick(until + 30.0)
    assert w is not None and w.action == "passed" and "Hokkaido" in w.regions
    assert w.at_s == until and w.reason == PREDICTED_PASSING and centre.regions is None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.floats(201.0, 640.0), st.lists(st.floats(200.0, 900.0), max_size=6))
def test_a_loss_never_says_passed_before_the_predicted_passing(
        lost_at: float, ticks: list[float]) -> None:
    """Whenever the track is lost and however time comes, Hokkaido is said to have passed
    no earlier than the corridor had the missile past it, and never retracted."""
    centre = WarningCentre("JPN", feeds.load_geography())
    c = straight_corridor(200.0, *OVER_HOKKAIDO, 20_000.0)
    feed(centre, 200.0, "t1", c)
    until = centre.named["Hokkaido"].until_s
    centre.lost(lost_at, "t1")
    for t in sorted(ticks):
        centre.tick(t)
    centre.tick(math.inf)
    about = [w for w in centre.log if "Hokkaido" in w.regions and w.level == "alert"]
    assert [w.action for w in about] == ["issued", "passed"]
    assert about[-1].at_s >= until


def test_eez_is_a_notice_and_the_high_seas_information() -> None:
    atlas = feeds.load_geography()
    centre = WarningCentre("JPN", atlas)
    # Down in the Sea of Japan about 250 km west of Akita: the EEZ, not the land.
    into_eez = straight_corridor(200.0, 39.5, 128.5, 40.0, 137.0, 5_000.0)
    feed(centre, 200.0, "t1", into_eez)
    levels = {w.level for w in centre.log}
    assert levels == {"notice"}, [w.to_json() for w in centre.log]
    assert centre.named[next(iter(centre.named))].reason == IMPACT
    other = WarningCentre("KOR", atlas)
    feed(other, 200.0, "t1", into_eez)
    assert [w.regions for w in other.log] == [(HIGH_SEAS,)]
    assert other.log[0].level == "information" and "high seas" in other.log[0].reason


def test_regions_in_corridor_finds_an_island_smaller_than_the_corridor() -> None:
    # A 1 km island 10 km off the centre line, between two cross-sections: no outline or
    # centre point falls on it, only its vertices lie in the corridor.
    lat0, lon0 = 40.09, 140.0
    d = 0.0045
    ring = [[lon0 - d, lat0 - d], [lon0 + d, lat0 - d], [lon0 + d, lat0 + d],
            [lon0 - d, lat0 + d], [lon0 - d, lat0 - d]]
    islet = atlas([{"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"id": "XX-1", "name": "Islet", "party": "JPN",
                                          "kind": "prefecture"},
        "geometry": {"type": "Polygon", "coordinates": [ring]}}]}])
    c = straight_corridor(0.0, 40.0, 138.0, 40.0, 142.0, 5_000.0, n=20)
    assert not islet.regions[0].contains(*c.densified().outline()).any()
    found = regions_in_corridor(islet, c, ("JPN",), ("prefecture",))
    assert [r.name for r, *_ in found] == ["Islet"]
    far = straight_corridor(0.0, 39.0, 138.0, 39.0, 142.0, 5_000.0, n=20)
    assert regions_in_corridor(islet, far, ("JPN",), ("prefecture",)) == []


# --- properties ------------------------------------------------------------------------------

def _psd(values: list[float]) -> np.ndarray:
    m = np.array(values).reshape(6, 6)
    scale = np.array([3_000.0] * 3 + [30.0] * 3)
    a = m * scale[:, None]
    psd: np.ndarray = a @ a.T
    return psd


matrices = st.lists(st.floats(-1.0, 1.0), min_size=36, max_size=36)


def mean_ground_path(t0: float, x: np.ndarray, until: float) -> tuple[np.ndarray, np.ndarray]:
    s = x[None].copy()
    lats, lons = [], []
    t = t0
    while t < until:
        lat, lon, _ = earth.ecef_to_geodetic(s[0, :3])
        lats.append(math.degrees(float(lat)))
        lons.append(math.degrees(float(lon)))
        s = rk4_step(s, np.array([15.0]))
        t += 15.0
    return np.array(lats), np.array(lons)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(matrices, matrices, st.sampled_from([0.9, 0.99]))
def test_corridor_contains_the_mean_path_and_grows_with_the_covariance(
        a: list[float], b: list[float], probability: float) -> None:
    t0 = hokkaido_flight().burnout_s + 60.0
    P1 = _psd(a)
    P2 = P1 + _psd(b)
    small = corridor_of(t0, P1, probability)
    big = corridor_of(t0, P2, probability)
    # the ground path of the state mean, integrated independently, lies in the corridor
    lat, lon = mean_ground_path(t0, coasting_state(t0), small.impact_time - 20.0)
    assert small.contains(lat, lon).all()
    # monotone: a wider covariance never yields a subset; every cross-section grows
    assert np.allclose(small.lat_deg, big.lat_deg) and np.allclose(small.lon_deg, big.lon_deg)
    assert (np.linalg.eigvalsh(big.spread - small.spread) >= -1e-6 * (
        1.0 + np.abs(big.spread).max())).all()
    # and every point of the smaller corridor's outline, pulled in by a hair, is in the bigger
    olat, olon = small.outline()
    k = small.times.size
    clat = np.concatenate([np.repeat(small.lat_deg, 16), small.lat_deg])
    clon = np.concatenate([np.repeat(small.lon_deg, 16), small.lon_deg])
    assert olat.size == clat.size == 17 * k
    inner_lat = clat + 0.999 * (olat - clat)
    inner_lon = clon + 0.999 * (olon - clon)
    assert big.contains(inner_lat, inner_lon).all()


# --- early alerts from burning tracks --------------------------------------------------------

def test_a_cut_off_corridor_beyond_hokkaido_alerts_it_early() -> None:
    centre = WarningCentre("JPN", feeds.load_geography())
    # The engine could stop now and the missile would still come down east of Hokkaido.
    beyond = straight_corridor(120.0, 41.0, 128.0, 42.6, 150.0, 30_000.0)
    w = centre.boost(120.0, "t1", beyond)
    assert w is not None and w.action == "issued" and w.level == "alert"
    assert "Hokkaido" in w.regions and w.reason == OVERFLIGHT
    assert w.impact_lat is None        # an early alert states no impact point


def test_a_cut_off_corridor_that_may_end_on_land_or_at_sea_alerts_nothing() -> None:
    atlas = feeds.load_geography()
    centre = WarningCentre("JPN", atlas)
    # Short of Hokkaido: its shortest impact could still fall on it, so it is not certain.
    short = straight_corridor(100.0, 40.0, 128.0, 42.8, 141.5, 60_000.0)
    assert centre.boost(100.0, "t1", short) is None
    # Wholly over the Sea of Japan.
    at_sea = straight_corridor(100.0, 39.5, 128.5, 40.0, 134.0, 60_000.0)
    assert centre.boost(101.0, "t1", at_sea) is None
    assert centre.log == []


def test_a_coasting_prediction_replaces_the_early_alert() -> None:
    centre = WarningCentre("JPN", feeds.load_geography())
    centre.boost(120.0, "t1", straight_corridor(120.0, 41.0, 128.0, 42.6, 150.0, 30_000.0))
    assert "Hokkaido" in centre.named
    # The coasting track's corridor, far south over the Pacific, no longer crosses Hokkaido.
    south = straight_corridor(160.0, 38.0, 134.0, 36.0, 150.0, 5_000.0)
    feed(centre, 160.0, "t1", south)
    retracted = [w for w in centre.log if w.action == "retracted"]
    assert retracted and "Hokkaido" in retracted[0].regions
    assert retracted[0].reason == "no longer under the possible path"
    # and later cut-off corridors of that track are ignored
    assert centre.boost(170.0, "t1", straight_corridor(170.0, 41.0, 128.0, 42.6, 150.0,
                                                       30_000.0)) is None


@settings(max_examples=8, deadline=None)
@given(st.lists(st.floats(200.0, 500.0), min_size=1, max_size=3), st.floats(1.0, 2000.0),
       st.sampled_from([0.0, 1.0 / 5000.0]))
def test_impacts_and_corridors_integrated_together_are_those_integrated_apart(
        times: list[float], sigma_m: float, inv_beta: float) -> None:
    """The tracker brings the corridors' flights down in the impact points' integration:
    every number is the one of separate integrations (each row is integrated alone)."""
    from gsomia.core.tracking.impact import (
        CORRIDOR_CROSSING_STEP_S,
        ImpactPredictor,
        corridor_rows,
        ground_crossing,
    )

    x = np.stack([coasting_state(t) for t in times])
    t = np.asarray(times)
    P = np.tile(np.diag([sigma_m**2] * 3 + [(sigma_m / 100.0) ** 2] * 3), (len(times), 1, 1))
    predictor = ImpactPredictor(step_s=CORRIDOR_CROSSING_STEP_S)
    rows, t_rows = corridor_rows(x, t)
    impacts, launches, crossed = predictor.predict_and_cross(x, P, t, rows, t_rows,
                                                             inv_beta=inv_beta)
    assert (impacts, launches) == predictor.predict(x, P, t, inv_beta=inv_beta)
    apart = ground_crossing(rows, t_rows, np.ones(len(rows)), step_s=CORRIDOR_CROSSING_STEP_S,
                            inv_beta=inv_beta)
    for got, want in zip(crossed, apart, strict=True):
        np.testing.assert_array_equal(got, want)
    for got_c, want_c in zip(corridors(x, P, t, inv_beta=inv_beta, crossing=crossed),
                             corridors(x, P, t, inv_beta=inv_beta), strict=True):
        assert got_c is not None and want_c is not None
        np.testing.assert_array_equal(got_c.spread, want_c.spread)
        np.testing.assert_array_equal(got_c.lat_deg, want_c.lat_deg)
        np.testing.assert_array_equal(got_c.times, want_c.times)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(*OVER_HOKKAIDO, 30_000.0, False).via("over Hokkaido")
@example(38.0, 124.5, 37.0, 131.0, 60_000.0, False).via("over South Korea")
@example(38.0, 124.5, 37.0, 131.0, 60_000.0, True).via("impact near Japan")
@given(st.floats(30.0, 44.0), st.floats(124.0, 132.0), st.floats(30.0, 46.0),
       st.floats(128.0, 150.0), st.floats(5_000.0, 150_000.0), st.booleans())
def test_centres_sharing_one_corridor_test_name_what_their_own_test_would(
        lat0: float, lon0: float, lat1: float, lon1: float, width_m: float,
        impact_only: bool) -> None:
    """The parties of one launch share one corridor test over all their concerns: each must
    get exactly, and in the same order, what a test over its own concern alone gives."""
    geography = feeds.load_geography()
    shared: dict[tuple[object, ...], object] = {}
    c = straight_corridor(200.0, lat0, lon0, lat1, lon1, width_m)
    for party in ("USA", "JPN", "KOR"):
        centre = WarningCentre(party, geography, touched=shared)
        for kinds in (TERRITORY_KINDS, ("eez",)):
            alone = regions_in_corridor(geography, c, centre.concern, kinds,
                                        impact_only=impact_only)
            got = centre._in_corridor(c, kinds, impact_only=impact_only)
            assert [(r.name, a, b, i) for r, a, b, i in got] == \
                [(r.name, a, b, i) for r, a, b, i in alone]
