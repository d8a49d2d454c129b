"""The warning centre under the sharing regimes, through real node processes (issue 12):
JPN's own radars first see the 2017-08-29 Hwasong-12 after burnout, and with KOR's reports
under ``direct`` JPN's node warns earlier than under ``none`` (its warning out of
``gsomia warnings --cap`` as live CAP 1.2, its tracks, predictions and warned regions out of
``--geojson``). JPN's radars are played by ``gsomia replay``, which prints the warnings
JPN's own centre issued. Apart from ``test_sensor_feeds.py`` and
``test_sensor_federation.py`` so that the files run on separate workers."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from geojson_pydantic import FeatureCollection
from test_federation import Federation
from test_sensor_feeds import LAUNCH, WAIT, first_warning_s, gsomia, notes, settled, url, user
from test_warnings_out import cap_schema

from gsomia.shell import exchange

pytestmark = [pytest.mark.timeout(400), pytest.mark.slow]


# The centre takes what it holds in the order it arrived: a partner's report that arrives after
# the centre has moved past its time is too late to help, as it would be in a real flight. At
# 40x a delivery slowed to 1 s by a loaded machine is 40 s of flight, so the regimes are
# compared at 10x (the README's advice too).
REGIME_SPEED = "10"


@dataclass
class Regime:
    first_warning_s: float | None   # JPN's, from what its node holds
    cap: str                        # JPN's newest warning (gsomia warnings --cap)
    geojson: dict[str, Any]         # gsomia warnings --geojson
    replayed: dict[str, Any]        # what gsomia replay printed (--json)
    held: list[dict[str, Any]]      # JPN's own warnings held in the end


def run_regime(folder: Path, topology: str) -> Regime:
    """KOR's radars played into its node (``sensors run`` over HTTPS) and JPN's into its
    running node (``gsomia replay``) at once; what JPN's node warned."""
    with Federation.running(folder, topology) as fed:
        jpn = fed.nodes["JPN"]
        tokens = {"KOR": user(fed.folder / "KOR", "kim", "군사II급비밀"),
                  "JPN": user(fed.folder / "JPN", "sato", "極秘")}
        players = [subprocess.Popen(
            [sys.executable, "-m", "gsomia", "sensors", "run", "--launch", LAUNCH, "--party",
             "KOR", "--node", url(fed, "KOR"), "--token", tokens["KOR"], "--ca",
             str(fed.folder / "KOR" / "tls" / "ca.crt"), "--speed", REGIME_SPEED, "--until",
             "260", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
            subprocess.Popen(
            [sys.executable, "-m", "gsomia", "replay", "--node", str(fed.folder / "JPN"),
             "--launch", LAUNCH, "--speed", REGIME_SPEED, "--until", "260", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
        done = []
        for p in players:
            out, err = p.communicate(timeout=240)
            assert p.returncode == 0, err
            done.append(json.loads(out))
            assert done[-1]["counts"]["accepted"] > 0
        settled(jpn)
        assert exchange.wait_until(lambda: exchange.pending(fed.nodes["KOR"]) == 0, WAIT)
        settled(jpn)
        read = [gsomia("warnings", "--node", str(fed.folder / "JPN"), "--user", tokens["JPN"],
                       fmt) for fmt in ("--cap", "--geojson")]
        for r in read:
            assert r.returncode == 0, r.stderr
        held = [w for w in notes(jpn, "x_gsomia_warning") if w["originator"] == "JPN"]
        return Regime(first_warning_s(jpn), read[0].stdout, json.loads(read[1].stdout),
                      done[1], held)


def check_replayed(regime: Regime) -> None:
    """What ``gsomia replay`` printed is what JPN's own centre issued: each warning held
    there, at the flight second the centre stamped it with."""
    printed = regime.replayed["warnings"]
    held = {w["id"]: w for w in regime.held}
    assert {w["id"] for w in printed} <= set(held)
    for w in printed:
        assert w["after_launch_s"] == pytest.approx(held[w["id"]]["at_s"], abs=0.06)
        assert (w["action"], w["regions"]) == (held[w["id"]]["action"],
                                               held[w["id"]]["regions"])
    issued = [w["after_launch_s"] for w in printed if w["action"] == "issued"]
    if regime.first_warning_s is None:
        assert not issued
    else:
        assert issued and min(issued) == pytest.approx(regime.first_warning_s, abs=0.06)


def test_kor_reports_let_jpn_warn_before_its_own_radars_could(tmp_path: Path) -> None:
    from gsomia.core.tracking.trajectory import fit
    from gsomia.shell import feeds
    from gsomia.shell.sensor_player import playlist

    burnout = fit(feeds.find_launch(LAUNCH).flight_request()).burnout_s
    _, own = playlist(LAUNCH, None, "JPN", 0)
    assert min(line["t"] for _, line in own) > burnout   # JPN's radars miss the boost phase

    shared = run_regime(tmp_path / "direct", "direct")
    own = run_regime(tmp_path / "none", "none")
    direct, alone = shared.first_warning_s, own.first_warning_s
    assert direct is not None
    assert alone is None or direct < alone - 10.0, (direct, alone)
    for regime in (shared, own):
        check_replayed(regime)

    # The node's own warning comes out of `gsomia warnings --cap` as live CAP 1.2.
    cap = shared.cap
    cap_schema().validate(cap)
    assert "<status>Actual</status>" in cap     # a live centre's warning, not an exercise
    assert "Hokkaido" in cap
    # And its tracks, impact ellipses and warned regions as GeoJSON.
    FeatureCollection.model_validate(shared.geojson)
    kinds = {f["properties"]["kind"] for f in shared.geojson["features"]}
    assert {"track", "impact-ellipse", "warned-area"} <= kinds
