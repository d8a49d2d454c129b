"""A node's warning centre: the core tracker and warning logic over what the node holds.

The node feeds it, in the order the node stored them, the sensor reports it holds (its own
sensors' and the partners' it was given, :mod:`gsomia.core.sensor_feed`) and the partners'
impact predictions; it answers with what to publish: its own impact predictions, flight paths
and warnings (:class:`Output`). It reuses the scenario model's parts (``Tracker``,
``WarningCentre``): no second tracker.

What it answers is a function of the sequence of what it was fed, never of when it was fed.
The tracker steps on the measurements' own clock, ``step_s`` apart, once measurements
``lag_s`` past a step have come in (so that slower sensors' and partners' reports of that
time are in). A report that arrives within that window is placed by its measurements' times,
whatever came before it: a partner's report delayed on its link counts as if it had come
with the node's own of that instant. A measurement older than the last step taken is late:
counted per originator (``late``) and left out, as the tracker cannot go back. What a step
finds is stamped with the newest measurement's time, when it could be known. So a node that
restarts and feeds the centre its holdings again in the same order gets the same outputs
under the same keys, and publishes only those it had not: no warning twice.

Times are seconds after the centre's epoch: the epoch of the first report it was fed (for a
replayed launch, its lift-off: times then read as the scenario model's).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from gsomia.core.sensor_feed import AHEAD_S, detections_of, reference_site
from gsomia.core.tracking.geography import Atlas
from gsomia.core.tracking.tracker import Tracker
from gsomia.core.tracking.types import (
    BoostCorridor,
    Detection,
    Ellipse,
    Event,
    GroundPoint,
    ImpactPredicted,
    SensorSite,
    TrackLost,
    TrackSet,
    TrackUpdated,
)
from gsomia.core.types import Party
from gsomia.core.warning import CORRIDOR_BUFFER_M, WarningCentre

__all__ = ["NodeCentre", "Output"]


@dataclass(frozen=True, slots=True)
class Output:
    """Something the centre asks the node to publish: ``category`` (``impact-prediction``,
    ``flight-path``, ``warning``), a key unique within the centre's history, the time (s
    after the epoch) and the ``x_gsomia_*`` property's value."""

    category: str
    key: str
    at_s: float
    data: dict[str, Any]

    @property
    def prop(self) -> str:
        return {"impact-prediction": "x_gsomia_ipp", "flight-path": "x_gsomia_track",
                "warning": "x_gsomia_warning"}[self.category]


@dataclass(slots=True)
class NodeCentre:
    party: Party
    atlas: Atlas
    step_s: float = 2.0
    lag_s: float = 8.0
    ipp_interval_s: float = 6.0
    max_semi_major_km: float = 300.0
    epoch: datetime | None = None
    counts: dict[str, int] = field(default_factory=dict)
    # Measurements that came after the centre had stepped past their time, per originator.
    late: dict[str, int] = field(default_factory=dict)
    # Measurements stamped more than AHEAD_S after their report was held, left out, per
    # originator, and the most seconds one was stamped ahead: that originator's clock runs
    # at least that far ahead (the shell says so; left out silently, no one would know).
    ahead: dict[str, int] = field(default_factory=dict)
    ahead_s: dict[str, float] = field(default_factory=dict)
    _tracker: Tracker = field(init=False)
    _warnings: WarningCentre = field(init=False)
    _tracks: TrackSet = field(default_factory=TrackSet)
    _pending: list[Detection] = field(default_factory=list)
    _next_s: float | None = None           # the next step's time
    _stepped_s: float = -math.inf          # the last step's time
    _newest_s: float = -math.inf
    _sites: dict[str, SensorSite] = field(default_factory=dict)
    _paths: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    _n: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._tracker = Tracker(ipp_interval_s=self.ipp_interval_s,
                                corridor_buffer_m=CORRIDOR_BUFFER_M)
        self._warnings = WarningCentre(self.party, self.atlas, self.max_semi_major_km)

    # ---- what the node feeds it ------------------------------------------------------------
    def report(self, origin: Party, report: Mapping[str, Any],
               held_at: datetime | None = None) -> list[Output]:
        """A sensor report held (``x_gsomia_sensor_report``, schema-checked); ``held_at``:
        when the node stored it. A measurement stamped more than :data:`AHEAD_S` after that
        was made by no sensor: left out and counted (``ahead``), or one partner's clock
        would carry the centre's past every real measurement, all then late."""
        epoch, name, times, z, R = detections_of(report)
        if held_at is not None:
            bound = (held_at - epoch).total_seconds() + AHEAD_S
            ahead = int(np.count_nonzero(times > bound))
            if ahead:
                self._count("ahead", ahead)
                self.ahead[origin] = self.ahead.get(origin, 0) + ahead
                self.ahead_s[origin] = max(self.ahead_s.get(origin, 0.0),
                                           float(times.max()) - bound + AHEAD_S)
                keep = times <= bound
                times, z, R = times[keep], z[keep], R[keep]
                if not len(times):
                    return []
        offset = self._offset(epoch)
        site = self._sites.get(f"{origin}/{name}")
        if site is None:
            ref = reference_site()
            site = self._sites[f"{origin}/{name}"] = SensorSite(
                f"{origin}/{name}", ref.lat, ref.lon, ref.height, ref.ecef, ref.basis)
        late = 0
        for t, zi, Ri in zip(times + offset, z, R, strict=True):
            if t <= self._stepped_s:
                late += 1
                continue
            self._pending.append(Detection(float(t), site, "rae", zi, Ri))
            self._newest_s = max(self._newest_s, float(t))
            self._count("measurements")
        if late:
            self._count("late", late)
            self.late[origin] = self.late.get(origin, 0) + late
        return self._advance()

    def prediction(self, origin: Party, ipp: Mapping[str, Any], made: datetime
                   ) -> list[Output]:
        """A partner's impact prediction held (``x_gsomia_ipp``, schema-checked); ``made``
        is its item's ``created``: the instant of the flight it was made at (a centre
        stamps what it publishes with its measurements' clock, not the wall's)."""
        if origin == self.party:
            return []
        e = ipp["ellipse"]
        # Taken when it is held: not before the centre's own latest step.
        at = max(self._offset(made), self._stepped_s)
        impact = GroundPoint(float(ipp["lat_deg"]), float(ipp["lon_deg"]),
                             at + float(ipp["time"]) - float(ipp["at_s"]),
                             float(ipp["time_sigma_s"]),
                             Ellipse(float(e["semi_major_km"]), float(e["semi_minor_km"]),
                                     float(e["orientation_deg"]), float(e["sigma"])))
        self._count("partner-predictions")
        before = len(self._warnings.log)
        self._warnings.assess(at, f"{ipp['track']}@{origin}", impact, None, None)
        return self._new_warnings(before)

    def instant_of(self, at_s: float) -> datetime | None:
        """The instant of ``at_s`` on the centre's clock (None before its first report)."""
        return None if self.epoch is None else self.epoch + timedelta(seconds=at_s)

    # ---- stepping ---------------------------------------------------------------------------
    def _offset(self, epoch: datetime) -> float:
        if self.epoch is None:
            self.epoch = epoch
        return (epoch - self.epoch).total_seconds()

    def _count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def _advance(self) -> list[Output]:
        out: list[Output] = []
        if self._next_s is None and self._pending:
            self._next_s = min(d.time for d in self._pending)
        while self._next_s is not None and self._next_s <= self._newest_s - self.lag_s:
            t = self._next_s
            if not len(self._tracks) and all(d.time > t for d in self._pending):
                # No track and nothing due: the steps up to the next measurement find
                # nothing, so they are taken at once (a report hours or years after the
                # last, a partner's clock far off, costs no CPU: 17 us a step, 1e8 steps).
                first = min((d.time for d in self._pending), default=math.inf)
                empty = min(math.floor((self._newest_s - self.lag_s - t) / self.step_s),
                            math.ceil((first - t) / self.step_s) - 1)
                if empty > 0:
                    self._stepped_s = t + empty * self.step_s
                    self._next_s = self._stepped_s + self.step_s
                    continue
            due = [d for d in self._pending if d.time <= t]
            self._pending = [d for d in self._pending if d.time > t]
            self._tracks, events = self._tracker.step(self._tracks, due, t)
            self._stepped_s = t
            self._next_s = t + self.step_s
            # What a step finds is known once the measurements that let it run are in: the
            # centre's clock is its newest measurement's time.
            out += self._events(max(t, self._newest_s), events)
        return out

    def _events(self, t: float, events: list[Event]) -> list[Output]:
        out: list[Output] = []
        before = len(self._warnings.log)
        for ev in events:
            track = f"{self.party}-{ev.track_id}"
            if isinstance(ev, TrackUpdated):
                self._paths.setdefault(ev.track_id, []).append(
                    (round(ev.lat_deg, 4), round(ev.lon_deg, 4)))
            elif isinstance(ev, ImpactPredicted):
                out.append(self._output("impact-prediction", t, {
                    "at_s": round(t, 3), "track": track, **ev.impact.as_dict()}))
                points = self._paths.get(ev.track_id, [])
                if len(points) >= 2:
                    out.append(self._output("flight-path", t, {
                        "points": [list(p) for p in points[:: max(1, len(points) // 500)]]}))
                if ev.shed_from:        # a spent stage's fall, not the missile's
                    self._warnings.spent(t, track, ev.impact, ev.corridor)
                else:
                    self._warnings.assess(t, track, ev.impact, ev.launch, ev.corridor)
            elif isinstance(ev, BoostCorridor):
                self._warnings.boost(t, track, ev.corridor)
            elif isinstance(ev, TrackLost) and ev.confirmed:
                self._warnings.lost(t, track)
        return out + self._new_warnings(before)

    def _new_warnings(self, before: int) -> list[Output]:
        return [self._output("warning", w.at_s, w.to_json())
                for w in self._warnings.log[before:]]

    def _output(self, category: str, at_s: float, data: dict[str, Any]) -> Output:
        n = self._n[category] = self._n.get(category, 0) + 1
        return Output(category, f"{category}/{n}", float(np.round(at_s, 3)), data)
