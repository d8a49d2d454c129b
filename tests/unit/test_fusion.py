"""Covariance intersection: consistent for any cross-correlation, never overconfident."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from tracking_fixtures import hwasong12, hwasong12_detections

from gsomia.core.errors import MalformedInput
from gsomia.core.tracking import testbed as tb
from gsomia.core.tracking.fusion import TrackFuser, covariance_intersection
from gsomia.core.tracking.tracker import Tracker
from gsomia.core.tracking.types import TrackSet

N = 4
TOL = 1e-7

factor = arrays(np.float64, (2 * N, 2 * N), elements=st.floats(-3.0, 3.0))
means = arrays(np.float64, (2, N), elements=st.floats(-100.0, 100.0))


def joint_covariance(m: np.ndarray) -> np.ndarray:
    """A well-conditioned joint covariance of two estimates, cross-correlation included."""
    out: np.ndarray = m @ m.T + 0.5 * np.eye(2 * N)
    return out


def is_psd(a: np.ndarray, scale: float) -> bool:
    return bool(np.linalg.eigvalsh(0.5 * (a + a.T)).min() >= -TOL * max(scale, 1.0))


@settings(max_examples=150, deadline=None)
@given(factor, means, st.sampled_from(["trace", "det"]))
def test_ci_is_consistent_for_the_true_cross_correlation(m: np.ndarray, xs: np.ndarray,
                                                          criterion: str) -> None:
    joint = joint_covariance(m)
    Pa, Pb, Pab = joint[:N, :N], joint[N:, N:], joint[:N, N:]
    x, P, w = covariance_intersection(xs[:1], Pa[None], xs[1:], Pb[None],
                                      criterion=criterion)  # type: ignore[arg-type]
    P, w0 = P[0], float(w[0])
    scale = float(np.abs(joint).max())
    assert 0.0 <= w0 <= 1.0
    assert np.allclose(P, P.T)
    assert is_psd(P, scale)
    # The fused error is Ka ea + Kb eb; its true covariance, whatever Pab is, lies under P.
    Ka = w0 * P @ np.linalg.inv(Pa)
    Kb = (1.0 - w0) * P @ np.linalg.inv(Pb)
    actual = Ka @ Pa @ Ka.T + Kb @ Pb @ Kb.T + Ka @ Pab @ Kb.T + Kb @ Pab.T @ Ka.T
    assert is_psd(P - actual, scale)
    # Never more confident than treating the two as independent would make it.
    independent = np.linalg.inv(np.linalg.inv(Pa) + np.linalg.inv(Pb))
    assert is_psd(P - independent, scale)
    # Optimising w never does worse than keeping the better input.
    if criterion == "trace":
        assert np.trace(P) <= min(np.trace(Pa), np.trace(Pb)) * (1 + 1e-9)
    else:
        assert np.linalg.det(P) <= min(np.linalg.det(Pa), np.linalg.det(Pb)) * (1 + 1e-6)
    # The fused mean lies between the inputs in the information sense.
    assert np.all(np.isfinite(x))


@settings(max_examples=60, deadline=None)
@given(factor)
def test_ci_of_an_estimate_with_itself_changes_nothing(m: np.ndarray) -> None:
    P0 = joint_covariance(m)[:N, :N]
    x0 = np.arange(N, dtype=float)
    x, P, _ = covariance_intersection(x0[None], P0[None], x0[None], P0[None])
    assert np.allclose(P[0], P0, rtol=1e-6, atol=1e-9)
    assert np.allclose(x[0], x0, atol=1e-6)


def test_ci_picks_the_dominant_estimate() -> None:
    Pa = np.diag([1.0, 1.0, 1.0, 1.0])
    Pb = np.diag([100.0, 100.0, 100.0, 100.0])
    _, P, w = covariance_intersection(np.zeros((1, N)), Pa[None], np.ones((1, N)), Pb[None])
    assert w[0] == pytest.approx(1.0)
    assert np.allclose(P[0], Pa)


def test_ci_complementary_estimates_beat_both() -> None:
    Pa = np.diag([1.0, 100.0, 1.0, 100.0])
    Pb = np.diag([100.0, 1.0, 100.0, 1.0])
    _, P, w = covariance_intersection(np.zeros((1, N)), Pa[None], np.zeros((1, N)), Pb[None])
    assert 0.3 < w[0] < 0.7
    assert np.trace(P[0]) < 0.5 * np.trace(Pa)


def test_unknown_criterion_is_refused() -> None:
    with pytest.raises(MalformedInput):
        covariance_intersection(np.zeros((1, N)), np.eye(N)[None], np.zeros((1, N)),
                                np.eye(N)[None], criterion="max")  # type: ignore[arg-type]


def test_partners_tracks_fuse_into_one_better_track() -> None:
    """KOR tracks with its radar, JPN with its own; fusing the shared tracks gives one track
    per missile, tighter than either and still consistent with the truth."""
    flight = hwasong12()
    dets = hwasong12_detections(8)
    now = 110.0
    kor = [d for d in dets if d.sensor.id == tb.KOREAN_RADAR.id and d.time <= now]
    jpn = [d for d in dets if d.sensor.id == tb.JAPANESE_RADAR.id and d.time <= now]
    tracker = Tracker(predict_impacts=False)

    def alone(ds: list) -> TrackSet:  # type: ignore[type-arg]
        tracks = TrackSet()
        for d in ds:
            tracks, _ = tracker.step(tracks, [d], d.time)
        return tracks

    a, b = alone(kor), alone(jpn)
    assert len(a) == 1 and len(b) == 1
    fused = TrackFuser().fuse(a, b, now)
    assert len(fused) == 1
    assert fused.time[0] == now
    truth = flight.states(np.array([now]))[0]
    err = fused.x[0] - truth
    nees = float(err @ np.linalg.solve(fused.P[0], err))
    assert nees < 22.5  # chi-square(6) 99.9%
    a_now = TrackFuser()._at(a, now)
    b_now = TrackFuser()._at(b, now)
    assert np.trace(fused.P[0]) <= min(np.trace(a_now.P[0]), np.trace(b_now.P[0]))


def test_tracks_of_different_missiles_stay_apart() -> None:
    flight = hwasong12()
    dets = [d for d in hwasong12_detections(9) if d.time <= 60.0]
    tracker = Tracker(predict_impacts=False)
    a = TrackSet()
    for d in dets:
        a, _ = tracker.step(a, [d], d.time)
    b = a.select(np.array([0]))
    shifted_x = b.x.copy()
    shifted_x[0, :3] += 200_000.0
    b = b.with_states(np.array([0]), b.time, shifted_x, b.P)
    fused = TrackFuser().fuse(a, b, 60.0)
    assert len(fused) == 2
    assert flight.impact_time > 0
