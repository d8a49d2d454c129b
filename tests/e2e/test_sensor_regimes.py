"""The warning centre under the sharing regimes, through real node processes (issue 12):
JPN's own radars first see the 2017-08-29 Hwasong-12 after burnout, and with KOR's reports
under ``direct`` JPN's node warns earlier than under ``none`` (its warning out of
``gsomia warnings --cap`` as live CAP 1.2). Apart from ``test_sensor_feeds.py`` and
``test_sensor_federation.py`` so that the files run on separate workers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
