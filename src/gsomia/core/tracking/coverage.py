"""Where a sensor can look, as an outline on the map: shared by the report and the dashboard.

The outline is the sensor's nominal reach on the ground: its maximum range taken as a
great-circle distance from the site (the mean sphere of :mod:`earth`), all round for a
rotating or ship radar, a wedge from the site for a fixed-face radar with an azimuth sector.
It is a footprint for the eye, not a visibility test: the horizon and the minimum elevation
make the real coverage of a low target smaller (:func:`sensors.visible` decides that).

A satellite has no ground footprint worth drawing: from geostationary orbit it sees the
whole region, so its outline is empty and ``whole_map`` says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gsomia.core.tracking.earth import destination
from gsomia.core.tracking.sensors import Sector, Sensor

__all__ = ["CoverageArea", "coverage_area", "coverage_areas", "outline"]

# Fine enough that an 1,500 km ring looks round at dashboard scale, small enough to send.
STEP_DEG = 5.0


def _arc(sensor: Sensor, start_deg: float, end_deg: float, step_deg: float
         ) -> list[tuple[float, float]]:
    lat, lon = math.radians(sensor.lat_deg), math.radians(sensor.lon_deg)
    n = max(2, math.ceil((end_deg - start_deg) / step_deg) + 1)
    out = []
    for i in range(n):
        bearing = start_deg + (end_deg - start_deg) * i / (n - 1)
        la, lo = destination(lat, lon, math.radians(bearing), sensor.max_range_km * 1e3)
        out.append((round(math.degrees(la), 4), round(math.degrees(lo), 4)))
    return out


def outline(sensor: Sensor, step_deg: float = STEP_DEG) -> tuple[tuple[float, float], ...]:
    """The footprint as a closed ring of (lat, lon) degrees; empty for a satellite.

    A sector radar's wedge starts and ends at the site; an all-round radar's ring repeats
    its first point last.
    """
    if sensor.platform == "satellite":
        return ()
    sector: Sector | None = sensor.sector
    if sector is None or sector.half_width_deg >= 180.0:
        ring = _arc(sensor, 0.0, 360.0, step_deg)
        ring[-1] = ring[0]
        return tuple(ring)
    site = (round(sensor.lat_deg, 4), round(sensor.lon_deg, 4))
    arc = _arc(sensor, sector.boresight_deg - sector.half_width_deg,
               sector.boresight_deg + sector.half_width_deg, step_deg)
    return (site, *arc, site)


@dataclass(frozen=True, slots=True)
class CoverageArea:
    """A sensor as a map draws it: who owns it, what it is, and its footprint."""

    sensor_id: str
    name: str
    owner: str
    kind: str
    platform: str
    lat_deg: float
    lon_deg: float
    max_range_km: float
    sector: Sector | None
    outline: tuple[tuple[float, float], ...]

    @property
    def whole_map(self) -> bool:
        return not self.outline

    def to_json(self) -> dict[str, Any]:
        return {"id": self.sensor_id, "name": self.name, "owner": self.owner,
                "kind": self.kind, "platform": self.platform, "lat": self.lat_deg,
                "lon": self.lon_deg, "max_range_km": self.max_range_km,
                "sector": None if self.sector is None else {
                    "boresight_deg": self.sector.boresight_deg,
                    "half_width_deg": self.sector.half_width_deg},
                "whole_map": self.whole_map,
                "outline": [list(p) for p in self.outline]}


def coverage_area(sensor: Sensor, step_deg: float = STEP_DEG) -> CoverageArea:
    return CoverageArea(sensor.id, sensor.name, sensor.owner, sensor.kind, sensor.platform,
                        sensor.lat_deg, sensor.lon_deg, sensor.max_range_km, sensor.sector,
                        outline(sensor, step_deg))


def coverage_areas(sensors: Sequence[Sensor], step_deg: float = STEP_DEG
                   ) -> list[CoverageArea]:
    return [coverage_area(s, step_deg) for s in sensors]
