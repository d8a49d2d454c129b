"""``trajectory`` and ``launches``: fit a flight to an apogee and a range; list the data set."""

from __future__ import annotations

from typing import Any

import click

from gsomia.core.errors import MalformedInput
from gsomia.core.tracking import geography
from gsomia.core.tracking.trajectory import (
    MANEUVERS,
    MISSILE_CLASSES,
    FlightRequest,
    Trajectory,
    fit,
    infer_class,
)
from gsomia.shell import feeds
from gsomia.shell.commands.common import emit_json, json_option, progress

# Where a flight starts when no facility is given: Pyongyang (Sunan), the most used site.
_DEFAULT_SITE = (39.2, 125.67)


def _missile(text: str | None, maneuver: str | None, apogee_km: float,
             range_km: float) -> tuple[str, str | None]:
    """``--missile``: a class (SRBM … SLV, HGV) or a missile id of the data set (hwasong-12)."""
    if text is None:
        cls, inferred = infer_class(apogee_km, range_km)
        return cls, maneuver if maneuver is not None else inferred
    if text.upper() in MISSILE_CLASSES:
        return text.upper(), maneuver
    missiles = {x.missile.id: x.missile for x in feeds.load_launches()}
    m = missiles.get(text.lower())
    if m is None:
        raise MalformedInput(f"unknown missile {text!r}", where="--missile",
                             expected="a class (" + ", ".join(MISSILE_CLASSES)
                             + ") or a missile id such as hwasong-12 or hwasong-11a")
    if m.type.upper() == "UNKNOWN":
        cls, inferred = infer_class(apogee_km, range_km)
        return cls, maneuver if maneuver is not None else inferred
    return m.type.upper(), maneuver if maneuver is not None else m.maneuver


def trajectory_json(tr: Trajectory, *, located: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "missile_class": tr.missile_class, "maneuver": tr.maneuver,
        "flight_time_s": round(tr.flight_time_s, 1), "apogee_km": round(tr.apogee_km, 2),
        "apogee_s": round(tr.apogee_s, 1), "range_km": round(tr.range_km, 2),
        "burnout_s": round(tr.burnout_s, 1), "bearing_deg": tr.bearing_deg,
        "apogee_error": tr.apogee_error, "range_error": tr.range_error,
        "energy": round(tr.energy, 4), "burnout_pitch_deg": round(tr.burnout_pitch_deg, 2),
        "launch_azimuth_deg": round(tr.azimuth_deg, 2),
    }
    if located:
        atl = feeds.load_geography()
        la, lo = tr.ground_track(256)
        doc.update({
            "launch_lat": tr.launch_lat_deg, "launch_lon": tr.launch_lon_deg,
            "impact_lat": round(tr.impact_lat_deg, 4), "impact_lon": round(tr.impact_lon_deg, 4),
            "overflown": [r.to_json() for r in geography.regions_overflown(atl, la, lo)],
            "impact_zone": {p: geography.zone_of(atl, p, tr.impact_lat_deg, tr.impact_lon_deg)
                            for p in ("JPN", "KOR")},
        })
    return doc


def register(cli: click.Group) -> None:
    @cli.command("trajectory")
    @click.option("--apogee-km", type=float, help="Apogee (km). Required without --launch.")
    @click.option("--range-km", type=float, help="Ground range (km). Required without --launch.")
    @click.option("--missile", "missile", metavar="TYPE",
                  help="Class (SRBM, MRBM, IRBM, ICBM, SLBM, SLV, HGV) or a missile id "
                       "(hwasong-12); inferred from apogee and range when left out.")
    @click.option("--maneuver", type=click.Choice([*MANEUVERS, "none"]),
                  help="Depressed pull-up (KN-23 family) or glide; default: the missile's.")
    @click.option("--bearing", "bearing", type=float, default=90.0, show_default=True,
                  help="Launch-to-impact bearing (degrees clockwise from north).")
    @click.option("--facility", metavar="ID",
                  help="Launch facility id of the data set (sohae, sinpo, …): adds the "
                       "impact point and the regions overflown.")
    @click.option("--launch", "launch_date", metavar="DATE",
                  help="Fit a launch of the data set instead (UTC or Korean date).")
    @click.option("--index", type=int, help="Which launch of that day (0-based).")
    @json_option
    def trajectory(apogee_km: float | None, range_km: float | None, missile: str | None,
                   maneuver: str | None, bearing: float, facility: str | None,
                   launch_date: str | None, index: int | None, as_json: bool) -> None:
        """Fit a ballistic flight that reaches APOGEE and RANGE: flight time, burnout, impact."""
        located = facility is not None or launch_date is not None
        if launch_date is not None:
            launch = feeds.find_launch(launch_date, index)
            request = launch.flight_request()
        else:
            if apogee_km is None or range_km is None:
                raise MalformedInput("missing apogee or range", where="trajectory",
                                     expected="--apogee-km A --range-km R, or --launch DATE")
            man = None if maneuver == "none" else maneuver
            cls, man = _missile(missile, man, apogee_km, range_km)
            if maneuver == "none":
                man = None
            lat, lon = _DEFAULT_SITE
            if facility is not None:
                sites = {x.facility.id: x.facility for x in feeds.load_launches()}
                if facility not in sites:
                    raise MalformedInput(f"unknown facility {facility!r}", where="--facility",
                                         expected="a facility id of the data set, e.g. "
                                                  + ", ".join(sorted(sites)[:6]))
                lat, lon = sites[facility].lat_deg, sites[facility].lon_deg
            request = FlightRequest(lat, lon, bearing, apogee_km, range_km, cls, man)
        with progress("fitting the flight", as_json=as_json):
            doc = trajectory_json(fit(request), located=located)
        if launch_date is not None:
            doc["launch"] = launch.to_json()
        if as_json:
            emit_json(doc)
            return
        click.echo(f"{doc['missile_class']}{' ' + doc['maneuver'] if doc['maneuver'] else ''}: "
                   f"apogee {doc['apogee_km']:.1f} km at {doc['apogee_s']:.0f} s, range "
                   f"{doc['range_km']:.1f} km, burnout {doc['burnout_s']:.0f} s, flight "
                   f"{doc['flight_time_s']:.0f} s ({doc['flight_time_s'] / 60:.1f} min)")
        if located:
            over = ", ".join(r["name"] for r in doc["overflown"]) or "nothing"
            click.echo(f"impact {doc['impact_lat']:.2f}N {doc['impact_lon']:.2f}E; "
                       f"overflies {over}")

    @cli.command("launches")
    @click.option("--year", type=int, help="Only this year (UTC date).")
    @click.option("--date", "day", metavar="DATE", help="Only this day (UTC or Korean date).")
    @click.option("--fittable", is_flag=True, help="Only launches with apogee and distance.")
    @json_option
    def launches_(year: int | None, day: str | None, fittable: bool, as_json: bool) -> None:
        """List the launches of the CNS North Korea missile test database."""
        from gsomia.core.tracking.launches import on_date
        from gsomia.core.types import instant

        rows = list(feeds.load_launches())
        if day is not None:
            rows = on_date(rows, instant(day, where="--date").date())
        if year is not None:
            rows = [x for x in rows if x.date.year == year]
        if fittable:
            rows = [x for x in rows if x.fittable]
        docs = [x.to_json() for x in rows]
        if as_json:
            emit_json({"count": len(docs), "launches": docs})
            return
        for d in docs:
            when = d["launched_at"] or d["date"]
            ap = "?" if d["apogee_km"] is None else f"{d['apogee_km']:g}"
            rg = "?" if d["distance_km"] is None else f"{d['distance_km']:g}"
            click.echo(f"{when:<20} {d['missile_name']:<24} {d['missile_class']:<5} "
                       f"{d['facility']:<16} {ap:>6} km up {rg:>6} km  {d['outcome']}")
