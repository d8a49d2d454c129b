"""Who may act at a node through the dashboard's operator desk: roles and what each permits.

A node user reads (Art. 7) whatever their role. Acting in the party's name is more: an
``operator`` answers consent requests, files incident reports, reclassifies what the party
originated and publishes; an ``admin`` also adds and revokes users. Roles are ranked, and an
action needs its role or a higher one. Unknown means deny: an unknown role ranks below every
role, an unknown action needs a role nobody holds.

The command line on the node's host (which holds the node folder and its keys) is not a
user and stays all-powerful; these roles govern people signed in to the dashboard.

An admin appoints only within their own reach (:func:`appointment_problem`): a user they add
is cleared no higher than they are, needs to know nothing they do not, and holds no role above
theirs, so the desk cannot mint an account that reads more than the admin who made it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from gsomia.core.errors import MalformedInput
from gsomia.core.labels import Scheme
from gsomia.core.policy import Person
from gsomia.core.types import Party

__all__ = ["ACTIONS", "ROLES", "Action", "Permission", "Role", "appointment_problem",
           "decide_action", "parse_role", "rank"]


class Role(StrEnum):
    READER = "reader"
    OPERATOR = "operator"
    ADMIN = "admin"


ROLES: tuple[Role, ...] = (Role.READER, Role.OPERATOR, Role.ADMIN)  # lowest first
_RANK = {r.value: i for i, r in enumerate(ROLES)}


class Action(StrEnum):
    """What a person may do at the desk (reading the dashboard needs no role)."""

    CONSENT_INBOX = "consent-inbox"
    CONSENT_DECIDE = "consent-decide"
    INCIDENT_LIST = "incident-list"
    INCIDENT_REPORT = "incident-report"
    RECLASSIFY = "reclassify"
    PUBLISH = "publish"
    PREVIEW_RELEASE = "preview-release"
    USER_LIST = "user-list"
    USER_ADD = "user-add"
    USER_REVOKE = "user-revoke"


ACTIONS: Mapping[str, Role] = {
    Action.CONSENT_INBOX: Role.OPERATOR, Action.CONSENT_DECIDE: Role.OPERATOR,
    Action.INCIDENT_LIST: Role.OPERATOR, Action.INCIDENT_REPORT: Role.OPERATOR,
    Action.RECLASSIFY: Role.OPERATOR, Action.PUBLISH: Role.OPERATOR,
    Action.PREVIEW_RELEASE: Role.OPERATOR,
    Action.USER_LIST: Role.ADMIN, Action.USER_ADD: Role.ADMIN, Action.USER_REVOKE: Role.ADMIN,
}
"""The role each action needs at least."""


def rank(role: str) -> int:
    """A role's rank (reader 0 … admin 2); -1 for anything else, below every role."""
    return _RANK.get(role, -1)


def parse_role(value: str, *, where: str = "role") -> Role:
    """The role named ``value``, or MalformedInput listing the roles."""
    if value not in _RANK:
        raise MalformedInput(f"{value!r} is not a role", where=where,
                             expected="one of " + ", ".join(ROLES))
    return Role(value)


@dataclass(frozen=True, slots=True)
class Permission:
    permit: bool
    reason: str


def decide_action(role: str, action: str) -> Permission:
    """May a person holding ``role`` take ``action``? Deny unless the role ranks high enough."""
    needed = ACTIONS.get(action)
    if needed is None:
        return Permission(False, f"{action!r} is not an action of the desk")
    if rank(role) < 0:
        return Permission(False, f"{role!r} is not a role: no action is permitted")
    if rank(role) < rank(needed):
        return Permission(False, f"{action} needs the {needed} role; you hold {role}")
    return Permission(True, f"{role} may {action}")


def appointment_problem(appointer: Person, appointer_role: str, *, clearance: str,
                        need_to_know: Iterable[str], role: str,
                        schemes: Mapping[Party, Scheme]) -> str | None:
    """Why ``appointer`` may not add a user so cleared (None: they may).

    The new user belongs to the appointer's party; their clearance is compared in its scheme.
    """
    scheme = schemes.get(appointer.party)
    if scheme is None or appointer.clearance is None or not scheme.has(appointer.clearance):
        return f"{appointer.name} holds no {appointer.party} clearance to appoint within"
    if not scheme.has(clearance):
        return f"{clearance!r} is not a {appointer.party} classification level"
    if scheme.level(clearance).rank > scheme.level(appointer.clearance).rank:
        return (f"clearance {clearance} is above your own ({appointer.clearance}): "
                "only the node's host may appoint above it")
    beyond = sorted(set(need_to_know) - set(appointer.need_to_know))
    if beyond:
        return f"need-to-know {', '.join(beyond)} is beyond your own"
    if rank(role) < 0:
        return f"{role!r} is not a role"
    if rank(role) > rank(appointer_role):
        return f"the {role} role is above your own ({appointer_role})"
    return None
