"""An operator feeds the sensor intake only what they may read themselves.

The intake (``POST /sensors/v1/measurements``) checked the caller's role and nothing else,
and published as the node's own operator: an operator cleared 秘 published JPN's pre-launch
indicators as 特定秘密, and one without need-to-know for dprk-missile published radar reports
the warning centre fuses into real warnings (review28). The dashboard's replay, which feeds
the same intake, already needed read access to what it publishes; the desk and TAXII publish
only under a label the person may read."""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gsomia.bootstrap import app_for_node
from gsomia.core.policy import Person
from gsomia.core.types import PARTIES
from gsomia.service import handlers
from gsomia.shell.node import Node, new_token
from gsomia.shell.sensor_intake import NDJSON, PATH
from gsomia.shell.sensor_player import playlist

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def _operator(node: Node, name: str, clearance: str, need_to_know: list[str]) -> str:
    token = new_token()
    handlers.add_user(node.uow(), keys=node.keys, schemes=node.catalogue.schemes, name=name,
                      clearance=clearance, need_to_know=need_to_know, token=token,
                      now=datetime.now(UTC), role="operator")
    return token


def test_an_operator_publishes_through_the_intake_only_what_they_may_read(
        node_factory: Callable[..., Node]) -> None:
    node = node_factory("JPN")
    tokens = {"kenji": _operator(node, "kenji", "極秘", ["dprk-missile"]),   # not 特定秘密
              "aiko": _operator(node, "aiko", "秘", ["dprk-missile"]),
              "taro": _operator(node, "taro", "機密", ["maritime-security"])}
    indicators, lines = _flight()
    assert indicators and lines
    indicator = json.dumps(indicators[0]).encode()
    radar = b"\n".join(json.dumps(line).encode() for _, line in lines[:5])
    client = TestClient(app_for_node(node), base_url="https://testserver")

    def post(name: str, body: bytes) -> tuple[int, dict[str, object], int]:
        with node.store.repository() as repo:
            before = repo.count_items()
        answer = client.post(PATH, content=body, headers={
            "Authorization": f"Bearer {tokens[name]}", "Content-Type": NDJSON})
        with node.store.repository() as repo:
            return answer.status_code, answer.json(), repo.count_items() - before

    # Indicators are 特定秘密 (SECRET, as 極秘), radar reports 秘: kenji may read both.
    status, doc, stored = post("aiko", indicator)
    assert stored == 0, doc              # 秘 cannot publish 特定秘密
    assert status == 200 and doc["counts"] == {"accepted": 0, "refused-label": 1}, doc
    status, doc, stored = post("taro", radar)
    assert stored == 0, doc              # no need-to-know for dprk-missile
    # Answered as lines of a sensor the node never registered: taro is not told it exists.
    nowhere = b"\n".join(json.dumps(line | {"sensor": "nowhere-1"}).encode()
                          for _, line in lines[:5])
    assert doc == post("taro", nowhere)[1], doc
    assert doc["counts"] == {"accepted": 0, "unknown-sensor": 5}, doc
    # aiko may publish the reports (秘); kenji both.
    assert post("aiko", radar)[2] >= 1
    assert post("kenji", indicator)[2] == 1
    # A line far behind what aiko gave: to taro it says nothing of the sensor's latest
    # measurement (an out-of-order line's reason names its instant).
    old = json.dumps(lines[0][1] | {"t": lines[0][1]["t"] - 60.0}).encode()
    refused = post("taro", old)[1]
    assert refused == post("taro", json.dumps(
        lines[0][1] | {"t": lines[0][1]["t"] - 60.0, "sensor": "nowhere-1"}).encode())[1]
    assert "latest" not in json.dumps(refused), refused


_LEVELS = {"JPN": ("機密", "特定秘密", "極秘", "秘"),
           "KOR": ("군사I급비밀", "군사II급비밀", "군사III급비밀"),
           "USA": ("TOP SECRET", "SECRET", "CONFIDENTIAL")}


@st.composite
def _people(draw: st.DrawFn) -> Person:
    nation = draw(st.sampled_from(PARTIES))
    return Person("p", nation, draw(st.sampled_from(_LEVELS[nation])),
                  draw(st.sets(st.sampled_from(("dprk-missile", "maritime-security")))
                       .map(frozenset)))


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(person=_people(), data=st.data())
def test_nothing_a_person_may_not_read_is_taken_from_them(
        node_factory: Callable[..., Node], person: Person, data: st.DataObject) -> None:
    """Any person, any part of a flight's lines and indicators: every item stored is one they
    may read, every line of the others refused as such, and no refused sensor's order window
    moves (its next real lines are still taken)."""
    from gsomia.service.access import may_read
    from gsomia.shell.sensor_intake import SensorIntake

    if node_factory not in _NODE:    # one node for every example: an example is a batch
        _NODE[node_factory] = node_factory("JPN")
    node = _NODE[node_factory]
    indicators, lines = _flight()
    batch = data.draw(st.lists(st.sampled_from(
        [json.dumps(i).encode() for i in indicators]
        + [json.dumps(line).encode() for _, line in lines]), max_size=12))
    intake = SensorIntake(node)
    schemes = node.catalogue.schemes
    with node.store.repository() as repo:
        before = {h.item.item_id for h in repo.holdings()}
    taken = intake.take(batch, datetime.now(UTC), "p", person)
    with node.store.repository() as repo:
        new = [h for h in repo.holdings() if h.item.item_id not in before]
    assert all(may_read(person, h.current.national_label, schemes) for h in new)
    readable = {sid for sid, lb in intake.labels.items() if may_read(person, lb, schemes)}
    assert set(intake.latest) <= readable
    # Every line of a sensor they may not read is answered as one of no sensor at all.
    reasons = dict(taken.refused)
    for number, raw in enumerate(batch, start=1):
        sensor = json.loads(raw).get("sensor")
        if sensor is not None and sensor not in readable:
            assert reasons.get(number) == "unknown sensor: not registered at this node", \
                (number, reasons)
    assert all(not r.startswith(sid) for r in reasons.values() for sid in intake.labels)


_NODE: dict[object, Node] = {}


@functools.cache
def _flight() -> tuple[list[dict[str, Any]], list[tuple[float, dict[str, Any]]]]:
    return playlist("2017-08-29", None, "JPN", 0, 200.0)
