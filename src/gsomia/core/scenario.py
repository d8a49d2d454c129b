"""One launch, one sharing regime: who detects, tracks, predicts and warns, and when.

Everything a party learns is an item with a label, and an item reaches a partner only along a
route the release policy permits in the regime (``sharing.route``):

- pre-launch indicators (KOR HUMINT, JPN imagery), which cue the recipient's sensors;
- sensor reports (a radar's range/azimuth/elevation with its site, an infrared satellite's
  line of sight), which the recipient fuses in its own tracker;
- tracks, launch points and impact predictions from the partner's own tracker.

Each party runs two pictures: one from its own sensors, in real time, and one fused from its
own and partners' reports, which waits for the slowest report it has used (a fused estimate at
time t needs every report up to t). A party never gives up its own picture, so sharing can add
to what it knows but not delay it. Times are seconds after lift-off. The run is pure: the seed
fixes every random draw.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from gsomia.core.agreements import Catalogue
from gsomia.core.labels import SecurityLabel
from gsomia.core.sharing import Regime, route
from gsomia.core.tracking import earth
from gsomia.core.tracking.geography import TERRITORY_KINDS, Atlas
from gsomia.core.tracking.impact import Corridor
from gsomia.core.tracking.indicators import Indicator, default_label, generate, is_cued
from gsomia.core.tracking.launches import Launch
from gsomia.core.tracking.sensors import Measurements, Sensor, observe_all
from gsomia.core.tracking.stages import spent_stages, stage_drops
from gsomia.core.tracking.tracker import Tracker
from gsomia.core.tracking.trajectory import Trajectory
from gsomia.core.tracking.types import (
    Array,
    BoostCorridor,
    Detection,
    Event,
    GroundPoint,
    ImpactPredicted,
    SensorSite,
    TrackInitiated,
    TrackLost,
    TrackSet,
)
from gsomia.core.types import PARTIES, SECRET_LEVELS, Party, iso
from gsomia.core.warning import (
    AREA_OF_CONCERN,
    CORRIDOR_BUFFER_M,
    Warning,
    WarningCentre,
    regions_in_corridor,
)

__all__ = [
    "SHARED_TRACK_KINDS",
    "Options",
    "PartyOutcome",
    "Result",
    "Scenario",
    "Shared",
    "regimes_compared",
    "run",
]

SHARED_TRACK_KINDS = ("launch-point", "flight-path", "impact-prediction")


@dataclass(frozen=True, slots=True)
class Options:
    step_s: float = 2.0              # how often a party's tracker runs
    ipp_interval_s: float = 6.0      # least time between two impact predictions of a track
    max_semi_major_km: float = 300.0
    track_until_s: float | None = None   # stop tracking then (evaluations of long flights)
    settle_s: float | None = None        # stop a picture this long after its first prediction,
    # or, if later, once its latest corridor has the missile past all territory (a "passed")


@dataclass(frozen=True, slots=True)
class Scenario:
    launch: Launch
    trajectory: Trajectory
    sensors: tuple[Sensor, ...]
    atlas: Atlas
    catalogue: Catalogue             # restricted to the regime (sharing.restricted)
    regime: Regime
    seed: int = 0
    other_facilities: tuple[str, ...] = ()
    options: Options = field(default_factory=Options)


@dataclass(frozen=True, slots=True)
class Shared:
    """One item as a recipient holds it: what, from whom, when it arrived, along which route."""

    kind: str
    origin: Party
    at_s: float
    via: Party | None


@dataclass(slots=True)
class PartyOutcome:
    party: Party
    cued: bool = False
    first_detection_s: float | None = None
    first_track_s: float | None = None
    first_ipp_s: float | None = None
    first_warning_s: float | None = None
    ipp_error_km: float | None = None
    drop_error_km: float | None = None      # a space launch's: see run()
    warnings: list[Warning] = field(default_factory=list)
    received: dict[str, int] = field(default_factory=dict)
    routes: dict[str, str] = field(default_factory=dict)

    def note(self, attr: str, t: float) -> None:
        current = getattr(self, attr)
        if current is None or t < current:
            setattr(self, attr, t)

    def to_json(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 1)
        return {"cued": self.cued, "first_detection_s": r(self.first_detection_s),
                "first_track_s": r(self.first_track_s), "first_ipp_s": r(self.first_ipp_s),
                "first_warning_s": r(self.first_warning_s),
                "ipp_error_km": r(self.ipp_error_km),
                "drop_error_km": r(self.drop_error_km),
                "warnings": [w.to_json() for w in self.warnings],
                "received": dict(sorted(self.received.items())), "routes": self.routes}


@dataclass(frozen=True, slots=True)
class Result:
    scenario: Scenario
    parties: Mapping[Party, PartyOutcome]
    measurements: Mapping[str, Measurements]
    predictions: Mapping[Party, list[tuple[float, str, GroundPoint]]]

    def to_json(self) -> dict[str, Any]:
        s = self.scenario
        t = s.trajectory
        return {
            "launch": s.launch.to_json(), "regime": s.regime.name, "seed": s.seed,
            "as_of": iso(s.regime.as_of),
            "truth": {"flight_time_s": round(t.flight_time_s, 1), "apogee_km": round(
                t.apogee_km, 1), "range_km": round(t.range_km, 1),
                "impact_lat": round(t.impact_lat_deg, 3),
                "impact_lon": round(t.impact_lon_deg, 3)},
            "parties": {p: o.to_json() for p, o in self.parties.items()},
        }


# ---- items and their routes ------------------------------------------------------------------
def _labelled(label: SecurityLabel, category: str) -> SecurityLabel:
    from dataclasses import replace

    return replace(label, category=category)


def _track_label(origin: Party, category: str) -> SecurityLabel:
    level = SECRET_LEVELS.get(origin, "SECRET")
    return SecurityLabel(origin, level, frozenset(PARTIES), "dprk-missile", category=category)


class _Routes:
    """Memoised policy routes: the same label and recipient always take the same route."""

    def __init__(self, s: Scenario) -> None:
        self.s = s
        self.cache: dict[tuple[SecurityLabel, Party], tuple[float, Party | None] | None] = {}

    def __call__(self, item_id: str, label: SecurityLabel,
                 recipient: Party) -> tuple[float, Party | None] | None:
        key = (label, recipient)
        if key not in self.cache:
            got = route(item_id, label, recipient, self.s.regime, self.s.catalogue)
            self.cache[key] = None if got is None else (got.delay_s, got.via)
        return self.cache[key]


# ---- tracker passes ------------------------------------------------------------------------
def _detections(m: Measurements, site: SensorSite, what: str = "missile") -> list[Detection]:
    out = []
    rae = m.kind == "rae"
    for i in range(len(m)):
        if rae:
            z = m.values[i]
            R = np.diag(m.sigmas[i] ** 2)
        else:
            z = m.values[i, 1:]
            R = np.diag(m.sigmas[i, 1:] ** 2)
        out.append(Detection(float(m.times[i]), site, "rae" if rae else "los", z, R,
                             truth=what))
    return out


@dataclass(frozen=True, slots=True)
class _Feed:
    """One sensor's detections as one party holds them: each arrives ``delay_s`` after its
    report time (0 for the party's own sensors)."""

    sensor_id: str
    cued: bool
    detections: list[Detection]
    report_times: Array
    delay_s: float

    @property
    def key(self) -> tuple[str, bool]:
        return (self.sensor_id, self.cued)


@dataclass(frozen=True, slots=True)
class _Picture:
    initiated_s: list[float]
    predictions: list[tuple[float, str, GroundPoint, GroundPoint | None, Corridor | None]]
    losses: list[tuple[float, str]]
    boosts: list[tuple[float, str, Corridor]] = field(default_factory=list)
    # the falls of spent parts tracks shed (not the missile's: they settle nothing)
    parts: list[tuple[float, str, GroundPoint, GroundPoint | None, Corridor | None]] = field(
        default_factory=list)


class _TrackerRun:
    """One tracker over one set of detections, stepped every ``step_s`` from the first
    detection and kept step by step.

    What a tracker computes depends only on which detections it is given, never on when they
    arrive (arrival only decides when an output is available), so every picture fed by the
    same sensors (a party's own picture under each regime, the fused pictures of parties that
    receive the same reports) replays one run. Steps are computed on demand: a picture that
    settles early does not pay for the rest.
    """

    def __init__(self, detections: Sequence[Detection], tracker: Tracker, step_s: float,
                 horizon_s: float) -> None:
        self.ordered = sorted(detections, key=lambda d: d.time)
        self.tracker = tracker
        self.step_s = step_s
        self.tracks = TrackSet()
        self.i = 0
        self.t = self.ordered[0].time if self.ordered else 0.0
        self.end = min(horizon_s, self.ordered[-1].time + 120.0) if self.ordered else -math.inf
        self.steps: list[tuple[float, list[Event]]] = []

    def step(self, k: int) -> tuple[float, list[Event]] | None:
        """The k-th step's time and events, or None past the end."""
        while len(self.steps) <= k:
            if self.t > self.end + self.step_s:
                return None
            j = self.i
            while j < len(self.ordered) and self.ordered[j].time <= self.t:
                j += 1
            self.tracks, events = self.tracker.step(self.tracks, self.ordered[self.i:j], self.t)
            self.i = j
            self.steps.append((self.t, events))
            self.t += self.step_s
        return self.steps[k]


def _picture(run: _TrackerRun, feeds: Sequence[_Feed], name: str,
             settle_s: float | None,
             over_territory: Callable[[Corridor], float | None] = lambda c: None,
             margin_s: float = 0.0) -> _Picture:
    """Replay ``run`` as a party holding ``feeds`` sees it: an output is available once every
    report used so far has arrived.

    With ``settle_s``, the picture stops that long after its first prediction, unless its
    latest corridor may still be over territory (``over_territory``: the last time it may be,
    None if never): then it goes on until ``margin_s`` past that, so that a later prediction
    can tell the warning centres the missile has passed."""
    pic = _Picture([], [], [])
    if not feeds:
        return pic
    times = np.concatenate([np.array([d.time for d in f.detections]) for f in feeds])
    arrivals = np.concatenate([f.report_times + f.delay_s for f in feeds])
    order = np.argsort(times, kind="stable")
    times = times[order]
    known = np.maximum.accumulate(arrivals[order])
    k = 0
    while (got := run.step(k)) is not None:
        t, events = got
        k += 1
        if settle_s is not None and pic.predictions and t > pic.predictions[0][0] + settle_s:
            cor = pic.predictions[-1][4]
            last = None if cor is None else over_territory(cor)
            if last is None or t > last + margin_s:
                break
        used = int(np.searchsorted(times, t, side="right"))
        available = max(float(known[used - 1]), t) if used else t
        for ev in events:
            track = f"{name}-{ev.track_id}"
            if isinstance(ev, TrackInitiated):
                pic.initiated_s.append(available)
            elif isinstance(ev, ImpactPredicted):
                (pic.parts if ev.shed_from else pic.predictions).append(
                    (available, track, ev.impact, ev.launch, ev.corridor))
            elif isinstance(ev, BoostCorridor):
                pic.boosts.append((available, track, ev.corridor))
            elif isinstance(ev, TrackLost) and ev.confirmed:
                pic.losses.append((available, track))
    return pic


# ---- the run -------------------------------------------------------------------------------
def run(s: Scenario, memo: dict[tuple[Any, ...], Any] | None = None) -> Result:
    """Replay the scenario. ``memo``: pass the same dict to runs of one launch and seed under
    several regimes, and each party's own picture (which does not depend on the regime, only on
    whether the party was cued) is computed once."""
    launch_at = s.launch.launched_at or datetime.combine(
        s.launch.date, datetime.min.time()).replace(tzinfo=s.regime.as_of.tzinfo)
    routes = _Routes(s)
    outcomes = {p: PartyOutcome(p) for p in PARTIES}

    # 1. Pre-launch indicators travel (hours ahead: delays do not matter), and cue sensors.
    indicators = generate(s.launch.facility.id, launch_at, s.seed, s.other_facilities)
    known: dict[Party, list[Indicator]] = {p: [] for p in PARTIES}
    for ind in indicators:
        label = SecurityLabel.from_stored(default_label(ind))
        for p in PARTIES:
            if p == ind.originator or routes(ind.id, label, p) is not None:
                known[p].append(ind)
                if p != ind.originator:
                    outcomes[p].received["pre-launch-indicator"] = outcomes[p].received.get(
                        "pre-launch-indicator", 0) + 1
    for p in PARTIES:
        outcomes[p].cued = is_cued(known[p], s.launch.facility.id, launch_at - timedelta(
            minutes=1))

    # 2. Sensors observe; reports reach their owner and, along permitted routes, partners.
    memo = {} if memo is None else memo
    rng = np.random.default_rng(s.seed)
    horizon = s.trajectory.flight_time_s
    if s.options.track_until_s is not None:
        horizon = min(horizon, s.options.track_until_s)
    measurements: dict[str, Measurements] = {}
    own: dict[Party, list[_Feed]] = {p: [] for p in PARTIES}
    fused: dict[Party, list[_Feed]] = {p: [] for p in PARTIES}
    # A multi-stage flight sheds its spent stages: radars see them fall after separation.
    if ("parts", s.launch.id) not in memo:
        memo[("parts", s.launch.id)] = spent_stages(s.trajectory)
    parts = memo[("parts", s.launch.id)]
    for sensor in s.sensors:
        cued = outcomes.get(sensor.owner, PartyOutcome(sensor.owner)).cued
        m, *shed = observe_all(sensor, s.trajectory, [f for _, f in parts], 0.0, horizon,
                               np.random.default_rng(rng.integers(2**63)), cued=cued)
        measurements[sensor.id] = m
        if len(m) == 0 or sensor.owner not in outcomes:
            continue
        site = SensorSite.at(sensor.id, sensor.lat_deg, sensor.lon_deg, sensor.height_m)
        dets = _detections(m, site) + [d for (drop, _), ms in zip(parts, shed, strict=True)
                                       for d in _detections(ms, site, drop.part)]
        reported = np.concatenate([m.report_times, *(ms.report_times for ms in shed)])
        order = np.argsort([d.time for d in dets], kind="stable")
        mine = _Feed(sensor.id, cued, [dets[i] for i in order], reported[order], 0.0)
        own[sensor.owner].append(mine)
        fused[sensor.owner].append(mine)
        outcomes[sensor.owner].note("first_detection_s", float(m.report_times[0]))
        report_label = _labelled(sensor.report_label, "sensor-report")
        for p in PARTIES:
            if p == sensor.owner:
                continue
            got = routes(f"report--{sensor.id}", report_label, p)
            if got is None:
                continue
            delay, via = got
            fused[p].append(_Feed(sensor.id, cued, mine.detections, mine.report_times, delay))
            outcomes[p].note("first_detection_s", float(m.report_times[0]) + delay)
            outcomes[p].received["sensor-report"] = outcomes[p].received.get(
                "sensor-report", 0) + len(mine.detections)
            outcomes[p].routes[f"{sensor.owner}:sensor-report"] = (
                f"via {via}" if via else "direct") + f" +{delay:.0f}s"

    # 3. Each party's own picture, and its fused picture if partners' reports reached it. The
    # tracker runs once per set of sensors (see _TrackerRun), shared through ``memo``.
    tracker = Tracker(ipp_interval_s=s.options.ipp_interval_s, corridor_buffer_m=CORRIDOR_BUFFER_M)
    pictures: dict[Party, list[_Picture]] = {}

    def tracker_run(feeds: Sequence[_Feed]) -> _TrackerRun:
        key = ("run", s.launch.id, s.seed, s.options, frozenset(f.key for f in feeds))
        if key not in memo:
            memo[key] = _TrackerRun([d for f in feeds for d in f.detections], tracker,
                                    s.options.step_s, horizon)
        run: _TrackerRun = memo[key]
        return run

    watched = sorted({q for ps in AREA_OF_CONCERN.values() for q in ps})

    def over_territory(cor: Corridor) -> float | None:
        """The last time the corridor may be over any watched territory (None: never)."""
        key = ("over territory", cor)
        if key not in memo:
            memo[key] = max((last for _, _, last, _ in regions_in_corridor(
                s.atlas, cor, watched, TERRITORY_KINDS)), default=None)
        got: float | None = memo[key]
        return got

    margin = 3.0 * s.options.ipp_interval_s     # time for the predictions that say "passed"
    for p in PARTIES:
        pics = [_picture(tracker_run(own[p]), own[p], p, s.options.settle_s, over_territory,
                         margin)]
        if len(fused[p]) > len(own[p]):
            pics.append(_picture(tracker_run(fused[p]), fused[p], f"{p}-fused",
                                 s.options.settle_s, over_territory, margin))
        pictures[p] = pics

    # 4. Tracks and predictions of each party's own picture travel to partners.
    inbox: dict[Party, list[tuple[float, str, GroundPoint, GroundPoint | None,
                                  Corridor | None]]] = {p: [] for p in PARTIES}
    boosts: dict[Party, list[tuple[float, str, Corridor]]] = {p: [] for p in PARTIES}
    parts_in: dict[Party, list[tuple[float, str, GroundPoint, GroundPoint | None,
                                     Corridor | None]]] = {p: [] for p in PARTIES}
    for origin in PARTIES:
        pic = pictures[origin][0]
        for p in PARTIES:
            if p == origin:
                continue
            path = routes(f"track--{origin}", _track_label(origin, "flight-path"), p)
            ipp_route = routes(f"ipp--{origin}", _track_label(origin, "impact-prediction"), p)
            if path is not None and pic.initiated_s:
                outcomes[p].note("first_track_s", pic.initiated_s[0] + path[0])
                outcomes[p].note("first_detection_s", pic.initiated_s[0] + path[0])
                outcomes[p].received["flight-path"] = outcomes[p].received.get(
                    "flight-path", 0) + len(pic.initiated_s)
            if ipp_route is not None:
                delay, via = ipp_route
                for at, track, impact, lp, cor in pic.predictions:
                    inbox[p].append((at + delay, f"{track}@{origin}", impact, lp, cor))
                parts_in[p] += [(at + delay, f"{track}@{origin}", impact, lp, cor)
                                for at, track, impact, lp, cor in pic.parts]
            if path is not None:
                # A burning track's cut-off corridor travels with the track (flight path).
                boosts[p] += [(at + path[0], f"{track}@{origin}", cor)
                              for at, track, cor in pic.boosts]
                if pic.predictions:
                    outcomes[p].received["impact-prediction"] = outcomes[p].received.get(
                        "impact-prediction", 0) + len(pic.predictions)
                    outcomes[p].routes[f"{origin}:impact-prediction"] = (
                        f"via {via}" if via else "direct") + f" +{delay:.0f}s"

    # 5. Warnings, from everything each party holds, in the order it arrived.
    # Where the flight's objects truly come down: the missile, and each spent stage the
    # radars see (a space launch's first warning may state either).
    falls = np.radians([(s.trajectory.impact_lat_deg, s.trajectory.impact_lon_deg)]
                       + [(d.lat_deg, d.lon_deg) for d, _ in parts])
    predictions: dict[Party, list[tuple[float, str, GroundPoint]]] = {}
    for p in PARTIES:
        o = outcomes[p]
        stream: list[tuple[float, int, str, GroundPoint | None, GroundPoint | None,
                           Corridor | None]] = []
        for pic in pictures[p]:
            if pic.initiated_s:
                o.note("first_track_s", pic.initiated_s[0])
            stream += [(at, 0, tr, imp, lp, cor) for at, tr, imp, lp, cor in pic.predictions]
            stream += [(at, 1, tr, None, None, None) for at, tr in pic.losses]
            stream += [(at, 2, tr, None, None, cor) for at, tr, cor in pic.boosts]
            stream += [(at, 3, tr, imp, lp, cor) for at, tr, imp, lp, cor in pic.parts]
        stream += [(at, 0, tr, imp, lp, cor) for at, tr, imp, lp, cor in inbox[p]]
        stream += [(at, 3, tr, imp, lp, cor) for at, tr, imp, lp, cor in parts_in[p]]
        stream += [(at, 2, tr, None, None, cor) for at, tr, cor in boosts[p]]
        stream.sort(key=lambda e: (e[0], e[1]))
        centre = WarningCentre(p, s.atlas, s.options.max_semi_major_km,
                               touched=memo.setdefault(("touched", s.launch.id, s.seed), {}))
        if s.trajectory.missile_class == "SLV":
            # A space launch's drop zones are announced before it (notices to mariners and
            # airmen), so every party names them from lift-off; they are not warnings of a
            # detected missile, and do not count as its first warning.
            if ("drops", s.launch.id) not in memo:
                memo[("drops", s.launch.id)] = stage_drops(s.trajectory)
            centre.drop_zones(0.0, memo[("drops", s.launch.id)])
        predictions[p] = []
        for at, kind, track, ipp, lp, cor in stream:
            centre.tick(at)
            if kind == 2 and cor is not None:
                w = centre.boost(at, track, cor) if at < horizon else None
            elif kind == 3 and ipp is not None:
                if at < horizon:
                    centre.spent(at, track, ipp, cor)
                continue        # a spent part's fall is not the missile's first warning
            elif kind == 1 or ipp is None:
                w = centre.lost(at, track)
                continue
            else:
                o.note("first_ipp_s", at)
                predictions[p].append((at, track, ipp))
                w = centre.assess(at, track, ipp, lp, cor) if at < horizon else None
            if w is not None and w.action == "issued" and o.first_warning_s is None:
                o.first_warning_s = at
        centre.tick(math.inf)   # what a lost track left standing passes when predicted
        if o.first_warning_s is not None and centre.first_impact is not None:
            # The first impact point a warning stated (an early alert states none; a known
            # part's fall is never one), against the true fall of the object it was about:
            # the nearest of the missile's and its spent stages' (a radar that first sees a
            # flight after its staging may warn of the stage before it knows it for one;
            # while a part is near its missile, the missile predicts nothing, so a burning
            # missile's cut-off point, which starts at the stage's, is not scored as it).
            # A space launcher has no single impact point: its last modelled stage comes down
            # where its second-stage zone was announced, its third, orbit-bound, not at all;
            # so its error is a drop error, apart.
            ipp = centre.first_impact
            err = float(np.min(earth.great_circle_m(
                math.radians(ipp.lat_deg), math.radians(ipp.lon_deg),
                falls[:, 0], falls[:, 1]))) / 1e3
            if s.trajectory.missile_class == "SLV":
                o.drop_error_km = err
            else:
                o.ipp_error_km = err
        o.warnings = centre.log
    return Result(s, outcomes, measurements, predictions)


def regimes_compared(results: Iterable[Result]) -> dict[str, dict[Party, float | None]]:
    """First warning time per regime and party, for tables."""
    return {r.scenario.regime.name: {p: o.first_warning_s for p, o in r.parties.items()}
            for r in results}
