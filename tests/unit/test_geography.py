"""Coarse geography: which prefecture, province or EEZ a point, an ellipse, a path touches."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gsomia.core.errors import MalformedInput
from gsomia.core.tracking import geography as G
from gsomia.core.tracking.trajectory import fit
from gsomia.shell import feeds

ATLAS = feeds.load_geography()


def names_at(lat: float, lon: float) -> set[str]:
    return {r.name for r in G.regions_at(ATLAS, lat, lon, G.LAND_KINDS)}


def test_the_regions_the_issue_names_are_there() -> None:
    names = {r.name for r in ATLAS.regions}
    assert {"Hokkaido", "Aomori", "Akita", "Iwate", "Yamagata", "Niigata", "Ishikawa", "Fukui",
            "Toyama", "Shimane", "Tottori", "Yamaguchi", "Fukuoka", "Nagasaki", "Okinawa",
            "Tokyo", "Miyagi"} <= names
    assert {"Gangwon", "Gyeongbuk", "Gyeonggi", "Seoul", "Busan", "Jeju"} <= names
    assert len(ATLAS.of("JPN", ["prefecture"])) == 47
    assert len(ATLAS.of("KOR", ["province"])) == 17
    assert {r.id for r in ATLAS.of("JPN", ["eez"]) + ATLAS.of("KOR", ["eez"])} == {
        "JPN-EEZ", "KOR-EEZ"}


@pytest.mark.parametrize(("lat", "lon", "name"), [
    (43.06, 141.35, "Hokkaido"), (40.82, 140.74, "Aomori"), (39.72, 140.10, "Akita"),
    (39.70, 141.15, "Iwate"), (38.24, 140.36, "Yamagata"), (38.27, 140.87, "Miyagi"),
    (37.90, 139.04, "Niigata"), (38.05, 138.40, "Niigata"),      # Niigata city, Sado
    (36.56, 136.65, "Ishikawa"), (36.70, 137.21, "Toyama"), (36.06, 136.22, "Fukui"),
    (35.50, 134.24, "Tottori"), (35.47, 133.05, "Shimane"), (36.20, 133.30, "Shimane"),
    (34.19, 131.47, "Yamaguchi"), (33.59, 130.40, "Fukuoka"), (32.75, 129.87, "Nagasaki"),
    (34.40, 129.30, "Nagasaki"),                                  # Tsushima
    (26.21, 127.68, "Okinawa"), (35.68, 139.76, "Tokyo"), (33.11, 139.79, "Tokyo"),
    (37.57, 126.98, "Seoul"), (35.18, 129.07, "Busan"), (33.50, 126.53, "Jeju"),
    (37.75, 128.90, "Gangwon"), (36.02, 129.34, "Gyeongbuk"), (37.50, 130.87, "Gyeongbuk"),
    (37.26, 127.03, "Gyeonggi"), (36.64, 127.49, "Chungbuk"), (34.81, 126.39, "Jeonnam"),
])
def test_cities_and_islands_fall_in_their_region(lat: float, lon: float, name: str) -> None:
    assert names_at(lat, lon) == {name}


@pytest.mark.parametrize(("lat", "lon"), [
    (39.03, 125.75), (43.12, 131.89), (39.90, 116.40), (31.23, 121.47), (40.0, 135.0),
])
def test_foreign_land_and_open_sea_are_nobodys_region(lat: float, lon: float) -> None:
    assert names_at(lat, lon) == set()


@pytest.mark.parametrize(("lat", "lon", "jpn", "kor"), [
    (35.68, 139.76, "territory", None),
    (39.50, 135.00, "eez", None),        # Yamato Bank
    (38.50, 137.50, "eez", None),        # off Sado
    (42.20, 137.70, "eez", None),        # 2017-07-28 Hwasong-14, west of Okushiri
    (37.50, 130.00, None, "eez"),        # East Sea off Donghae
    (33.00, 125.00, None, "eez"),        # south of Jeju
    (42.00, 157.60, None, None),         # 2017-08-29 impact, far out in the Pacific
    (40.50, 131.00, None, None),         # off North Korea
])
def test_zones(lat: float, lon: float, jpn: str | None, kor: str | None) -> None:
    assert G.zone_of(ATLAS, "JPN", lat, lon) == jpn
    assert G.zone_of(ATLAS, "KOR", lat, lon) == kor


def test_vectorised_membership() -> None:
    lat = np.array([[35.68, 39.5], [37.57, 42.0]])
    lon = np.array([[139.76, 135.0], [126.98, 157.6]])
    assert G.in_territory(ATLAS, "JPN", lat, lon).tolist() == [[True, False], [False, False]]
    assert G.in_eez(ATLAS, "JPN", lat, lon).tolist() == [[True, True], [False, False]]
    assert G.in_territory(ATLAS, "KOR", lat, lon).tolist() == [[False, False], [True, False]]


def test_impact_ellipses() -> None:
    around_tokyo = {r.name for r in G.regions_in_ellipse(ATLAS, 35.68, 139.76, 60e3, 30e3, 0,
                                                          G.LAND_KINDS)}
    assert {"Tokyo", "Kanagawa", "Saitama"} <= around_tokyo
    # a small island inside a large ellipse still counts (its vertices fall inside)
    reef = G.regions_in_ellipse(ATLAS, 20.5, 136.1, 80e3, 60e3, 30, G.LAND_KINDS)
    assert [r.name for r in reef] == ["Tokyo"]
    at_sea = G.regions_in_ellipse(ATLAS, 40.5, 133.0, 30e3, 10e3, 70)
    assert at_sea == []
    off_akita = {r.id for r in G.regions_in_ellipse(ATLAS, 39.8, 138.7, 120e3, 40e3, 60)}
    assert "JPN-EEZ" in off_akita and "JP-05" in off_akita


def test_an_elongated_ellipse_follows_its_orientation() -> None:
    east_west = G.regions_in_ellipse(ATLAS, 38.2, 136.6, 160e3, 5e3, 90, G.LAND_KINDS)
    north_south = G.regions_in_ellipse(ATLAS, 38.2, 136.6, 160e3, 5e3, 0, G.LAND_KINDS)
    assert [r.name for r in east_west] == ["Niigata"]     # reaches Sado
    assert north_south == []


def test_overflights() -> None:
    hw12 = fit(feeds.find_launch("2017-08-29").flight_request())
    lat, lon = hw12.ground_track(300)
    assert [r.name for r in G.regions_overflown(ATLAS, lat, lon)] == ["Hokkaido"]
    irbm = fit(feeds.find_launch("2022-10-04").flight_request())
    lat, lon = irbm.ground_track(300)
    over = G.regions_overflown(ATLAS, lat, lon)
    assert over and {r.party for r in over} == {"JPN"}
    assert {r.name for r in over} & {"Aomori", "Hokkaido"}
    kn23 = fit(feeds.find_launch("2019-07-25").flight_request())
    lat, lon = kn23.ground_track(100)
    assert G.regions_overflown(ATLAS, lat, lon) == []
    lat_d, _ = G.densify_track(np.array([35.0, 36.0]), np.array([139.0, 139.0]), 5.0)
    assert len(lat_d) >= 23 and lat_d[0] == 35.0 and lat_d[-1] == 36.0


@given(x0=st.floats(-170, 160), y0=st.floats(-80, 70), w=st.floats(0.5, 10),
       h=st.floats(0.5, 10), px=st.floats(-180, 180), py=st.floats(-90, 90))
def test_box_membership_matches_the_bounds(x0: float, y0: float, w: float, h: float,
                                           px: float, py: float) -> None:
    ring = [[x0, y0], [x0 + w, y0], [x0 + w, y0 + h], [x0, y0 + h], [x0, y0]]
    atl = G.atlas([{"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"id": "B", "name": "box", "party": "JPN",
                                          "kind": "prefecture"},
        "geometry": {"type": "Polygon", "coordinates": [ring]}}]}])
    inside = x0 < px < x0 + w and y0 < py < y0 + h
    edge = min(abs(px - x0), abs(px - x0 - w), abs(py - y0), abs(py - y0 - h)) < 1e-9
    if not edge:
        assert bool(atl.regions[0].contains(py, px)) == inside


def test_holes_are_excluded() -> None:
    outer = [[0, 0], [10, 0], [10, 10], [0, 10]]
    hole = [[4, 4], [6, 4], [6, 6], [4, 6]]
    atl = G.atlas([{"features": [{"type": "Feature", "properties": {
        "id": "R", "name": "ring", "party": "KOR", "kind": "province"},
        "geometry": {"type": "Polygon", "coordinates": [outer, hole]}}]}])
    r = atl.by_id("R")
    assert r.contains(2, 2) and not r.contains(5, 5)


@pytest.mark.parametrize("doc", [
    {"features": "none"},
    {"features": [{"type": "Feature", "properties": {"id": "X"}, "geometry": {}}]},
    {"features": [{"type": "Feature", "properties": {
        "id": "X", "name": "x", "party": "JPN", "kind": "eez"},
        "geometry": {"type": "Point", "coordinates": [0, 0]}}]},
    {"features": [{"type": "Feature", "properties": {
        "id": "X", "name": "x", "party": "JPN", "kind": "eez"},
        "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}}]},
])
def test_bad_geography_is_refused(doc: dict[str, object]) -> None:
    with pytest.raises(MalformedInput):
        G.atlas([doc])
    with pytest.raises(MalformedInput):
        ATLAS.by_id("JP-99")
