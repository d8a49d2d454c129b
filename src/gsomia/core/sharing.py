"""Sharing regimes: which agreements are in play, and how long an item takes to arrive.

A regime never decides by itself what may pass: it names the agreements that exist in it and
the date at which they are in force, and every item goes through ``policy.decide`` with its
label. Under ``hub`` the USA relays between JPN and KOR, which the policy allows only with
the originator's consent (the third-party rule), so the relay carries that consent; under
``trilateral`` items are pinned to the 2023 mechanism by their label's policy and only its
three kinds of information pass.

Delays are model parameters, not measurements: ``link_s`` is one government-to-government
hop by an automated system; ``relay_s`` is what a hub adds to receive, re-mark and pass on
(TISA's relay is by people; the 2023 link through INDOPACOM is automated).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from gsomia.core.agreements import Catalogue
from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import Consent, Decision, ReleaseRequest, decide
from gsomia.core.types import Party

__all__ = ["REGIMES", "Regime", "Route", "regime", "restricted", "route"]


@dataclass(frozen=True, slots=True)
class Regime:
    name: str
    agreements: frozenset[str]
    as_of: datetime
    link_s: float = 2.0
    relay: Party | None = None
    relay_s: float = 0.0
    label_policy: str | None = None
    description: str = ""


REGIMES: Mapping[str, Regime] = {
    "none": Regime("none", frozenset(), datetime(2017, 6, 1, tzinfo=UTC),
                   description="each party alone"),
    "hub": Regime("hub", frozenset({"tisa-2014", "usa-jpn-gsomia-2007", "usa-kor-gsomia-1987"}),
                  datetime(2015, 6, 1, tzinfo=UTC), link_s=2.0, relay="USA", relay_s=60.0,
                  description="TISA: JPN and KOR through the US hub, with consent"),
    "direct": Regime("direct", frozenset({"jpn-kor-gsomia-2016", "usa-jpn-gsomia-2007",
                                          "usa-kor-gsomia-1987"}),
                     datetime(2017, 6, 1, tzinfo=UTC), link_s=2.0,
                     description="2016 GSOMIA: JPN and KOR directly"),
    "trilateral": Regime("trilateral", frozenset({"trilateral-mwd-2023"}),
                         datetime(2024, 6, 1, tzinfo=UTC), link_s=3.0,
                         label_policy="trilateral-mwd-2023",
                         description="2023 mechanism: launch point, path and impact only"),
}


def regime(name: str, *, where: str = "regime") -> Regime:
    from gsomia.core.errors import MalformedInput

    found = REGIMES.get(name)
    if found is None:
        raise MalformedInput(f"unknown regime {name!r}", where=where,
                             expected="one of " + ", ".join(REGIMES))
    return found


def restricted(catalogue: Catalogue, reg: Regime) -> Catalogue:
    """The catalogue as it stands in the regime: only the regime's agreements exist."""
    return Catalogue.of([a for a in catalogue.agreements.values() if a.id in reg.agreements],
                        catalogue.schemes)


@dataclass(frozen=True, slots=True)
class Route:
    """How an item reaches one recipient: the decisions taken and the delay."""

    recipient: Party
    delay_s: float
    via: Party | None
    decisions: tuple[Decision, ...]


def route(item_id: str, label: SecurityLabel, recipient: Party, reg: Regime,
          catalogue: Catalogue) -> Route | None:
    """Route an originator's item to ``recipient`` in the regime, or None if nothing may pass.

    ``catalogue`` must already be :func:`restricted` to the regime. The originator sends
    directly when the policy permits; otherwise, in a hub regime, the hub relays with the
    originator's consent, and both hops are decided by the policy.
    """
    if reg.label_policy is not None:
        label = replace(label, policy=reg.label_policy)
    sender = label.originator
    if recipient == sender:
        return None
    direct = decide(ReleaseRequest(item_id, label, sender, recipient, reg.as_of), catalogue)
    if direct.permit:
        return Route(recipient, reg.link_s, None, (direct,))
    hub = reg.relay
    if hub is None or hub in (sender, recipient):
        return None
    first = decide(ReleaseRequest(item_id, label, sender, hub, reg.as_of), catalogue)
    if not first.permit or first.recipient_level is None:
        return None
    # The hub re-marks in its own scheme (Art. 4) and relays with the originator's consent.
    held = label.remarked(hub, first.recipient_level)
    consent = Consent(item_id, sender, recipient)
    second = decide(ReleaseRequest(item_id, held, hub, recipient, reg.as_of, (consent,)),
                    catalogue)
    if not second.permit:
        return None
    return Route(recipient, 2 * reg.link_s + reg.relay_s, hub, (first, second))
