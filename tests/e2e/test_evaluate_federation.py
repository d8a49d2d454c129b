"""``gsomia evaluate --federation`` (issue 12): launches through the regimes' real
federations, written as the model's evaluation writes them. One short flight (the data
set's first launch, a Nodong of 439 s) under ``direct`` at 40x: three node processes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from test_sensor_feeds import gsomia

from commandline import run_gsomia_here

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


def test_evaluate_through_federations_writes_the_model_s_results_measured(
        tmp_path: Path) -> None:
    out = tmp_path / "eval"
    # Flags that do not go together are refused before any federation starts (so in this
    # process: run_gsomia_here).
    for bad, where in ((["--federation", "--jobs", "2"], "--jobs"), (["--speed", "5"], "--speed")):
        refused = run_gsomia_here("evaluate", "--regimes", "direct", "--limit", "1", "--out",
                                  str(out), *bad)
        assert refused.returncode == 2 and where in refused.stderr
        assert not out.exists()
    done = gsomia("evaluate", "--federation", "--regimes", "direct", "--limit", "1",
                  "--speed", "40", "--out", str(out), "--json", timeout=240)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["through"] == "federation" and doc["speed"] == 40.0 and doc["launches"] == 1
    with (out / "results.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["party"] for r in rows) == ["JPN", "KOR", "USA"]
    assert {(r["launch"], r["regime"], r["through"]) for r in rows} == {
        ("1993-05-29#11", "direct", "federation")}
    jpn = next(r for r in rows if r["party"] == "JPN")
    # Measured at JPN's node: KOR's reports reached it long before its own radars (153 s
    # alone) saw the missile, and it warned from what it held.
    assert float(jpn["first_detection_s"]) < 120.0 and jpn["first_warning_s"]
    summary = json.loads((out / "summary.json").read_text("utf-8"))
    assert summary["through"] == "federation"
    (run,) = summary["runs"]
    assert run["regime"] == "direct" and run["links"]["KOR->JPN"]["items"] > 0
    assert "real federation" in (out / "summary.md").read_text("utf-8")
    # The model's rows and a federation's do not mix in one summary.
    model = tmp_path / "model.csv"
    with model.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**r, "through": ""} for r in rows)
    mixed = gsomia("evaluate", "--federation", "--regimes", "direct", "--limit", "1",
                   "--seeds", "0", "--add-results", str(model), "--out", str(tmp_path / "m"))
    assert mixed.returncode == 2 and "--add-results" in mixed.stderr
