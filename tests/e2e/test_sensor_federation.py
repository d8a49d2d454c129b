"""``gsomia scenario run --federation`` (issue 12): the model's figures measured at the
nodes of the regime's real federation, under ``direct`` and under ``hub`` (relayed under
standing consents). Apart from ``test_sensor_regimes.py`` so that the files run on separate
workers: each plays whole flights through three node processes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_sensor_feeds import LAUNCH, gsomia

pytestmark = [pytest.mark.timeout(400), pytest.mark.slow]


def through_federation(regime: str) -> dict[str, Any]:
    """``scenario run --federation --json`` of the launch under ``regime``, at 50x."""
    out = gsomia("scenario", "run", "--launch", LAUNCH, "--regime", regime, "--federation",
                 "--speed", "50", "--json", timeout=300)
    assert out.returncode == 0, out.stderr
    doc: dict[str, Any] = json.loads(out.stdout)
    assert doc["through"] == "federation" and doc["regime"] == regime
    return doc


def test_scenario_run_through_the_federation_prints_the_model_s_figures_measured() -> None:
    doc = through_federation("direct")
    model = json.loads(gsomia("scenario", "run", "--launch", LAUNCH, "--regime", "direct",
                              "--json").stdout)
    assert set(doc["parties"]) == set(model["parties"])
    for figures in doc["parties"].values():
        assert set(model["parties"]["JPN"]) - {"cued", "received", "routes"} <= set(figures)
    jpn = doc["parties"]["JPN"]
    assert jpn["first_warning_s"] is not None and "Hokkaido" in jpn["warnings"][0]["regions"]
    # KOR's reports reached JPN's node: it held one before its own radars saw anything.
    assert jpn["first_detection_s"] < 150.0
    assert doc["links"]["KOR->JPN"]["items"] > 0 and doc["links"]["KOR->JPN"]["p50_ms"] > 0


def test_the_hub_relays_through_the_federation_with_standing_consents() -> None:
    doc = through_federation("hub")
    # KOR and JPN each granted USA a standing consent for the other, held at the hub.
    assert doc["consents"]["held_at_hub"] and len(doc["consents"]["standing"]) == 2
    # Under the hub nothing goes between KOR and JPN directly: only through USA.
    assert not {"KOR->JPN", "JPN->KOR"} & set(doc["links"])
    relay = doc["relays"]["KOR->USA->JPN"]
    assert relay["items"] > 0 and 0 < relay["p50_ms"] <= relay["p99_ms"]
    # KOR's relayed reports reached JPN's node before its own radars saw anything.
    assert doc["parties"]["JPN"]["first_detection_s"] < 150.0
