"""Who may read what and do what at this node: the one place every way in asks.

Art. 7 (:func:`gsomia.core.policy.decide_access`: a clearance at or above the item's level
*and* a need-to-know) and the desk's roles (:func:`gsomia.core.roles.decide_action`) are
asked here by the dashboard, the desk, the TAXII service and the handlers alike, so that no
way into the node grows its own idea of who may see an item; ``tests/unit/test_layers.py``
keeps the core's decisions out of the shell.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from gsomia.core import roles
from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import (
    Decision,
    Person,
    decide_access,
    decide_derived,
    levels_covered,
)
from gsomia.core.types import PARTIES, SECRET_LEVELS, Party

if TYPE_CHECKING:
    from gsomia.core.custody import Holding
    from gsomia.core.labels import Scheme
    from gsomia.core.tracking.sensors import Sensor

__all__ = ["acting", "deriving", "may_act", "may_read", "may_replay", "may_see_log",
           "readable_items", "reading", "reading_keys", "replay_label", "sensors_shown"]

_H = TypeVar("_H", bound="Holding")


def reading(person: Person, label: SecurityLabel,
            schemes: Mapping[Party, Scheme]) -> Decision:
    """Whether ``person`` may read an item so labelled, with the reasons either way."""
    return decide_access(person, label, schemes)


def may_read(person: Person | None, label: SecurityLabel,
             schemes: Mapping[Party, Scheme]) -> bool:
    """Whether ``person`` (None: nobody authenticated) may read an item so labelled."""
    return person is not None and decide_access(person, label, schemes).permit


def reading_keys(person: Person, schemes: Mapping[Party, Scheme]
                 ) -> tuple[Party, frozenset[str], dict[Party, list[str]]]:
    """What a label must hold for ``person`` to read it, clearance and need-to-know and
    nationality alike, as a store seeks labels: (a party its audience must name
    (:func:`gsomia.core.policy.audience`), the purposes one of which it must have, each
    scheme's levels it may be at). Derived from the person alone, so that what is sought
    says nothing of what the node holds; the store's answer is a candidate list the policy
    still decides on."""
    return person.party, person.need_to_know, levels_covered(person, schemes)


def deriving(source: SecurityLabel, derived: SecurityLabel,
             schemes: Mapping[Party, Scheme]) -> Decision:
    """Whether what is made from an item marked ``source`` may go out marked ``derived``
    (the warning centre's outputs), with the reasons either way."""
    return decide_derived(source, derived, schemes)


def may_see_log(person: Person | None, party: Party, schemes: Mapping[Party, Scheme],
                purposes: Iterable[str]) -> bool:
    """Whether ``person`` may see this node's audit log as a whole (its size, its signed
    heads, the partners' heads): each event is something the node held or did, so the log's
    growth counts items, and says when they came, whatever their label. Only someone who
    may read whatever a node of ``party`` may hold may see it: a national of the party,
    cleared at its scheme's highest rank, with need-to-know for every purpose the node
    knows. A property of the person alone: were it of what the node holds now, its change
    would itself say that something came that they may not read (review28)."""
    if person is None or person.party != party or person.clearance is None:
        return False
    own = schemes.get(party)
    if own is None or not own.has(person.clearance):
        return False
    top = max(level.rank for level in own.levels)
    return own.level(person.clearance).rank == top and set(purposes) <= person.need_to_know


def acting(role: str, action: str) -> roles.Permission:
    """Whether a user holding ``role`` may take the desk's ``action``, with the reason."""
    return roles.decide_action(role, action)


def may_act(role: str, action: str) -> bool:
    return roles.decide_action(role, action).permit


def readable_items(person: Person, holdings: Iterable[_H],
                   schemes: Mapping[Party, Scheme]) -> dict[str, tuple[_H, SecurityLabel]]:
    """Each item ``person`` may read → (a holding, its label as held here).

    An item counts as readable only if every version held is: versions share their label
    (only a classification notice changes it, for all at once), so this denies nothing a
    reader may see, and a stray version marked higher never shows the item."""
    out: dict[str, tuple[_H, SecurityLabel]] = {}
    denied: set[str] = set()
    for h in holdings:
        label = h.current.national_label
        if decide_access(person, label, schemes).permit:
            out.setdefault(h.item.item_id, (h, label))
        else:
            denied.add(h.item.item_id)
    return {k: v for k, v in out.items() if k not in denied}


def sensors_shown(party: Party, person: Person, schemes: Mapping[Party, Scheme],
                  sensors: Sequence[Sensor]) -> tuple[list[Sensor], int]:
    """The sensors this node knows of that ``person`` may see, and how many more are withheld.

    A sensor's type, site and performance are classified under its own label, which stays
    with its owner unless the owner releases it: the node knows its own sensors, and a
    partner's sensor only when that label names this party in REL TO; one the node does not
    know is not counted at all."""
    shown: list[Sensor] = []
    withheld = 0
    for s in sensors:
        if s.owner != party and party not in s.label.rel_to:
            continue
        if decide_access(person, s.label, schemes).permit:
            shown.append(s)
        else:
            withheld += 1
    return shown, withheld


def replay_label(party: Party) -> SecurityLabel:
    """The label a launch replay at ``party``'s node publishes under (the dashboard's notes)."""
    return SecurityLabel(party, SECRET_LEVELS.get(party, "SECRET"),
                         frozenset(PARTIES), "dprk-missile")


def may_replay(person: Person | None, party: Party, schemes: Mapping[Party, Scheme]) -> bool:
    """Only a user who may read what the replay publishes may start one."""
    return may_read(person, replay_label(party), schemes)
