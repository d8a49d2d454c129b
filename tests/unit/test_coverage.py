"""Sensor footprints for the map: every rim point at the sensor's range, inside its sector."""

from __future__ import annotations

import math
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from gsomia.core.tracking import coverage as C
from gsomia.core.tracking.earth import great_circle_m
from gsomia.core.tracking.sensors import Sector, Sensor
from gsomia.shell import feeds

CATALOGUE = feeds.load_sensors()


def by_id(sid: str) -> Sensor:
    return next(s for s in CATALOGUE if s.id == sid)


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    return float(great_circle_m(*(math.radians(v) for v in (*a, *b)))) / 1e3


def bearing_deg(a: tuple[float, float], b: tuple[float, float]) -> float:
    la1, lo1, la2, lo2 = (math.radians(v) for v in (*a, *b))
    y = math.sin(lo2 - lo1) * math.cos(la2)
    x = math.cos(la1) * math.sin(la2) - math.sin(la1) * math.cos(la2) * math.cos(lo2 - lo1)
    return math.degrees(math.atan2(y, x)) % 360.0


def test_an_all_round_radar_is_a_closed_ring_at_its_range() -> None:
    s = by_id("jpn-fps5-sado")
    ring = C.outline(s)
    assert len(ring) > 36 and ring[0] == ring[-1]
    site = (s.lat_deg, s.lon_deg)
    for p in ring:
        assert abs(distance_km(site, p) - s.max_range_km) < 1.0


def test_a_sector_radar_is_a_wedge_from_its_site() -> None:
    s = by_id("usa-tpy2-shariki")      # faces 265° ± 60°
    wedge = C.outline(s)
    site = (round(s.lat_deg, 4), round(s.lon_deg, 4))
    assert wedge[0] == wedge[-1] == site
    rim = wedge[1:-1]
    assert abs(bearing_deg(site, rim[0]) - 205.0) < 0.5
    assert abs(bearing_deg(site, rim[-1]) - 325.0) < 0.5


def test_a_satellite_has_no_ground_outline() -> None:
    area = C.coverage_area(by_id("usa-sbirs-geo"))
    assert area.whole_map and area.outline == ()
    assert area.to_json()["whole_map"] is True


def test_every_catalogue_sensor_has_an_area_with_owner_and_kind() -> None:
    areas = C.coverage_areas(CATALOGUE)
    assert [a.sensor_id for a in areas] == [s.id for s in CATALOGUE]
    for a in areas:
        doc = a.to_json()
        assert doc["owner"] in {"JPN", "KOR", "USA"} and doc["kind"] in {"radar", "infrared"}
        assert doc["whole_map"] == (doc["platform"] == "satellite")


@given(lat=st.floats(-60, 60), lon=st.floats(-179, 179), range_km=st.floats(50, 3000),
       boresight=st.floats(0, 360), half=st.floats(5, 175))
def test_rim_points_are_at_range_and_inside_the_sector(lat: float, lon: float,
                                                        range_km: float, boresight: float,
                                                        half: float) -> None:
    s = replace(by_id("usa-tpy2-shariki"), lat_deg=lat, lon_deg=lon, max_range_km=range_km,
                sector=Sector(boresight, half))
    wedge = C.outline(s)
    site = wedge[0]
    assert wedge[-1] == site
    for p in wedge[1:-1]:
        # Rounding to 1e-4 degrees moves a point by up to ~15 m.
        assert abs(distance_km(site, p) - range_km) < 0.05
        off = (bearing_deg(site, p) - boresight + 180.0) % 360.0 - 180.0
        assert abs(off) <= half + 0.1
