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
from gsomia.core.agreements import Catalogue
from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import Person, decide_access
from gsomia.service import handlers
from gsomia.shell.node import Node, init_node, open_node
from gsomia.shell.stix_check import check_stix
from gsomia.shell.warnings_out import read_warnings

LEVELS = ("機密", "極秘", "秘")
PURPOSES = ("dprk-missile", "regional-security")


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
          suppress_health_check=[HealthCheck.function_scoped_fixture])
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
