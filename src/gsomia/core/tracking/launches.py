"""North Korean launches from the CNS data set (as prepared by nk-missile-tests), parsed purely.

The data set (``test.en.json``, ``facility.en.json``, ``missile.en.json``) is read by
:mod:`gsomia.shell.feeds`; this module turns the decoded JSON into :class:`Launch` records and
finds launches by date. Numbers in the data set are numbers, numeric strings, ``"unknown"``
or ``"na"``; times are ``"HH:MM (UTC)"`` or ``"unknown"``. Dates are the UTC date of the
launch; Korea and Japan keep UTC+9, so a launch is also found by its local date
(``2017-08-29`` finds the Hwasong-12 fired at 20:58 UTC on 2017-08-28).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from gsomia.core.errors import MalformedInput
from gsomia.core.tracking.trajectory import FlightRequest, infer_class
from gsomia.core.types import utc_text

KST = timedelta(hours=9)
_TIME = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*\(UTC\)\s*$")
_UNKNOWN = {"unknown", "na", "n/a", ""}


@dataclass(frozen=True, slots=True)
class Facility:
    id: str
    name: str
    lat_deg: float
    lon_deg: float


@dataclass(frozen=True, slots=True)
class Missile:
    id: str
    name: str
    type: str                   # SRBM, MRBM, IRBM, ICBM, SLBM, SLV, HGV or Unknown
    maneuver: str | None        # "pullup" (depressed, manoeuvring) or "glide"


@dataclass(frozen=True, slots=True)
class Launch:
    """One test: when, what, from where, and what was recorded of its flight."""

    date: dt.date               # UTC date as recorded (the 1st for month-only records)
    date_precision: str         # "day", or "month" for a few early records ("1984-09")
    utc_time: dt.time | None
    series: int | None          # order within the day in the data set, when given
    missile: Missile
    facility: Facility
    apogee_km: float | None
    distance_km: float | None
    bearing_deg: float | None
    outcome: str                # success, failure or unknown
    landing: str
    description: str
    position: int               # index in the data set (stable id across loads)

    @property
    def id(self) -> str:
        return f"{self.date.isoformat()}#{self.position}"

    @property
    def launched_at(self) -> dt.datetime | None:
        """Lift-off instant (UTC), when the time is known."""
        if self.utc_time is None:
            return None
        return datetime.combine(self.date, self.utc_time, tzinfo=UTC)

    @property
    def local_date(self) -> dt.date:
        """The date in Korea and Japan (UTC+9); the recorded date when the time is unknown."""
        at = self.launched_at
        return (at + KST).date() if at is not None else self.date

    def when(self) -> str:
        """The launch's date and time as Korea and Japan name it, the UTC instant beside it:
        a morning launch there was the evening before in UTC, and the data set records UTC
        dates (``2017-08-29 05:58 Korea/Japan time (2017-08-28 20:58 UTC)``)."""
        at = self.launched_at
        if at is None:
            return f"{self.date.isoformat()} (UTC date; time unknown)"
        return (f"{(at + KST):%Y-%m-%d %H:%M} Korea/Japan time "
                f"({at:%Y-%m-%d %H:%M} UTC)")

    @property
    def missile_class(self) -> str:
        """The missile's class, inferred from the flight when the data set says ``Unknown``."""
        if self.missile.type.upper() != "UNKNOWN":
            return self.missile.type.upper()
        if self.apogee_km is not None and self.distance_km is not None:
            return infer_class(self.apogee_km, self.distance_km)[0]
        return "SRBM"

    @property
    def maneuver(self) -> str | None:
        if self.missile.type.upper() != "UNKNOWN":
            return self.missile.maneuver
        if self.apogee_km is not None and self.distance_km is not None:
            return infer_class(self.apogee_km, self.distance_km)[1]
        return None

    @property
    def fittable(self) -> bool:
        return (self.apogee_km is not None and self.distance_km is not None
                and self.bearing_deg is not None and self.apogee_km > 0.5
                and self.distance_km > 0.5)

    def flight_request(self) -> FlightRequest:
        """What :func:`trajectory.fit` needs; MalformedInput if apogee or distance is unknown."""
        if not self.fittable:
            raise MalformedInput(
                f"launch {self.id} has apogee {self.apogee_km} and distance {self.distance_km}",
                where="launch", expected="a launch with a recorded apogee, distance and bearing")
        assert self.apogee_km is not None and self.distance_km is not None
        assert self.bearing_deg is not None
        return FlightRequest(self.facility.lat_deg, self.facility.lon_deg, self.bearing_deg,
                             self.apogee_km, self.distance_km, self.missile_class, self.maneuver)

    def to_json(self) -> dict[str, Any]:
        at = self.launched_at
        return {
            "id": self.id,
            "date": self.date.isoformat()[:7 if self.date_precision == "month" else 10],
            "local_date": self.local_date.isoformat(),
            "time_utc": self.utc_time.strftime("%H:%M") if self.utc_time else None,
            "launched_at": utc_text(at) if at else None,
            "missile": self.missile.id, "missile_name": self.missile.name,
            "missile_class": self.missile_class, "maneuver": self.maneuver,
            "facility": self.facility.id, "facility_name": self.facility.name,
            "lat": self.facility.lat_deg, "lon": self.facility.lon_deg,
            "apogee_km": self.apogee_km, "distance_km": self.distance_km,
            "bearing_deg": self.bearing_deg, "outcome": self.outcome, "landing": self.landing,
        }


def number(value: Any, *, where: str) -> float | None:
    """A data-set number: int, float or numeric string; None for ``unknown``/``na``."""
    if isinstance(value, bool):
        raise MalformedInput(f"{value!r} is not a number", where=where,
                             expected="a number, a numeric string, 'unknown' or 'na'")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        if value.strip().lower() in _UNKNOWN:
            return None
        try:
            return float(value)
        except ValueError:
            pass
    raise MalformedInput(f"{value!r} is not a number", where=where,
                         expected="a number, a numeric string, 'unknown' or 'na'")


def utc_time(value: Any, *, where: str) -> time | None:
    """``"21:13 (UTC)"`` → 21:13; ``"unknown"`` → None."""
    if isinstance(value, str) and value.strip().lower() in _UNKNOWN:
        return None
    m = _TIME.match(value) if isinstance(value, str) else None
    if m is None or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise MalformedInput(f"{value!r} is not a launch time", where=where,
                             expected="'HH:MM (UTC)' or 'unknown'")
    return time(int(m.group(1)), int(m.group(2)))


def facilities(doc: Mapping[str, Any]) -> dict[str, Facility]:
    """``facility.en.json`` → facilities by id."""
    table = doc.get("facilities") if isinstance(doc, Mapping) else None
    if not isinstance(table, Mapping):
        raise MalformedInput("no 'facilities' table", where="facility.en.json",
                             expected='{"facilities": {id: {name, lat, lon}}}')
    out: dict[str, Facility] = {}
    for fid, f in table.items():
        where = f"facility.en.json:{fid}"
        if not isinstance(f, Mapping):
            raise MalformedInput("not an object", where=where, expected="{name, lat, lon}")
        lat, lon = number(f.get("lat"), where=where + ".lat"), number(f.get("lon"), where=where)
        if lat is None or lon is None or not -90 <= lat <= 90 or not -180 <= lon <= 180:
            raise MalformedInput(f"bad coordinates {f.get('lat')!r}, {f.get('lon')!r}",
                                 where=where, expected="latitude and longitude in degrees")
        out[str(fid)] = Facility(str(fid), str(f.get("name", fid)), lat, lon)
    return out


def missiles(doc: Mapping[str, Any]) -> dict[str, Missile]:
    """``missile.en.json`` → missiles by id."""
    if not isinstance(doc, Mapping):
        raise MalformedInput("not an object", where="missile.en.json",
                             expected="{id: {name, type, maneuver?}}")
    out: dict[str, Missile] = {}
    for mid, m in doc.items():
        if not isinstance(m, Mapping) or not isinstance(m.get("type"), str):
            raise MalformedInput("missile without a type", where=f"missile.en.json:{mid}",
                                 expected="{name, type, maneuver?}")
        maneuver = m.get("maneuver")
        out[str(mid)] = Missile(str(mid), str(m.get("name", mid)), m["type"],
                                str(maneuver) if maneuver else None)
    return out


def launches(tests: Mapping[str, Any], facility_doc: Mapping[str, Any],
             missile_doc: Mapping[str, Any]) -> tuple[Launch, ...]:
    """Decode the three documents into launches, in data-set order."""
    fac = facilities(facility_doc)
    mis = missiles(missile_doc)
    bins = tests.get("timeBins") if isinstance(tests, Mapping) else None
    if not isinstance(bins, list):
        raise MalformedInput("no 'timeBins' list", where="test.en.json",
                             expected='{"timeBins": [{"year": Y, "data": [...]}]}')
    out: list[Launch] = []
    for b in bins:
        for rec in (b.get("data", []) if isinstance(b, Mapping) else []):
            where = f"test.en.json[{len(out)}]"
            if not isinstance(rec, Mapping):
                raise MalformedInput("not an object", where=where, expected="a test record")
            text = str(rec.get("date"))
            precision = "month" if re.fullmatch(r"\d{4}-\d{2}", text) else "day"
            try:
                day = date.fromisoformat(text + "-01" if precision == "month" else text)
            except ValueError:
                raise MalformedInput(f"{rec.get('date')!r} is not a date", where=where + ".date",
                                     expected="YYYY-MM-DD") from None
            if rec.get("facility") not in fac:
                raise MalformedInput(f"unknown facility {rec.get('facility')!r}",
                                     where=where + ".facility",
                                     expected="an id of facility.en.json")
            if rec.get("missile") not in mis:
                raise MalformedInput(f"unknown missile {rec.get('missile')!r}",
                                     where=where + ".missile", expected="an id of missile.en.json")
            series = rec.get("series")
            out.append(Launch(
                date=day, date_precision=precision,
                utc_time=utc_time(rec.get("time", "unknown"), where=where + ".time"),
                series=int(series) if isinstance(series, int) else None,
                missile=mis[rec["missile"]], facility=fac[rec["facility"]],
                apogee_km=number(rec.get("apogee", "unknown"), where=where + ".apogee"),
                distance_km=number(rec.get("distance", "unknown"), where=where + ".distance"),
                bearing_deg=number(rec.get("bearing", "unknown"), where=where + ".bearing"),
                outcome=str(rec.get("outcome", "unknown")),
                landing=str(rec.get("landing", "unknown")),
                description=str(rec.get("description", "")), position=len(out)))
    return tuple(out)


def _order(launch: Launch) -> tuple[datetime, int]:
    at = launch.launched_at or datetime.combine(launch.date, time(0, 0), tzinfo=UTC)
    return at, launch.position


def on_date(all_launches: Iterable[Launch], day: date) -> list[Launch]:
    """Launches whose UTC date or Korean/Japanese date is ``day``, in time order."""
    return sorted((x for x in all_launches
                   if x.date_precision == "day" and day in (x.date, x.local_date)), key=_order)


def find(all_launches: Sequence[Launch], day: date | str, index: int | None = None) -> Launch:
    """The launch of ``day`` (UTC or local date); ``index`` (0-based, in time order) picks one of
    several, the first when left out."""
    if isinstance(day, str):
        try:
            day = date.fromisoformat(day.strip())
        except ValueError:
            raise MalformedInput(f"{day!r} is not a date", where="launch",
                                 expected="YYYY-MM-DD") from None
    found = on_date(all_launches, day)
    if not found:
        raise MalformedInput(f"no launch on {day.isoformat()}", where="launch",
                             expected="a date of the data set (UTC or Korean date)")
    index = 0 if index is None else index
    if not 0 <= index < len(found):
        raise MalformedInput(f"index {index} out of range", where="index",
                             expected=f"0 to {len(found) - 1} for {day.isoformat()}")
    return found[index]
