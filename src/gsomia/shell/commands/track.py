"""``gsomia track``: run the tracker on a measurement file and print tracks and predictions.

The file format is ``gsomia/data/schemas/measurements.schema.json`` (sensors with positions and
noise; time-ordered radar or line-of-sight measurements), so any outside tracker can be
compared with this one on the same input.

``--json`` prints one document: ``measurements`` (count), ``sensors`` (ids), ``epoch``;
``tracks``: every confirmed track with its status (``active`` or ``lost:<reason>``), sensors,
last position, speed and position sigma, and its latest ``impact`` and ``launch`` points;
``predictions``: every impact prediction over time (``time``, ``time_to_impact_s``, ``impact``
and ``launch`` with lat/lon, time and a two-sigma ellipse: semi-axes in km, orientation of the
major axis clockwise from north), with ``at`` (RFC 3339) when the file has an epoch and
``impact_error_km``/``launch_error_km`` when it carries the truth; ``events``: track
initiations and losses (``retract`` true when warnings built on the track must be withdrawn).
Times are seconds after the file's epoch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import timedelta
from importlib import resources
from itertools import groupby
from typing import Any

import click
import numpy as np

from gsomia.core.errors import MalformedInput
from gsomia.core.tracking import earth
from gsomia.core.tracking.deleter import UpdateTimeDeleter
from gsomia.core.tracking.predictor import BallisticPredictor
from gsomia.core.tracking.tracker import Tracker
from gsomia.core.tracking.types import (
    Detection,
    Event,
    ImpactPredicted,
    Kind,
    SensorSite,
    TrackInitiated,
    TrackLost,
    TrackSet,
    TrackUpdated,
)
from gsomia.core.types import instant, iso
from gsomia.shell.commands.common import emit_json, json_option, progress, read_json_input

SCHEMA = "measurements.schema.json"


def schema() -> dict[str, Any]:
    text = resources.files("gsomia").joinpath("data", "schemas", SCHEMA).read_text("utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


def _path(parts: Any) -> str:
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def validate(doc: Any, source: str) -> None:
    """Raise MalformedInput naming the first offending field if ``doc`` breaks the schema."""
    import jsonschema
    from jsonschema.exceptions import best_match

    validator = jsonschema.Draft202012Validator(schema())
    error = best_match(validator.iter_errors(doc))
    if error is not None:
        raise MalformedInput(error.message, where=f"{source}: {_path(error.absolute_path)}",
                             expected=f"a measurement file as {SCHEMA} describes")


def _noise(spec: dict[str, Any], kind: Kind, where: str) -> np.ndarray:
    angles = [math.radians(spec["azimuth_deg"]) ** 2, math.radians(spec["elevation_deg"]) ** 2]
    if kind == "los":
        return np.diag(angles)
    if "range_m" not in spec:
        raise MalformedInput("a radar's noise needs range_m", where=where,
                             expected="noise.range_m in metres")
    return np.diag([float(spec["range_m"]) ** 2, *angles])


def detections(doc: dict[str, Any], source: str) -> list[Detection]:
    """The measurements of a schema-valid document as tracker detections."""
    sites: dict[str, tuple[SensorSite, Kind, np.ndarray]] = {}
    for i, s in enumerate(doc["sensors"]):
        where = f"{source}: $.sensors[{i}]"
        if s["id"] in sites:
            raise MalformedInput(f"sensor id {s['id']!r} appears twice", where=where + ".id")
        kind: Kind = s["kind"]
        site = SensorSite.at(s["id"], s["lat_deg"], s["lon_deg"], s["height_m"])
        sites[s["id"]] = (site, kind, _noise(s["noise"], kind, where + ".noise"))
    out: list[Detection] = []
    last = -math.inf
    for i, m in enumerate(doc["measurements"]):
        where = f"{source}: $.measurements[{i}]"
        if m["sensor"] not in sites:
            raise MalformedInput(f"unknown sensor {m['sensor']!r}", where=where + ".sensor",
                                 expected="an id listed under sensors")
        if m["t"] < last:
            raise MalformedInput(f"t={m['t']} comes before t={last}", where=where + ".t",
                                 expected="measurements in non-decreasing time order")
        last = m["t"]
        site, kind, R = sites[m["sensor"]]
        if "noise" in m:
            R = _noise(m["noise"], kind, where + ".noise")
        az, el = math.radians(m["azimuth_deg"]) % (2 * math.pi), math.radians(m["elevation_deg"])
        if kind == "rae":
            if "range_m" not in m:
                raise MalformedInput("a radar measurement needs range_m",
                                     where=where + ".range_m", expected="slant range in metres")
            z = np.array([float(m["range_m"]), az, el])
        else:
            if "range_m" in m:
                raise MalformedInput("a line-of-sight sensor measures no range",
                                     where=where + ".range_m",
                                     expected="no range_m, or a sensor of kind rae")
            z = np.array([az, el])
        out.append(Detection(float(m["t"]), site, kind, z, R))
    return out


def _km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    return float(earth.great_circle_m(math.radians(lat1), math.radians(lon1),
                                      math.radians(lat2), math.radians(lon2))) / 1000.0


def run_file(doc: dict[str, Any], source: str, tracker: Tracker,
             until: float | None = None,
             on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Track every measurement of ``doc``; the JSON report ``gsomia track --json`` prints.

    ``on_step(n)`` is told how many measurements each tracker step consumed.
    """
    dets = detections(doc, source)
    tracks = TrackSet()
    events: list[Event] = []
    for t, group in groupby(dets, key=lambda d: d.time):
        scan = list(group)
        tracks, new = tracker.step(tracks, scan, t)
        events.extend(new)
        if on_step is not None:
            on_step(len(scan))
    if until is not None and (not dets or until >= dets[-1].time):
        tracks, new = tracker.step(tracks, [], until)
        events.extend(new)
    epoch = instant(doc["epoch"], where=f"{source}: $.epoch") if "epoch" in doc else None
    truth = doc.get("truth", {})

    def stamp(d: dict[str, Any], t: float) -> dict[str, Any]:
        if epoch is not None:
            d["at"] = iso(epoch + timedelta(seconds=t))
        return d

    predictions = []
    summary: dict[int, dict[str, Any]] = {}
    for e in events:
        if isinstance(e, ImpactPredicted):
            p = stamp(e.as_dict(), e.time)
            if "impact_lat_deg" in truth and "impact_lon_deg" in truth:
                p["impact_error_km"] = round(_km(e.impact.lat_deg, e.impact.lon_deg,
                                                 truth["impact_lat_deg"],
                                                 truth["impact_lon_deg"]), 4)
            if e.launch is not None and "launch_lat_deg" in truth and "launch_lon_deg" in truth:
                p["launch_error_km"] = round(_km(e.launch.lat_deg, e.launch.lon_deg,
                                                 truth["launch_lat_deg"],
                                                 truth["launch_lon_deg"]), 4)
            predictions.append(p)
            summary[e.track_id]["impact"] = p["impact"]
            summary[e.track_id]["launch"] = p["launch"]
        elif isinstance(e, TrackInitiated):
            summary[e.track_id] = {"id": e.track_id, "first_time": e.first_time,
                                   "confirmed_time": e.time, "status": "active",
                                   "impact": None, "launch": None}
        elif isinstance(e, TrackUpdated):
            s = summary[e.track_id]
            s.update(last_update=e.time, sensors=sorted(set(s.get("sensors", [])) | set(e.sensors)),
                     lat_deg=round(e.lat_deg, 6), lon_deg=round(e.lon_deg, 6),
                     height_m=round(e.height_m, 1), speed_m_s=round(e.speed_m_s, 2),
                     position_sigma_m=round(e.position_sigma_m, 2), updates=e.updates)
        elif isinstance(e, TrackLost) and e.track_id in summary:
            summary[e.track_id]["status"] = f"lost:{e.reason}"
            summary[e.track_id]["lost_time"] = e.time
    return {
        "source": source,
        "epoch": None if epoch is None else iso(epoch),
        "sensors": [s["id"] for s in doc["sensors"]],
        "measurements": len(dets),
        "tracks": [summary[k] for k in sorted(summary)],
        "predictions": predictions,
        "events": [stamp(e.as_dict(), e.time) for e in events
                   if isinstance(e, TrackInitiated | TrackLost)],
    }


def _print_human(report: dict[str, Any]) -> None:
    click.echo(f"{report['measurements']} measurements from {', '.join(report['sensors'])}")
    for p in report["predictions"]:
        imp, ell = p["impact"], p["impact"]["ellipse"]
        launch = p["launch"]
        line = (f"t={p['time']:8.1f}s track {p['track_id']}: impact {imp['lat_deg']:.3f}N "
                f"{imp['lon_deg']:.3f}E in {p['time_to_impact_s']:.0f}s, 2-sigma "
                f"{ell['semi_major_km']:.1f}x{ell['semi_minor_km']:.1f} km "
                f"@{ell['orientation_deg']:.0f} deg")
        if launch is not None:
            line += f"; launch {launch['lat_deg']:.3f}N {launch['lon_deg']:.3f}E"
        if "impact_error_km" in p:
            line += f"; impact error {p['impact_error_km']:.2f} km"
        click.echo(line)
    for t in report["tracks"]:
        click.echo(f"track {t['id']}: {t['status']}, {t.get('updates', '-')} updates")


def register(cli: click.Group) -> None:
    @cli.command("track")
    @click.option("--measurements", "source", required=True, metavar="FILE",
                  help="Measurement file (JSON, see data/schemas/measurements.schema.json); "
                       "- reads standard input.")
    @click.option("--ipp-every", type=click.FloatRange(min=0.0), default=10.0,
                  show_default=True, metavar="SECONDS",
                  help="Least time between two impact predictions of one track.")
    @click.option("--process-noise", type=click.FloatRange(min=0.0), default=None,
                  metavar="Q", help="White acceleration noise of free flight (m^2/s^3).")
    @click.option("--boost-ceiling-km", type=click.FloatRange(min=0.0), default=0.0,
                  show_default=True, metavar="KM",
                  help="Below this height a climbing track gets boost-phase process noise.")
    @click.option("--ballistic-coefficient", type=click.FloatRange(min=0.0, min_open=True),
                  default=None, metavar="KG_M2",
                  help="Model drag with this ballistic coefficient (m / (Cd A)); without it "
                       "flight is drag-free, which puts low flights' impacts long.")
    @click.option("--until", type=float, default=None, metavar="SECONDS",
                  help="Run the deleter at this time after the last measurement.")
    @json_option
    def track(source: str, ipp_every: float, process_noise: float | None,
              boost_ceiling_km: float, ballistic_coefficient: float | None,
              until: float | None, as_json: bool) -> None:
        """Track missiles in a measurement file; print tracks, launch and impact points."""
        doc = read_json_input(source, what="a measurement file")
        validate(doc, source)
        base = BallisticPredictor()
        predictor = BallisticPredictor(
            q=base.q if process_noise is None else process_noise,
            boost_ceiling_m=boost_ceiling_km * 1000.0,
            ballistic_coefficient=(math.inf if ballistic_coefficient is None
                                   else ballistic_coefficient))
        tracker = Tracker(predictor=predictor, deleter=UpdateTimeDeleter(),
                          ipp_interval_s=ipp_every)
        with progress("tracking", len(doc["measurements"]), as_json=as_json) as steps:
            report = run_file(doc, source, tracker, until, on_step=steps.advance)
        if as_json:
            emit_json(report)
        else:
            _print_human(report)
