"""Territory as the law draws it: land and territorial sea (UNCLOS arts. 2-3; 12 nautical
miles, 3 in the straits Japan and Korea leave open), and the true flight measured against it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.core import measures
from gsomia.core.tracking import geography as G
from gsomia.core.tracking.trajectory import fit
from gsomia.core.warning import WarningCentre
from gsomia.shell import feeds

ATLAS = feeds.load_geography()
NM_KM = 1.852
# The land's outline is simplified to ~200 m and the sea's to ~100 m; the nearest coast is
# measured to the nearest vertex, which on a straight coast may lie a kilometre or two along it.
SLACK_KM = 3.0


def coast_km(party: str, lat: float, lon: float) -> float:
    return WarningCentre(party, ATLAS).nearest_land(lat, lon)[1]


def test_every_coastal_region_has_its_territorial_sea_and_inland_ones_none() -> None:
    seas = {r.name: r for r in ATLAS.regions if r.kind == "territorial-sea"}
    assert {"Okinawa", "Hokkaido", "Tokyo", "Nagasaki", "Jeju", "Incheon", "Gangwon",
            "Gyeonggi", "Jeonnam"} <= set(seas)
    assert not {"Nagano", "Gunma", "Seoul", "Chungbuk", "Daejeon"} & set(seas)
    for r in seas.values():
        land = next(x for x in ATLAS.regions if x.name == r.name and x.land)
        assert r.party == land.party and r.id == f"{land.id}-TS"


@pytest.mark.parametrize(("lat", "lon", "party", "name"), [
    (26.45, 127.60, "JPN", "Okinawa"),     # ~10 km off Okinawa island's west coast
    (24.20, 124.05, "JPN", "Okinawa"),     # between Ishigaki and Iriomote
    (42.85, 144.35, "JPN", "Hokkaido"),    # 13 km off Kushiro
    (37.80, 124.85, "KOR", "Incheon"),     # off Baengnyeong
    (33.10, 126.30, "KOR", "Jeju"),
])
def test_the_sea_off_a_coast_is_territory(lat: float, lon: float, party: str,
                                         name: str) -> None:
    assert bool(G.in_territory(ATLAS, party, lat, lon))
    assert name in {r.name for r in G.regions_at(ATLAS, lat, lon, G.TERRITORY_KINDS)}
    assert not {r.name for r in G.regions_at(ATLAS, lat, lon, G.LAND_KINDS)}


@pytest.mark.parametrize(("lat", "lon"), [
    (41.45, 140.50), (41.60, 140.80),      # Tsugaru, 11 km off Hokkaido and Aomori
    (45.70, 142.00),                       # Soya
    (30.85, 130.80),                       # Osumi, 11 km off Kagoshima's islands
    (34.00, 129.90),                       # Tsushima, eastern channel
    (34.85, 129.10),                       # Korea Strait (western channel), 22 km off Busan
])
def test_the_straits_left_open_are_not_territory(lat: float, lon: float) -> None:
    """Japan (Act No. 30 of 1977) and Korea (Territorial Sea Act, Enforcement Decree) claim
    3 nmi there, so that the straits keep a high-seas corridor: 10-22 km off the coast is
    territory elsewhere, not here."""
    assert coast_km("JPN", lat, lon) < 12 * NM_KM or coast_km("KOR", lat, lon) < 12 * NM_KM
    assert not bool(G.in_territory(ATLAS, "JPN", lat, lon))
    assert not bool(G.in_territory(ATLAS, "KOR", lat, lon))


@settings(max_examples=300, deadline=None)
@given(st.floats(24.0, 45.5), st.floats(123.0, 146.0), st.sampled_from(["JPN", "KOR"]))
def test_territory_is_the_land_and_no_more_than_12_nm_of_sea(lat: float, lon: float,
                                                             party: str) -> None:
    """A security invariant both ways: no land is left out of the territory (an alert for it
    is never missed), and no sea beyond 12 nautical miles of the party's coast is in it (no
    alert for a flight that stays over the high seas or another state's waters)."""
    on_land = any(bool(r.contains(lat, lon)) for r in ATLAS.of(party, G.LAND_KINDS))
    inside = bool(G.in_territory(ATLAS, party, lat, lon))
    if on_land:
        assert inside
    if inside and not on_land:   # inland points lie far from the coast and are territory
        assert coast_km(party, lat, lon) <= 12 * NM_KM + SLACK_KM


@settings(max_examples=200, deadline=None)
@given(st.floats(24.0, 45.5), st.floats(123.0, 146.0))
def test_territory_is_one_partys(lat: float, lon: float) -> None:
    """Where two parties' seas meet they are cut at the equidistance line: no point is both
    Japan's and Korea's."""
    assert not (bool(G.in_territory(ATLAS, "JPN", lat, lon))
                and bool(G.in_territory(ATLAS, "KOR", lat, lon)))


def test_a_flight_through_the_territorial_sea_crosses_the_territory() -> None:
    """The 2016-02-07 Unha-3 flew south past Okinawa's Sakishima islands, 2-15 km from their
    coasts: over no land, but over the territorial sea, Japan's territory (Japan alerted
    Okinawa)."""
    traj = fit(feeds.find_launch("2016-02-07").flight_request())
    lats, lons = traj.ground_track(4000)
    assert not G.regions_overflown(ATLAS, lats, lons, G.LAND_KINDS, parties=["JPN"])
    tr = measures.truth(traj, ATLAS, "JPN")
    assert tr.regions == ("Okinawa",)
    assert tr.passed_s is not None and 0.0 < tr.passed_s < traj.flight_time_s
