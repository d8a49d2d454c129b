"""Agreements as data: parties, equivalence of national levels, scope, term and history.

The lifecycle is a pure function of the dated history: ``status(agreement, at)`` replays the
events up to ``at`` (day granularity, UTC dates) and adds the automatic effects of the term
(a notice of termination takes effect on the first anniversary of entry into force that is at
least ``notice_days`` after the notice, as Art. 21 of the 2016 Japan–ROK agreement says).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

import fastjsonschema

from gsomia.core.errors import MalformedInput, NoEquivalent
from gsomia.core.labels import INFORMATION_KINDS, LabelVocabulary, PolicyScope, Scheme
from gsomia.core.types import Party

__all__ = [
    "EVENT_KINDS",
    "SCHEMA",
    "Agreement",
    "Catalogue",
    "EquivalenceRow",
    "HistoryEvent",
    "State",
    "Status",
    "Topology",
    "in_force_periods",
    "parse_agreement",
    "status",
]

State = Literal["pending", "in-force", "notice-given", "terminated"]
Topology = Literal["bilateral", "hub", "mesh"]

EVENT_KINDS = (
    "signature", "entry-into-force", "renewal", "announcement", "notice-of-termination",
    "suspension-of-notice", "withdrawal-of-notice", "termination", "amendment",
)
_TRIGRAPH = {"type": "string", "pattern": "^[A-Z]{3}$"}
_DATE = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "title", "legally_binding", "parties", "topology", "highest_level",
                 "equivalence", "purposes", "term", "history"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$"},
        "title": {"type": "string", "minLength": 1},
        "description": {"type": "string"},
        "legally_binding": {"type": "boolean"},
        "parties": {"type": "array", "items": _TRIGRAPH, "minItems": 2, "uniqueItems": True},
        "topology": {"enum": ["bilateral", "hub", "mesh"]},
        "hub": _TRIGRAPH,
        "highest_level": {"enum": ["TOP SECRET", "SECRET", "CONFIDENTIAL"]},
        "equivalence": {
            "type": "array", "minItems": 1,
            "items": {
                "type": "object", "required": ["english", "levels"],
                "additionalProperties": False,
                "properties": {
                    "english": {"enum": ["TOP SECRET", "SECRET", "CONFIDENTIAL"]},
                    "levels": {
                        "type": "object", "minProperties": 2,
                        "propertyNames": {"pattern": "^[A-Z]{3}$"},
                        "additionalProperties": {
                            "type": "array", "minItems": 1,
                            "items": {"type": "string", "minLength": 1},
                        },
                    },
                },
            },
        },
        "purposes": {
            "type": "object", "minProperties": 1,
            "propertyNames": {"pattern": "^[a-z0-9][a-z0-9-]*$"},
            "additionalProperties": {"type": "string"},
        },
        "information_kinds": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "term": {
            "type": "object", "additionalProperties": False,
            "required": ["years", "automatic_renewal", "notice_days"],
            "properties": {
                "years": {"type": ["integer", "null"], "minimum": 1},
                "automatic_renewal": {"type": "boolean"},
                "notice_days": {"type": ["integer", "null"], "minimum": 0},
            },
        },
        "history": {
            "type": "array", "minItems": 1,
            "items": {
                "type": "object", "required": ["date", "event"], "additionalProperties": False,
                "properties": {
                    "date": _DATE,
                    "event": {"enum": list(EVENT_KINDS)},
                    "by": _TRIGRAPH,
                    "note": {"type": "string"},
                },
            },
        },
    },
}
_VALIDATE = fastjsonschema.compile(SCHEMA)
_RANK = {"TOP SECRET": 3, "SECRET": 2, "CONFIDENTIAL": 1}


@dataclass(frozen=True, slots=True)
class EquivalenceRow:
    english: str
    levels: Mapping[Party, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    on: date
    kind: str
    by: Party | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class Status:
    state: State
    since: date | None
    terminates_on: date | None = None
    notice_suspended: bool = False

    @property
    def in_force(self) -> bool:
        return self.state in ("in-force", "notice-given")

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "since": self.since.isoformat() if self.since else None,
            "terminates_on": self.terminates_on.isoformat() if self.terminates_on else None,
            "notice_suspended": self.notice_suspended,
        }


@dataclass(frozen=True, slots=True)
class Agreement:
    """One agreement or arrangement between parties, with its dated history."""

    id: str
    title: str
    legally_binding: bool
    parties: frozenset[Party]
    topology: Topology
    hub: Party | None
    highest_level: str
    equivalence: tuple[EquivalenceRow, ...]
    purposes: Mapping[str, str]
    information_kinds: frozenset[str] | None
    term_years: int | None
    automatic_renewal: bool
    notice_days: int | None
    history: tuple[HistoryEvent, ...]
    description: str = ""
    source: str = ""
    # Precomputed for the release policy's hot path.
    _equivalent: dict[tuple[Party, str, Party], str] = field(
        default_factory=dict, repr=False, compare=False)
    _english: dict[tuple[Party, str], str] = field(default_factory=dict, repr=False, compare=False)
    _starts: list[datetime] = field(default_factory=list, repr=False, compare=False)
    _ends: list[datetime | None] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        for row in self.equivalence:
            for from_party, names in row.levels.items():
                for name in names:
                    self._english[(from_party, name)] = row.english
                    for to_party, targets in row.levels.items():
                        if to_party != from_party:
                            self._equivalent[(from_party, name, to_party)] = targets[0]
        for start, end in in_force_periods(self):
            self._starts.append(_midnight(start))
            self._ends.append(_midnight(end) if end else None)

    # ---- scope --------------------------------------------------------------------------
    def carries(self, sender: Party, recipient: Party) -> bool:
        """Whether this agreement is a channel from sender to recipient (its topology)."""
        if sender == recipient or sender not in self.parties or recipient not in self.parties:
            return False
        if self.topology == "hub":
            return self.hub in (sender, recipient)
        return True

    def equivalent(self, from_party: Party, level: str, to_party: Party) -> str:
        """The ``to_party`` level equivalent to ``level``; NoEquivalent if not covered."""
        if from_party == to_party and (from_party, level) in self._english:
            return level
        found = self._equivalent.get((from_party, level, to_party))
        if found is None:
            raise NoEquivalent(self.id, from_party, level, to_party)
        return found

    def covers_level(self, party: Party, level: str, to_party: Party | None = None) -> bool:
        """Whether the table covers ``level`` (and gives it a ``to_party`` equivalent)."""
        if to_party is None or to_party == party:
            return (party, level) in self._english
        return (party, level, to_party) in self._equivalent

    def english(self, party: Party, level: str) -> str | None:
        return self._english.get((party, level))

    def in_force_at(self, at: datetime) -> bool:
        """O(log n) form of ``status(at).in_force`` for the policy's hot path."""
        i = bisect.bisect_right(self._starts, at) - 1
        if i < 0:
            return False
        end = self._ends[i]
        return end is None or at < end

    def in_force_by(self, at: datetime) -> bool:
        """Whether it has been in force at some instant up to ``at`` (in force still, or
        ended): items may have been exchanged under it."""
        return bool(self._starts) and self._starts[0] <= at


def _midnight(d: date) -> datetime:
    return datetime.combine(d, time(0, 0), tzinfo=UTC)


def _terminates_on(agreement: Agreement, entry: date | None, notice: date) -> date:
    earliest = notice + timedelta(days=agreement.notice_days or 0)
    if entry is None or agreement.term_years is None:
        return earliest
    years = agreement.term_years
    while True:
        try:
            anniversary = entry.replace(year=entry.year + years)
        except ValueError:  # 29 February
            anniversary = entry.replace(year=entry.year + years, day=28)
        if anniversary >= earliest:
            return anniversary
        years += agreement.term_years


def status(agreement: Agreement, at: datetime | date) -> Status:
    """The agreement's state at an instant, from its history and its term."""
    day = at.date() if isinstance(at, datetime) else at
    state: State = "pending"
    since: date | None = None
    entry: date | None = None
    ends: date | None = None
    suspended = False
    for ev in agreement.history:
        if ev.on > day:
            break
        if state == "notice-given" and ends is not None and ev.on >= ends:
            state, since = "terminated", ends
            break
        if ev.kind == "entry-into-force" and state == "pending":
            state, since, entry = "in-force", ev.on, ev.on
        elif ev.kind == "notice-of-termination" and state == "in-force":
            state, since, ends, suspended = "notice-given", ev.on, None, False
            ends = _terminates_on(agreement, entry, ev.on)
        elif ev.kind in ("suspension-of-notice", "withdrawal-of-notice") and (
            state == "notice-given" or suspended
        ):
            state, since = "in-force", ev.on
            suspended = ev.kind == "suspension-of-notice"
            ends = None
        elif ev.kind == "termination" and state != "pending":
            state, since, ends = "terminated", ev.on, None
            break
    if state == "notice-given" and ends is not None and day >= ends:
        return Status("terminated", ends)
    return Status(state, since, ends if state == "notice-given" else None, suspended)


def in_force_periods(agreement: Agreement) -> list[tuple[date, date | None]]:
    """Half-open date intervals in which the agreement is in force (incl. notice given)."""
    points = sorted({ev.on for ev in agreement.history})
    # The automatic end of a notice is a breakpoint too; probing each point's status finds it.
    extra = []
    for p in points:
        st = status(agreement, p)
        if st.terminates_on is not None:
            extra.append(st.terminates_on)
    points = sorted(set(points) | set(extra))
    periods: list[tuple[date, date | None]] = []
    start: date | None = None
    for p in points:
        live = status(agreement, p).in_force
        if live and start is None:
            start = p
        elif not live and start is not None:
            periods.append((start, p))
            start = None
    if start is not None:
        periods.append((start, None))
    return periods


def _plain(value: Any) -> Any:
    """YAML gives dates as objects; the schema speaks JSON, so dates become ISO strings."""
    if isinstance(value, datetime | date):
        return value.isoformat()[:10]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _path(error: fastjsonschema.JsonSchemaValueException) -> str:
    out = ""
    for part in list(error.path)[1:]:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_agreement(data: Any, schemes: Mapping[Party, Scheme], *, source: str) -> Agreement:
    """Validate one agreement document and build it; errors name the file and the field."""
    doc = _plain(data)
    try:
        _VALIDATE(doc)
    except fastjsonschema.JsonSchemaValueException as error:
        raise MalformedInput(error.message.replace("data", "value", 1),
                             where=f"{source}: field {_path(error)}",
                             expected=_expected(error)) from None
    parties = frozenset(doc["parties"])
    where = f"{source}: field"
    if doc["topology"] == "hub":
        if doc.get("hub") not in parties:
            raise MalformedInput("hub topology needs a hub that is a party", where=f"{where} hub",
                                 expected="one of " + ", ".join(sorted(parties)))
    elif "hub" in doc:
        raise MalformedInput("only a hub topology names a hub", where=f"{where} hub")
    if doc["topology"] == "bilateral" and len(parties) != 2:
        raise MalformedInput("a bilateral agreement has two parties", where=f"{where} parties")
    rows = []
    for i, row in enumerate(doc["equivalence"]):
        for p, names in row["levels"].items():
            if p not in parties:
                raise MalformedInput(f"{p} is not a party", where=f"{where} equivalence[{i}]",
                                     expected="levels only for " + ", ".join(sorted(parties)))
            scheme = schemes.get(p)
            for name in names:
                if scheme is None or not scheme.has(name):
                    raise MalformedInput(
                        f"{name!r} is not a {p} level",
                        where=f"{where} equivalence[{i}].levels.{p}",
                        expected="one of " + ", ".join(lv.name for lv in scheme.levels)
                        if scheme else f"a national scheme for {p}")
                if scheme.level(name).english != row["english"]:
                    raise MalformedInput(
                        f"{name!r} is {scheme.level(name).english}, not {row['english']}",
                        where=f"{where} equivalence[{i}].levels.{p}")
        rows.append(EquivalenceRow(row["english"],
                                   {p: tuple(n) for p, n in row["levels"].items()}))
    top = max(_RANK[r.english] for r in rows)
    if top != _RANK[doc["highest_level"]]:
        raise MalformedInput(
            f"highest_level {doc['highest_level']} disagrees with the equivalence table",
            where=f"{where} highest_level",
            expected=next(k for k, v in _RANK.items() if v == top))
    history = []
    for i, ev in enumerate(doc["history"]):
        try:
            on = date.fromisoformat(ev["date"])
        except ValueError:
            raise MalformedInput(f"{ev['date']!r} is not a calendar date",
                                 where=f"{where} history[{i}].date",
                                 expected="YYYY-MM-DD") from None
        if ev.get("by") is not None and ev["by"] not in parties:
            raise MalformedInput(f"{ev['by']} is not a party", where=f"{where} history[{i}].by")
        history.append(HistoryEvent(on, ev["event"], ev.get("by"), ev.get("note", "")))
    if [h.on for h in history] != sorted(h.on for h in history):
        raise MalformedInput("history is not in date order", where=f"{where} history",
                             expected="events sorted by date")
    if not any(h.kind == "entry-into-force" for h in history):
        raise MalformedInput("no entry-into-force event", where=f"{where} history")
    term = doc["term"]
    kinds = doc.get("information_kinds")
    return Agreement(
        id=doc["id"], title=doc["title"], legally_binding=doc["legally_binding"],
        parties=parties, topology=doc["topology"], hub=doc.get("hub"),
        highest_level=doc["highest_level"], equivalence=tuple(rows),
        purposes=dict(doc["purposes"]),
        information_kinds=frozenset(kinds) if kinds else None,
        term_years=term["years"], automatic_renewal=term["automatic_renewal"],
        notice_days=term["notice_days"], history=tuple(history),
        description=doc.get("description", ""), source=source,
    )


def _expected(error: fastjsonschema.JsonSchemaValueException) -> str:
    rule, definition = error.rule, error.rule_definition
    if rule == "required":
        return "the field(s) " + ", ".join(map(str, definition)) + " to be present"
    if rule == "additionalProperties":
        return "only the fields the agreement schema names"
    if rule == "enum":
        return "one of " + ", ".join(map(str, definition))
    if rule == "pattern":
        return f"text matching {definition}"
    if rule == "type":
        return f"a value of type {definition}"
    return f"{rule} {definition}"


@dataclass(frozen=True, slots=True)
class Catalogue:
    """Every agreement a node knows, indexed by the channel (sender, recipient) they open."""

    agreements: Mapping[str, Agreement]
    schemes: Mapping[Party, Scheme]
    _channels: dict[tuple[Party, Party], tuple[Agreement, ...]] = field(
        default_factory=dict, repr=False, compare=False)
    _vocabulary: LabelVocabulary = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parties = {p for a in self.agreements.values() for p in a.parties}
        object.__setattr__(self, "_vocabulary", LabelVocabulary(
            schemes=self.schemes,
            parties=frozenset(parties | set(self.schemes)),
            purposes=frozenset(p for a in self.agreements.values() for p in a.purposes),
            policies={a.id: PolicyScope(a.parties, frozenset(a.purposes))
                      for a in self.agreements.values()},
            categories=INFORMATION_KINDS | {k for a in self.agreements.values()
                                            for k in a.information_kinds or ()},
        ))
        # Legally binding agreements are preferred to arrangements (TISA relays are protected
        # under the US bilateral agreements), then a stable order by id.
        ordered = sorted(self.agreements.values(), key=lambda a: (not a.legally_binding, a.id))
        for s in parties:
            for r in parties:
                found = tuple(a for a in ordered if a.carries(s, r))
                if found:
                    self._channels[(s, r)] = found

    @classmethod
    def of(cls, agreements: Iterable[Agreement], schemes: Mapping[Party, Scheme]) -> Catalogue:
        table: dict[str, Agreement] = {}
        for a in agreements:
            if a.id in table:
                raise MalformedInput(f"agreement id {a.id!r} defined twice",
                                     where=f"{table[a.id].source} and {a.source}",
                                     expected="unique agreement ids")
            table[a.id] = a
        return cls(table, schemes)

    @property
    def vocabulary(self) -> LabelVocabulary:
        """The values a label may hold under these agreements and schemes."""
        return self._vocabulary

    def get(self, agreement_id: str) -> Agreement:
        found = self.agreements.get(agreement_id)
        if found is None:
            raise MalformedInput(f"no agreement {agreement_id!r}", where="agreement",
                                 expected="one of " + ", ".join(sorted(self.agreements)))
        return found

    def channels(self, sender: Party, recipient: Party) -> tuple[Agreement, ...]:
        return self._channels.get((sender, recipient), ())
