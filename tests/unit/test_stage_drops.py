"""Stage drops: a space launcher's spent stages and fairing fall in zones of their own, named
as notices or information, never as land alerts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.core.tracking.stages import StageDrop, stage_drops
from gsomia.core.tracking.trajectory import fit
from gsomia.core.warning import LEVEL_OF_KIND, WarningCentre
from gsomia.shell import feeds

ATLAS = feeds.load_geography()
LAND = {r.name for r in ATLAS.regions if r.land}


@pytest.fixture(scope="module")
def unha3() -> object:
    return fit(feeds.find_launch("2012-12-12").flight_request())


def test_a_space_launcher_sheds_its_first_stage_and_fairing_downrange(unha3: object) -> None:
    traj = unha3
    drops = stage_drops(traj)  # type: ignore[arg-type]
    assert [d.part for d in drops] == ["first stage", "fairing"]
    first, fairing = drops
    assert first.separated_s < fairing.separated_s < traj.burnout_s  # type: ignore[attr-defined]
    # downrange, short of the rocket's own impact, and along its bearing (south)
    rng = traj.range_m  # type: ignore[attr-defined]
    for d in drops:
        assert 100e3 < d.downrange_m < rng
        assert d.separated_s < d.impact_s
        assert abs((d.bearing_deg - traj.bearing_deg + 180.0) % 360.0 - 180.0) < 10.0  # type: ignore[attr-defined]
    assert first.lat_deg < traj.launch_lat_deg  # type: ignore[attr-defined]


def test_a_single_stage_missile_sheds_nothing() -> None:
    traj = fit(feeds.find_launch("2017-08-29").flight_request())      # Hwasong-12
    assert stage_drops(traj) == ()


def test_drop_zones_are_notices_or_information_never_land_alerts(unha3: object) -> None:
    drops = stage_drops(unha3)  # type: ignore[arg-type]
    for party in ("JPN", "KOR", "USA"):
        centre = WarningCentre(party, ATLAS)
        first = centre.drop_zones(0.0, drops)
        assert first is not None and first.action == "issued"
        named = {n for w in centre.log for n in w.regions}
        assert named == {"first stage drop zone", "fairing drop zone"}
        assert all(w.level in ("notice", "information") for w in centre.log)
        assert not named & LAND
        assert all("falls" in w.reason for w in centre.log)


@settings(max_examples=60, deadline=None)
@given(st.floats(20.0, 45.0), st.floats(120.0, 150.0), st.floats(0.0, 360.0),
       st.sampled_from(["JPN", "KOR", "USA"]))
def test_a_drop_zone_anywhere_is_never_an_alert(lat: float, lon: float, bearing: float,
                                                party: str) -> None:
    """Whatever the zone's place, the warning centre names it at most as a notice: a drop
    zone is announced over the sea, and the rocket's own corridor warns for the land."""
    centre = WarningCentre(party, ATLAS)
    centre.drop_zones(0.0, [StageDrop("first stage", 120.0, 400.0, lat, lon, 3e5, bearing)])
    assert all(w.level != "alert" for w in centre.log)
    assert all(LEVEL_OF_KIND[r.kind] == "alert" for r in ATLAS.regions
               if r.name in {n for w in centre.log for n in w.regions})
