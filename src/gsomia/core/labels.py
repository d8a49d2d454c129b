"""National classification schemes and security labels (modelled on NATO STANAG 4774).

A label says who originated an item, at which national level, to whom it may be released, for
which purpose, under which caveats. Its canonical form (a JSON object with sorted members) is
what the originator signs together with the content (STANAG 4778 binding, see ``crypto``).

A label's ``level`` is written in one national scheme, ``scheme``: the originator's own, or,
after Art. 4 re-marking, the holder's. The originator never changes on re-marking.

A label that comes from outside (a command's flags, a TAXII post, a partner's envelope, a
release request) is parsed against a :class:`LabelVocabulary`, the values the node's agreement
catalogue knows: an unknown trigraph, purpose, caveat, category, policy, scheme or level is
MalformedInput naming the field and what is expected, never a label that is stored or decided.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from gsomia.core.errors import MalformedInput
from gsomia.core.types import Party, instant, iso, party

__all__ = [
    "INFORMATION_KINDS",
    "KNOWN_CAVEATS",
    "RANK_NAMES",
    "LabelVocabulary",
    "Level",
    "PolicyScope",
    "Scheme",
    "SecurityLabel",
    "load_schemes",
    "order_rel_to",
    "rank_of",
]

RANK_NAMES = {3: "TOP SECRET", 2: "SECRET", 1: "CONFIDENTIAL"}

# Caveats the policy understands; anything else is unknown and therefore denies release.
KNOWN_CAVEATS = frozenset({"NOFORN", "ORCON"})

# The kinds of information the application produces. Agreements that carry only some kinds
# (``information_kinds``) add theirs; a misspelt kind would otherwise quietly keep an item
# from every agreement that checks it.
INFORMATION_KINDS = frozenset({
    "pre-launch-indicator", "sensor-location", "sensor-report", "launch-point", "flight-path",
    "impact-prediction", "warning",
})


@dataclass(frozen=True, slots=True)
class Level:
    """One national classification level."""

    name: str
    english: str
    rank: int


@dataclass(frozen=True, slots=True)
class Scheme:
    """A party's national classification scheme, highest level first."""

    party: Party
    authority: str
    levels: tuple[Level, ...]
    _by_name: Mapping[str, Level] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {lv.name: lv for lv in self.levels})

    def level(self, name: str, *, where: str = "level") -> Level:
        """The level called ``name``, or MalformedInput listing the levels that exist."""
        found = self._by_name.get(name)
        if found is None:
            raise MalformedInput(
                f"{name!r} is not a {self.party} classification level", where=where,
                expected="one of " + ", ".join(lv.name for lv in self.levels),
            )
        return found

    def has(self, name: str) -> bool:
        return name in self._by_name


def load_schemes(data: Mapping[str, Any], *, source: str = "schemes") -> dict[Party, Scheme]:
    """Build schemes from their data form (``data/schemes.yaml``), checking shape."""
    schemes: dict[Party, Scheme] = {}
    if not isinstance(data, Mapping):
        raise MalformedInput("not a mapping of party to scheme", where=source)
    for code, body in data.items():
        where = f"{source}: {code}"
        party(code, where=where)
        if not isinstance(body, Mapping) or not isinstance(body.get("levels"), list):
            raise MalformedInput("scheme has no list of levels", where=where,
                                 expected="{authority: ..., levels: [{name, english, rank}]}")
        levels = []
        for i, lv in enumerate(body["levels"]):
            try:
                levels.append(Level(str(lv["name"]), str(lv["english"]), int(lv["rank"])))
            except (KeyError, TypeError, ValueError):
                raise MalformedInput("level is incomplete", where=f"{where}.levels[{i}]",
                                     expected="name, english and an integer rank") from None
        schemes[code] = Scheme(code, str(body.get("authority", "")), tuple(levels))
    return schemes


@dataclass(frozen=True, slots=True)
class PolicyScope:
    """What a label marked under one agreement may say: its parties and its purposes."""

    parties: frozenset[Party]
    purposes: frozenset[str]


def _one_of(values: Iterable[str]) -> str:
    return "one of " + ", ".join(sorted(values))


@dataclass(frozen=True, slots=True)
class LabelVocabulary:
    """Every value a label may hold at a node: built from its agreement catalogue
    (``Catalogue.vocabulary``), so the core reads nothing and a user's agreements count."""

    schemes: Mapping[Party, Scheme]
    parties: frozenset[Party]
    purposes: frozenset[str]
    policies: Mapping[str, PolicyScope] = field(default_factory=dict)
    categories: frozenset[str] = INFORMATION_KINDS
    caveats: frozenset[str] = KNOWN_CAVEATS

    def party(self, code: Any, *, where: str) -> Party:
        """``code`` if it is a party this node knows, else MalformedInput."""
        if isinstance(code, str) and code in self.parties:
            return code
        party(code, where=where)  # a malformed code gets the shape's message
        raise MalformedInput(f"{code!r} is not a party this node knows", where=where,
                             expected=_one_of(self.parties))

    def purpose(self, purpose: Any, *, where: str) -> str:
        if isinstance(purpose, str) and purpose in self.purposes:
            return purpose
        raise MalformedInput(f"{purpose!r} is not a purpose of any agreement", where=where,
                             expected=_one_of(self.purposes))

    def check(self, label: SecurityLabel, *,
              where: Callable[[str], str] = lambda name: f"label.{name}") -> SecurityLabel:
        """``label`` if every field holds a known value, else MalformedInput for the first
        field that does not (``where`` names a field as its caller's user knows it)."""
        self.party(label.originator, where=where("originator"))
        if not label.rel_to:
            raise MalformedInput("REL TO is empty", where=where("rel_to"),
                                 expected="one or more of " + ", ".join(sorted(self.parties)))
        for p in sorted(label.rel_to):
            self.party(p, where=where("rel_to"))
        scheme = self.schemes.get(label.scheme)
        if scheme is None:
            raise MalformedInput(f"no classification scheme for {label.scheme!r}",
                                 where=where("scheme"), expected=_one_of(self.schemes))
        scheme.level(label.level, where=where("level"))
        self.purpose(label.purpose, where=where("purpose"))
        unknown = sorted(label.caveats - self.caveats)
        if unknown:
            raise MalformedInput(f"unknown caveat(s) {', '.join(unknown)}",
                                 where=where("caveats"), expected=_one_of(self.caveats))
        if label.category is not None and label.category not in self.categories:
            raise MalformedInput(f"{label.category!r} is not a kind of information",
                                 where=where("category"), expected=_one_of(self.categories))
        if label.policy is not None:
            scope = self.policies.get(label.policy)
            if scope is None:
                raise MalformedInput(f"no agreement {label.policy!r}", where=where("policy"),
                                     expected=_one_of(self.policies))
            if label.originator not in scope.parties:
                raise MalformedInput(
                    f"{label.originator} is not a party to {label.policy}",
                    where=where("policy"), expected="an agreement the originator is party to")
            if label.purpose not in scope.purposes:
                raise MalformedInput(f"purpose {label.purpose!r} is outside {label.policy}'s "
                                     "scope", where=where("purpose"),
                                     expected=_one_of(scope.purposes))
        return label


_EXAMPLES = {"level": "SECRET", "purpose": "dprk-missile", "policy": "jpn-kor-gsomia-2016",
             "category": "impact-prediction"}


def order_rel_to(parties: Iterable[Party]) -> tuple[Party, ...]:
    """ISM order for REL TO: USA first, then the other trigraphs alphabetically."""
    unique = sorted(set(parties))
    return tuple(["USA"] * ("USA" in unique) + [p for p in unique if p != "USA"])


@dataclass(frozen=True, slots=True)
class SecurityLabel:
    """A confidentiality label bound to one item.

    ``policy``: the agreement the item is marked under, or None for the originator's national
    policy (then any agreement in force may carry it). ``category``: what kind of information
    the item is (e.g. ``impact-prediction``); agreements limited to some kinds check it.
    """

    originator: Party
    level: str
    rel_to: frozenset[Party]
    purpose: str
    caveats: frozenset[str] = frozenset()
    scheme: Party = ""
    policy: str | None = None
    category: str | None = None
    created: datetime | None = None

    def __post_init__(self) -> None:
        if not self.scheme:
            object.__setattr__(self, "scheme", self.originator)

    # ---- canonical form -------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The canonical member set; optional members appear only when set."""
        out: dict[str, Any] = {
            "originator": self.originator,
            "level": self.level,
            "rel_to": sorted(self.rel_to),
            "purpose": self.purpose,
            "caveats": sorted(self.caveats),
        }
        if self.scheme != self.originator:
            out["scheme"] = self.scheme
        if self.policy is not None:
            out["policy"] = self.policy
        if self.category is not None:
            out["category"] = self.category
        if self.created is not None:
            out["created"] = iso(self.created)
        return out

    @classmethod
    def from_json(cls, data: Any, known: LabelVocabulary, *,
                  where: str = "label") -> SecurityLabel:
        """Parse a label that comes from outside: its shape, then every value against
        ``known``; every problem names the field and what is expected."""
        return known.check(cls.from_stored(data, where=where),
                           where=lambda name: f"{where}.{name}")

    @classmethod
    def from_stored(cls, data: Any, *, where: str = "label") -> SecurityLabel:
        """Parse a label's shape only: for what this node checked before it stored it, and
        its own data. Held items must stay readable when an agreement folder is dropped."""
        if not isinstance(data, Mapping):
            raise MalformedInput("label is not a JSON object", where=where,
                                 expected="an object with originator, level, rel_to, purpose")
        unknown = set(data) - {"originator", "level", "rel_to", "purpose", "caveats", "scheme",
                               "policy", "category", "created"}
        if unknown:
            raise MalformedInput(f"unknown label field(s) {sorted(unknown)}", where=where,
                                 expected="originator, level, rel_to, purpose, caveats, "
                                          "scheme, policy, category, created")
        for required in ("originator", "level", "rel_to", "purpose"):
            if required not in data:
                raise MalformedInput("missing", where=f"{where}.{required}",
                                     expected="originator, level, rel_to and purpose")
        originator = party(data["originator"], where=f"{where}.originator")
        rel_to = data["rel_to"]
        if not isinstance(rel_to, list) or not rel_to:
            raise MalformedInput("must be a non-empty list of party codes",
                                 where=f"{where}.rel_to", expected='e.g. ["KOR", "JPN"]')
        caveats = data.get("caveats", [])
        if not isinstance(caveats, list) or not all(isinstance(c, str) for c in caveats):
            raise MalformedInput("must be a list of strings", where=f"{where}.caveats",
                                 expected='e.g. ["NOFORN"]')
        for key in ("level", "purpose"):
            if not isinstance(data[key], str) or not data[key]:
                raise MalformedInput("must be a non-empty string", where=f"{where}.{key}",
                                     expected=f"a {key} such as {_EXAMPLES[key]}")
        for key in ("policy", "category"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise MalformedInput("must be a string", where=f"{where}.{key}",
                                     expected=f"a {key} such as {_EXAMPLES[key]}")
        return cls(
            originator=originator,
            level=data["level"],
            rel_to=frozenset(party(p, where=f"{where}.rel_to[{i}]") for i, p in enumerate(rel_to)),
            purpose=data["purpose"],
            caveats=frozenset(caveats),
            scheme=party(data["scheme"], where=f"{where}.scheme") if "scheme" in data else "",
            policy=data.get("policy"),
            category=data.get("category"),
            created=instant(data["created"], where=f"{where}.created")
            if data.get("created") is not None else None,
        )

    # ---- markings ---------------------------------------------------------------------------
    def english_marking(self, schemes: Mapping[Party, Scheme]) -> str:
        """``SECRET//REL TO USA, JPN, KOR`` (ISM style, English equivalent level)."""
        english = schemes[self.scheme].level(self.level).english
        return "//".join([english, *self._trailer()])

    def national_marking(self) -> str:
        """The level in its own scheme's language; received items show ``FGI`` + provider."""
        head = [self.level]
        if self.scheme != self.originator:
            head.append(f"FGI {self.originator}")
        return "//".join(head + self._trailer())

    def _trailer(self) -> list[str]:
        parts = sorted(c for c in self.caveats)
        parts.append("REL TO " + ", ".join(order_rel_to(self.rel_to)))
        return parts

    def remarked(self, scheme: Party, level: str) -> SecurityLabel:
        """The label as the holder re-marks it (Art. 4): its own scheme and equivalent level."""
        return replace(self, scheme=scheme, level=level)


def rank_of(label: SecurityLabel, schemes: Mapping[Party, Scheme]) -> int:
    """Cross-scheme rank of a label's level (3 TOP SECRET … 1 CONFIDENTIAL)."""
    return schemes[label.scheme].level(label.level).rank
