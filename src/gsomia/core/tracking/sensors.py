"""Early-warning sensors: what each one can see of a flight, and the noisy reports it makes.

A :class:`Sensor` is a radar (range, azimuth, elevation) or an infrared satellite (line of
sight only, boost phase only). Visibility on the curved Earth needs all of:

- a line of sight clear of the WGS-84 ellipsoid (no refraction: a conservative, geometric
  horizon; radars see ~15% further in practice);
- for radars, an elevation at or above the sensor's minimum (FPS-5 looks at 4-6 degrees,
  which hides low, flat flights far away), and inside its azimuth sector when it has one;
- a slant range within the maximum range;
- a target above the sensor's minimum altitude (an infrared sensor sees a plume above the
  clouds), and for ``boost_only`` sensors a burning engine.

A sensor's type and position are classified: ``label`` guards them (they stay with their
owner); ``report_label`` marks what it measures about a missile. Both are
:class:`SecurityLabel` values in the shape of a release label (originator, level, rel_to,
purpose, caveats); the release policy decides what may travel.

Everything is pure: :func:`observe` takes the numpy ``Generator`` that draws scan phases,
detections and noise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from gsomia.core.errors import MalformedInput
from gsomia.core.labels import SecurityLabel
from gsomia.core.tracking.earth import (
    A,
    Array,
    B,
    ecef_to_geodetic,
    enu_basis,
    geodetic_to_ecef,
    range_azimuth_elevation,
)
from gsomia.core.tracking.trajectory import Mask, Trajectory
from gsomia.core.types import party

KINDS = ("radar", "infrared")
PLATFORMS = ("ground", "ship", "satellite")


@dataclass(frozen=True, slots=True)
class Sector:
    """Azimuth coverage of a fixed-face radar: boresight ± half-width (degrees)."""

    boresight_deg: float
    half_width_deg: float


@dataclass(frozen=True, slots=True)
class Sensor:
    id: str
    name: str
    owner: str
    kind: str                           # radar | infrared
    platform: str                       # ground | ship | satellite
    lat_deg: float
    lon_deg: float
    height_m: float
    max_range_km: float
    min_elevation_deg: float | None     # None: no elevation limit (a satellite looking down)
    sector: Sector | None
    min_target_altitude_km: float
    boost_only: bool
    revisit_s: float
    cued_revisit_s: float
    latency_s: float
    cued_latency_s: float
    p_detect: float
    cued_p_detect: float
    sigma_range_m: float | None
    sigma_az_deg: float | None
    sigma_el_deg: float | None
    sigma_los_urad: float | None
    label: SecurityLabel              # the sensor itself: type, place, performance
    report_label: SecurityLabel       # what it measures about a missile

    @property
    def ecef(self) -> Array:
        return geodetic_to_ecef(math.radians(self.lat_deg), math.radians(self.lon_deg),
                                self.height_m)

    @property
    def measures_range(self) -> bool:
        return self.kind == "radar"

    def cued(self) -> Sensor:
        """The same sensor told where to look: faster revisit, lower latency, surer detection."""
        return replace(self, revisit_s=self.cued_revisit_s, latency_s=self.cued_latency_s,
                       p_detect=self.cued_p_detect)

    def moved(self, lat_deg: float, lon_deg: float) -> Sensor:
        """The same sensor elsewhere (a ship on another station)."""
        return replace(self, lat_deg=lat_deg, lon_deg=lon_deg)


# --- catalogue ------------------------------------------------------------------------------


def _num(entry: Mapping[str, Any], key: str, where: str, *, optional: bool = False,
         low: float | None = None, high: float | None = None) -> float | None:
    v = entry.get(key)
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise MalformedInput(f"{key} is {v!r}", where=f"{where}.{key}", expected="a number")
    if (low is not None and v < low) or (high is not None and v > high):
        raise MalformedInput(f"{key} is {v}", where=f"{where}.{key}",
                             expected=f"a number in [{low}, {high}]")
    return float(v)


def _req(entry: Mapping[str, Any], key: str, where: str, **kw: Any) -> float:
    v = _num(entry, key, where, **kw)
    assert v is not None
    return v


def _label(v: Any, where: str) -> SecurityLabel:
    return SecurityLabel.from_stored(v, where=where)


def sensor_from(entry: Mapping[str, Any], *, where: str = "sensor") -> Sensor:
    """One catalogue entry → :class:`Sensor`; MalformedInput names the bad field."""
    if not isinstance(entry, Mapping):
        raise MalformedInput("not a mapping", where=where, expected="a sensor entry")
    sid = entry.get("id")
    if not isinstance(sid, str) or not sid:
        raise MalformedInput("missing id", where=where, expected="a sensor id")
    where = f"{where}:{sid}"
    kind, platform = entry.get("kind"), entry.get("platform")
    if kind not in KINDS:
        raise MalformedInput(f"kind {kind!r}", where=where + ".kind", expected=" or ".join(KINDS))
    if platform not in PLATFORMS:
        raise MalformedInput(f"platform {platform!r}", where=where + ".platform",
                             expected=", ".join(PLATFORMS))
    sec = entry.get("sector")
    sector = None
    if sec is not None:
        if not isinstance(sec, Mapping):
            raise MalformedInput("bad sector", where=where + ".sector",
                                 expected="{boresight_deg, half_width_deg} or null")
        sector = Sector(_req(sec, "boresight_deg", where + ".sector"),
                        _req(sec, "half_width_deg", where + ".sector", low=0, high=180))
    radar = kind == "radar"
    s = Sensor(
        id=sid, name=str(entry.get("name", sid)),
        owner=party(str(entry.get("owner")), where=where + ".owner"),
        kind=str(kind), platform=str(platform),
        lat_deg=_req(entry, "lat", where, low=-90, high=90),
        lon_deg=_req(entry, "lon", where, low=-180, high=180),
        height_m=_req(entry, "height_m", where, low=-500),
        max_range_km=_req(entry, "max_range_km", where, low=0),
        min_elevation_deg=_num(entry, "min_elevation_deg", where, optional=not radar,
                               low=-90, high=90),
        sector=sector,
        min_target_altitude_km=_req(entry, "min_target_altitude_km", where, low=0),
        boost_only=bool(entry.get("boost_only", False)),
        revisit_s=_req(entry, "revisit_s", where, low=0.01),
        cued_revisit_s=_req(entry, "cued_revisit_s", where, low=0.01),
        latency_s=_req(entry, "latency_s", where, low=0),
        cued_latency_s=_req(entry, "cued_latency_s", where, low=0),
        p_detect=_req(entry, "p_detect", where, low=0, high=1),
        cued_p_detect=_req(entry, "cued_p_detect", where, low=0, high=1),
        sigma_range_m=_num(entry, "sigma_range_m", where, optional=not radar, low=0),
        sigma_az_deg=_num(entry, "sigma_az_deg", where, optional=not radar, low=0),
        sigma_el_deg=_num(entry, "sigma_el_deg", where, optional=not radar, low=0),
        sigma_los_urad=_num(entry, "sigma_los_urad", where, optional=radar, low=0),
        label=_label(entry.get("label"), where + ".label"),
        report_label=_label(entry.get("report_label"), where + ".report_label"),
    )
    if s.label.originator != s.owner or s.report_label.originator != s.owner:
        raise MalformedInput("a sensor's labels must name its owner as originator",
                             where=where + ".label", expected=f"originator {s.owner}")
    return s


def catalogue(doc: Mapping[str, Any]) -> tuple[Sensor, ...]:
    """The decoded ``sensors.yaml`` → sensors, with unique ids."""
    entries = doc.get("sensors") if isinstance(doc, Mapping) else None
    if not isinstance(entries, list) or not entries:
        raise MalformedInput("no sensors", where="sensors.yaml", expected="sensors: [ ... ]")
    out = tuple(sensor_from(e, where=f"sensors[{i}]") for i, e in enumerate(entries))
    ids = [s.id for s in out]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise MalformedInput(f"duplicate sensor ids {dupes}", where="sensors.yaml",
                             expected="unique ids")
    return out


def of_party(sensors: Iterable[Sensor], owner: str) -> tuple[Sensor, ...]:
    return tuple(s for s in sensors if s.owner == owner)


# --- geometry -------------------------------------------------------------------------------


def line_of_sight_clear(a: Array, b: Array) -> Mask:
    """True where the straight segment a→b stays outside the WGS-84 ellipsoid (m, ECEF).

    Scaling z by A/B turns the ellipsoid into a sphere of radius A and keeps lines straight,
    so the test is the closest approach of a segment to the origin.
    """
    scale = np.array([1.0, 1.0, A / B])
    p = np.asarray(a, dtype=float) * scale
    d = np.asarray(b, dtype=float) * scale - p
    dd = np.einsum("...i,...i->...", d, d)
    s = np.clip(-np.einsum("...i,...i->...", p, d) / np.where(dd > 0, dd, 1.0), 0.0, 1.0)
    closest = p + s[..., None] * d
    # a metre of slack so that a sensor standing on the surface is not hidden by itself
    return np.asarray(np.einsum("...i,...i->...", closest, closest) >= (A - 1.0) ** 2)


def look_angles(sensor: Sensor, target_ecef: Array) -> tuple[Array, Array, Array]:
    """Slant range (m), azimuth and elevation (rad) of targets from the sensor."""
    return range_azimuth_elevation(sensor.ecef, math.radians(sensor.lat_deg),
                                   math.radians(sensor.lon_deg), np.asarray(target_ecef, float))


def visible(sensor: Sensor, target_ecef: Array) -> Mask:
    """Whether the sensor can see targets at ECEF positions (..., 3): a boolean array.

    Geometry only (horizon, elevation, sector, range, target altitude); the boost-only rule of
    infrared sensors needs the flight: see :func:`visible_along`.
    """
    tgt = np.asarray(target_ecef, dtype=float)
    rng, az, el = look_angles(sensor, tgt)
    ok = (rng <= sensor.max_range_km * 1e3) & line_of_sight_clear(
        np.broadcast_to(sensor.ecef, tgt.shape), tgt)
    if sensor.min_elevation_deg is not None:
        ok &= el >= math.radians(sensor.min_elevation_deg)
    if sensor.sector is not None:
        off = (np.degrees(az) - sensor.sector.boresight_deg + 180.0) % 360.0 - 180.0
        ok &= np.abs(off) <= sensor.sector.half_width_deg
    if sensor.min_target_altitude_km > 0.0:
        with np.errstate(invalid="ignore", divide="ignore"):    # the equator's 0/0 branch
            height = ecef_to_geodetic(tgt)[2]
        ok &= height >= sensor.min_target_altitude_km * 1e3
    return np.asarray(ok)


def visible_along(sensor: Sensor, trajectory: Trajectory, t: Array | float) -> Mask:
    """Visibility of the missile at times ``t`` (s after lift-off): geometry, flight, engine."""
    tt = np.asarray(t, dtype=float)
    ok = visible(sensor, trajectory.position_at(tt)) & trajectory.in_flight(tt)
    if sensor.boost_only:
        ok &= trajectory.boosting(tt)
    return np.asarray(ok)


def horizon_ground_distance_m(target_altitude_m: float, sensor_height_m: float = 0.0,
                              radius_m: float = A) -> float:
    """Ground distance at which a target at ``target_altitude_m`` rises above a sphere's horizon.

    Sum of the two tangent arcs: ``R acos(R/(R+h_s)) + R acos(R/(R+h_t))``.
    """
    r = radius_m
    return r * (math.acos(r / (r + sensor_height_m)) + math.acos(r / (r + target_altitude_m)))


# --- measurements ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Measurements:
    """Time-ordered detections of one sensor (struct of arrays).

    ``values`` (n, 3): range (m; NaN for line-of-sight sensors), azimuth, elevation (rad) in
    the sensor's local east-north-up frame. ``sigmas`` (n, 3): their standard deviations (an
    infrared sensor's isotropic line-of-sight error shows as ``sigma_los / cos(el)`` in
    azimuth). ``times`` are measurement instants, ``report_times`` when the report reaches its
    owner's operations centre (time + latency), both in seconds after lift-off.
    ``truth_ecef`` is the simulated target position, for scoring only: never shared.
    """

    sensor_id: str
    owner: str
    kind: str                       # "rae" (radar) or "los" (angles only)
    sensor_ecef: Array
    sensor_lat_deg: float
    sensor_lon_deg: float
    times: Array
    report_times: Array
    values: Array
    sigmas: Array
    truth_ecef: Array

    def __len__(self) -> int:
        return int(self.times.shape[0])

    def los_ecef(self) -> Array:
        """Measured line-of-sight unit vectors in ECEF, (n, 3)."""
        az, el = self.values[:, 1], self.values[:, 2]
        enu = np.stack([np.cos(el) * np.sin(az), np.cos(el) * np.cos(az), np.sin(el)], axis=-1)
        basis = enu_basis(math.radians(self.sensor_lat_deg), math.radians(self.sensor_lon_deg))
        return np.asarray(enu @ basis)

    def positions_ecef(self) -> Array:
        """Measured target positions (radar only; NaN rows for angles-only)."""
        return np.asarray(self.sensor_ecef + self.los_ecef() * self.values[:, :1])


def scan_times(revisit_s: float, t0: float, t1: float, rng: np.random.Generator,
               cue_s: float | None = None, cued_revisit_s: float | None = None) -> Array:
    """Scan instants in [t0, t1]: a random phase, then every ``revisit_s``; after ``cue_s``
    (when given) every ``cued_revisit_s``."""
    phase = rng.uniform(0.0, revisit_s)
    if cue_s is None or cued_revisit_s is None or cue_s >= t1:
        return np.arange(t0 + phase, t1 + 1e-9, revisit_s)
    cue = max(cue_s, t0)
    before = np.arange(t0 + phase, cue, revisit_s) if cue > t0 else np.zeros(0)
    after = np.arange(cue + rng.uniform(0.0, cued_revisit_s), t1 + 1e-9, cued_revisit_s)
    return np.concatenate([before, after])


def observe(sensor: Sensor, trajectory: Trajectory, t0: float, t1: float,
            rng: np.random.Generator, *, cued: bool = False,
            cue_s: float | None = None) -> Measurements:
    """Noisy, time-stamped detections of the flight by ``sensor`` between ``t0`` and ``t1``.

    ``cued=True``: cued for the whole window (a pre-launch cue). ``cue_s``: the cue arrives
    at that time (seconds after lift-off), e.g. when a partner's warning comes in; from then
    on the sensor revisits faster, detects more surely and reports sooner.
    """
    return observe_all(sensor, trajectory, (), t0, t1, rng, cued=cued, cue_s=cue_s)[0]


def observe_all(sensor: Sensor, trajectory: Trajectory, parts: Sequence[Trajectory],
                t0: float, t1: float, rng: np.random.Generator, *, cued: bool = False,
                cue_s: float | None = None) -> tuple[Measurements, ...]:
    """:func:`observe` of the missile and of the ``parts`` it shed (each a flight from its
    separation, :func:`stages.fall`), in the same scans: the missile's detections first,
    drawn exactly as :func:`observe` draws them, then each part's."""
    start, end = max(t0, 0.0), min(t1, trajectory.flight_time_s)
    base = sensor.cued() if cued else sensor
    if end < start:
        times = np.zeros(0)
    elif cue_s is not None and not cued:
        times = scan_times(base.revisit_s, start, end, rng, cue_s, sensor.cued_revisit_s)
    else:
        times = scan_times(base.revisit_s, start, end, rng)
    out = [_detect(sensor, trajectory, times, cued, cue_s, rng)]
    if parts:
        # a part may come down after the missile's flight is tracked no longer
        last = min(t1, max(p.flight_time_s for p in parts))
        if last > end:
            extra = times[-1] + base.revisit_s if times.size else start
            times = np.concatenate([times, np.arange(extra, last + 1e-9, base.revisit_s)])
    for part in parts:
        t = times[(times >= part.times[0]) & (times <= part.flight_time_s)]
        out.append(_detect(sensor, part, t, cued, cue_s, rng))
    return tuple(out)


def _detect(sensor: Sensor, trajectory: Trajectory, times: Array, cued: bool,
            cue_s: float | None, rng: np.random.Generator) -> Measurements:
    """The detections of one object in the scans at ``times``."""
    after_cue = np.full(times.shape, cued) if cue_s is None else (times >= cue_s) | cued
    p_detect = np.where(after_cue, sensor.cued_p_detect, sensor.p_detect)
    latency = np.where(after_cue, sensor.cued_latency_s, sensor.latency_s)
    seen = visible_along(sensor, trajectory, times) & (rng.random(times.shape) < p_detect)
    t = times[seen]
    truth = trajectory.position_at(t).reshape(-1, 3)
    rng_m, az, el = look_angles(sensor, truth)
    n = t.shape[0]
    if sensor.kind == "radar":
        assert sensor.sigma_range_m is not None and sensor.sigma_az_deg is not None
        assert sensor.sigma_el_deg is not None
        sig = np.tile([sensor.sigma_range_m, math.radians(sensor.sigma_az_deg),
                       math.radians(sensor.sigma_el_deg)], (n, 1))
        noisy = np.stack([rng_m, az, el], axis=-1) + rng.standard_normal((n, 3)) * sig
        kind = "rae"
    else:
        assert sensor.sigma_los_urad is not None
        s_los = sensor.sigma_los_urad * 1e-6
        cos_el = np.maximum(np.cos(el), 1e-6)
        sig = np.stack([np.full(n, np.nan), s_los / cos_el, np.full(n, s_los)], axis=-1)
        noise = rng.standard_normal((n, 2)) * sig[:, 1:]
        noisy = np.stack([np.full(n, np.nan), az + noise[:, 0], el + noise[:, 1]], axis=-1)
        kind = "los"
    noisy[:, 1] = np.mod(noisy[:, 1], 2.0 * np.pi)
    return Measurements(sensor.id, sensor.owner, kind, sensor.ecef, sensor.lat_deg,
                        sensor.lon_deg, t, t + latency[seen], noisy.reshape(n, 3),
                        sig.reshape(n, 3), truth)


# --- coverage of a flight -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Coverage:
    """When a sensor could see a flight (seconds after lift-off), sampled every ``step_s``."""

    sensor_id: str
    owner: str
    first_visible_s: float | None
    last_visible_s: float | None
    visible_s: float                # total time in view

    @property
    def sees(self) -> bool:
        return self.first_visible_s is not None


def coverage(sensors: Sequence[Sensor], trajectory: Trajectory,
             step_s: float = 1.0) -> dict[str, Coverage]:
    """Per sensor, when the flight is in view (no noise, no detection probability)."""
    t = np.arange(0.0, trajectory.flight_time_s + 1e-9, step_s)
    pos = trajectory.position_at(t)
    boosting = trajectory.boosting(t)
    out: dict[str, Coverage] = {}
    for s in sensors:
        ok = visible(s, pos)
        if s.boost_only:
            ok &= boosting
        idx = np.flatnonzero(ok)
        out[s.id] = Coverage(s.id, s.owner,
                             float(t[idx[0]]) if idx.size else None,
                             float(t[idx[-1]]) if idx.size else None,
                             float(idx.size * step_s))
    return out


def detecting_sensors(sensors: Sequence[Sensor], trajectory: Trajectory, *,
                      min_visible_s: float = 0.0, step_s: float = 1.0) -> list[str]:
    """Ids of the sensors that have the flight in view for more than ``min_visible_s``."""
    cov = coverage(sensors, trajectory, step_s)
    return [s.id for s in sensors if cov[s.id].sees and cov[s.id].visible_s > min_visible_s]
