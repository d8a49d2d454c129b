"""``gsomia evaluate`` as a user runs it: measures over seeds, files, plots, bad input."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest

from commandline import run_gsomia, run_gsomia_here

pytestmark = pytest.mark.slow  # each test runs the evaluation in its own process


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One evaluation of the first launch over two seeds, under ``none`` and ``direct``: its
    folder and its JSON. Read, never written to, by the tests that share it (one run of the
    command less, about 6 s of CPU)."""
    out = tmp_path_factory.mktemp("evaluate") / "ev"
    done = run_gsomia("evaluate", "--out", str(out), "--limit", "1", "--regimes", "none,direct",
                      "--seeds", "2", "--jobs", "1", "--json", timeout=600)
    assert done.returncode == 0, done.stderr
    return out, json.loads(done.stdout)


def test_evaluate_measures_over_seeds(two_seeds: tuple[Path, dict[str, Any]]) -> None:
    out, doc = two_seeds
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


def test_evaluate_refuses_no_seeds(tmp_path: Path) -> None:
    done = run_gsomia_here("evaluate", "--out", str(tmp_path / "ev"), "--seeds", "0")
    assert done.returncode == 2
    assert "--seeds" in done.stderr and "Traceback" not in done.stderr


def test_evaluate_seeds_run_one_at_a_time_add_up(
        gsomia: Callable[..., CompletedProcess[str]], tmp_path: Path,
        two_seeds: tuple[Path, dict[str, Any]]) -> None:
    """Seeds run separately and folded in with --add-results measure what one run of all of
    them measures (the full evaluation runs seed by seed on a busy machine). The run of all
    of them is the shared one, under ``direct`` too: a regime's measures and rows are the
    same whichever other regimes run beside it, so ``none``'s are compared."""
    both, together = two_seeds
    common = ("--limit", "1", "--regimes", "none", "--jobs", "1", "--json")
    alone = gsomia("evaluate", "--out", str(tmp_path / "one"), "--seed", "1", *common,
                   timeout=600)
    assert alone.returncode == 0, alone.stderr
    folded = gsomia("evaluate", "--out", str(tmp_path / "folded"), "--seed", "0",
                    "--add-results", str(tmp_path / "one" / "results.csv"), *common,
                    timeout=600)
    assert folded.returncode == 0, folded.stderr
    got = json.loads(folded.stdout)
    want_measures = {"none": together["measures"]["none"]}
    assert got["seeds"] == [0, 1]
    assert got["measures"] == want_measures
    assert got["summary"] == {p: {"none": e["none"]} for p, e in together["summary"].items()}

    def rows(folder: Path) -> list[tuple[str, ...]]:
        with (folder / "results.csv").open(encoding="utf-8") as fh:
            return sorted(tuple(r.values()) for r in csv.DictReader(fh)
                          if r["regime"] == "none")

    assert rows(tmp_path / "folded") == rows(both) and len(rows(both)) == 2 * 3
    # summarise what is there without running a seed (only the regimes asked for)
    only = gsomia("evaluate", "--out", str(tmp_path / "only"), "--seeds", "0",
                  "--add-results", str(both / "results.csv"), *common, timeout=600)
    assert only.returncode == 0, only.stderr
    assert json.loads(only.stdout)["measures"] == want_measures


def test_evaluate_refuses_results_it_cannot_add(tmp_path: Path) -> None:
    """Each refused before any seed runs: in this process (:func:`run_gsomia_here`)."""
    good = tmp_path / "good.csv"
    header = ("launch,regime,party,seed,cued,apogee_km,range_km,flight_time_s,"
              "first_detection_s,first_track_s,first_ipp_s,first_warning_s,ipp_error_km,"
              "true_land_regions,first_land_alert_s,alerted_right_regions,missile_passed_s,"
              "passed_message_s")
    good.write_text(header + "\n1993-05-29#11,direct,JPN,1,True,150,500,400,1,2,3,4,5,,,"
                    "False,,\n", "utf-8")
    cases = {
        "missing.csv": None,                                     # no such file
        "columns.csv": "launch,regime\n1993-05-29#11,direct\n",  # not evaluate's columns
        "number.csv": header + "\n1993-05-29#11,direct,JPN,1,True,x,500,400,1,2,3,4,5,,,"
                      "False,,\n",
        "flag.csv": header + "\n1993-05-29#11,direct,JPN,1,yes,150,500,400,1,2,3,4,5,,,"
                    "False,,\n",
        "other.csv": header + "\n2017-08-29#99,direct,JPN,1,True,150,500,400,1,2,3,4,5,,,"
                     "False,,\n",
    }
    for name, text in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text, "utf-8")
        done = run_gsomia_here("evaluate", "--out", str(tmp_path / "ev"), "--limit", "1",
                               "--regimes", "direct", "--seeds", "0", "--add-results",
                               str(path))
        assert done.returncode == 2, (name, done.stderr)
        assert "--add-results" in done.stderr and "Traceback" not in done.stderr, name
    # the same seed twice, and a seed both added and run
    for extra in (("--add-results", str(good), "--seeds", "0"), ("--seed", "1")):
        done = run_gsomia_here("evaluate", "--out", str(tmp_path / "ev"), "--limit", "1",
                               "--regimes", "direct", "--add-results", str(good), *extra)
        assert done.returncode == 2, (extra, done.stderr)
        assert "Traceback" not in done.stderr


def test_land_alerts_only_for_flights_over_territory_and_passed_for_japan(
        gsomia: Callable[..., CompletedProcess[str]], tmp_path: Path) -> None:
    """Issue 13: no land alert unless the true flight crosses the party's territory (land and
    territorial sea), every crossing alerted with its regions, and a "passed" message for
    Japan too. The Scud-Cs of 2014-07-13 flew along the DMZ 2-3 km north of Gyeonggi's land
    (the 20 km corridor buffer alerted Gyeonggi and Gangwon); the 2016-02-07 Unha-3 flew over
    Okinawa's territorial sea (alerted, but not counted as crossing: only land was); the
    2017-08-29 Hwasong-12 overflew Hokkaido (the picture stopped before it left Hokkaido, so
    Japan never said it had passed)."""
    out = tmp_path / "ev"
    done = gsomia("evaluate", "--out", str(out), "--launch", "2014-07-13", "--launch",
                  "2016-02-07", "--launch", "2017-08-29", "--regimes", "none,direct",
                  "--jobs", "1", "--json", timeout=1200)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["launches"] == 4
    for regime in ("none", "direct"):
        for party, m in doc["measures"][regime].items():
            assert m["false_land_alerts"]["mean"] == 0.0, (regime, party)
            assert m["recall"]["mean"] == 1.0 and m["recall_right_regions"]["mean"] == 1.0, (
                regime, party)
    assert doc["measures"]["direct"]["JPN"]["crossing"] == 2     # Okinawa's sea, Hokkaido
    assert isinstance(doc["measures"]["direct"]["JPN"]["passed_delay_median_s"]["mean"], float)
    rows = list(csv.DictReader((out / "results.csv").open(encoding="utf-8")))
    hokkaido = next(r for r in rows if r["date"] == "2017-08-29" and r["regime"] == "direct"
                    and r["party"] == "JPN")
    assert hokkaido["true_land_regions"] == "Hokkaido"
    assert float(hokkaido["first_land_alert_s"]) <= 152.1       # no later than before
    assert float(hokkaido["passed_message_s"]) > float(hokkaido["missile_passed_s"]) - 60.0
    # A lost track never says "passed" before the missile has passed (issue 13, part 4): the
    # USA alone lost the 2016-02-07 Unha-3 over the Yellow Sea, retracted Okinawa and said
    # it had passed Incheon, 6 minutes before the rocket passed Okinawa (-364 s); its alert
    # now stands until the predicted passing.
    for r in rows:
        if r["passed_message_s"] and r["missile_passed_s"]:
            assert float(r["passed_message_s"]) > float(r["missile_passed_s"]) - 30.0, r
    alone = [r for r in rows if r["date"] == "2016-02-07" and r["regime"] == "none"
             and r["party"] == "USA"]
    assert alone and all(r["passed_message_s"] for r in alone)


def test_evaluate_refuses_a_date_without_a_launch(tmp_path: Path) -> None:
    done = run_gsomia_here("evaluate", "--out", str(tmp_path / "ev"), "--launch", "2001-01-01")
    assert done.returncode == 2
    assert "2001-01-01" in done.stderr and "Traceback" not in done.stderr
    bad = run_gsomia_here("evaluate", "--out", str(tmp_path / "ev"), "--launch", "yesterday")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
