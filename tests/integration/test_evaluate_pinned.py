"""The fast evaluation computes what the slow one did.

``tests/assets/evaluate_results_before_speedup.json`` holds rows of ``evaluate`` and two
``scenario run`` documents made by the code before the speed-up (commit e1d1abf) for a few
launches, regimes and seeds: an overflight of Hokkaido, a lofted ICBM, a space launch over
Okinawa, a short-range missile, and one launch under a second seed. Where the model is
unchanged, the present code must reproduce every value. The territory has changed since
(issue 13: coastlines from GSHHG), so these runs use the atlas they were made with, kept in
``tests/assets/geography_before_issue13``. The warnings have changed too (alert areas as
corridors, steady impact predictions, early alerts: issue 13), so what follows from them is
left out of the comparison (``WARNING_MODEL``); detection, tracking, cueing and what each party
received are still the old model's and must match.

Since the compiled kernels (issue 13, part 6: ``core/tracking/kernels.py``) the tracker, the
flight model and the integrations run in numba: the same operations in the same order, but
libm's exp, sin and cos and the summation order of the small matrix products differ from
NumPy's in the last bits. So floats are compared within 1e-6 relative (as before: the JSON
holds rounded values) and everything else exactly: regions, levels, reasons, routes, which
detections and tracks, counts. Nothing was loosened for the kernels.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from gsomia.bootstrap import scenario_runner
from gsomia.core.tracking import geography
from gsomia.shell import feeds
from gsomia.shell.scenarios import EVALUATION, fittable_launches

pytestmark = pytest.mark.slow  # replays whole launches under every regime

ASSETS = Path(__file__).resolve().parents[1] / "assets"
PINNED = json.loads((ASSETS / "evaluate_results_before_speedup.json").read_text("utf-8"))
OLD_ATLAS = geography.atlas([
    json.loads((ASSETS / "geography_before_issue13" / name).read_text("utf-8"))
    for name in ("japan-prefectures.geojson", "korea-provinces.geojson", "eez.geojson")])


@pytest.fixture(autouse=True)
def atlas_of_the_pinned_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feeds, "load_geography", lambda: OLD_ATLAS)


# Values the issue-13 warning model changed on purpose (measured in docs/warning-measures):
# the warnings themselves; then the territory (land and territorial sea), the corridor's
# buffer (20 km → 3 km) and the announced drop zones of space launches changed what is true
# of a flight and what was alerted (the measure columns); and an evaluation's picture now goes
# on until the missile has passed the territory, so a party receives more of its partners'
# impact predictions on the flights that cross it ("impact-prediction" counts).
WARNING_MODEL = frozenset({"first_warning_s", "ipp_error_km", "drop_error_km",
                           "warned_regions", "warnings", "true_land_regions",
                           "land_alert_regions", "first_land_alert_s", "alerted_right_regions",
                           "missile_passed_s", "passed_message_s", "impact-prediction"})

# Multi-stage flights changed on purpose (issue 13, part 4): a space launcher's boost (its
# first stage burns out near 1.9 km/s and falls ~450 km downrange, not ~900 km, so its whole
# fitted flight differs), and every multi-stage flight's spent stages are now in the radars'
# view (more detections, tracks and predictions, the missile's track kept through the
# staging). Their pins are of the model before; the single-stage cases still pin it exactly.
MULTI_STAGE = frozenset({"ICBM", "SLBM", "SLV"})


def single_stage(launch: str) -> bool:
    """``launch``: a launch's id, or a date (its first launch)."""
    found = (next(x for x in fittable_launches() if x.id == launch) if "#" in launch
             else feeds.find_launch(launch))
    return found.missile_class not in MULTI_STAGE


def unchanged(doc: Any) -> Any:
    """``doc`` without the values of :data:`WARNING_MODEL`, at any depth."""
    if isinstance(doc, dict):
        return {k: unchanged(v) for k, v in doc.items() if k not in WARNING_MODEL}
    if isinstance(doc, list):
        return [unchanged(v) for v in doc]
    return doc


def same(expected: Any, got: Any, where: str) -> None:
    """Equal, floats within 1e-6 relative (the JSON holds rounded values)."""
    if isinstance(expected, float) and isinstance(got, int | float):
        assert math.isclose(expected, got, rel_tol=1e-6, abs_tol=1e-9), f"{where}: {got}"
    elif isinstance(expected, dict):
        assert isinstance(got, dict) and set(got) == set(expected), f"{where}: keys differ"
        for k in expected:
            same(expected[k], got[k], f"{where}.{k}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), f"{where}: length"
        for i, (e, g) in enumerate(zip(expected, got, strict=True)):
            same(e, g, f"{where}[{i}]")
    else:
        assert expected == got, f"{where}: expected {expected!r}, got {got!r}"


@pytest.mark.parametrize("case", [c for c in PINNED["cases"] if single_stage(c["launch"])],
                         ids=lambda c: f"{c['launch']}-seed{c['seed']}")
def test_evaluate_rows_match_the_code_before_the_speedup(case: dict[str, Any]) -> None:
    launch = next(x for x in fittable_launches() if x.id == case["launch"])
    got = scenario_runner().evaluate_launch(launch, tuple(PINNED["regimes"]), (case["seed"],))
    expected = [{k: v for k, v in unchanged(r).items() if k != "seed"} for r in PINNED["rows"]
                if r["launch"] == case["launch"] and r["seed"] == case["seed"]]
    assert len(expected) == 12      # four regimes, three parties
    # every party of every regime, with its first detection and track
    same(expected, [{k: r[k] for k in e} for r, e in zip(got, expected, strict=True)],
         case["launch"])


@pytest.mark.parametrize("key", sorted(k for k in PINNED["runs"] if single_stage(k[:10])))
def test_scenario_documents_match_the_code_before_the_speedup(key: str) -> None:
    day, regime = key.split("/")
    res = scenario_runner().run_one(feeds.find_launch(day), regime, 0, options=EVALUATION)
    # what each party detected, tracked and received, and by which route
    same(unchanged(PINNED["runs"][key]), unchanged(json.loads(json.dumps(res.to_json()))), key)


# The second speed-up (nearest coast by dot product, corridor answers shared between regimes,
# ground crossings tested by radial heights) changed no model: with that day's territory and
# warnings, every value of these rows, warnings included, was what commit bdc8eba computed.
# Since, the territory took in the territorial sea and the warnings changed (WARNING_MODEL);
# everything else still is what bdc8eba computed.
WHOLE = json.loads((ASSETS / "evaluate_rows_bdc8eba.json").read_text("utf-8"))


@pytest.mark.parametrize("launch", sorted({r["launch"] for r in WHOLE["rows"]
                                            if single_stage(r["launch"])}))
def test_evaluate_rows_and_warnings_match_the_code_before_the_second_speedup(
        launch: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()      # today's atlas, not the pinned runs' one
    found = next(x for x in fittable_launches() if x.id == launch)
    got = scenario_runner().evaluate_launch(found, tuple(WHOLE["regimes"]), (0,))
    expected = [unchanged(r) for r in WHOLE["rows"] if r["launch"] == launch]
    assert len(expected) == 12
    same(expected, unchanged(json.loads(json.dumps(got))), launch)


# Its scenario documents (``WHOLE["runs"]``) are of the 2012-12-12 space launch alone, whose
# model changed on purpose (MULTI_STAGE): no longer compared.
