"""The tracker against simulated truth: consistency, impact and launch points, salvos, loss."""

from __future__ import annotations

import math
from functools import cache
from itertools import groupby

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tracking_fixtures import hwasong12, hwasong12_detections, km_between, srbm

from gsomia.core.errors import MalformedInput
from gsomia.core.tracking import testbed as tb
from gsomia.core.tracking.impact import ImpactPredictor
from gsomia.core.tracking.initiator import SinglePointInitiator
from gsomia.core.tracking.predictor import BallisticPredictor
from gsomia.core.tracking.tracker import Tracker, step
from gsomia.core.tracking.types import (
    Detection,
    Event,
    ImpactPredicted,
    SensorSite,
    TrackInitiated,
    TrackLost,
    TrackSet,
)
from gsomia.core.tracking.updater import ExtendedKalmanUpdater, measure


def run(tracker: Tracker, dets: list[Detection] | tuple[Detection, ...]
        ) -> tuple[TrackSet, list[Event]]:
    tracks = TrackSet()
    events: list[Event] = []
    for t, group in groupby(dets, key=lambda d: d.time):
        tracks, new = tracker.step(tracks, list(group), t)
        events.extend(new)
    return tracks, events


@cache
def full_run(seed: int) -> tuple[TrackSet, tuple[Event, ...]]:
    """The whole Hwasong-12 flight through the default tracker, predicting every 10 s."""
    tracks, events = run(Tracker(ipp_interval_s=10.0), hwasong12_detections(seed))
    return tracks, tuple(events)


def predictions(events: list[Event] | tuple[Event, ...]) -> list[ImpactPredicted]:
    return [e for e in events if isinstance(e, ImpactPredicted)]


def test_nees_within_chi_square_bounds_over_50_monte_carlo_runs() -> None:
    """Averaged NEES of 50 runs (stacked as 50 tracks of one filter) stays inside the 95%
    chi-square interval; the truth is free flight, so the matched filter has q = 0."""
    flight = hwasong12()
    grid = hwasong12_detections(0)
    truth = flight.states(np.array([d.time for d in grid]))
    runs = 50
    rng = np.random.default_rng(2024)

    def noisy(i: int) -> np.ndarray:
        d = grid[i]
        z, _ = measure(truth[i:i + 1], d.sensor.ecef, d.sensor.basis, "rae")
        return z + rng.standard_normal((runs, 3)) * np.sqrt(np.diag(d.R))

    first = grid[0]
    _, x, P = SinglePointInitiator().initiate(
        [Detection(first.time, first.sensor, "rae", z, first.R) for z in noisy(0)])
    predictor, updater = BallisticPredictor(q=0.0), ExtendedKalmanUpdater()
    t = first.time
    nees = []
    for i in range(1, len(grid)):
        d = grid[i]
        x, P = predictor.predict(x, P, np.full(runs, d.time - t))
        x, P = updater.update(x, P, noisy(i), d.R, d.sensor.ecef, d.sensor.basis, "rae")
        t = d.time
        err = x - truth[i]
        nees.append(float(np.mean(np.einsum("ni,ni->n", err,
                                            np.linalg.solve(P, err[..., None])[..., 0]))))
    # Imported here: ~0.8 s of CPU, paid by every test worker when imported at the top.
    from scipy.stats import chi2

    lo, hi = chi2.ppf([0.025, 0.975], 6 * runs) / runs
    nees_arr = np.array(nees)
    inside = np.mean((nees_arr >= lo) & (nees_arr <= hi))
    assert lo <= nees_arr.mean() <= hi
    assert inside >= 0.9, f"only {inside:.2%} of {len(nees)} scans inside [{lo:.2f}, {hi:.2f}]"


def test_impact_point_error_shrinks_and_the_ellipse_covers_the_truth() -> None:
    flight = hwasong12()
    _, events = full_run(1)
    preds = predictions(events)
    assert len(preds) > 40
    assert {e.track_id for e in preds} == {preds[0].track_id}
    err = np.array([km_between(p.impact.lat_deg, p.impact.lon_deg, flight.impact_lat_deg,
                               flight.impact_lon_deg) for p in preds])
    assert np.median(err[:3]) > np.median(err[5:15]) > err[-1]
    assert err[-1] < 1.0
    # Time to impact is right within seconds once the track has settled.
    tti = np.array([p.time_to_impact_s for p in preds[5:]])
    true_tti = np.array([flight.impact_time - p.time for p in preds[5:]])
    assert np.max(np.abs(tti - true_tti)) < 5.0
    # The two-sigma ellipse (about 86% for a 2-D Gaussian) contains the true impact point
    # on most predictions: the ellipse is honest, not decorative.
    covered = 0
    for p, e in zip(preds, err, strict=True):
        covered += e <= p.impact.ellipse.semi_major_km
    assert covered / len(preds) >= 0.8
    assert all(p.impact.ellipse.semi_minor_km <= p.impact.ellipse.semi_major_km for p in preds)


def test_launch_point_within_a_few_km() -> None:
    flight = hwasong12()
    _, events = full_run(1)
    launches = [p for p in predictions(events) if p.launch is not None]
    assert launches
    late = [p for p in launches if p.time > 30.0]
    errs = [km_between(p.launch.lat_deg, p.launch.lon_deg, flight.launch_lat_deg,
                       flight.launch_lon_deg) for p in late if p.launch is not None]
    assert max(errs) < 5.0
    assert np.median(errs) < 2.0
    # The launch time comes out too: the flight started at t = 0.
    assert all(abs(p.launch.time) < 10.0 for p in late if p.launch is not None)


def test_short_range_flight_seen_by_the_korean_radar_only() -> None:
    flight = srbm()
    dets = tb.observe([flight], [0.0], [tb.korean_radar()], np.random.default_rng(3))
    assert dets and dets[-1].time > 0.8 * flight.impact_time
    tracks, events = run(Tracker(ipp_interval_s=5.0), dets)
    preds = predictions(events)
    final = preds[-1]
    assert km_between(final.impact.lat_deg, final.impact.lon_deg, flight.impact_lat_deg,
                      flight.impact_lon_deg) < 1.0
    assert abs(final.impact.time - flight.impact_time) < 2.0
    assert len([e for e in events if isinstance(e, TrackInitiated)]) == 1
    assert len(tracks) == 1


def test_salvo_of_50_missiles_is_tracked_and_associated() -> None:
    rng = np.random.default_rng(11)
    base = srbm()
    flights, launches, labels = [], [], []
    for k in range(50):
        lat, lon = 38.6 + 0.8 * rng.random(), 125.3 + 1.0 * rng.random()
        x0 = tb.launch_state(lat, lon, 60.0 + 40.0 * rng.random(),
                             float(np.linalg.norm(base.x0[3:])) * (0.95 + 0.1 * rng.random()),
                             0.6 + 0.3 * rng.random())
        flights.append(tb.Flight(x0, 150.0, 0.0, 0.0, lat, lon, 0.0))
        launches.append(float(rng.uniform(0.0, 15.0)))
        labels.append(f"m{k}")
    radar = tb.Radar(tb.KOREAN_RADAR, 30.0, math.radians(0.05), 2e6, math.radians(-5.0), 1.0)
    dets = tb.observe(flights, launches, [radar], rng, until=60.0, labels=labels)
    tracker = Tracker(predict_impacts=False)
    tracks = TrackSet()
    taken: dict[int, list[str]] = {}
    for _t, group in groupby(dets, key=lambda d: d.time):
        scan = list(group)
        tracks, updated = tracker.scan(tracks, scan)
        for tid, j in updated.items():
            taken.setdefault(tid, []).append(str(scan[j].truth))
    confirmed = tracks.select(tracks.confirmed(tracker.confirm_after))
    assert len(confirmed) == 50
    assert len(tracks) == 50
    owners = {tid: max(set(v), key=v.count) for tid, v in taken.items()}
    assert sorted(owners.values()) == sorted(labels)
    right = sum(v.count(owners[tid]) for tid, v in taken.items())
    total = sum(len(v) for v in taken.values())
    assert right / total >= 0.99


def test_track_lost_when_measurements_stop_in_flight() -> None:
    dets = [d for d in hwasong12_detections(4) if d.time <= 300.0]
    tracker = Tracker(ipp_interval_s=30.0)
    tracks, events = run(tracker, dets)
    assert len(tracks) == 1
    assert not [e for e in events if isinstance(e, TrackLost)]
    tracks, lost = tracker.step(tracks, [], 300.0 + 30.0)
    assert len(tracks) == 1 and lost == []
    tracks, lost = tracker.step(tracks, [], 300.0 + 61.0)
    assert len(tracks) == 0
    (event,) = lost
    assert isinstance(event, TrackLost)
    assert event.reason == "not-updated" and event.retract


def test_track_seen_until_near_impact_ends_as_impacted_not_lost() -> None:
    flight = hwasong12()
    dets = hwasong12_detections(1)
    tracker = Tracker(ipp_interval_s=10.0)
    tracks, _ = full_run(1)
    last = dets[-1].time
    assert flight.impact_time - last > tracker.deleter.confirmed_timeout_s
    # Silent for longer than the timeout, but still before the predicted impact: coasting.
    tracks, lost = tracker.step(tracks, [], last + 100.0)
    assert len(tracks) == 1 and lost == []
    tracks, lost = tracker.step(tracks, [], flight.impact_time + 5.0)
    (event,) = lost
    assert isinstance(event, TrackLost)
    assert event.reason == "impacted" and not event.retract


def test_step_is_pure_and_repeatable() -> None:
    dets = list(hwasong12_detections(6)[:40])
    a_tracks, a_events = run(Tracker(), dets)
    b_tracks, b_events = run(Tracker(), dets)
    assert [e.as_dict() for e in a_events] == [e.as_dict() for e in b_events]
    assert np.array_equal(a_tracks.x, b_tracks.x)
    before = a_tracks.x.copy()
    later = [d for d in hwasong12_detections(6)[40:45]]
    step(a_tracks, later, later[-1].time)
    assert np.array_equal(a_tracks.x, before)


def test_detections_after_now_are_refused() -> None:
    d = hwasong12_detections(0)[5]
    with pytest.raises(MalformedInput, match="after now"):
        step(TrackSet(), [d], d.time - 1.0)


def test_line_of_sight_updates_a_track_but_starts_none() -> None:
    flight = hwasong12()
    dets = list(hwasong12_detections(7)[:20])
    tracker = Tracker(predict_impacts=False)
    tracks, _ = run(tracker, dets)
    t = dets[-1].time + 2.0
    truth = flight.states(np.array([t]))
    geo = SensorSite.at("USA-SBIRS", 0.0, 130.0, 35_786_000.0)
    z, _ = measure(truth, geo.ecef, geo.basis, "los")
    R = np.diag([math.radians(0.002) ** 2] * 2)
    los = Detection(t, geo, "los", z[0], R)
    alone, _ = tracker.step(TrackSet(), [los], t)
    assert len(alone) == 0
    # A line of sight narrows the cross-line uncertainty; compare with prediction only.
    updated, _ = tracker.step(tracks, [los], t)
    assert updated.updates[0] == tracks.updates[0] + 1
    predicted, _ = tracker.step(tracks, [], t)
    assert np.trace(updated.P[0, :3, :3]) < np.trace(predicted.P[0, :3, :3])
    err_after = np.linalg.norm(updated.x[0, :3] - truth[0, :3])
    assert err_after < 3.0 * math.sqrt(np.trace(updated.P[0, :3, :3]))


def test_impact_predictor_returns_none_for_a_track_leaving_the_earth() -> None:
    x = tb.launch_state(40.0, 129.0, 90.0, 12_000.0, math.radians(60.0))[None, :]
    P = np.eye(6)[None] * 100.0
    impacts, _ = ImpactPredictor(max_time_s=2000.0).predict(x, P, np.zeros(1), launch=False)
    assert impacts == [None]


@cache
def boosted() -> tb.Flight:
    """A low SRBM: 70 s of 45 m/s^2 thrust, then flight through the air (beta 6000 kg/m^2)."""
    return tb.powered_flight(39.0, 125.7, 80.0, math.radians(65.0), 45.0, 70.0, 6000.0)


def boosted_run(beta: float) -> tuple[list[Detection], list[Event]]:
    dets = tb.observe([boosted()], [0.0], [tb.korean_radar()], np.random.default_rng(0))
    tracker = Tracker(predictor=BallisticPredictor(ballistic_coefficient=beta),
                      ipp_interval_s=5.0)
    _, events = run(tracker, dets)
    return dets, events


def test_boosting_missile_keeps_one_track_and_waits_for_burnout() -> None:
    flight = boosted()
    dets, events = boosted_run(6000.0)
    assert dets[0].time < flight.burn_s - 30.0  # seen under thrust for half a minute
    assert len([e for e in events if isinstance(e, TrackInitiated)]) == 1
    assert not [e for e in events if isinstance(e, TrackLost)]
    preds = predictions(events)
    assert preds and min(p.time for p in preds) > flight.burn_s
    err = [km_between(p.impact.lat_deg, p.impact.lon_deg, flight.impact_lat_deg,
                      flight.impact_lon_deg) for p in preds]
    assert err[-1] < 0.5
    covered = sum(e <= p.impact.ellipse.semi_major_km for e, p in zip(err, preds, strict=True))
    assert covered / len(preds) >= 0.9


def test_a_low_flight_needs_the_drag_model() -> None:
    flight = boosted()
    _, events = boosted_run(math.inf)
    last = predictions(events)[-1]
    # Without drag the tracker sends the missile kilometres too far, and is sure of it.
    err = km_between(last.impact.lat_deg, last.impact.lon_deg, flight.impact_lat_deg,
                     flight.impact_lon_deg)
    assert err > 2.0
    assert err > last.impact.ellipse.semi_major_km


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.0, 0.5), st.integers(0, 4))
def test_clutter_and_missed_detections_never_break_the_track_set(seed: int, miss: float,
                                                                 clutter: int) -> None:
    """Random misses and false alarms: covariances stay symmetric positive definite, ids stay
    unique, and the missile still gets exactly one confirmed track."""
    rng = np.random.default_rng(seed)
    flight = srbm()
    radar = tb.korean_radar(2.0)
    dets = tb.observe([flight], [0.0], [radar], rng, until=120.0)
    kept = [d for d in dets if rng.random() >= miss]
    noise = []
    for d in kept:
        for _ in range(rng.integers(0, clutter + 1)):
            z = np.array([rng.uniform(100e3, 900e3), rng.uniform(0, 2 * math.pi),
                          rng.uniform(0.01, 0.5)])
            noise.append(Detection(d.time, d.sensor, "rae", z, d.R, "clutter"))
    tracker = Tracker(predict_impacts=False)
    tracks, _ = run(tracker, sorted(kept + noise, key=lambda d: d.time))
    assert len(set(tracks.ids.tolist())) == len(tracks)
    for P in (tracks.P, tracks.Pm):
        assert np.allclose(P, P.transpose(0, 2, 1))
        assert np.all(np.linalg.eigvalsh(P) > 0.0)
    if len(kept) >= 20:
        confirmed = tracks.select(tracks.confirmed(tracker.confirm_after))
        truth = flight.states(np.array([kept[-1].time]))[0]
        near = np.linalg.norm(confirmed.x[:, :3] - truth[:3], axis=1) < 5_000.0
        assert near.sum() == 1
