"""The release and access policy: deny by default, every decision with its reasons.

``decide`` answers "may SENDER release this labelled item to RECIPIENT at AT?". It permits
only when every rule holds under one agreement that opens the channel; otherwise it denies and
says why, agreement by agreement. Nothing here trusts what it is not shown: a consent claim is
checked for the exact item, originator and recipient, a standing consent for the originator,
recipient, the item's category and purpose and the instant (signatures are checked by the
exchange).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from gsomia.core.agreements import Agreement, Catalogue
from gsomia.core.errors import MalformedInput
from gsomia.core.labels import LabelVocabulary, Scheme, SecurityLabel
from gsomia.core.types import Party, instant, iso

__all__ = [
    "Consent", "Decision", "Person", "ReleaseRequest", "StandingConsent", "audience",
    "decide", "decide_access", "decide_all", "decide_classification_change",
    "decide_derived", "decide_new_version", "label_class", "levels_covered",
    "narrowed_derived",
]


@dataclass(frozen=True, slots=True)
class Consent:
    """The originator's prior written consent to release one item to one recipient."""

    item_id: str
    originator: Party
    recipient: Party

    @classmethod
    def from_json(cls, data: Any, known: LabelVocabulary, *,
                  where: str = "consent") -> Consent:
        if not isinstance(data, Mapping):
            raise MalformedInput("consent is not a JSON object", where=where)
        for key in ("item_id", "originator", "recipient"):
            if not isinstance(data.get(key), str):
                raise MalformedInput("missing or not a string", where=f"{where}.{key}")
        return cls(data["item_id"], known.party(data["originator"], where=f"{where}.originator"),
                   known.party(data["recipient"], where=f"{where}.recipient"))

    def to_json(self) -> dict[str, str]:
        return {"item_id": self.item_id, "originator": self.originator,
                "recipient": self.recipient}


@dataclass(frozen=True, slots=True)
class StandingConsent:
    """The originator's standing consent to the relay of its items of some categories,
    marked for one purpose, to one recipient, for a validity period [not_before, not_after).

    ``revoked``: the holder knows of the originator's revocation. Any revocation known ends
    the consent at once, whatever instant it names: clocks differ between nodes, and a
    relay after the originator said stop is the error that cannot be taken back."""

    id: str
    originator: Party
    recipient: Party
    categories: frozenset[str]
    purpose: str
    not_before: datetime
    not_after: datetime
    revoked: bool = False

    def covers(self, label: SecurityLabel, recipient: Party, at: datetime) -> bool:
        """Does this consent let a holder pass an item marked ``label`` to ``recipient`` at
        ``at``? An uncategorised item is covered by no standing consent."""
        return (not self.revoked and self.originator == label.originator
                and self.recipient == recipient and label.category is not None
                and label.category in self.categories and self.purpose == label.purpose
                and self.not_before <= at < self.not_after)

    @classmethod
    def from_json(cls, data: Any, known: LabelVocabulary, *,
                  where: str = "standing consent") -> StandingConsent:
        if not isinstance(data, Mapping):
            raise MalformedInput("standing consent is not a JSON object", where=where)
        for key in ("id", "originator", "recipient", "purpose", "not_before", "not_after"):
            if not isinstance(data.get(key), str):
                raise MalformedInput("missing or not a string", where=f"{where}.{key}")
        categories = data.get("categories")
        if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
            raise MalformedInput("must be a list of label categories",
                                 where=f"{where}.categories")
        return cls(data["id"], known.party(data["originator"], where=f"{where}.originator"),
                   known.party(data["recipient"], where=f"{where}.recipient"),
                   frozenset(categories), data["purpose"],
                   instant(data["not_before"], where=f"{where}.not_before"),
                   instant(data["not_after"], where=f"{where}.not_after"),
                   bool(data.get("revoked", False)))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "originator": self.originator, "recipient": self.recipient,
                "categories": sorted(self.categories), "purpose": self.purpose,
                "not_before": iso(self.not_before), "not_after": iso(self.not_after),
                "revoked": self.revoked}


@dataclass(frozen=True, slots=True)
class ReleaseRequest:
    item_id: str
    label: SecurityLabel
    sender: Party
    recipient: Party
    at: datetime
    consents: tuple[Consent, ...] = ()
    standing: tuple[StandingConsent, ...] = ()

    @classmethod
    def from_json(cls, data: Any, catalogue: Catalogue) -> ReleaseRequest:
        """Parse the release-request JSON of DESIGN.md; problems name the field.

        A party, purpose or other label value the catalogue does not know is MalformedInput,
        not a request: a denial would read as an answer about a real party or purpose."""
        if not isinstance(data, Mapping):
            raise MalformedInput("release request is not a JSON object", where="request")
        for key in ("item_id", "label", "sender", "recipient", "at"):
            if key not in data:
                raise MalformedInput("missing", where=key,
                                     expected="item_id, label, sender, recipient and at")
        if not isinstance(data["item_id"], str) or not data["item_id"]:
            raise MalformedInput("must be a non-empty string", where="item_id")
        consents = data.get("consents", [])
        if not isinstance(consents, list):
            raise MalformedInput("must be a list", where="consents")
        standing = data.get("standing_consents", [])
        if not isinstance(standing, list):
            raise MalformedInput("must be a list", where="standing_consents")
        known = catalogue.vocabulary
        return cls(
            item_id=data["item_id"],
            label=SecurityLabel.from_json(data["label"], known),
            sender=known.party(data["sender"], where="sender"),
            recipient=known.party(data["recipient"], where="recipient"),
            at=instant(data["at"], where="at"),
            consents=tuple(Consent.from_json(c, known, where=f"consents[{i}]")
                           for i, c in enumerate(consents)),
            standing=tuple(StandingConsent.from_json(c, known,
                                                     where=f"standing_consents[{i}]")
                           for i, c in enumerate(standing)),
        )

    def to_json(self) -> dict[str, Any]:
        out = {"item_id": self.item_id, "label": self.label.to_json(), "sender": self.sender,
               "recipient": self.recipient, "at": iso(self.at),
               "consents": [c.to_json() for c in self.consents]}
        if self.standing:
            out["standing_consents"] = [c.to_json() for c in self.standing]
        return out


@dataclass(frozen=True, slots=True)
class Decision:
    permit: bool
    reasons: tuple[str, ...]
    agreement: str | None = None
    recipient_level: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"permit": self.permit, "agreement": self.agreement,
                "recipient_level": self.recipient_level, "reasons": list(self.reasons)}


def decide(request: ReleaseRequest, catalogue: Catalogue) -> Decision:
    """Decide one release. Deny unless one agreement in force permits it on every rule."""
    label = request.label
    sender, recipient = request.sender, request.recipient
    common: list[str] = []
    if sender == recipient:
        return Decision(False, (f"sender and recipient are both {sender}: nothing to release",))
    if recipient not in label.rel_to:
        common.append(f"{recipient} is not in REL TO {', '.join(sorted(label.rel_to))}")
    if label.caveats:
        for caveat in sorted(label.caveats):
            if caveat == "NOFORN":
                if recipient != label.originator:
                    common.append(f"caveat NOFORN forbids release to {recipient}")
            else:
                common.append(f"unknown caveat {caveat!r}: not releasable until understood")
    if sender != label.originator and not _has_consent(request):
        common.append(
            f"{sender} is not the originator ({label.originator}) and holds no consent from "
            f"{label.originator} to release {request.item_id} to {recipient}, nor a standing "
            f"consent in force covering its category and purpose (third-party rule)")
    scheme = catalogue.schemes.get(label.scheme)
    if scheme is None or not scheme.has(label.level):
        common.append(f"{label.level!r} is not a level of the {label.scheme} scheme")
    channels = catalogue.channels(sender, recipient)
    if label.policy is not None:
        channels = tuple(a for a in channels if a.id == label.policy)
        if not channels:
            common.append(f"the label's policy {label.policy} opens no channel "
                          f"from {sender} to {recipient}")
    elif not channels:
        common.append(f"no agreement opens a channel from {sender} to {recipient}")
    if common:
        return Decision(False, tuple(common))
    denials: list[str] = []
    for agreement in channels:
        failed = _agreement_denials(agreement, request)
        if not failed:
            level = agreement.equivalent(label.scheme, label.level, recipient)
            return Decision(True, _permit_reasons(agreement, request, level), agreement.id, level)
        denials.extend(f"{agreement.id}: {why}" for why in failed)
    return Decision(False, tuple(denials))


def _has_consent(request: ReleaseRequest) -> bool:
    return _item_consent(request) or _standing_consent(request) is not None


def _item_consent(request: ReleaseRequest) -> bool:
    origin = request.label.originator
    return any(c.item_id == request.item_id and c.originator == origin
               and c.recipient == request.recipient for c in request.consents)


def _standing_consent(request: ReleaseRequest) -> StandingConsent | None:
    return next((c for c in request.standing
                 if c.covers(request.label, request.recipient, request.at)), None)


def _agreement_denials(agreement: Agreement, request: ReleaseRequest) -> list[str]:
    label = request.label
    out: list[str] = []
    if not agreement.in_force_at(request.at):
        out.append(f"not in force at {iso(request.at)}")
    if not agreement.covers_level(label.scheme, label.level, request.recipient):
        out.append(f"{label.scheme} level {label.level} is not covered "
                   f"(highest covered: {agreement.highest_level})")
    if label.purpose not in agreement.purposes:
        out.append(f"purpose {label.purpose!r} is outside its scope "
                   f"({', '.join(sorted(agreement.purposes))})")
    kinds = agreement.information_kinds
    if kinds is not None and label.category not in kinds:
        out.append(f"it carries only {', '.join(sorted(kinds))}; "
                   f"this item is {label.category or 'uncategorised'}")
    return out


def _permit_reasons(agreement: Agreement, request: ReleaseRequest, level: str) -> tuple[str, ...]:
    label = request.label
    english = agreement.english(label.scheme, label.level)
    standing = None if _item_consent(request) else _standing_consent(request)
    return (
        f"{agreement.id} is in force at {iso(request.at)} and carries {request.sender} → "
        f"{request.recipient}",
        f"{request.recipient} is in REL TO",
        f"{label.scheme} {label.level} is {english}, "
        f"{request.recipient} equivalent {level} (Art. 4)",
        f"purpose {label.purpose} is within the agreement's scope",
        "sender is the originator" if request.sender == label.originator
        else f"standing consent {standing.id} of originator {label.originator} covers "
             f"{label.category} for {label.purpose} → {request.recipient} at {iso(request.at)}"
        if standing is not None
        else f"consent of originator {label.originator} for {request.item_id} → "
             f"{request.recipient} is held",
    )


# ---- Art. 7: personal access -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Person:
    """A node user: cleared in their own national scheme, with need-to-know purposes."""

    name: str
    party: Party
    clearance: str | None
    need_to_know: frozenset[str] = field(default_factory=frozenset)


def decide_access(person: Person, label: SecurityLabel,
                  schemes: Mapping[Party, Scheme]) -> Decision:
    """Access needs both a clearance at or above the item's level and a need-to-know.

    Rank or clearance alone never suffices; an unknown clearance or level denies.
    """
    reasons: list[str] = []
    own = schemes.get(person.party)
    item_scheme = schemes.get(label.scheme)
    if person.party != label.originator and person.party not in label.rel_to:
        reasons.append(f"{person.party} is neither the originator nor in REL TO")
    if own is None or item_scheme is None or not item_scheme.has(label.level):
        reasons.append(f"no scheme to compare a {person.party} clearance with "
                       f"{label.scheme} {label.level}")
    elif person.clearance is None or not own.has(person.clearance):
        reasons.append(f"{person.name} holds no {person.party} clearance")
    elif own.level(person.clearance).rank < item_scheme.level(label.level).rank:
        reasons.append(f"clearance {person.clearance} is below {label.level}")
    if label.purpose not in person.need_to_know:
        reasons.append(f"{person.name} has no need-to-know for {label.purpose}")
    if "NOFORN" in label.caveats and person.party != label.originator:
        reasons.append("caveat NOFORN")
    if reasons:
        return Decision(False, tuple(reasons))
    return Decision(True, (f"clearance {person.clearance} covers {label.level}",
                           f"need-to-know for {label.purpose}"))


def audience(label: SecurityLabel) -> frozenset[Party]:
    """The parties whose nationals :func:`decide_access` may let read an item so labelled,
    clearance and need-to-know aside: its originator, and REL TO unless NOFORN. A person of
    a party outside it is denied whatever they hold."""
    if "NOFORN" in label.caveats:
        return frozenset({label.originator})
    return frozenset({label.originator}) | label.rel_to


def levels_covered(person: Person, schemes: Mapping[Party, Scheme]) -> dict[Party, list[str]]:
    """Each scheme's levels the person's clearance is at or above (as :func:`decide_access`
    ranks them); empty when the clearance or its scheme is unknown, which denies all."""
    own = schemes.get(person.party)
    if own is None or person.clearance is None or not own.has(person.clearance):
        return {}
    rank = own.level(person.clearance).rank
    covered = {code: [lv.name for lv in scheme.levels if lv.rank <= rank]
               for code, scheme in schemes.items()}
    return {code: names for code, names in covered.items() if names}


def decide_classification_change(actor: Party, label: SecurityLabel, new_level: str,
                                 schemes: Mapping[Party, Scheme]) -> Decision:
    """Only the originator may downgrade, upgrade or declassify, in its own scheme."""
    if actor != label.originator:
        return Decision(False, (f"{actor} is not the originator ({label.originator}); only the "
                                "originator changes a classification, holders re-mark",))
    scheme = schemes.get(label.originator)
    if scheme is None or not scheme.has(new_level):
        return Decision(False, (f"{new_level!r} is not a {label.originator} level",))
    return Decision(True, (f"originator {actor} changes {label.level} to {new_level}",))


def label_class(label: SecurityLabel) -> dict[str, Any]:
    """What a label says about who may read an item: every member but ``created``, which each
    publication sets anew."""
    out = label.to_json()
    out.pop("created", None)
    return out


_NEW_ITEM = Decision(True, ("a new item",))  # immutable: one for every new id of a batch


def decide_new_version(label: SecurityLabel, held: Sequence[SecurityLabel],
                       schemes: Mapping[Party, Scheme], *,
                       publisher: Person | None = None) -> Decision:
    """May a version marked ``label`` join an item whose held versions are now marked
    ``held`` (the national label of each version's latest custody record)?

    Labels are compared as this node marks them: ``label`` is what the new version would be
    marked here. An id not held yet takes any label. Otherwise the new version must keep the
    originator and the label of every version held (only the originator's classification
    change re-marks an item, and it re-marks every version at once), and a ``publisher``
    must be allowed to read every version held: someone who may not read an item may not
    replace what its readers see.
    """
    if not held:
        return _NEW_ITEM
    reasons: list[str] = []
    if publisher is not None:
        for current in held:
            access = decide_access(publisher, current, schemes)
            if not access.permit:
                reasons.extend(f"the item's current version: {r}" for r in access.reasons)
                break
    originators = {h.originator for h in held}
    if originators != {label.originator}:
        reasons.append(f"the item originated at {', '.join(sorted(originators))}; only its "
                       "originator publishes new versions")
    elif any(label_class(h) != label_class(label) for h in held):
        reasons.append("a new version keeps the item's label; only the originator changes a "
                       "classification, through the classification-change procedure")
    if reasons:
        return Decision(False, tuple(reasons))
    return Decision(True, ("a new version under the item's label",))


def decide_derived(source: SecurityLabel, derived: SecurityLabel,
                   schemes: Mapping[Party, Scheme]) -> Decision:
    """May what is made from an item marked ``source`` go out marked ``derived`` (the warning
    centre's tracks, impact predictions and warnings, fused from the reports it holds)?

    Only if ``derived`` lets no one read it, and sends it nowhere, that ``source`` would not:
    a level no lower (across schemes, by rank), its originator and every party of its REL TO
    one the source is released to (or the source's originator), the same purpose, no caveat
    of the source (another originator's caveat binds to it alone), and no agreement the
    source is not marked under. Its kind may differ (a report becomes a
    track): that is what deriving is. An unknown scheme or level denies."""
    reasons: list[str] = []
    src_scheme, out_scheme = schemes.get(source.scheme), schemes.get(derived.scheme)
    if src_scheme is None or out_scheme is None or not src_scheme.has(source.level) \
            or not out_scheme.has(derived.level):
        reasons.append(f"no scheme to compare {source.scheme} {source.level} with "
                       f"{derived.scheme} {derived.level}")
    elif out_scheme.level(derived.level).rank < src_scheme.level(source.level).rank:
        reasons.append(f"{derived.level} is below the source's {source.level}")
    wider = sorted((derived.rel_to | {derived.originator}) - source.rel_to
                   - {source.originator})
    if wider:
        reasons.append(f"REL TO {', '.join(wider)}, to whom {source.originator} did not "
                       "release the source")
    if derived.purpose != source.purpose:
        reasons.append(f"purpose {derived.purpose}, the source's is {source.purpose}")
    if source.caveats and derived.originator != source.originator:
        # NOFORN and ORCON name the source's originator: under another's they would mean
        # another nation's readers and another's control.
        reasons.append(f"the source's caveat {', '.join(sorted(source.caveats))} binds "
                       f"to {source.originator}")
    elif dropped := sorted(source.caveats - derived.caveats):
        reasons.append(f"the source's caveat {', '.join(dropped)} dropped")
    if source.policy is not None and derived.policy != source.policy:
        reasons.append(f"the source is marked under {source.policy} only")
    if reasons:
        return Decision(False, tuple(reasons))
    return Decision(True, ("no wider than its source",))


def narrowed_derived(source: SecurityLabel, derived: SecurityLabel,
                     schemes: Mapping[Party, Scheme]) -> SecurityLabel | None:
    """The widest label no wider than ``derived`` that :func:`decide_derived` permits from
    ``source``: what is made from an item must follow its source when the originator later
    narrows it (a classification notice raised its level), so the derived label takes the
    lowest level of its own scheme ranked no lower than the source's, keeps only the REL TO
    the source allows, and the source's caveats. None where no label of the derived
    originator would do (another purpose, another agreement's marking, a caveat binding to
    the source's originator, an originator the source was not released to, no level that
    high in the derived scheme): what was made may then go to no one new."""
    src_scheme, out_scheme = schemes.get(source.scheme), schemes.get(derived.scheme)
    if src_scheme is None or out_scheme is None or not src_scheme.has(source.level) \
            or not out_scheme.has(derived.level):
        return None
    floor = src_scheme.level(source.level).rank
    level = derived.level
    if out_scheme.level(level).rank < floor:
        # The scheme lists its levels highest first: the last one high enough is the lowest.
        high = [lv.name for lv in out_scheme.levels if lv.rank >= floor]
        if not high:
            return None
        level = high[-1]
    allowed = source.rel_to | {source.originator}
    narrowed = replace(derived, level=level, rel_to=derived.rel_to & allowed,
                       caveats=derived.caveats | source.caveats)
    return narrowed if decide_derived(source, narrowed, schemes).permit else None


def decide_all(requests: Iterable[ReleaseRequest], catalogue: Catalogue) -> list[Decision]:
    return [decide(r, catalogue) for r in requests]
