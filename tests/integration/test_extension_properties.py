"""The application's ``x_gsomia_*`` properties are checked against their JSON schemas on every
ingest path: publishing at a node (command line, TAXII, the sensor intake and the warning
centre all go through ``handlers.publish_many``) and items delivered by partners
(``handlers.ingest``).

Issue 10, finding 5: one stored note whose ``x_gsomia_ipp`` lacked its fields stopped every
reader's map, at the originator and at partners after delivery.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gsomia.core import crypto
from gsomia.core.errors import MalformedInput
from gsomia.service import handlers
from gsomia.service.handlers import Incoming, LabelRequest
from gsomia.shell.node import Node

NOW = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)   # the 2016 GSOMIA is in force
LABEL = LabelRequest("極秘", ("JPN", "KOR"), "dprk-missile", policy="jpn-kor-gsomia-2016")
IPP: dict[str, Any] = {
    "at_s": 122.7, "track": "USA-1@USA", "lat_deg": 39.623628, "lon_deg": 127.379353,
    "time": 268.294, "time_sigma_s": 4.918,
    "ellipse": {"semi_major_km": 12.2754, "semi_minor_km": 2.0528,
                "orientation_deg": 67.341, "sigma": 2.0},
    "launch": "2017-08-28#115", "regime": "direct", "seed": 0}


def note(ipp: Any) -> dict[str, Any]:
    return {"type": "note", "spec_version": "2.1", "id": f"note--{uuid.uuid4()}",
            "created": "2017-08-28T21:00:00.000Z", "modified": "2017-08-28T21:00:00.000Z",
            "abstract": "JPN impact prediction", "content": "impact prediction",
            "object_refs": ["identity--" + str(uuid.uuid4())], "x_gsomia_ipp": ipp}


def items_held(node: Node) -> int:
    with node.store.repository() as repo:
        return int(repo.count_items())


_NUM = {"type": "number", "minimum": -1e9, "maximum": 1e9}
_KM = {"type": "number", "minimum": 0, "maximum": 40_075}
IPP_SCHEMA = {  # written out here: the node's own copy must be equal (tested below)
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "An impact point prediction with its error ellipse", "type": "object",
    # a live warning centre's prediction names no launch, regime or seed
    "required": sorted(set(IPP) - {"launch", "regime", "seed"}),
    "properties": {
        "launch": {"type": "string", "minLength": 1, "maxLength": 200},
        "regime": {"enum": ["none", "hub", "direct", "trilateral"]},
        "seed": {"type": "integer", "minimum": 0, "maximum": 2**53 - 1},
        "at_s": _NUM, "track": {"type": "string", "minLength": 1, "maxLength": 200},
        "lat_deg": {"type": "number", "minimum": -90, "maximum": 90},
        "lon_deg": {"type": "number", "minimum": -180, "maximum": 360},
        "time": _NUM, "time_sigma_s": {"type": "number", "minimum": 0, "maximum": 1e9},
        "ellipse": {"type": "object",
                    "required": ["orientation_deg", "semi_major_km", "semi_minor_km", "sigma"],
                    "properties": {"semi_major_km": _KM, "semi_minor_km": _KM,
                                   "orientation_deg": {"type": "number", "minimum": -360,
                                                       "maximum": 360},
                                   "sigma": {"type": "number", "minimum": 0,
                                             "maximum": 100}}}}}

# Ways to break a valid ipp: drop a field, give it the wrong type, put it out of range.
_PATHS = [(k,) for k in IPP] + [("ellipse", k) for k in IPP["ellipse"]]
_WRONG = st.one_of(st.none(), st.booleans(), st.text(max_size=5),
                   st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3),
                                                                        st.integers(),
                                                                        max_size=2),
                   st.floats(allow_nan=False, allow_infinity=False))


@st.composite
def malformed_ipp(draw: st.DrawFn) -> Any:
    if draw(st.booleans()) and draw(st.booleans()):
        return draw(st.one_of(st.none(), st.text(max_size=5), st.integers(),
                              st.lists(st.integers(), max_size=3)))
    doc = copy.deepcopy(IPP)
    path = draw(st.sampled_from(_PATHS))
    parent = doc if len(path) == 1 else doc[path[0]]
    if draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(_WRONG)
    # Imported where used: every test worker collects this file, and importing jsonschema
    # costs ~2 s of CPU (its format checkers' grammars); only the worker running it pays.
    import jsonschema

    assume(jsonschema.Draft202012Validator(IPP_SCHEMA).is_valid(doc) is False)
    return doc


def test_the_schemas_are_json_schemas() -> None:
    """(What a node's warning centre publishes fits them: ``test_dashboard_state.py``.)"""
    import jsonschema

    from gsomia.core.stix import EXTENSION_PROPERTY_SCHEMAS

    assert EXTENSION_PROPERTY_SCHEMAS["x_gsomia_ipp"] == IPP_SCHEMA
    for schema in EXTENSION_PROPERTY_SCHEMAS.values():
        jsonschema.Draft202012Validator.check_schema(schema)


@given(malformed_ipp())
def test_the_check_agrees_with_jsonschema_and_names_the_field(ipp: Any) -> None:
    from gsomia.core.stix import extension_property_problem

    problem = extension_property_problem("x_gsomia_ipp", ipp)
    assert problem is not None and problem.startswith("x_gsomia_ipp")


def test_an_unknown_gsomia_property_is_refused() -> None:
    from gsomia.core.stix import check_extension_properties

    with pytest.raises(MalformedInput, match="x_gsomia_ippp"):
        check_extension_properties({**note(IPP), "x_gsomia_ippp": IPP})


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node]]:
    """A JPN and a KOR node (real folders, SQLite), shared by the examples."""
    from gsomia.shell.catalogue import load_catalogue
    from gsomia.shell.node import init_node

    base, shipped = tmp_path_factory.mktemp("ext"), load_catalogue()
    made = tuple(init_node(base / p, p, catalogue=shipped, now=NOW) for p in ("JPN", "KOR"))
    yield made[0], made[1]
    for n in made:
        n.close()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ipp=malformed_ipp())
def test_any_malformed_ipp_is_refused_at_publish_and_nothing_is_stored(
        pair: tuple[Node, Node], ipp: Any) -> None:
    node, now = pair[0], NOW
    before = items_held(node)
    with pytest.raises(MalformedInput) as refused:
        handlers.publish(node.uow(), keys=node.keys, catalogue=node.catalogue, obj=note(ipp),
                         label=LABEL, now=now)
    assert "x_gsomia_ipp" in refused.value.where
    assert items_held(node) == before


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ipp=malformed_ipp())
def test_a_partner_s_malformed_ipp_is_refused_like_any_bad_item(
        pair: tuple[Node, Node], ipp: Any) -> None:
    """The originator (a node of another make, or a key misused) bound and sent it."""
    (jpn, kor), now = pair, NOW
    good = note(IPP)
    handlers.publish(jpn.uow(), keys=jpn.keys, catalogue=jpn.catalogue, obj=good, label=LABEL,
                     now=now)
    with jpn.store.repository() as repo:
        sent = repo.get_item(good["id"])
    assert sent is not None
    bad = {**sent.object(), "x_gsomia_ipp": ipp}
    label = sent.security_label()
    try:
        binding = crypto.bind(label.to_json(), bad, jpn.keys.signing_key())
    except MalformedInput:
        assume(False)   # not JSON a node can bind (canonical JSON refuses it): never sent
    before = items_held(kor)
    results = handlers.ingest(kor.uow(), keys=kor.keys, catalogue=kor.catalogue,
                              batch=[Incoming(bad, label, binding, "JPN"),
                                     Incoming(sent.object(), label, sent.bound(), "JPN")],
                              originator_keys={"JPN": jpn.keys.public_signing_key()}, now=now)
    assert results[0].status == "refused" and "x_gsomia_ipp" in results[0].reasons[0]
    assert results[1].status == "stored"   # the good one of the same batch is not held up
    assert items_held(kor) == before + 1
    with kor.store.reader() as reader:
        refusals = [r for r in reader.rows() if r["kind"] == "envelope-refused"
                    and r["item_id"] == good["id"]]
    assert refusals   # on record


WARNING = {"party": "JPN", "action": "issued", "at_s": 150.0, "track": "JPN-1",
           "level": "alert", "regions": ["Hokkaido"], "active": ["Hokkaido"],
           "impact_lat": 41.8, "impact_lon": 145.6, "semi_major_km": 40.0,
           "time_to_impact_s": 600.0, "reason": "overflight possible"}


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(party=st.sampled_from(["KOR", "USA", "JPN"]), live=st.booleans())
def test_a_partner_s_warning_speaks_only_for_its_own_party(
        pair: tuple[Node, Node], party: str, live: bool) -> None:
    """JPN bound and sent a schema-valid live warning naming KOR: KOR's node put it out on
    its CAP feed (sender kor.node…, source "KOR missile early warning", Actual) and its
    dashboard as a KOR land alert of its own."""
    (jpn, kor), now = pair, NOW
    run = {} if live else {"launch": "2017-08-28#115", "regime": "direct", "seed": 0}
    obj = {**note(IPP), "x_gsomia_warning": {**WARNING, **run, "party": party}}
    del obj["x_gsomia_ipp"]
    sent = handlers.publish(jpn.uow(), keys=jpn.keys, catalogue=jpn.catalogue, obj=obj,
                            label=LABEL, now=now)
    with jpn.store.repository() as repo:
        held = repo.get_item(sent.item_id)
    assert held is not None
    before = items_held(kor)
    results = handlers.ingest(kor.uow(), keys=kor.keys, catalogue=kor.catalogue,
                              batch=[Incoming(held.object(), held.security_label(),
                                              held.bound(), "JPN")],
                              originator_keys={"JPN": jpn.keys.public_signing_key()}, now=now)
    if party == "JPN":
        assert results[0].status == "stored" and items_held(kor) == before + 1
    else:
        assert results[0].status == "refused" and "x_gsomia_warning.party" in \
            results[0].reasons[0]
        assert items_held(kor) == before
