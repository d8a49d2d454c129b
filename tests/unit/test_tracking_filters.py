"""The tracker's parts one by one: motion model, measurement model, gating, start, deletion."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tracking_fixtures import srbm

from gsomia.core.tracking import earth
from gsomia.core.tracking import testbed as tb
from gsomia.core.tracking.associator import GNNAssociator
from gsomia.core.tracking.deleter import UpdateTimeDeleter
from gsomia.core.tracking.impact import ground_crossing, sigma_points
from gsomia.core.tracking.initiator import rae_to_ecef
from gsomia.core.tracking.predictor import BallisticPredictor, acceleration, transition
from gsomia.core.tracking.types import Kind, TrackSet
from gsomia.core.tracking.updater import ExtendedKalmanUpdater, measure, wrap

SITE = tb.KOREAN_RADAR

lats = st.floats(-1.4, 1.4)
lons = st.floats(-math.pi, math.pi)
heights = st.floats(0.0, 2_000_000.0)
speeds = st.floats(-7000.0, 7000.0)


@settings(max_examples=100, deadline=None)
@given(lats, lons, heights, speeds, speeds, speeds)
def test_fast_acceleration_equals_earth_model(lat: float, lon: float, h: float,
                                              vx: float, vy: float, vz: float) -> None:
    r = earth.geodetic_to_ecef(lat, lon, h)[None]
    v = np.array([[vx, vy, vz]])
    assert np.allclose(acceleration(r, v), earth.acceleration_ecef(r, v), rtol=1e-12,
                       atol=1e-12)


def test_transition_matches_numerical_jacobian_of_propagation() -> None:
    x = srbm().states(np.array([60.0]))
    predictor = BallisticPredictor(q=0.0)
    for dt in (1.0, 10.0):
        step = np.array([dt])
        jac = np.zeros((6, 6))
        eps = np.array([1.0, 1.0, 1.0, 0.01, 0.01, 0.01])
        for i in range(6):
            d = np.zeros(6)
            d[i] = eps[i]
            jac[:, i] = (predictor.propagate(x + d, step)[0]
                         - predictor.propagate(x - d, step)[0]) / (2 * eps[i])
        phi = transition(0.5 * (x[:, :3] + predictor.propagate(x, step)[:, :3]), step)[0]
        assert np.abs(jac - phi).max() < 5e-5 * dt


def test_propagation_backwards_undoes_forwards() -> None:
    x = srbm().states(np.array([30.0]))
    p = BallisticPredictor()
    there = p.propagate(x, np.array([95.0]))
    back = p.propagate(there, np.array([-95.0]))
    assert np.allclose(back, x, atol=1e-6)


def test_predicted_covariance_stays_symmetric_and_grows_with_process_noise() -> None:
    x = srbm().states(np.array([30.0]))
    P = np.eye(6)[None] * 100.0
    _, quiet = BallisticPredictor(q=0.0).predict(x, P, np.array([20.0]))
    _, noisy = BallisticPredictor(q=1.0).predict(x, P, np.array([20.0]))
    assert np.allclose(noisy, noisy.transpose(0, 2, 1))
    assert np.linalg.eigvalsh(noisy[0] - quiet[0]).min() > 0.0


def test_boost_noise_applies_only_to_a_climbing_low_track() -> None:
    flight = srbm()
    x = flight.states(np.array([20.0, 200.0]))  # climbing low; falling
    P = np.eye(6)[None].repeat(2, axis=0)
    p = BallisticPredictor(q=1e-4, q_boost=400.0, boost_ceiling_m=80_000.0)
    _, out = p.predict(x, P, np.array([1.0, 1.0]))
    _, base = BallisticPredictor(q=1e-4).predict(x, P, np.array([1.0, 1.0]))
    assert out[0, 3, 3] > base[0, 3, 3] + 100.0
    assert np.isclose(out[1, 3, 3], base[1, 3, 3])


def test_measurement_jacobians_match_finite_differences() -> None:
    x = srbm().states(np.array([40.0, 120.0]))
    for kind in ("rae", "los"):
        _, H = measure(x, SITE.ecef, SITE.basis, kind)
        for i in range(3):
            d = np.zeros((2, 6))
            d[:, i] = 1.0
            zp, _ = measure(x + d, SITE.ecef, SITE.basis, kind)
            zm, _ = measure(x - d, SITE.ecef, SITE.basis, kind)
            assert np.allclose((zp - zm) / 2.0, H[:, :, i], rtol=1e-5, atol=1e-12)
        assert np.all(H[:, :, 3:] == 0.0)


def test_measure_agrees_with_earth_geometry() -> None:
    x = srbm().states(np.array([50.0]))
    z, _ = measure(x, SITE.ecef, SITE.basis, "rae")
    rng, az, el = earth.range_azimuth_elevation(SITE.ecef, SITE.lat, SITE.lon, x[0, :3])
    assert np.allclose(z[0], [rng, az, el])


@settings(max_examples=60, deadline=None)
@given(st.floats(50_000.0, 2_000_000.0), st.floats(0.0, 2 * math.pi), st.floats(0.01, 1.5))
def test_radar_to_position_inverts_the_measurement(rng: float, az: float, el: float) -> None:
    z = np.array([[rng, az, el]])
    R = np.diag([30.0**2, 1e-6, 1e-6])[None]
    pos, cov = rae_to_ecef(z, R, SITE.ecef[None], SITE.basis[None])
    x = np.zeros((1, 6))
    x[0, :3] = pos[0]
    back, H = measure(x, SITE.ecef, SITE.basis, "rae")
    assert back[0, 0] == _approx_rel(rng)
    assert abs(wrap(np.array([back[0, 1] - az]))[0]) < 1e-9
    assert back[0, 2] == _approx_rel(el)
    # The converted covariance maps back to R through the measurement Jacobian.
    Hp = H[0, :, :3]
    assert np.allclose(Hp @ cov[0] @ Hp.T, R[0], rtol=1e-6, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.floats(1.0, 1e8), st.sampled_from(["rae", "los"]))
def test_update_keeps_covariance_symmetric_positive_definite(seed: int, scale: float,
                                                             kind: Kind) -> None:
    rng = np.random.default_rng(seed)
    x = srbm().states(np.array([60.0]))
    a = rng.standard_normal((6, 6))
    P = (a @ a.T + np.eye(6)) * scale
    z, _ = measure(x, SITE.ecef, SITE.basis, kind)
    m = z.shape[1]
    R = np.diag([30.0**2, 1e-6, 1e-6][-m:])
    x2, P2 = ExtendedKalmanUpdater().update(x, P[None], z, R[None], SITE.ecef, SITE.basis,
                                            kind)
    assert np.allclose(P2, P2.transpose(0, 2, 1))
    assert np.linalg.eigvalsh(P2[0]).min() > 0.0
    assert np.trace(P2[0]) <= np.trace(P) * (1 + 1e-9)
    assert np.all(np.isfinite(x2))


def test_azimuth_innovation_wraps_across_north() -> None:
    x = np.zeros((1, 6))
    x[0, :3] = SITE.ecef + SITE.basis.T @ np.array([-10.0, 300_000.0, 50_000.0])
    z, _ = measure(x, SITE.ecef, SITE.basis, "rae")
    assert z[0, 1] > math.pi  # just west of north
    shifted = z.copy()
    shifted[0, 1] = (z[0, 1] + 1e-4) % (2 * math.pi)  # across north
    P = np.eye(6)[None] * 1e6
    R = np.diag([30.0**2, 1e-6, 1e-6])[None]
    x2, _ = ExtendedKalmanUpdater().update(x, P, shifted, R, SITE.ecef, SITE.basis, "rae")
    assert np.linalg.norm(x2[0, :3] - x[0, :3]) < 100.0


def test_gate_rejects_far_detections_and_assignment_is_one_to_one() -> None:
    x = srbm().states(np.array([40.0, 41.0]))
    P = np.eye(6)[None].repeat(2, axis=0) * 200.0**2
    z, _ = measure(x, SITE.ecef, SITE.basis, "rae")
    far = z[0] + np.array([50_000.0, 0.0, 0.0])
    dets = np.stack([z[1], z[0], far])
    R = np.repeat(np.diag([30.0**2, 1e-6, 1e-6])[None], 3, axis=0)
    rows, cols = GNNAssociator().associate(x, P, dets, R, SITE.ecef, SITE.basis, "rae")
    assert dict(zip(rows.tolist(), cols.tolist(), strict=True)) == {0: 1, 1: 0}
    R2 = R.copy()
    R2[2] *= 4.0  # mixed noise takes the general path
    rows2, cols2 = GNNAssociator().associate(x, P, dets, R2, SITE.ecef, SITE.basis, "rae")
    assert dict(zip(rows2.tolist(), cols2.tolist(), strict=True)) == {0: 1, 1: 0}


def test_ground_crossing_finds_the_flights_impact() -> None:
    flight = srbm()
    tc, rc, ok = ground_crossing(flight.x0[None] * 1.0 + 0.0, np.zeros(1), np.ones(1),
                                 step_s=20.0)
    assert ok[0]
    assert abs(tc[0] - flight.impact_time) < 1e-3
    lat, lon, h = earth.ecef_to_geodetic(rc[0])
    assert abs(float(h)) < 1.0
    assert math.degrees(float(lat)) == _approx(flight.impact_lat_deg)
    assert math.degrees(float(lon)) == _approx(flight.impact_lon_deg)


def _approx(v: float) -> object:
    return pytest.approx(v, abs=1e-5)


def _approx_rel(v: float) -> object:
    return pytest.approx(v, rel=1e-9)


def test_sigma_points_reproduce_mean_and_covariance() -> None:
    rng = np.random.default_rng(5)
    a = rng.standard_normal((6, 6))
    P = a @ a.T
    x = rng.standard_normal(6)
    pts = sigma_points(x[None], P[None])[0]
    outer = pts[1:]
    assert np.allclose(outer.mean(axis=0), x)
    dev = outer - x
    assert np.allclose(dev.T @ dev / 12.0, P)


def test_deleter_reasons() -> None:
    x = srbm().states(np.array([60.0, 60.0, 60.0]))
    P = np.repeat(np.eye(6)[None] * 100.0, 3, axis=0)
    P[2, 3:, 3:] = np.eye(3) * 1e6  # velocity sigma 1 km/s: explodes when coasting
    tracks = TrackSet().extended(np.full(3, 60.0), x, P, updates=np.full(3, 3))
    tracks = tracks.with_impacts(np.array([1]), np.array([200.0]), np.array([60.0]))
    deleter = UpdateTimeDeleter(confirmed_timeout_s=60.0, max_position_sigma_m=50_000.0)
    mask, events = deleter.check_for_deletion(tracks, 110.0, 3)
    assert mask.tolist() == [False, False, True]
    assert [(e.track_id, e.reason) for e in events] == [(3, "covariance")]
    mask, events = deleter.check_for_deletion(tracks.select(~mask), 150.0, 3)
    assert [(e.track_id, e.reason, e.retract) for e in events] == [(1, "not-updated", True)]
    mask, events = deleter.check_for_deletion(tracks.select(np.array([1])), 201.0, 3)
    assert [(e.track_id, e.reason, e.retract) for e in events] == [(2, "impacted", False)]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 12))
def test_assignment_does_not_depend_on_detection_order(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    x = srbm().states(np.array([40.0]))
    x = np.repeat(x, n, axis=0)
    x[:, :3] += rng.normal(0.0, 3000.0, (n, 3))
    P = np.repeat(np.eye(6)[None] * 500.0**2, n, axis=0)
    z, _ = measure(x, SITE.ecef, SITE.basis, "rae")
    z = z + rng.normal(0.0, 1.0, z.shape) * np.array([30.0, 1e-3, 1e-3])
    R = np.repeat(np.diag([30.0**2, 1e-6, 1e-6])[None], n, axis=0)
    order = rng.permutation(n)
    rows, cols = GNNAssociator().associate(x, P, z, R, SITE.ecef, SITE.basis, "rae")
    rows2, cols2 = GNNAssociator().associate(x, P, z[order], R[order], SITE.ecef, SITE.basis,
                                             "rae")
    first = dict(zip(rows.tolist(), cols.tolist(), strict=True))
    second = dict(zip(rows2.tolist(), order[cols2].tolist(), strict=True))
    assert first == second
    assert len(set(first.values())) == len(first)
