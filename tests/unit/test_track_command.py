"""``gsomia track --measurements FILE``: schema, errors that name the field, and results."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from tracking_fixtures import example_document, km_between, srbm

from gsomia.core.errors import MalformedInput
from gsomia.shell.commands.track import register, schema, validate

EXAMPLE = Path(__file__).resolve().parents[1] / "assets" / "measurements-example.json"


def cli() -> click.Group:
    group = click.Group()
    register(group)
    return group


def invoke(*args: str, stdin: str | None = None) -> Any:
    return CliRunner().invoke(cli(), ["track", *args], input=stdin, catch_exceptions=True)


def track_json(doc: dict[str, Any], *extra: str) -> dict[str, Any]:
    result = invoke("--measurements", "-", "--json", *extra, stdin=json.dumps(doc))
    assert result.exit_code == 0, result.output + repr(result.exception)
    out: dict[str, Any] = json.loads(result.output)
    return out


def example() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    return doc


def test_example_file_is_valid_and_matches_its_generator() -> None:
    doc = example()
    validate(doc, str(EXAMPLE))
    fresh = example_document()
    assert [m["sensor"] for m in doc["measurements"]] == [
        m["sensor"] for m in fresh["measurements"]]
    for a, b in zip(doc["measurements"], fresh["measurements"], strict=True):
        assert a["t"] == pytest.approx(b["t"])
        assert a["azimuth_deg"] == pytest.approx(b["azimuth_deg"], abs=1e-4)
        assert a.get("range_m", 0.0) == pytest.approx(b.get("range_m", 0.0), abs=0.1)


def test_track_reports_tracks_launch_and_impact_over_time() -> None:
    out = track_json(example())
    assert out["measurements"] == len(example()["measurements"])
    assert out["epoch"] == "2019-07-25T20:23:00Z"
    (trk,) = out["tracks"]
    assert trk["status"] == "active"
    assert trk["updates"] > 40
    assert trk["sensors"] == ["KOR-GREEN-PINE", "USA-SBIRS-GEO"]
    preds = out["predictions"]
    assert len(preds) >= 10
    assert preds[0]["at"].startswith("2019-07-25T20:23:")
    times = [p["time"] for p in preds]
    assert times == sorted(times)
    flight = srbm()
    last = preds[-1]
    assert km_between(last["impact"]["lat_deg"], last["impact"]["lon_deg"],
                      flight.impact_lat_deg, flight.impact_lon_deg) < 1.5
    assert last["impact_error_km"] < 1.5
    assert last["launch_error_km"] < 2.0
    assert abs(last["time"] + last["time_to_impact_s"] - flight.impact_time) < 3.0
    ellipse = last["impact"]["ellipse"]
    assert ellipse["sigma"] == 2.0
    assert 0.0 < ellipse["semi_minor_km"] <= ellipse["semi_major_km"] < 5.0
    assert preds[0]["impact"]["ellipse"]["semi_major_km"] > ellipse["semi_major_km"]
    assert [e["kind"] for e in out["events"]] == ["track-initiated"]


def test_until_reports_the_impact() -> None:
    out = track_json(example(), "--until", "400")
    (lost,) = [e for e in out["events"] if e["kind"] == "track-lost"]
    assert lost["reason"] == "impacted" and lost["retract"] is False
    assert out["tracks"][0]["status"] == "lost:impacted"


def test_human_output_names_the_impact_point() -> None:
    result = invoke("--measurements", str(EXAMPLE))
    assert result.exit_code == 0, result.output
    assert "track 1:" in result.output and "impact 39.5" in result.output


def test_schema_is_a_valid_json_schema() -> None:
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(schema())


def broken(change: Any) -> dict[str, Any]:
    doc = copy.deepcopy(example())
    change(doc)
    return doc


@pytest.mark.parametrize(("change", "where"), [
    (lambda d: d["measurements"][3].pop("azimuth_deg"), "$.measurements[3]"),
    (lambda d: d["sensors"][0].__setitem__("lat_deg", "north"), "$.sensors[0].lat_deg"),
    (lambda d: d["sensors"][1].__setitem__("kind", "sonar"), "$.sensors[1].kind"),
    (lambda d: d["measurements"][1].pop("range_m"), "$.measurements[1].range_m"),
    (lambda d: d["measurements"][0].__setitem__("range_m", 1000.0),
     "$.measurements[0].range_m"),
    (lambda d: d["measurements"][4].__setitem__("sensor", "KOR-NOWHERE"),
     "$.measurements[4].sensor"),
    (lambda d: d["measurements"][5].__setitem__("t", 0.0), "$.measurements[5].t"),
    (lambda d: d["sensors"][0]["noise"].pop("range_m"), "$.sensors[0].noise"),
    (lambda d: d["sensors"].append(dict(d["sensors"][0])), "$.sensors[2].id"),
    (lambda d: d.__setitem__("extra", 1), "$"),
])
def test_bad_input_names_the_field(change: Any, where: str) -> None:
    doc = broken(change)
    result = invoke("--measurements", "-", "--json", stdin=json.dumps(doc))
    assert isinstance(result.exception, MalformedInput), result.output
    assert where in result.exception.where


def test_unreadable_and_non_json_input_are_malformed(tmp_path: Path) -> None:
    result = invoke("--measurements", str(tmp_path / "missing.json"))
    assert isinstance(result.exception, MalformedInput)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    result = invoke("--measurements", str(bad))
    assert isinstance(result.exception, MalformedInput)
