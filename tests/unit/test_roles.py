"""Roles at the operator desk (gsomia.core.roles): no action succeeds for a role below the
one it needs, unknown roles and actions are denied, and an admin appoints only within their
own clearance, need-to-know and role."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gsomia.core import roles
from gsomia.core.agreements import Catalogue
from gsomia.core.errors import MalformedInput
from gsomia.core.policy import Person
from gsomia.shell.catalogue import load_catalogue

CATALOGUE: Catalogue = load_catalogue()
KOR_LEVELS = [lv.name for lv in CATALOGUE.schemes["KOR"].levels]
PURPOSES = sorted(CATALOGUE.vocabulary.purposes)
ROLE_NAMES = [r.value for r in roles.ROLES]
any_role = st.one_of(st.sampled_from(ROLE_NAMES), st.text(max_size=12))
any_action = st.one_of(st.sampled_from([a.value for a in roles.Action]), st.text(max_size=20))


@given(role=any_role, action=any_action)
def test_no_action_succeeds_for_a_role_below_the_one_it_needs(role: str, action: str) -> None:
    decision = roles.decide_action(role, action)
    needed = roles.ACTIONS.get(action)
    if needed is None or role not in ROLE_NAMES:
        assert not decision.permit  # unknown means deny
    else:
        assert decision.permit == (ROLE_NAMES.index(role) >= ROLE_NAMES.index(needed))


def test_the_roles_by_action() -> None:
    assert [a for a in roles.Action if roles.decide_action("reader", a).permit] == []
    operator = {a.value for a in roles.Action if roles.decide_action("operator", a).permit}
    assert operator == {"consent-inbox", "consent-decide", "incident-list", "incident-report",
                        "reclassify", "publish", "preview-release"}
    assert all(roles.decide_action("admin", a).permit for a in roles.Action)
    with pytest.raises(MalformedInput, match="not a role"):
        roles.parse_role("root")


@given(own_level=st.sampled_from(KOR_LEVELS), new_level=st.sampled_from(KOR_LEVELS),
       own_ntk=st.frozensets(st.sampled_from(PURPOSES), min_size=1),
       new_ntk=st.frozensets(st.sampled_from(PURPOSES), min_size=1),
       own_role=st.sampled_from(ROLE_NAMES), new_role=any_role)
def test_an_admin_appoints_only_within_their_own_reach(
        own_level: str, new_level: str, own_ntk: frozenset[str], new_ntk: frozenset[str],
        own_role: str, new_role: str) -> None:
    scheme = CATALOGUE.schemes["KOR"]
    admin = Person("kim", "KOR", own_level, own_ntk)
    problem = roles.appointment_problem(admin, own_role, clearance=new_level,
                                        need_to_know=new_ntk, role=new_role,
                                        schemes=CATALOGUE.schemes)
    within = (scheme.level(new_level).rank <= scheme.level(own_level).rank
              and new_ntk <= own_ntk and new_role in ROLE_NAMES
              and ROLE_NAMES.index(new_role) <= ROLE_NAMES.index(own_role))
    assert (problem is None) == within
