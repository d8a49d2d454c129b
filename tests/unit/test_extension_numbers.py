"""A list of bounded numbers (a sensor report's times, measurements and covariances) is checked
in one loop: it must refuse exactly what the schema walk refuses, with the same message."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.core import stix
from gsomia.core.stix import EXTENSION_PROPERTY_SCHEMAS, extension_property_problem

REPORT: dict[str, Any] = {
    "sensor": "KOR-R1", "epoch": "2026-11-01T00:00:01.000Z", "reference": [38.0, 127.0, 0.0],
    "t": [0.0, 0.5, 1.0], "z": [[812345.123, 45.1, 12.1], [812346.1, 45.2, 12.2]],
    "cov": [[1.0e4, 1.2, 0.3, 0.01, 0.001, 0.02]]}


def _walked(schema: Any) -> Any:
    """``schema`` with every number schema carrying a key the check ignores: the walk
    entry by entry, as before the loop."""
    if isinstance(schema, dict):
        out = {k: _walked(v) for k, v in schema.items()}
        if out.get("type") == "number":
            out["description"] = "walked"
        return out
    if isinstance(schema, list):
        return [_walked(v) for v in schema]
    return schema


_ENTRIES = st.one_of(
    st.floats(), st.integers(-(2**60), 2**60), st.booleans(), st.none(), st.text(max_size=3),
    st.sampled_from([1e9, -1e9, 1e9 + 1, -1e9 - 1, float("inf"), float("nan"), 2**63]),
    st.lists(st.floats(allow_nan=False), max_size=2))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["t", "z", "cov"]), st.integers(0, 5), st.integers(0, 5), _ENTRIES)
def test_the_loop_refuses_what_the_walk_refuses(field: str, row: int, col: int,
                                                entry: Any) -> None:
    doc = copy.deepcopy(REPORT)
    target = doc[field]
    if field != "t":
        target = target[row % len(target)]
    target[col % len(target)] = entry
    walked = _walked(EXTENSION_PROPERTY_SCHEMAS["x_gsomia_sensor_report"])
    expected = stix._problem(walked, doc, lambda: "x_gsomia_sensor_report")
    assert extension_property_problem("x_gsomia_sensor_report", doc) == expected


def test_a_bad_number_is_named_by_its_place() -> None:
    doc = copy.deepcopy(REPORT)
    assert extension_property_problem("x_gsomia_sensor_report", doc) is None
    doc["z"][1][2] = 2e9
    assert extension_property_problem("x_gsomia_sensor_report", doc) == \
        "x_gsomia_sensor_report.z[1][2]: 2000000000.0 is above 1000000000.0"
    doc["z"][1][2] = float("inf")
    assert extension_property_problem("x_gsomia_sensor_report", doc) == \
        "x_gsomia_sensor_report.z[1][2]: Infinity is not number"
    doc["z"][1][2] = True
    assert extension_property_problem("x_gsomia_sensor_report", doc) == \
        "x_gsomia_sensor_report.z[1][2]: true is not number"
