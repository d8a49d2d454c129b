"""Sharing regimes route items only through the release policy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gsomia.core.agreements import Catalogue
from gsomia.core.errors import MalformedInput
from gsomia.core.labels import SecurityLabel
from gsomia.core.sharing import REGIMES, regime, restricted, route
from gsomia.core.types import PARTIES

KINDS = ["sensor-report", "pre-launch-indicator", "sensor-location", "launch-point",
         "flight-path", "impact-prediction"]


def label(originator: str, category: str) -> SecurityLabel:
    level = {"KOR": "군사II급비밀", "JPN": "極秘", "USA": "SECRET"}[originator]
    return SecurityLabel(originator, level, frozenset(PARTIES), "dprk-missile",
                         category=category)


def test_none_shares_nothing(shipped: Catalogue) -> None:
    reg = regime("none")
    cat = restricted(shipped, reg)
    assert all(route("i", label(o, k), r, reg, cat) is None
               for o in PARTIES for r in PARTIES for k in KINDS)


def test_direct_is_one_hop_and_hub_relays_through_usa(shipped: Catalogue) -> None:
    direct, hub = regime("direct"), regime("hub")
    d = route("i", label("KOR", "sensor-report"), "JPN", direct, restricted(shipped, direct))
    h = route("i", label("KOR", "sensor-report"), "JPN", hub, restricted(shipped, hub))
    assert d is not None and d.via is None and d.decisions[0].agreement == "jpn-kor-gsomia-2016"
    assert h is not None and h.via == "USA" and h.delay_s > d.delay_s
    assert [x.agreement for x in h.decisions] == ["usa-kor-gsomia-1987", "usa-jpn-gsomia-2007"]
    assert h.decisions[1].recipient_level == "極秘"


@given(st.sampled_from(PARTIES), st.sampled_from(PARTIES), st.sampled_from(KINDS))
def test_trilateral_carries_only_its_three_kinds(shipped: Catalogue, origin: str, to: str,
                                                 kind: str) -> None:
    reg = REGIMES["trilateral"]
    got = route("i", label(origin, kind), to, reg, restricted(shipped, reg))
    if kind in ("launch-point", "flight-path", "impact-prediction") and origin != to:
        assert got is not None and got.decisions[0].agreement == "trilateral-mwd-2023"
    else:
        assert got is None


@given(st.sampled_from(sorted(REGIMES)), st.sampled_from(PARTIES), st.sampled_from(PARTIES),
       st.sampled_from(KINDS), st.frozensets(st.sampled_from(PARTIES), min_size=1))
def test_a_route_exists_only_if_every_hop_was_permitted(shipped: Catalogue, name: str,
                                                        origin: str, to: str, kind: str,
                                                        rel_to: frozenset[str]) -> None:
    reg = REGIMES[name]
    lab = SecurityLabel(origin, label(origin, kind).level, rel_to | {origin}, "dprk-missile",
                        category=kind)
    got = route("i", lab, to, reg, restricted(shipped, reg))
    if got is not None:
        assert to in lab.rel_to
        assert all(d.permit and d.agreement in reg.agreements for d in got.decisions)


def test_unknown_regime() -> None:
    with pytest.raises(MalformedInput, match="one of none, hub, direct, trilateral"):
        regime("bilateral")
