"""Warnings out over a real node store: for any reader, what ``read_warnings`` gives (the
index, every CAP alert, the GeoJSON) holds exactly the warnings the access rule lets them
read, and nothing of the others; the reads are audited."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import product
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gsomia.bootstrap import taxii_service
from gsomia.core import stix
from gsomia.core.agreements import Catalogue
from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import Person, decide_access
from gsomia.service import handlers
from gsomia.shell.node import Node, init_node, open_node
from gsomia.shell.stix_check import check_stix
from gsomia.shell.warnings_out import read_warnings

LEVELS = ("機密", "極秘", "秘")
PURPOSES = ("dprk-missile", "regional-security")


def _content(content: bytes | None) -> bytes:
    """A served row's content: a read that names an item serves it whole."""
    assert content is not None
    return content


def note(region: str) -> dict[str, Any]:
    return {"type": "note", "spec_version": "2.1", "id": f"note--{uuid.uuid4()}",
            "created": "2017-08-28T21:00:00.000Z", "modified": "2017-08-28T21:00:00.000Z",
            "content": f"warning for {region}", "object_refs": [
                "identity--5a1f4b0e-0000-4000-8000-000000000001"],
            "x_gsomia_warning": {
                "launch": "2017-08-28#115", "regime": "direct", "seed": 0, "party": "JPN",
                "action": "issued", "at_s": 150.0, "track": "JPN-1", "level": "alert",
                "regions": [region], "active": [region], "impact_lat": 41.8,
                "impact_lon": 145.6, "semi_major_km": 40.0, "time_to_impact_s": 600.0,
                "reason": f"overflight possible over {region}"}}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, shipped: Catalogue
           ) -> tuple[Path, dict[str, tuple[str, str]]]:
    """A JPN node holding one warning per level and purpose; each names its own region."""
    path = tmp_path_factory.mktemp("warnings") / "jpn"
    node = init_node(path, "JPN", catalogue=shipped, now=datetime.now(UTC))
    held: dict[str, tuple[str, str]] = {}
    for level, purpose in product(LEVELS, PURPOSES):
        region = f"Region-{level}-{purpose}"
        done = handlers.publish(node.uow(), keys=node.keys, catalogue=shipped,
                                obj=note(region), now=datetime.now(UTC), actor="test",
                                label=handlers.LabelRequest(level, ("JPN",), purpose,
                                                            category="warning"),
                                validate=check_stix)
        held[done.item_id] = (level, purpose)
    node.close()
    return path, held


@pytest.fixture(scope="module")
def node(folder: tuple[Path, dict[str, tuple[str, str]]], shipped: Catalogue
         ) -> Iterator[Node]:
    n = open_node(folder[0], catalogue=shipped)
    yield n
    n.close()


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.sampled_from([None, "機密", "特定秘密", "極秘", "秘", "SECRET"]),
       st.sets(st.sampled_from([*PURPOSES, "maritime-security"])))
def test_a_reader_gets_exactly_the_warnings_they_may_read(
        node: Node, folder: tuple[Path, dict[str, tuple[str, str]]], shipped: Catalogue,
        clearance: str | None, need_to_know: set[str]) -> None:
    person = Person("reader", "JPN", clearance, frozenset(need_to_know))
    service, store = taxii_service(node)
    try:
        found = read_warnings(service, person, datetime.now(UTC))
    finally:
        store.close()
    allowed = {item for item, (level, purpose) in folder[1].items()
               if decide_access(person, SecurityLabel("JPN", level, frozenset({"JPN"}),
                                                      purpose), shipped.schemes).permit}
    assert {m.record.item_id for m in found.messages} == allowed
    out = json.dumps(found.index(), ensure_ascii=False) + json.dumps(
        found.geojson(), ensure_ascii=False) + "".join(
        found.cap(m.identifier).decode("utf-8") for m in found.messages)
    for item, (level, purpose) in folder[1].items():
        if item not in allowed:
            assert item not in out and f"Region-{level}-{purpose}" not in out


def test_every_note_given_is_an_audited_read(node: Node, shipped: Catalogue) -> None:
    person = Person("auditee", "JPN", "機密", frozenset(PURPOSES))
    with node.store.reader() as reader:
        before = reader.size()
    service, store = taxii_service(node)
    try:
        found = read_warnings(service, person, datetime.now(UTC))
    finally:
        store.close()
    assert len(found.messages) == len(LEVELS) * len(PURPOSES)
    with node.store.reader() as reader:
        assert reader.size() > before


# ---- what only the node's own tools make, a person neither posts nor replaces over TAXII --
TAXII = "application/taxii+json;version=2.1"
MADE = {  # a valid value of each: refused for who posts it, not for what it holds
    "x_gsomia_warning": {k: v for k, v in note("Tokyo")["x_gsomia_warning"].items()
                         if k not in ("launch", "regime", "seed")},   # live: CAP Actual
    "x_gsomia_track": {"points": [[40.0, 130.0], [41.0, 131.0]]},
    "x_gsomia_ipp": {"at_s": 122.7, "track": "JPN-1", "lat_deg": 35.7, "lon_deg": 139.7,
                     "time": 268.3, "time_sigma_s": 4.9,
                     "ellipse": {"semi_major_km": 12.3, "semi_minor_km": 2.1,
                                 "orientation_deg": 67.3, "sigma": 2.0}},
    "x_gsomia_sensor_report": {"sensor": "JPN-radar-1", "epoch": "2017-08-28T20:58:00.000Z",
                               "reference": [20.0, 120.0, 0.0], "t": [1.0],
                               "z": [[1.0e6, 30.0, 5.0]],
                               "cov": [[100.0, 0.0, 0.0, 0.01, 0.0, 0.01]]},
    "x_gsomia_replay": {"launch": "2017-08-28#115", "regime": "direct", "seed": 0,
                        "at_s": 150.0, "category": "warning",
                        "data": note("Tokyo")["x_gsomia_warning"]},
}


def _warnings_seen(node: Node, person: Person) -> list[tuple[str, str, str]]:
    service, store = taxii_service(node)
    try:
        found = read_warnings(service, person, datetime.now(UTC))
    finally:
        store.close()
    return [(m.identifier, m.record.warning.action, ",".join(m.record.warning.regions))
            for m in found.messages]


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.sampled_from(sorted(MADE)), st.sampled_from(LEVELS), st.sampled_from(PURPOSES))
def test_a_person_posts_nothing_only_the_nodes_tools_make(
        node: Node, shipped: Catalogue, prop: str, level: str, purpose: str) -> None:
    """A reader cleared for the label posted a live land alert over TAXII: every poller got
    it as the node's own CAP Actual, Shelter, Immediate, Extreme (and a sensor report fed the
    tracker as the party's own radar, with no operator role)."""
    poster = Person("aiko", "JPN", "機密", frozenset(PURPOSES))
    label = SecurityLabel("JPN", level, frozenset({"JPN"}), purpose)
    mark = stix_marking(label, shipped)
    forged = {**note("Tokyo"), "object_marking_refs": [mark["id"]]}
    del forged["x_gsomia_warning"]
    forged[prop] = MADE[prop]
    assert stix.extension_property_problem(prop, MADE[prop]) is None
    before = _warnings_seen(node, poster)
    service, store = taxii_service(node)
    try:
        answer = service.add(poster, service.collection_id, {"objects": [mark, forged]},
                             TAXII, datetime.now(UTC), f"made-{uuid.uuid4()}")
        held = service.read(poster, service.collection_id, "objects",
                            {"match[id]": [forged["id"]]}, datetime.now(UTC))
    finally:
        store.close()
    assert [f["id"] for f in answer["failures"]] == [forged["id"]]
    assert prop in answer["failures"][0]["message"]
    assert held.rows == [] or all(r.content is None for r in held.rows)
    assert _warnings_seen(node, poster) == before


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.data())
def test_a_person_does_not_replace_a_warning_the_node_made(
        node: Node, folder: tuple[Path, dict[str, tuple[str, str]]], shipped: Catalogue,
        data: st.DataObject) -> None:
    """A reader cleared for a live warning posted a newer version of it without its
    ``x_gsomia_warning``: the warning left every CAP index, GeoJSON and dashboard."""
    poster = Person("kenji", "JPN", "機密", frozenset(PURPOSES))
    item_id = data.draw(st.sampled_from(sorted(folder[1])))
    before = _warnings_seen(node, poster)
    service, store = taxii_service(node)
    try:
        served = service.read(poster, service.collection_id, "objects",
                              {"match[id]": [item_id]}, datetime.now(UTC))
        current = json.loads(_content(served.rows[0].content))
        label = next(iter({store.label_classes()[r.label_key] for r in served.rows}))
        mark = stix_marking(label, shipped)
        newer = {k: v for k, v in current.items() if k != "x_gsomia_warning"}
        newer["modified"] = data.draw(st.sampled_from(
            ["2017-08-28T21:00:01.000Z", "2030-01-01T00:00:00.000Z"]))
        newer["object_marking_refs"] = [mark["id"]]
        answer = service.add(poster, service.collection_id, {"objects": [mark, newer]},
                             TAXII, datetime.now(UTC), f"replace-{uuid.uuid4()}")
    finally:
        store.close()
    assert item_id in [f["id"] for f in answer["failures"]], answer
    assert _warnings_seen(node, poster) == before


def stix_marking(label: SecurityLabel, shipped: Catalogue) -> dict[str, Any]:
    return stix.label_marking(label, label.english_marking(shipped.schemes),
                              created=datetime.now(UTC))


def test_a_flood_of_a_reader_s_notes_pushes_no_warning_out_of_the_feed(
        tmp_path: Path, shipped: Catalogue, monkeypatch: pytest.MonkeyPatch) -> None:
    """The feed reads at most MAX_NOTES notes, oldest first: 100 000 notes a reader posted
    (ten TAXII posts) left every warning after them out of every poller's CAP index, unsaid.
    The bound is scaled down here (the loop is the same); the feed now reads only what is
    labelled as a warning (which a person may not label so) in a pass of its own, then tracks
    and predictions (which a person may post: the trilateral mechanism carries them) in
    another, so a flood of those pushes out no warning either."""
    from gsomia.shell import warnings_out

    monkeypatch.setattr(warnings_out, "PAGE", 20)
    monkeypatch.setattr(warnings_out, "MAX_NOTES", 60)
    jpn = init_node(tmp_path / "jpn", "JPN", catalogue=shipped, now=datetime.now(UTC))
    try:
        poster = Person("aiko", "JPN", "秘", frozenset({"dprk-missile"}))
        flooded = 0
        for category in (None, "flight-path", "warning"):
            label = SecurityLabel("JPN", "秘", frozenset({"JPN", "KOR", "USA"}),
                                  "dprk-missile", category=category)
            mark = stix_marking(label, shipped)
            junk = [{**note("nowhere"), "object_marking_refs": [mark["id"]]}
                    for _ in range(61)]
            for obj in junk:
                del obj["x_gsomia_warning"]
            service, store = taxii_service(jpn)
            try:
                answer = service.add(poster, service.collection_id,
                                     {"objects": [mark, *junk]}, TAXII, datetime.now(UTC),
                                     f"flood-{category}")
                flooded += sum(o["id"].startswith("note--") for o in answer["successes"])
            finally:
                store.close()
        assert flooded == 2 * 61  # plain notes and tracks: a reader posts them as ever
        done = handlers.publish(jpn.uow(), keys=jpn.keys, catalogue=shipped,
                                obj=note("Tokyo"), now=datetime.now(UTC), actor="test",
                                label=handlers.LabelRequest("秘", ("JPN", "KOR", "USA"),
                                                            "dprk-missile",
                                                            category="warning"),
                                validate=check_stix)
        seen = _warnings_seen(jpn, Person("kenji", "JPN", "機密", frozenset(PURPOSES)))
        assert [i for i, _, _ in seen] == [f"gsomia-{done.item_id}"]
    finally:
        jpn.close()


def test_an_item_carrying_a_warning_is_not_replaced_whatever_its_label(
        tmp_path: Path, shipped: Catalogue) -> None:
    """A warning published on the host under a category of its own (``gsomia publish
    --category launch-point``): its label is one a person may post under, so only the
    look-up of the current version keeps a reader from replacing it without the warning."""
    from gsomia.service.taxii import NODE_MADE_REFUSED

    jpn = init_node(tmp_path / "jpn", "JPN", catalogue=shipped, now=datetime.now(UTC))
    try:
        request = handlers.LabelRequest("秘", ("JPN",), "dprk-missile",
                                        category="launch-point")
        done = handlers.publish(jpn.uow(), keys=jpn.keys, catalogue=shipped,
                                obj=note("Tokyo"), now=datetime.now(UTC), actor="test",
                                label=request, validate=check_stix)
        poster = Person("kenji", "JPN", "機密", frozenset(PURPOSES))
        service, store = taxii_service(jpn)
        try:
            label = next(iter(store.label_classes().values()))
            mark = stix_marking(label, shipped)
            served = service.read(poster, service.collection_id, "objects",
                                  {"match[id]": [done.item_id]}, datetime.now(UTC))
            newer = {k: v for k, v in json.loads(_content(served.rows[0].content)).items()
                     if k != "x_gsomia_warning"}
            newer |= {"modified": "2030-01-01T00:00:00.000Z",
                      "object_marking_refs": [mark["id"]]}
            answer = service.add(poster, service.collection_id, {"objects": [mark, newer]},
                                 TAXII, datetime.now(UTC), "replace-own-label")
            after = service.read(poster, service.collection_id, "objects",
                                 {"match[id]": [done.item_id]}, datetime.now(UTC))
        finally:
            store.close()
        assert [(f["id"], f["message"]) for f in answer["failures"]] == [
            (done.item_id, NODE_MADE_REFUSED)]
        assert "x_gsomia_warning" in json.loads(_content(after.rows[0].content))
    finally:
        jpn.close()


def test_a_warning_stored_while_a_post_is_checked_is_not_replaced(
        tmp_path: Path, shipped: Catalogue, monkeypatch: pytest.MonkeyPatch) -> None:
    """The node's tools stored a warning after a post's checks, before its batch: the look-up
    for node-made items ran before the batch's transaction, found nothing, and the post's
    newer version took the warning off (it is now asked inside the transaction)."""
    from gsomia.service.taxii import NODE_MADE_REFUSED

    jpn = init_node(tmp_path / "jpn", "JPN", catalogue=shipped, now=datetime.now(UTC))
    try:
        request = handlers.LabelRequest("秘", ("JPN",), "dprk-missile",
                                        category="launch-point")
        label = handlers.make_label(request, originator="JPN", catalogue=shipped,
                                    now=datetime.now(UTC))
        warning = note("Tokyo")
        mark = stix_marking(label, shipped)
        newer = {k: v for k, v in warning.items() if k != "x_gsomia_warning"}
        newer |= {"modified": "2030-01-01T00:00:00.000Z", "object_marking_refs": [mark["id"]]}
        poster = Person("kenji", "JPN", "機密", frozenset(PURPOSES))
        service, store = taxii_service(jpn)
        batch = store.add_objects

        def warned_meanwhile(*args: Any, **kwargs: Any) -> Any:
            handlers.publish(jpn.uow(), keys=jpn.keys, catalogue=shipped, obj=warning,
                             now=datetime.now(UTC), actor="test", label=request,
                             validate=check_stix)
            return batch(*args, **kwargs)

        monkeypatch.setattr(store, "add_objects", warned_meanwhile)
        try:
            answer = service.add(poster, service.collection_id, {"objects": [mark, newer]},
                                 TAXII, datetime.now(UTC), "replace-meanwhile")
            after = service.read(poster, service.collection_id, "objects",
                                 {"match[id]": [warning["id"]]}, datetime.now(UTC))
        finally:
            store.close()
        assert [(f["id"], f["message"]) for f in answer["failures"]] == [
            (warning["id"], NODE_MADE_REFUSED)]
        assert "x_gsomia_warning" in json.loads(_content(after.rows[0].content))
    finally:
        jpn.close()
