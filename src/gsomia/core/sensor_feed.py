"""Sensor feeds into a node: lines of measurements in, reasons for every line refused.

A node takes its own sensors' measurements as newline-delimited JSON, one measurement per
line, in the form of ``gsomia track``'s measurement file (``measurements.schema.json``'s
``measurement``) with the instant of its ``t = 0``::

    {"sensor": "kor-greenpine-jincheon", "epoch": "2017-08-28T20:58:00Z", "t": 52.1,
     "range_m": 612000.0, "azimuth_deg": 31.2, "elevation_deg": 7.9,
     "noise": {"range_m": 50.0, "azimuth_deg": 0.1, "elevation_deg": 0.1}}

or a pre-launch indicator (``{"indicator": {...}}``, :meth:`Indicator.to_json`). Every line
is judged alone: a line that is not JSON, names a sensor the node has not registered, misses
a field, is out of range, or comes more than ``window_s`` before the latest measurement of
its sensor is refused with its number and a reason, and counted; the others are taken.

A radar's measurements are shared as what they say about the missile, not where the radar
stands (its site is labelled apart, for its owner only): each becomes range, azimuth and
elevation from :data:`REFERENCE`, a public point, with the covariance carried through the
linearised change of frame (:func:`reference_report`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from gsomia.core.errors import MalformedInput
from gsomia.core.tracking.types import Array, SensorSite
from gsomia.core.tracking.updater import measure
from gsomia.core.types import instant, iso

__all__ = ["AHEAD_S", "MAX_ABS", "MAX_LINE", "REFERENCE", "Intake", "Line", "Registered",
           "detections_of", "read_lines", "reference_report", "reference_site",
           "seconds_ahead"]

REFERENCE = (20.0, 120.0, 0.0)
"""The public point shared radar reports are measured from (lat, lon degrees, height m): far
from every flight of the data set, so that no missile passes near it (where azimuth and
elevation would be ill-conditioned)."""

MAX_LINE = 4096          # bytes of one line: a measurement is a few hundred
MAX_ABS = 1e9            # any number beyond this is not a measurement
AHEAD_S = 120.0          # s a measurement may be stamped after it came in: clocks' skew


@dataclass(frozen=True, slots=True)
class Registered:
    """A sensor registered at a node: its id, the pseudonym its reports carry, its site."""

    id: str
    pseudonym: str
    kind: str                 # rae | los
    lat_deg: float
    lon_deg: float
    height_m: float


@dataclass(frozen=True, slots=True)
class Line:
    """One accepted measurement: instant of t = 0, t, values (m, deg), 1-sigma noise."""

    epoch: datetime
    t: float
    range_m: float
    azimuth_deg: float
    elevation_deg: float
    sigma: tuple[float, float, float]

    @property
    def at(self) -> float:
        """POSIX seconds of the measurement (orders lines of different epochs)."""
        return self.epoch.timestamp() + self.t


@dataclass(slots=True)
class Intake:
    """What one batch of lines gave: measurements per sensor, indicators, refusals."""

    accepted: dict[str, list[Line]] = field(default_factory=dict)
    indicators: list[dict[str, Any]] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def refuse(self, number: int, reason: str, kind: str, lines: int = 1) -> None:
        """Refuse line ``number`` (0: what several lines made, ``lines`` of them)."""
        self.refused.append((number, reason))
        self.counts[kind] = self.counts.get(kind, 0) + lines

    def to_json(self) -> dict[str, Any]:
        return {"accepted": sum(len(v) for v in self.accepted.values()),
                "indicators": len(self.indicators),
                "refused": [{"line": n, "reason": r} for n, r in self.refused],
                "counts": dict(sorted(self.counts.items()))}


def _number(doc: Mapping[str, Any], name: str, *, low: float = -MAX_ABS,
            high: float = MAX_ABS, positive: bool = False) -> float:
    value = doc.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool) \
            or (isinstance(value, float) and not math.isfinite(value)):
        raise MalformedInput(f"{name} is {'missing' if value is None else 'not a number'}",
                             where=name, expected="a finite number")
    # Bounds compared before float(): JSON's integers have no bound, and one of 309 digits
    # (a line of 4096 bytes holds it) made float() raise OverflowError out of the intake.
    if not low <= value <= high or (positive and value <= 0):
        shown = float(value) if abs(value) < 1e300 else f"{'-' if value < 0 else ''}1e300+"
        raise MalformedInput(f"{name}={shown} is out of range", where=name,
                             expected=f"{'above 0 and ' if positive else ''}"
                                      f"between {low:g} and {high:g}")
    return float(value)


_FIELDS = frozenset({"sensor", "epoch", "t", "range_m", "azimuth_deg", "elevation_deg",
                     "noise"})


def _line(doc: Mapping[str, Any], sensor: Registered) -> Line:
    extra = sorted(set(doc) - _FIELDS)
    if extra:
        raise MalformedInput(f"unknown field {extra[0]!r}", where=extra[0],
                             expected=", ".join(sorted(_FIELDS)))
    epoch_text = doc.get("epoch")
    if not isinstance(epoch_text, str) or len(epoch_text) > 40:
        raise MalformedInput("epoch is missing", where="epoch",
                             expected="the instant of t = 0 (RFC 3339)")
    epoch = instant(epoch_text, where="epoch")
    noise = doc.get("noise")
    if not isinstance(noise, Mapping):
        raise MalformedInput("noise is missing", where="noise",
                             expected="{range_m, azimuth_deg, elevation_deg}: 1-sigma")
    if sensor.kind != "rae":
        raise MalformedInput(f"{sensor.id} measures no range", where="sensor",
                             expected="a radar: a node shares measurements without its "
                                      "sensors' sites, which an angle alone needs")
    return Line(epoch, _number(doc, "t", low=-1e6, high=1e6),
                _number(doc, "range_m", high=1e8, positive=True),
                _number(doc, "azimuth_deg", low=-360, high=360),
                _number(doc, "elevation_deg", low=-90, high=90),
                (_number(noise, "range_m", high=1e6, positive=True),
                 _number(noise, "azimuth_deg", high=90, positive=True),
                 _number(noise, "elevation_deg", high=90, positive=True)))


def read_lines(lines: Sequence[bytes], registered: Mapping[str, Registered],
               latest: dict[str, float], window_s: float, now_s: float = math.inf) -> Intake:
    """Judge each line; ``latest`` (the newest instant taken per sensor, POSIX seconds) is
    updated with what is taken. A line stamped more than :data:`AHEAD_S` after ``now_s``
    (POSIX seconds) is refused: taken, it would hold its sensor's window there, and every
    real line after it would be refused as out of order."""
    out = Intake()
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text:
            continue
        if len(text) > MAX_LINE:
            out.refuse(number, f"longer than {MAX_LINE} bytes", "malformed")
            continue
        try:
            doc = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            out.refuse(number, "not JSON", "malformed")
            continue
        if not isinstance(doc, dict):
            out.refuse(number, "not a JSON object", "malformed")
            continue
        if "indicator" in doc:
            if set(doc) != {"indicator"} or not isinstance(doc["indicator"], dict):
                out.refuse(number, "an indicator line holds one object, indicator",
                           "malformed")
            else:
                out.indicators.append(doc["indicator"])
            continue
        name = doc.get("sensor")
        sensor = registered.get(name) if isinstance(name, str) else None
        if sensor is None:
            out.refuse(number, "unknown sensor: not registered at this node",
                       "unknown-sensor")
            continue
        try:
            line = _line(doc, sensor)
        except MalformedInput as exc:
            out.refuse(number, exc.describe(), "malformed")
            continue
        if line.at > now_s + AHEAD_S:
            out.refuse(number, f"{line.at - now_s:.3f} s after now: no sensor measured it yet",
                       "future")
            continue
        newest = latest.get(sensor.id, -math.inf)
        if line.at < newest - window_s:
            out.refuse(number, f"{line.at - newest:.3f} s before the latest measurement of "
                               f"{sensor.id}, beyond the {window_s:g} s window",
                       "out-of-order")
            continue
        latest[sensor.id] = max(newest, line.at)
        out.accepted.setdefault(sensor.id, []).append(line)
    return out


def reference_site() -> SensorSite:
    return SensorSite.at("reference", *REFERENCE)


def reference_report(sensor: Registered, lines: Sequence[Line]) -> dict[str, Any]:
    """``x_gsomia_sensor_report``: the lines (one epoch: the first's) as range, azimuth and
    elevation from :data:`REFERENCE`, each with its covariance (upper triangle, m and deg)."""
    site = SensorSite.at(sensor.id, sensor.lat_deg, sensor.lon_deg, sensor.height_m)
    ref = reference_site()
    epoch = lines[0].epoch
    z = np.array([[ln.range_m, math.radians(ln.azimuth_deg), math.radians(ln.elevation_deg)]
                  for ln in lines])
    sig = np.array([[ln.sigma[0], math.radians(ln.sigma[1]), math.radians(ln.sigma[2])]
                    for ln in lines])
    r, az, el = z[:, 0], z[:, 1], z[:, 2]
    enu = np.stack([r * np.cos(el) * np.sin(az), r * np.cos(el) * np.cos(az),
                    r * np.sin(el)], axis=-1)
    points = site.ecef + enu @ site.basis
    states = np.hstack([points, np.zeros_like(points)])
    _, h_site = measure(states, site.ecef, site.basis, "rae")
    back = np.linalg.inv(h_site[:, :, :3])                  # d(point)/d(r, az, el)
    cov_point = back @ (sig[:, :, None] ** 2 * np.eye(3)) @ np.transpose(back, (0, 2, 1))
    z_ref, h_ref = measure(states, ref.ecef, ref.basis, "rae")
    j = h_ref[:, :, :3]
    cov = j @ cov_point @ np.transpose(j, (0, 2, 1))
    scale = np.array([1.0, math.degrees(1.0), math.degrees(1.0)])
    cov = cov * scale[None, :, None] * scale[None, None, :]
    upper = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    offset = [(ln.epoch - epoch).total_seconds() for ln in lines]
    return {"sensor": sensor.pseudonym, "epoch": iso(epoch), "reference": list(REFERENCE),
            "t": [round(ln.t + d, 6) for ln, d in zip(lines, offset, strict=True)],
            "z": [[round(float(v[0]), 3), round(math.degrees(float(v[1])), 9),
                   round(math.degrees(float(v[2])), 9)] for v in z_ref],
            "cov": [[float(c[i, k]) for i, k in upper] for c in cov]}


def seconds_ahead(report: Mapping[str, Any], held_at: datetime) -> float:
    """How many seconds the newest measurement of ``report`` (schema-checked) is stamped
    after ``held_at``, when the node held it (negative: before, as a real one is); more
    than :data:`AHEAD_S` says its originator's clock runs at least that far ahead.
    MalformedInput if its times are not numbers."""
    epoch = instant(str(report["epoch"]), where="x_gsomia_sensor_report.epoch")
    try:
        newest = max((float(t) for t in report["t"]), default=-math.inf)
    except (TypeError, ValueError):
        raise MalformedInput("a time is not a number", where="x_gsomia_sensor_report.t",
                             expected="seconds after epoch") from None
    return newest - (held_at - epoch).total_seconds()


def detections_of(report: Mapping[str, Any]) -> tuple[datetime, str, Array, Array, Array]:
    """(epoch, pseudonym, times (n,), z (n, 3) in m and rad, R (n, 3, 3)) of a report that
    fits its schema; MalformedInput if its numbers do not make a measurement."""
    epoch = instant(str(report["epoch"]), where="x_gsomia_sensor_report.epoch")
    if [float(v) for v in report["reference"]] != list(REFERENCE):
        raise MalformedInput("measured from another reference point",
                             where="x_gsomia_sensor_report.reference",
                             expected=f"{list(REFERENCE)}")
    t = np.asarray(report["t"], dtype=float)
    z = np.asarray(report["z"], dtype=float)
    c = np.asarray(report["cov"], dtype=float)
    if not (len(t) == len(z) == len(c)):
        raise MalformedInput("t, z and cov differ in length", where="x_gsomia_sensor_report",
                             expected="one z and one cov per t")
    rad = math.radians(1.0)
    z = z * np.array([1.0, rad, rad])
    R = np.empty((len(c), 3, 3))
    for n, (i, k) in enumerate([(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]):
        R[:, i, k] = R[:, k, i] = c[:, n]
    scale = np.array([1.0, rad, rad])
    R = R * scale[None, :, None] * scale[None, None, :]
    if len(R) and not np.all(np.linalg.eigvalsh(R) > 0):
        raise MalformedInput("a covariance is not positive definite",
                             where="x_gsomia_sensor_report.cov",
                             expected="covariances of real measurements")
    return epoch, str(report["sensor"]), t, z, R
