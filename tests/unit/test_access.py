"""Who may read what (gsomia.service.access), as the dashboard, the desk and the TAXII
service ask it: an item or a sensor is shown only to a person the access rule admits to
every version of it, and nothing the node does not know of is even counted."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.core.custody import CustodyRecord, Holding, StoredItem
from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import Person, decide_access
from gsomia.core.types import PARTIES, SECRET_LEVELS
from gsomia.service import access
from gsomia.shell.catalogue import load_catalogue
from gsomia.shell.feeds import load_sensors

CATALOGUE = load_catalogue()
SCHEMES = CATALOGUE.schemes
SENSORS = load_sensors()
AT = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)

parties = st.sampled_from(PARTIES)
purposes = st.sampled_from(("dprk-missile", "regional-security"))


@st.composite
def labels(draw: st.DrawFn) -> SecurityLabel:
    originator = draw(parties)
    level = draw(st.sampled_from([lv.name for lv in SCHEMES[originator].levels]))
    return SecurityLabel(originator, level, draw(st.frozensets(parties)) | {originator},
                         draw(purposes), draw(st.frozensets(st.just("NOFORN"))))


@st.composite
def persons(draw: st.DrawFn) -> Person:
    party = draw(parties)
    clearance = draw(st.none() | st.sampled_from([lv.name for lv in SCHEMES[party].levels]))
    return Person("reader", party, clearance, draw(st.frozensets(purposes)))


def holding(item_id: str, version: str, label: SecurityLabel) -> Holding:
    item = StoredItem(item_id, version, "indicator", label.originator, b"{}", b"{}", b"{}", AT)
    record = CustodyRecord(item_id, version, "created", label.originator, label, label, AT)
    return Holding(item, (record,))


versions = st.lists(st.tuples(st.sampled_from(("indicator--a", "indicator--b", "indicator--c")),
                              labels()), max_size=8)


@settings(max_examples=200)
@given(person=persons(), held=versions)
def test_an_item_is_readable_only_if_every_version_held_is(
        person: Person, held: list[tuple[str, SecurityLabel]]) -> None:
    holdings = [holding(item_id, f"v{i}", label) for i, (item_id, label) in enumerate(held)]
    got = access.readable_items(person, holdings, SCHEMES)
    for item_id in {i for i, _ in held}:
        every = all(decide_access(person, label, SCHEMES).permit
                    for i, label in held if i == item_id)
        assert (item_id in got) == every
    for item_id, (h, label) in got.items():
        assert h.item.item_id == item_id and label == h.current.national_label
        assert access.may_read(person, label, SCHEMES)


@settings(max_examples=200)
@given(person=persons(), party=parties, label=labels())
def test_nobody_unauthenticated_reads_and_reading_gives_the_reasons(
        person: Person, party: str, label: SecurityLabel) -> None:
    assert not access.may_read(None, label, SCHEMES)
    decision = access.reading(person, label, SCHEMES)
    assert decision.permit == access.may_read(person, label, SCHEMES)
    assert decision.reasons  # a refusal says why; a permit says on what grounds
    assert not access.may_replay(None, party, SCHEMES)


@settings(max_examples=200)
@given(person=persons(), party=parties,
       relabel=st.lists(st.tuples(st.integers(0, len(SENSORS) - 1), labels()), max_size=6))
def test_a_sensor_is_shown_only_if_known_here_and_readable(
        person: Person, party: str, relabel: list[tuple[int, SecurityLabel]]) -> None:
    sensors = list(SENSORS)
    for i, label in relabel:
        sensors[i] = replace(sensors[i], label=label)
    shown, withheld = access.sensors_shown(party, person, SCHEMES, sensors)
    known = [s for s in sensors if s.owner == party or party in s.label.rel_to]
    assert all(s in known and decide_access(person, s.label, SCHEMES).permit for s in shown)
    assert len(shown) + withheld == len(known)


def test_the_replay_label_admits_a_cleared_reader_only() -> None:
    for party in PARTIES:
        label = access.replay_label(party)
        assert (label.originator, label.level) == (party, SECRET_LEVELS[party])
        cleared = Person("a", party, SECRET_LEVELS[party], frozenset({"dprk-missile"}))
        no_need = replace(cleared, need_to_know=frozenset())
        assert access.may_replay(cleared, party, SCHEMES)
        assert not access.may_replay(no_need, party, SCHEMES)
