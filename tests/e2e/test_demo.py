"""``gsomia demo`` tells the whole story from the real catalogue, policy and scenario."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess


def test_demo_json(gsomia: Callable[..., CompletedProcess[str]], tmp_path: Path) -> None:
    out = gsomia("demo", "--json", "--report", str(tmp_path / "report"), timeout=600)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    verdicts = {d["case"].split(":")[0]: d["decision"]["permit"] for d in doc["decisions"]}
    assert verdicts["2017"] is True and verdicts["2016"] is False
    assert doc["states"]["jpn-kor-gsomia-2016"]["2019-10-01"]["state"] == "notice-given"
    regimes = doc["warning"]["regimes"]
    assert set(regimes) == {"none", "hub", "direct", "trilateral"}
    jpn = {name: run["parties"]["JPN"]["first_warning_s"] for name, run in regimes.items()}
    assert all(t is not None for t in jpn.values())
    assert jpn["direct"] <= jpn["none"] and jpn["direct"] <= jpn["hub"]
    issued = [w for w in regimes["direct"]["parties"]["JPN"]["warnings"]
              if w["action"] == "issued"]
    assert "Hokkaido" in issued[0]["regions"]
    fed = doc["federation"]
    assert fed["delivered"] is True and fed["published_at_kor"] > 0
    assert fed["jpn_marking"].startswith("極秘//FGI KOR")
    assert all(a["ok"] for a in fed["audit"].values()) and set(fed["audit"]) == {
        "JPN", "KOR", "USA"}
    assert set(fed["stopped"]) == {"JPN", "KOR", "USA"}
    left = subprocess.run(["pgrep", "-f", fed["folder"]], capture_output=True, text=True)
    assert left.stdout.strip() == "", "a node process was left running"
    report = Path(doc["report"])
    assert report == tmp_path / "report" / "index.html" and report.is_file()
    html = report.read_text("utf-8")
    assert "Hokkaido" in html and "jpn-kor-gsomia-2016" in html


def test_demo_text_names_the_warnings(gsomia: Callable[..., CompletedProcess[str]],
                                      tmp_path: Path) -> None:
    out = gsomia("demo", "--report", str(tmp_path), timeout=600)
    assert out.returncode == 0, out.stderr
    assert "First warning" in out.stdout and "Hokkaido" in out.stdout
    assert "PERMIT" in out.stdout and "DENY" in out.stdout
    assert "\x1b[" not in out.stdout   # no colour codes when not a terminal
    assert f"Report: {tmp_path / 'index.html'}" in out.stdout.replace("\n", "")


def test_demo_serve_keeps_the_dashboards_until_interrupted(tmp_path: Path) -> None:
    import signal
    import sys
    import time

    import httpx

    proc = subprocess.Popen([sys.executable, "-m", "gsomia", "demo", "--serve", "--report",
                             str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 400
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "press Ctrl-C" in line:
                break
        urls = [w for line in lines for w in line.split() if w.startswith("https://127.0.0.1")]
        assert len(urls) == 3, "".join(lines)
        tokens = [line.split("token ")[1].strip() for line in lines if "token " in line]
        assert len(tokens) == 3
        page = httpx.get(urls[0] + "login", verify=False, timeout=10)
        assert page.status_code == 200 and "<form" in page.text
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert "nodes stopped: JPN stopped, KOR stopped, USA stopped" in out
    left = subprocess.run(["pgrep", "-f", "gsomia-demo-"], capture_output=True, text=True)
    assert left.stdout.strip() == "", "a demo node process was left running"
