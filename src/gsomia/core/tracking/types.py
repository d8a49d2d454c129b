"""Data of the tracker: sensor sites, detections, tracks and the events a tracker step emits.

Behaviour lives in the role modules (predictor, updater, initiator, deleter, associator,
tracker); this module only holds data. Times are float seconds on one caller-chosen scale
(seconds after an epoch the caller keeps); positions are ECEF metres; angles radians.

A :class:`TrackSet` keeps every track's state in stacked arrays so that prediction, gating and
update run once per scan over all tracks instead of once per track.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import NDArray

from gsomia.core.errors import MalformedInput
from gsomia.core.tracking import earth

if TYPE_CHECKING:
    from gsomia.core.tracking.impact import Corridor

Array = NDArray[np.float64]
IntArray = NDArray[np.int64]
Kind = Literal["rae", "los"]
"""``rae``: range (m), azimuth, elevation (rad); ``los``: azimuth, elevation only."""

STATE_DIM = 6
MEASUREMENT_DIM: dict[str, int] = {"rae": 3, "los": 2}


@dataclass(frozen=True, slots=True, eq=False)
class SensorSite:
    """Where a sensor stands: geodetic position (rad, m), its ECEF point and ENU basis."""

    id: str
    lat: float
    lon: float
    height: float
    ecef: Array
    basis: Array

    @classmethod
    def at(cls, sensor_id: str, lat_deg: float, lon_deg: float, height_m: float) -> SensorSite:
        """A site from degrees and metres, as catalogues and measurement files give them."""
        if not -90.0 <= lat_deg <= 90.0 or not -180.0 <= lon_deg <= 360.0:
            raise MalformedInput(f"({lat_deg}, {lon_deg}) is not a position",
                                 where=f"sensor {sensor_id}",
                                 expected="latitude in [-90, 90] and longitude in [-180, 360]")
        lat, lon = math.radians(lat_deg), math.radians(lon_deg)
        return cls(sensor_id, lat, lon, float(height_m),
                   earth.geodetic_to_ecef(lat, lon, height_m), earth.enu_basis(lat, lon))


@dataclass(frozen=True, slots=True, eq=False)
class Detection:
    """One measurement of one target by one sensor.

    ``z`` is (range m, azimuth rad clockwise from north, elevation rad) for ``rae`` and
    (azimuth, elevation) for ``los``; ``R`` is its noise covariance in the same order.
    ``truth`` is an optional label that simulations attach to score association; the tracker
    never reads it.
    """

    time: float
    sensor: SensorSite
    kind: Kind
    z: Array
    R: Array
    truth: str | None = None

    def __post_init__(self) -> None:
        m = MEASUREMENT_DIM.get(self.kind)
        if m is None:
            raise MalformedInput(f"unknown measurement kind {self.kind!r}", where="kind",
                                 expected="'rae' or 'los'")
        if self.z.shape != (m,) or self.R.shape != (m, m):
            raise MalformedInput(f"a {self.kind} measurement needs {m} values and a {m}x{m} "
                                 f"noise covariance, got {self.z.shape} and {self.R.shape}",
                                 where="measurement")
        if not (np.all(np.isfinite(self.z)) and np.all(np.isfinite(self.R))):
            raise MalformedInput("measurement is not finite", where="measurement")

    @property
    def sensor_id(self) -> str:
        return self.sensor.id


@dataclass(frozen=True, slots=True, eq=False)
class Track:
    """One track, read out of a :class:`TrackSet`; ``ballistic`` once free flight is proven."""

    id: int
    time: float
    x: Array
    P: Array
    first_time: float
    last_update: float
    updates: int
    confirmed: bool
    ballistic: bool
    impact_time: float


def _empty(*shape: int) -> Array:
    return np.zeros((0, *shape), dtype=np.float64)


def _ints() -> IntArray:
    return np.zeros(0, dtype=np.int64)


@dataclass(frozen=True, slots=True, eq=False)
class TrackSet:
    """All tracks as struct-of-arrays: row i of every array belongs to track ``ids[i]``.

    Each track runs two filters on the same detections. ``x``/``P`` is the free-flight
    (ballistic) filter: the track's estimate, used for impact prediction and fusion.
    ``xm``/``Pm`` is a manoeuvre filter with thrust-sized process noise, which keeps hold of
    a missile under boost; whenever the ballistic filter is surprised by a detection it is
    restarted from the manoeuvre filter, and ``calm`` counts the updates since then;
    ``cusum`` accumulates the energy its updates added and ``strikes`` counts consecutive
    surprising innovations (see :class:`Tracker`).

    ``time`` is the instant of each state (tracks are not all predicted to one time);
    ``impact_time`` is the last predicted impact instant (NaN before any prediction), which lets
    the deleter tell an impact from a loss; ``ipp_time`` is when that prediction was made;
    ``boost_time`` when the last boost corridor was drawn. ``parent`` is the id of the
    burning track a track split from (a spent stage it shed), 0 for a track of its own.
    """

    ids: IntArray = field(default_factory=_ints)
    time: Array = field(default_factory=lambda: _empty())
    x: Array = field(default_factory=lambda: _empty(STATE_DIM))
    P: Array = field(default_factory=lambda: _empty(STATE_DIM, STATE_DIM))
    first_time: Array = field(default_factory=lambda: _empty())
    last_update: Array = field(default_factory=lambda: _empty())
    updates: IntArray = field(default_factory=_ints)
    impact_time: Array = field(default_factory=lambda: _empty())
    ipp_time: Array = field(default_factory=lambda: _empty())
    next_id: int = 1
    xm: Array = field(default_factory=lambda: _empty(STATE_DIM))
    Pm: Array = field(default_factory=lambda: _empty(STATE_DIM, STATE_DIM))
    calm: IntArray = field(default_factory=_ints)
    cusum: Array = field(default_factory=lambda: _empty())
    strikes: IntArray = field(default_factory=_ints)
    boost_time: Array = field(default_factory=lambda: _empty())
    parent: IntArray = field(default_factory=_ints)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def confirmed(self, confirm_after: int) -> NDArray[np.bool_]:
        return self.updates >= confirm_after

    def ballistic(self, calm_after: int) -> NDArray[np.bool_]:
        return self.calm >= calm_after

    def track(self, i: int, confirm_after: int = 3, calm_after: int = 15) -> Track:
        return Track(int(self.ids[i]), float(self.time[i]), self.x[i].copy(), self.P[i].copy(),
                     float(self.first_time[i]), float(self.last_update[i]),
                     int(self.updates[i]), bool(self.updates[i] >= confirm_after),
                     bool(self.calm[i] >= calm_after), float(self.impact_time[i]))

    def tracks(self, confirm_after: int = 3, calm_after: int = 15) -> tuple[Track, ...]:
        return tuple(self.track(i, confirm_after, calm_after) for i in range(len(self)))

    def index_of(self, track_id: int) -> int:
        hits = np.flatnonzero(self.ids == track_id)
        if hits.size == 0:
            raise KeyError(track_id)
        return int(hits[0])

    def select(self, rows: NDArray[np.bool_] | IntArray) -> TrackSet:
        """The tracks at ``rows`` (a mask or indices), keeping ``next_id``."""
        return TrackSet(self.ids[rows], self.time[rows], self.x[rows], self.P[rows],
                        self.first_time[rows], self.last_update[rows], self.updates[rows],
                        self.impact_time[rows], self.ipp_time[rows], self.next_id,
                        self.xm[rows], self.Pm[rows], self.calm[rows], self.cusum[rows],
                        self.strikes[rows], self.boost_time[rows], self.parent[rows])

    def with_states(self, rows: IntArray, time: Array, x: Array, P: Array,
                    xm: Array | None = None, Pm: Array | None = None) -> TrackSet:
        """A copy whose tracks at ``rows`` have new states (prediction without update).

        Without ``xm``/``Pm`` the manoeuvre filter is set to the same state.
        """
        t2, x2, p2, xm2, pm2 = (self.time.copy(), self.x.copy(), self.P.copy(),
                                self.xm.copy(), self.Pm.copy())
        t2[rows], x2[rows], p2[rows] = time, x, P
        xm2[rows] = x if xm is None else xm
        pm2[rows] = P if Pm is None else Pm
        return replace(self, time=t2, x=x2, P=p2, xm=xm2, Pm=pm2)

    def with_updates(self, rows: IntArray, time: Array, x: Array, P: Array, xm: Array,
                     Pm: Array, calm: IntArray, cusum: Array, strikes: IntArray) -> TrackSet:
        """A copy whose tracks at ``rows`` took a measurement at ``time``."""
        # One copy of each changed array and one construction: the tracker calls this at
        # every scan, where dataclasses.replace twice cost more than the update itself.
        t2, x2, p2, xm2, pm2 = (self.time.copy(), self.x.copy(), self.P.copy(),
                                self.xm.copy(), self.Pm.copy())
        last, n, c, s, k = (self.last_update.copy(), self.updates.copy(), self.calm.copy(),
                            self.cusum.copy(), self.strikes.copy())
        t2[rows], x2[rows], p2[rows], xm2[rows], pm2[rows] = time, x, P, xm, Pm
        last[rows] = time
        n[rows] += 1
        c[rows] = calm
        s[rows] = cusum
        k[rows] = strikes
        return TrackSet(self.ids, t2, x2, p2, self.first_time, last, n, self.impact_time,
                        self.ipp_time, self.next_id, xm2, pm2, c, s, k, self.boost_time,
                        self.parent)

    def with_impacts(self, rows: IntArray, impact_time: Array, ipp_time: Array) -> TrackSet:
        it, pt = self.impact_time.copy(), self.ipp_time.copy()
        it[rows], pt[rows] = impact_time, ipp_time
        return replace(self, impact_time=it, ipp_time=pt)

    def with_boost_corridors(self, rows: IntArray, time: Array) -> TrackSet:
        bt = self.boost_time.copy()
        bt[rows] = time
        return replace(self, boost_time=bt)

    def extended(self, time: Array, x: Array, P: Array, *, first_time: Array | None = None,
                 last_update: Array | None = None, updates: IntArray | None = None,
                 calm: IntArray | None = None, parent: IntArray | None = None) -> TrackSet:
        """A copy with new tracks appended under fresh ids (by default: one detection each,
        not yet known to be ballistic, of their own)."""
        k = int(time.shape[0])
        new_ids = np.arange(self.next_id, self.next_id + k, dtype=np.int64)
        nan = np.full(k, np.nan)
        return TrackSet(
            np.concatenate([self.ids, new_ids]), np.concatenate([self.time, time]),
            np.concatenate([self.x, x]), np.concatenate([self.P, P]),
            np.concatenate([self.first_time, time if first_time is None else first_time]),
            np.concatenate([self.last_update, time if last_update is None else last_update]),
            np.concatenate([self.updates,
                            np.ones(k, dtype=np.int64) if updates is None else updates]),
            np.concatenate([self.impact_time, nan]), np.concatenate([self.ipp_time, nan]),
            self.next_id + k, np.concatenate([self.xm, x]), np.concatenate([self.Pm, P]),
            np.concatenate([self.calm, np.zeros(k, dtype=np.int64) if calm is None else calm]),
            np.concatenate([self.cusum, np.zeros(k)]),
            np.concatenate([self.strikes, np.zeros(k, dtype=np.int64)]),
            np.concatenate([self.boost_time, nan]),
            np.concatenate([self.parent,
                            np.zeros(k, dtype=np.int64) if parent is None else parent]))


@dataclass(frozen=True, slots=True)
class Ellipse:
    """An uncertainty ellipse on the ground, in the local east-north plane.

    ``sigma`` is the scale (2 = two-sigma); ``orientation_deg`` is the bearing of the major
    axis, clockwise from north in [0, 180).
    """

    semi_major_km: float
    semi_minor_km: float
    orientation_deg: float
    sigma: float

    def as_dict(self) -> dict[str, float]:
        return {"semi_major_km": round(self.semi_major_km, 4),
                "semi_minor_km": round(self.semi_minor_km, 4),
                "orientation_deg": round(self.orientation_deg, 3), "sigma": self.sigma}


@dataclass(frozen=True, slots=True)
class GroundPoint:
    """A predicted ground crossing: impact (forwards) or launch (backwards) point."""

    lat_deg: float
    lon_deg: float
    time: float
    time_sigma_s: float
    ellipse: Ellipse

    def as_dict(self) -> dict[str, object]:
        return {"lat_deg": round(self.lat_deg, 6), "lon_deg": round(self.lon_deg, 6),
                "time": round(self.time, 3), "time_sigma_s": round(self.time_sigma_s, 3),
                "ellipse": self.ellipse.as_dict()}


@dataclass(frozen=True, slots=True)
class TrackInitiated:
    """A track reached confirmation; ``first_time`` is its first detection."""

    track_id: int
    time: float
    first_time: float
    lat_deg: float
    lon_deg: float
    height_m: float
    kind: Literal["track-initiated"] = "track-initiated"

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "track_id": self.track_id, "time": round(self.time, 3),
                "first_time": round(self.first_time, 3), "lat_deg": round(self.lat_deg, 6),
                "lon_deg": round(self.lon_deg, 6), "height_m": round(self.height_m, 1)}


@dataclass(frozen=True, slots=True)
class TrackUpdated:
    """A confirmed track took one or more measurements in this step."""

    track_id: int
    time: float
    sensors: tuple[str, ...]
    lat_deg: float
    lon_deg: float
    height_m: float
    speed_m_s: float
    position_sigma_m: float
    updates: int = 0
    kind: Literal["track-updated"] = "track-updated"

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "track_id": self.track_id, "time": round(self.time, 3),
                "sensors": list(self.sensors), "lat_deg": round(self.lat_deg, 6),
                "lon_deg": round(self.lon_deg, 6), "height_m": round(self.height_m, 1),
                "speed_m_s": round(self.speed_m_s, 2),
                "position_sigma_m": round(self.position_sigma_m, 2), "updates": self.updates}


@dataclass(frozen=True, slots=True)
class ImpactPredicted:
    """Impact point, its ellipse and time to impact, plus the launch point, from one state;
    and the corridor of the paths it may still fly (when the tracker draws them)."""

    track_id: int
    time: float
    impact: GroundPoint
    launch: GroundPoint | None
    kind: Literal["impact-predicted"] = "impact-predicted"
    corridor: Corridor | None = None
    shed_from: int = 0      # the track it split from: a spent stage's fall, not a missile

    @property
    def time_to_impact_s(self) -> float:
        return self.impact.time - self.time

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "track_id": self.track_id, "time": round(self.time, 3),
                "time_to_impact_s": round(self.time_to_impact_s, 3),
                "impact": self.impact.as_dict(),
                "launch": None if self.launch is None else self.launch.as_dict()}


@dataclass(frozen=True, slots=True)
class BoostCorridor:
    """While a confirmed track still burns: the paths it would fly if the engine stopped now
    (from the manoeuvre filter), the shortest it can still fly along its heading."""

    track_id: int
    time: float
    corridor: Corridor
    kind: Literal["boost-corridor"] = "boost-corridor"

    def as_dict(self) -> dict[str, object]:
        c = self.corridor
        return {"kind": self.kind, "track_id": self.track_id, "time": round(self.time, 3),
                "cut_off_impact": {"lat_deg": round(float(c.lat_deg[-1]), 6),
                                   "lon_deg": round(float(c.lon_deg[-1]), 6),
                                   "time": round(c.impact_time, 3)}}


LostReason = Literal["impacted", "not-updated", "covariance"]


@dataclass(frozen=True, slots=True)
class TrackLost:
    """A track was dropped. ``impacted``: its predicted impact time has passed, so warnings
    stand; otherwise the track was lost in flight and warnings built on it must be retracted."""

    track_id: int
    time: float
    reason: LostReason
    confirmed: bool
    kind: Literal["track-lost"] = "track-lost"

    @property
    def retract(self) -> bool:
        return self.confirmed and self.reason != "impacted"

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "track_id": self.track_id, "time": round(self.time, 3),
                "reason": self.reason, "confirmed": self.confirmed, "retract": self.retract}


Event = TrackInitiated | TrackUpdated | ImpactPredicted | BoostCorridor | TrackLost
