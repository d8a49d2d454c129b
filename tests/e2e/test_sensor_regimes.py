"""The warning centre under the sharing regimes, through real node processes (issue 12):
JPN's own radars first see the 2017-08-29 Hwasong-12 after burnout, and with KOR's reports
under ``direct`` JPN's node warns earlier than under ``none`` (its warning out of
``gsomia warnings --cap`` as live CAP 1.2); ``scenario run --federation`` prints the model's
figures measured at the nodes. Apart from ``test_sensor_feeds.py`` so that the two files run
on separate workers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_federation import Federation
from test_sensor_feeds import LAUNCH, WAIT, first_warning_s, gsomia, settled, url, user
from test_warnings_out import cap_schema

from gsomia.shell import exchange

pytestmark = [pytest.mark.timeout(400), pytest.mark.slow]


# The centre takes what it holds in the order it arrived: a partner's report that arrives after
# the centre has moved past its time is too late to help, as it would be in a real flight. At
# 40x a delivery slowed to 1 s by a loaded machine is 40 s of flight, so the regimes are
# compared at 10x (the README's advice too).
REGIME_SPEED = "10"


def run_regime(folder: Path, topology: str) -> tuple[float | None, str]:
    """KOR's and JPN's radars played into their nodes; JPN's first warning, and its newest
    warning as CAP from ``gsomia warnings``."""
    with Federation.running(folder, topology) as fed:
        jpn = fed.nodes["JPN"]
        tokens = {"KOR": user(fed.folder / "KOR", "kim", "군사II급비밀"),
                  "JPN": user(fed.folder / "JPN", "sato", "極秘")}
        players = [subprocess.Popen(
            [sys.executable, "-m", "gsomia", "sensors", "run", "--launch", LAUNCH, "--party",
             code, "--node", url(fed, code), "--token", tokens[code], "--ca",
             str(fed.folder / code / "tls" / "ca.crt"), "--speed", REGIME_SPEED, "--until", "260",
             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for code in ("KOR", "JPN")]
        for p in players:
            out, err = p.communicate(timeout=240)
            assert p.returncode == 0, err
            assert json.loads(out)["counts"]["accepted"] > 0
        settled(jpn)
        assert exchange.wait_until(lambda: exchange.pending(fed.nodes["KOR"]) == 0, WAIT)
        settled(jpn)
        cap = gsomia("warnings", "--node", str(fed.folder / "JPN"), "--user", tokens["JPN"],
                     "--cap")
        assert cap.returncode == 0, cap.stderr
        return first_warning_s(jpn), cap.stdout


def test_kor_reports_let_jpn_warn_before_its_own_radars_could(tmp_path: Path) -> None:
    from gsomia.core.tracking.trajectory import fit
    from gsomia.shell import feeds
    from gsomia.shell.sensor_player import playlist

    burnout = fit(feeds.find_launch(LAUNCH).flight_request()).burnout_s
    _, own = playlist(LAUNCH, None, "JPN", 0)
    assert min(line["t"] for _, line in own) > burnout   # JPN's radars miss the boost phase

    direct, cap = run_regime(tmp_path / "direct", "direct")
    alone, _ = run_regime(tmp_path / "none", "none")
    assert direct is not None
    assert alone is None or direct < alone - 10.0, (direct, alone)

    # The node's own warning comes out of `gsomia warnings --cap` as live CAP 1.2.
    cap_schema().validate(cap)
    assert "<status>Actual</status>" in cap     # a live centre's warning, not an exercise
    assert "Hokkaido" in cap


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
