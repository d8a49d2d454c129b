"""``gsomia scenario run --federation`` (issue 12): the model's figures measured at the
nodes of the regime's real federation, under ``direct``. The same run under ``hub`` (relayed
under standing consents) and the regimes' first warnings compared are checked on the demo's
federations (``test_demo.py``: ``gsomia demo`` runs each regime through
:func:`~gsomia.shell.federated_scenario.run_federated` as this command does). Apart from the
other files that play whole flights through three node processes, so that they run on
separate workers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_sensor_feeds import LAUNCH, gsomia

pytestmark = [pytest.mark.timeout(400), pytest.mark.slow]


def through_federation(regime: str) -> dict[str, Any]:
    """``scenario run --federation --json`` of the launch under ``regime``, at 50x, the
    sensors played until T+260 s: every first warning comes before, and the rest of the
    14-minute flight would only cost the nodes' work."""
    out = gsomia("scenario", "run", "--launch", LAUNCH, "--regime", regime, "--federation",
                 "--speed", "50", "--until", "260", "--json", timeout=300)
    assert out.returncode == 0, out.stderr
    doc: dict[str, Any] = json.loads(out.stdout)
    assert doc["through"] == "federation" and doc["regime"] == regime
    assert doc["played_until_s"] == 260.0
    # Read once settled, or the figures below are partial (stderr says what was moving).
    assert doc["settled"] is True, out.stderr
    return doc


def test_scenario_run_through_the_federation_prints_the_model_s_figures_measured() -> None:
    from gsomia.core.scenario import PartyOutcome
    from gsomia.core.types import PARTIES

    doc = through_federation("direct")
    # The model's figures are what its PartyOutcome prints (``scenario run --json``'s
    # parties): named here rather than replayed in a second process for names (25.1 -> 22.2 s
    # of the file's CPU, side by side).
    model = PartyOutcome("JPN").to_json()
    assert set(doc["parties"]) == set(PARTIES)
    for figures in doc["parties"].values():
        assert set(model) - {"cued", "received", "routes"} <= set(figures)
    jpn = doc["parties"]["JPN"]
    assert jpn["first_warning_s"] is not None and "Hokkaido" in jpn["warnings"][0]["regions"]
    # KOR's reports reached JPN's node: it held one before its own radars saw anything.
    assert jpn["first_detection_s"] < 150.0
    assert doc["links"]["KOR->JPN"]["items"] > 0 and doc["links"]["KOR->JPN"]["p50_ms"] > 0
