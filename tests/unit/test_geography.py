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
    # (Minamitorishima, 1.5 km², 30 km from the centre)
    reef = G.regions_in_ellipse(ATLAS, 24.5, 154.2, 80e3, 60e3, 30, G.LAND_KINDS)
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


# Inhabited islands at a town or village on them (interior points, not harbours), and the
# prefecture or province they belong to.
ISLAND_TOWNS = [
    ("Ishigaki", 24.36, 124.16, "Okinawa"), ("Miyakojima", 24.78, 125.32, "Okinawa"),
    ("Yonaguni", 24.455, 122.99, "Okinawa"), ("Iriomote", 24.33, 123.81, "Okinawa"),
    ("Minamidaito", 25.845, 131.245, "Okinawa"), ("Kitadaito", 25.945, 131.30, "Okinawa"),
    ("Kumejima", 26.34, 126.78, "Okinawa"), ("Amami Oshima", 28.33, 129.45, "Kagoshima"),
    ("Tokunoshima", 27.78, 128.97, "Kagoshima"), ("Yakushima", 30.35, 130.52, "Kagoshima"),
    ("Hachijojima", 33.10, 139.80, "Tokyo"), ("Miyakejima", 34.08, 139.53, "Tokyo"),
    ("Izu Oshima", 34.74, 139.40, "Tokyo"), ("Chichijima", 27.08, 142.21, "Tokyo"),
    ("Hahajima", 26.66, 142.16, "Tokyo"), ("Minamitorishima", 24.287, 153.98, "Tokyo"),
    ("Tsushima", 34.40, 129.30, "Nagasaki"), ("Iki", 33.78, 129.72, "Nagasaki"),
    ("Oki (Dogo)", 36.21, 133.31, "Shimane"), ("Fukue (Goto)", 32.70, 128.78, "Nagasaki"),
    ("Nakadori (Goto)", 32.98, 129.08, "Nagasaki"), ("Rishiri", 45.18, 141.24, "Hokkaido"),
    ("Rebun", 45.37, 141.03, "Hokkaido"), ("Okushiri", 42.15, 139.47, "Hokkaido"),
    ("Sado", 38.02, 138.37, "Niigata"), ("Awaji", 34.40, 134.85, "Hyogo"),
    ("Shodoshima", 34.50, 134.28, "Kagawa"), ("Jeju", 33.50, 126.53, "Jeju"),
    ("Seogwipo", 33.26, 126.56, "Jeju"), ("Ulleungdo", 37.50, 130.87, "Gyeongbuk"),
    ("Ganghwa", 37.70, 126.45, "Incheon"), ("Geoje", 34.88, 128.62, "Gyeongnam"),
    ("Jindo", 34.48, 126.26, "Jeonnam"), ("Heuksando", 34.68, 125.43, "Jeonnam"),
]


@pytest.mark.parametrize(("island", "lat", "lon", "name"), ISLAND_TOWNS,
                         ids=[x[0] for x in ISLAND_TOWNS])
def test_inhabited_islands_are_in_their_prefecture_or_province(island: str, lat: float,
                                                               lon: float, name: str) -> None:
    assert names_at(lat, lon) == {name}, island
    party = "KOR" if name in {r.name for r in ATLAS.of("KOR")} else "JPN"
    assert G.zone_of(ATLAS, party, lat, lon) == "territory"


# The sea between the islands above is not land (and is the party's EEZ).
SEA_BETWEEN = [
    ("Ishigaki–Miyako", 24.60, 124.70, "JPN"), ("Okinawa–Miyako (Miyako Strait)", 25.50,
                                                 126.50, "JPN"),
    ("Iriomote–Yonaguni", 24.40, 123.40, "JPN"), ("Okinawa–Daito", 26.00, 129.50, "JPN"),
    ("Amami–Tokunoshima", 27.98, 129.20, "JPN"), ("Miyakejima–Hachijojima", 33.60, 139.65,
                                                  "JPN"),
    ("Chichijima–Hahajima", 26.85, 142.18, "JPN"), ("Tsushima–Iki", 34.00, 129.60, "JPN"),
    ("Kyushu–Goto", 32.90, 129.45, "JPN"), ("Oki–Shimane", 35.80, 133.10, "JPN"),
    ("Rishiri–Rebun", 45.25, 141.14, "JPN"), ("Hokkaido–Rishiri", 45.15, 141.50, "JPN"),
    ("Jeju Strait", 33.90, 126.60, "KOR"), ("Ulleungdo–Korea", 37.40, 130.00, "KOR"),
]


# Within 12 nautical miles of a coast the sea is territorial sea, hence territory; the
# Tsushima channels are straits where Japan claims 3 nautical miles only.
WITHIN_12_NM = {"Ishigaki–Miyako", "Amami–Tokunoshima", "Chichijima–Hahajima", "Kyushu–Goto",
                "Oki–Shimane", "Rishiri–Rebun", "Hokkaido–Rishiri", "Jeju Strait"}


@pytest.mark.parametrize(("between", "lat", "lon", "party"), SEA_BETWEEN,
                         ids=[x[0] for x in SEA_BETWEEN])
def test_the_sea_between_islands_is_not_land(between: str, lat: float, lon: float,
                                             party: str) -> None:
    assert names_at(lat, lon) == set(), between
    assert G.zone_of(ATLAS, party, lat, lon) == (
        "territory" if between in WITHIN_12_NM else "eez")


def test_the_atlas_loads_quickly() -> None:
    import json
    import time
    from importlib.resources import files

    docs = [json.loads(files("gsomia").joinpath("data", "geography", f).read_text("utf-8"))
            for f in G.FILES]
    started = time.process_time()
    for _ in range(3):
        G.atlas(docs)
    # decoding is per process; CPU time, so a busy machine does not fail it
    assert (time.process_time() - started) / 3 < 0.5


def brute_force_contains(region: G.Region, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """The even-odd rule over every edge of every ring, no index (the reference)."""
    odd = np.zeros(lat.shape, dtype=bool)
    px, py = lon[:, None], lat[:, None]
    for ring in region.rings:
        xa, ya = ring[:, 0], ring[:, 1]
        xb, yb = np.roll(xa, -1), np.roll(ya, -1)
        with np.errstate(divide="ignore", invalid="ignore"):
            cross = xa + (py - ya) * (xb - xa) / (yb - ya)
        odd ^= (np.count_nonzero(((ya > py) != (yb > py)) & (px < cross), axis=1) % 2
                ).astype(bool)
    return odd


@pytest.mark.parametrize("region_id", ["JPN-EEZ", "KOR-EEZ", "JP-42", "JP-47", "KR-46", "JP-13"])
def test_the_indexed_point_in_polygon_agrees_with_the_plain_rule(region_id: str) -> None:
    region = ATLAS.by_id(region_id)
    rng = np.random.default_rng(7)
    x0, y0, x1, y1 = region.bbox
    lon = rng.uniform(x0 - 0.5, x1 + 0.5, 4000)
    lat = rng.uniform(y0 - 0.5, y1 + 0.5, 4000)
    # and points on the vertices' latitudes, where the rule's ties are
    v = region.vertices[rng.integers(0, len(region.vertices), 1000)]
    lon = np.concatenate([lon, v[:, 0] + rng.uniform(-0.01, 0.01, 1000)])
    lat = np.concatenate([lat, v[:, 1]])
    got = region.contains(lat, lon)
    assert got.tolist() == brute_force_contains(region, lat, lon).tolist()
    assert 0 < got.sum() < got.size


@given(st.floats(20.0, 50.0), st.floats(115.0, 160.0), st.sampled_from(["JPN", "KOR", "USA"]))
def test_nearest_land_is_the_nearest_coast_vertex(lat: float, lon: float, party: str) -> None:
    """The dot-product search over the atlas's cached unit vectors names the region and the
    distance that great-circle distances to every vertex give."""
    from gsomia.core.tracking.earth import great_circle_m
    from gsomia.core.warning import WarningCentre

    centre = WarningCentre(party, ATLAS)
    regions = [r for r in ATLAS.regions if r.land and r.party in centre.concern]
    verts = np.concatenate([r.vertices for r in regions])
    owner = np.concatenate([[r.name] * r.vertices.shape[0] for r in regions])
    d = great_circle_m(np.radians(lat), np.radians(lon), np.radians(verts[:, 1]),
                       np.radians(verts[:, 0])) / 1e3
    name, km = centre.nearest_land(lat, lon)
    assert km == pytest.approx(float(d.min()), abs=1e-6)
    assert name in set(owner[d <= d.min() + 1e-6])
