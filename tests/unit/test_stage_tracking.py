"""Spent stages in the sensors' view: radars see a space launcher's first stage fall after it
separates; the tracker keeps the missile's track on the missile, tracks the stage as its part,
and the stage's fall is named in its announced zone, never alerted as land it flies over."""

from __future__ import annotations

import math
from dataclasses import replace
from functools import cache
from itertools import groupby

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.core.tracking.earth import ecef_to_geodetic, great_circle_m
from gsomia.core.tracking.impact import Corridor
from gsomia.core.tracking.sensors import observe, observe_all
from gsomia.core.tracking.stages import StageDrop, spent_stages, stage_drops
from gsomia.core.tracking.tracker import Tracker
from gsomia.core.tracking.trajectory import Trajectory, fit
from gsomia.core.tracking.types import Detection, Event, ImpactPredicted, SensorSite, TrackSet
from gsomia.core.warning import OVERFLIGHT, WarningCentre
from gsomia.shell import feeds

ATLAS = feeds.load_geography()


@cache
def unha3() -> Trajectory:
    return fit(feeds.find_launch("2016-02-07").flight_request())


def km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    return float(great_circle_m(*np.radians([lat1, lon1, lat2, lon2]))) / 1e3


def test_the_first_stage_falls_from_its_separation_to_its_drop_point() -> None:
    traj = unha3()
    ((drop, path),) = spent_stages(traj)
    assert drop.part == "first stage"
    r, v = traj.state_at(drop.separated_s)
    assert np.allclose(path.positions[0], r) and np.allclose(path.velocities[0], v)
    lat, lon, h = ecef_to_geodetic(path.positions[-1])
    assert abs(float(h)) < 50.0
    assert km(math.degrees(float(lat)), math.degrees(float(lon)), drop.lat_deg,
              drop.lon_deg) < 20.0
    # west of Korea, ~450 km south of Sohae (the announced zones, the recovered stages)
    assert 400e3 < drop.downrange_m < 500e3
    assert not path.boosting(path.times).any()      # no plume: infrared does not see it


def korean_radar_detections(traj: Trajectory) -> list[Detection]:
    sensor = next(s for s in feeds.load_sensors() if s.id == "kor-greenpine-boseong")
    site = SensorSite.at(sensor.id, sensor.lat_deg, sensor.lon_deg, sensor.height_m)
    ((drop, path),) = spent_stages(traj)
    out: list[Detection] = []
    for what, m in zip(("missile", drop.part),
                       observe_all(sensor, traj, [path], 0.0, 400.0,
                                   np.random.default_rng(5), cued=True), strict=True):
        out += [Detection(float(m.times[i]), site, "rae", m.values[i],
                          np.diag(m.sigmas[i] ** 2), truth=what) for i in range(len(m))]
    return sorted(out, key=lambda d: d.time)


def track(tracker: Tracker, dets: list[Detection]
          ) -> tuple[list[tuple[float, dict[int, np.ndarray]]], list[Event]]:
    """Each step's time and where each track had its object, and every event."""
    tracks, events = TrackSet(), []
    seen: list[tuple[float, dict[int, np.ndarray]]] = []
    for t, group in groupby(dets, key=lambda d: d.time):
        tracks, new = tracker.step(tracks, list(group), t)
        events += new
        seen.append((t, {int(i): tracks.x[k, :3].copy()
                         for k, i in enumerate(tracks.ids.tolist())}))
    return seen, events


def on_missile(seen: list[tuple[float, dict[int, np.ndarray]]], traj: Trajectory,
               stage: Trajectory, tid: int, after_s: float) -> float:
    """Share of the steps after ``after_s`` where track ``tid`` is nearer the missile than
    the stage."""
    near = [float(np.linalg.norm(where[tid] - traj.position_at(t)))
            < float(np.linalg.norm(where[tid] - stage.position_at(t)))
            for t, where in seen if t > after_s and tid in where and t < stage.flight_time_s]
    assert near
    return sum(near) / len(near)


def test_the_missile_keeps_its_track_and_the_stage_gets_one_of_its_own() -> None:
    """After the separation the missile's first track stays on the missile, and the stage
    gets a track that knows it is the missile's part: its predictions fall at the stage's
    drop point and say whose part they are, the missile's fall at the missile's impact."""
    traj = unha3()
    ((drop, stage),) = spent_stages(traj)
    dets = korean_radar_detections(traj)
    assert {d.truth for d in dets if d.time > drop.separated_s} == {"missile", "first stage"}
    seen, events = track(Tracker(ipp_interval_s=10.0), dets)
    missile_track = 1
    assert on_missile(seen, traj, stage, missile_track, drop.separated_s + 20.0) >= 0.95
    preds = [e for e in events if isinstance(e, ImpactPredicted)]
    parts = [p for p in preds if p.shed_from == missile_track]
    assert parts, "the stage's track never knew it was the missile's part"
    assert all(km(p.impact.lat_deg, p.impact.lon_deg, drop.lat_deg, drop.lon_deg) < 60.0
               for p in parts[1:])
    own = [p for p in preds if p.track_id == missile_track]
    assert own and all(km(p.impact.lat_deg, p.impact.lon_deg, drop.lat_deg,
                          drop.lon_deg) > 300.0 for p in own)
    # Nearest-neighbour association alone (the tracker before): the stage takes it over
    # (once the missile flies out of this radar's view, the stage, still in it, feeds it).
    alone, _ = track(Tracker(ipp_interval_s=10.0, behind_sigma=None), dets)
    assert on_missile(alone, traj, stage, missile_track, drop.separated_s + 20.0) < 0.5


def corridor(t0: float, lat0: float, lon0: float, lat1: float, lon1: float) -> Corridor:
    n = 40
    f = np.linspace(0.0, 1.0, n)
    spread = np.repeat((10_000.0**2 * np.eye(2))[None], n, axis=0)
    return Corridor(0.99, t0, t0 + 300.0 * f, lat0 + f * (lat1 - lat0),
                    lon0 + f * (lon1 - lon0), spread, 3_000.0)


@settings(max_examples=30, deadline=None)
@given(st.floats(140.0, 146.0), st.floats(38.0, 41.5), st.floats(150.0, 160.0))
def test_a_falling_stage_never_alerts_land_it_only_flies_over(
        lon0: float, lat1: float, lon1: float) -> None:
    """Whatever land a spent stage's corridor crosses on its way down (here Hokkaido), it is
    alerted only where the stage may come down: over the Pacific, nothing on land."""
    from gsomia.core.tracking.types import Ellipse, GroundPoint

    c = corridor(200.0, 43.0, lon0, lat1, lon1)
    fall = GroundPoint(float(c.lat_deg[-1]), float(c.lon_deg[-1]), c.impact_time, 2.0,
                       Ellipse(10.0, 5.0, 90.0, 2.0))
    centre = WarningCentre("JPN", ATLAS)
    centre.drop_zones(0.0, [StageDrop("first stage", 120.0, 500.0, 35.7, 124.7, 4.4e5,
                                      180.0)])
    centre.spent(199.0, "JPN-2", fall, c)
    centre.spent(200.0, "JPN-2", fall, c)
    assert not [w for w in centre.log if w.level == "alert"]
    assert all(w.reason != OVERFLIGHT for w in centre.log)
    assert centre.first_impact is None


def test_the_missile_alone_is_observed_as_before() -> None:
    """The stages add objects; the missile's own detections are drawn exactly as before."""
    traj = unha3()
    sensor = next(s for s in feeds.load_sensors() if s.id == "kor-greenpine-boseong")
    alone = observe(sensor, traj, 0.0, 400.0, np.random.default_rng(9), cued=True)
    both = observe_all(sensor, traj, [p for _, p in spent_stages(traj)], 0.0, 400.0,
                       np.random.default_rng(9), cued=True)
    assert np.array_equal(alone.times, both[0].times)
    assert np.array_equal(alone.values, both[0].values)
    assert len(both[1]) > 0 and both[1].times[0] >= stage_drops(traj)[0].separated_s


def staged_pair(gap_m_s: float, unseen_s: float, sigma_m_s: float = 30.0) -> TrackSet:
    """A missile's track (id 1) and its part's (id 2), both last fixed at 120 s at one point
    (60 km up over the Yellow Sea, 1.8 km/s southward, climbing), the part ``gap_m_s``
    faster along the heading; the parent then went unfed for ``unseen_s`` (predicted as the
    tracker predicts, with its manoeuvre allowance), while the part was fixed just now."""
    from gsomia.core.tracking import earth

    tracker = Tracker()
    lat, lon = math.radians(38.0), math.radians(124.8)
    basis = earth.enu_basis(lat, lon)
    heading = basis.T @ np.array([0.0, -math.cos(0.5), math.sin(0.5)])
    x = np.zeros((2, 6))
    x[:, :3] = earth.geodetic_to_ecef(lat, lon, 60_000.0)
    x[0, 3:] = 1800.0 * heading
    x[1, 3:] = (1800.0 + gap_m_s) * heading
    P = np.repeat(np.diag([100.0**2] * 3 + [sigma_m_s**2] * 3)[None], 2, axis=0)
    now = 120.0 + unseen_s
    xp, Pp = tracker.predictor.predict(x, P, np.full(2, unseen_s),
                                       np.full(2, tracker.q_manoeuvre))
    tracks = TrackSet().extended(np.full(2, now), xp, Pp, first_time=np.full(2, 60.0),
                                 last_update=np.array([120.0, now]),
                                 updates=np.array([90, 30]), parent=np.array([0, 1]))
    # the part was just fixed: its manoeuvre filter is as sure as at the separation
    Pm = tracks.Pm.copy()
    Pm[1] = P[1]
    return replace(tracks, Pm=Pm)


def speed_of(tracks: TrackSet, tid: int) -> float:
    return float(np.linalg.norm(tracks.xm[tracks.index_of(tid), 3:]))


@settings(max_examples=40, deadline=None)
@given(st.floats(0.0, 55.0), st.floats(300.0, 800.0))
def test_a_part_faster_than_its_parent_was_takes_the_missile_s_track_however_long_unfed(
        unseen_s: float, gap: float) -> None:
    """The alerting follows the missile's track (the parent; a part's cut-off corridor and
    fall are a spent stage's). A part found well faster than its parent was at its last fix
    carries the rocket, and the two exchange filters, however long the parent has gone
    unfed: its allowance for unseen thrust, which grows without end, is not evidence that
    the part is slower (Korea alone lost two Chollima-1 pictures to it)."""
    tracks, _ = Tracker().step(staged_pair(gap, unseen_s), [], 120.0 + unseen_s)
    assert tracks.parent[tracks.index_of(1)] == 0
    assert speed_of(tracks, 1) > speed_of(tracks, 2) + 0.9 * gap


@settings(max_examples=40, deadline=None)
@given(st.floats(0.0, 55.0), st.floats(-800.0, 0.0))
def test_a_part_no_faster_than_its_parent_was_never_takes_the_missile_s_track(
        unseen_s: float, gap: float) -> None:
    """A spent stage only loses speed after the separation, while the missile gains it: a
    part no faster than its parent was at its last fix never takes the missile's track, even
    when the missile has left the radars' view and only the stage is still seen."""
    before = staged_pair(gap, unseen_s)
    tracks, _ = Tracker().step(before, [], 120.0 + unseen_s)
    assert np.array_equal(tracks.xm, before.xm) and np.array_equal(tracks.x, before.x)
