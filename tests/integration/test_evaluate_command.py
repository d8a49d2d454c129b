"""``gsomia evaluate`` as a user runs it: measures over seeds, files, plots, bad input."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import pytest

pytestmark = pytest.mark.slow  # each test runs the evaluation in its own process


def test_evaluate_measures_over_seeds(gsomia: Callable[..., CompletedProcess[str]],
                                      tmp_path: Path) -> None:
    out = tmp_path / "ev"
    done = gsomia("evaluate", "--out", str(out), "--limit", "1", "--regimes", "none,direct",
                  "--seeds", "2", "--jobs", "1", "--json", timeout=600)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["seeds"] == [0, 1]
    m = doc["measures"]["direct"]["JPN"]
    assert set(m) >= {"recall", "false_land_alerts", "first_land_alert_median_s",
                      "first_land_alert_worst_s", "impact_error_median_km"}
    assert m["false_land_alerts"]["seeds"] == 2
    assert m["passed_delay_median_s"] == "not available"
    rows = list(csv.DictReader((out / "results.csv").open(encoding="utf-8")))
    assert len(rows) == 2 * 2 * 3            # seeds × regimes × parties
    assert {r["seed"] for r in rows} == {"0", "1"}
    assert {"true_land_regions", "first_land_alert_s", "missile_passed_s"} <= set(rows[0])
    for name in ("measure-recall.png", "measure-false-alerts.png",
                 "measure-first-alert-median.png", "measure-impact-error.png",
                 "measure-passed-delay.png", "launch-map.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert "95% interval" in (out / "summary.md").read_text("utf-8")


def test_evaluate_refuses_no_seeds(gsomia: Callable[..., CompletedProcess[str]],
                                   tmp_path: Path) -> None:
    done = gsomia("evaluate", "--out", str(tmp_path / "ev"), "--seeds", "0")
    assert done.returncode == 2
    assert "--seeds" in done.stderr and "Traceback" not in done.stderr
