"""``gsomia demo`` tells the whole story from the real catalogue, policy and scenario, and
runs the launch through a real three-node federation per regime, each in its own topology:
every party's sensors played into its node, the nodes' own warning centres warning."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gsomia import bootstrap
from gsomia.shell import federation

pytestmark = [pytest.mark.timeout(420), pytest.mark.slow]

PARTIES = ("JPN", "KOR", "USA")
TRILATERAL_KINDS = {"launch-point", "flight-path", "impact-prediction"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One full run (all four regimes), shared by the assertions below."""
    import os
    import sys

    report = tmp_path_factory.mktemp("report")
    # --keep: the tests below read the nodes' stores; pytest removes its temporary folder.
    # At 10x, half the default speed: a delivery may take twice as long (a loaded machine,
    # the suite's other workers) before KOR's reports reach JPN's centre too late to count.
    out = subprocess.run([sys.executable, "-m", "gsomia", "demo", "--json", "--keep",
                          "--speed", "10", "--report", str(report)], capture_output=True,
                         text=True,
                         timeout=400, check=False,
                         env={**os.environ, "TMPDIR": str(tmp_path_factory.mktemp("tmp"))})
    assert out.returncode == 0, out.stderr
    yield json.loads(out.stdout)


def _held_at(folder: Path, holder: str) -> list[tuple[str, str | None, str]]:
    """(originator, provider, content) of every item the node holds, from its own store."""
    with bootstrap.open_node(folder / holder) as node, node.store.repository() as repo:
        out = []
        for h in repo.holdings():
            received = [r for r in h.custody if r.event == "received"]
            out.append((h.item.originator, received[0].provider if received else None,
                        h.item.content.decode("utf-8")))
        return out


def _created_by(folder: Path, holder: str) -> dict[str, str]:
    """Who made each item the node made itself, from its own audit log."""
    import sqlalchemy as sa

    from gsomia.shell.store import audit_events

    e = audit_events.c
    with bootstrap.open_node(folder / holder) as node, node.store.engine.connect() as conn:
        return {str(r.item_id): str(r.actor) for r in conn.execute(
            sa.select(e.item_id, e.actor).where(e.kind == "item-created"))}


def test_story_and_model(demo: dict[str, Any]) -> None:
    verdicts = {d["case"].split(":")[0]: d["decision"]["permit"] for d in demo["decisions"]}
    assert verdicts["2017"] is True and verdicts["2016"] is False
    assert demo["states"]["jpn-kor-gsomia-2016"]["2019-10-01"]["state"] == "notice-given"
    regimes = demo["warning"]["regimes"]
    assert list(regimes) == ["none", "hub", "direct", "trilateral"]
    jpn = {name: run["parties"]["JPN"]["first_warning_s"] for name, run in regimes.items()}
    assert all(t is not None for t in jpn.values())
    assert jpn["direct"] <= jpn["none"] and jpn["direct"] <= jpn["hub"]
    issued = [w for w in regimes["direct"]["parties"]["JPN"]["warnings"]
              if w["action"] == "issued"]
    assert "Hokkaido" in issued[0]["regions"]


def test_model_agrees_with_scenario_run(demo: dict[str, Any],
                                        gsomia: Callable[..., CompletedProcess[str]]) -> None:
    """The demo's model table and ``scenario run`` print the same times for the same launch,
    regime and seed (the README shows them side by side); under ``direct`` the 2017
    Hwasong-12 warns Japan for Hokkaido, an alert, while it flies."""
    from gsomia.shell.commands.scenario import FIELDS

    alone = gsomia("scenario", "run", "--launch", "2017-08-29", "--regime", "direct",
                   "--json", timeout=400)
    assert alone.returncode == 0, alone.stderr
    doc = json.loads(alone.stdout)
    parties = doc["parties"]
    shown = demo["warning"]["regimes"]["direct"]["parties"]
    for p in PARTIES:
        assert {f: shown[p][f] for f in FIELDS} == {f: parties[p][f] for f in FIELDS}, p
    jpn = parties["JPN"]
    assert jpn["first_warning_s"] is not None
    issued = [w for w in jpn["warnings"] if w["action"] == "issued"]
    assert issued and "Hokkaido" in issued[0]["regions"] and issued[0]["level"] == "alert"
    assert 60 < jpn["first_warning_s"] < doc["truth"]["flight_time_s"]


def test_every_regime_ran_through_its_own_federation(demo: dict[str, Any]) -> None:
    feds = demo["federations"]
    assert list(feds) == ["none", "hub", "direct", "trilateral"]
    folders = {Path(f["folder"]) for f in feds.values()}
    assert len(folders) == 4
    for name, fed in feds.items():
        assert fed["regime"] == name and fed["through"] == "federation"
        assert fed["delivered"] is True, name
        assert set(fed["audit"]) == set(PARTIES)
        assert all(a["ok"] and a["events"] > 0 for a in fed["audit"].values()), name
        assert set(fed["stopped"].values()) == {"stopped"}, (name, fed["stopped"])
        # Every party's own radars fed its node: each detected the missile itself.
        assert all(fed["parties"][p]["first_detection_s"] is not None for p in PARTIES)
    left = subprocess.run(["pgrep", "-f", demo["folder"]], capture_output=True, text=True)
    assert left.stdout.strip() == "", "a node process was left running"


def test_the_warnings_are_the_nodes_own(demo: dict[str, Any]) -> None:
    """No item was planned: every track, impact prediction and warning a node made came from
    its own warning centre, and everything else it made from its own sensors (the operator's
    intake); whatever else it holds it received from a partner."""
    made = {"x_gsomia_track", "x_gsomia_ipp", "x_gsomia_warning"}
    for name, fed in demo["federations"].items():
        folder = Path(fed["folder"])
        for p in PARTIES:
            actors = _created_by(folder, p)
            warned = 0
            for origin, provider, content in _held_at(folder, p):
                obj = json.loads(content)
                if origin != p:
                    assert provider is not None, (name, p, obj["id"])
                    continue
                centre = bool(made & set(obj))
                assert actors[obj["id"]] == ("warning-centre" if centre else "operator"), \
                    (name, p, obj.get("abstract"))
                warned += "x_gsomia_warning" in obj
            issued = fed["parties"][p]["first_warning_s"]
            assert (warned > 0) == (issued is not None), (name, p)


def test_none_shares_nothing(demo: dict[str, Any]) -> None:
    fed = demo["federations"]["none"]
    assert fed["links"] == {}
    folder = Path(fed["folder"])
    for p in PARTIES:
        assert fed["held_from"][p] == {}
        assert {origin for origin, _, _ in _held_at(folder, p)} == {p}
        # No partners: a node trusts no other party's certificate.
        assert list((folder / p / "tls" / "partners").glob("*.crt")) == []


def test_hub_relays_between_jpn_and_kor_through_usa(demo: dict[str, Any]) -> None:
    fed = demo["federations"]["hub"]
    assert not {"KOR->JPN", "JPN->KOR"} & set(fed["links"])
    for path in ("KOR->USA->JPN", "JPN->USA->KOR"):
        relay = fed["relays"][path]
        assert relay["items"] > 0 and 0 < relay["p50_ms"] <= relay["p99_ms"], path
    # The demo's default: each originator's standing consent, held at the hub before lift-off.
    assert fed["hub_consent"] == {"mode": "standing", "desk_delay_s": 0.0}
    assert fed["consents"]["held_at_hub"] and len(fed["consents"]["standing"]) == 2
    # Counted in the nodes' stores: no consent was asked for any item, and all was delivered.
    assert fed["consents"]["requested"] == 0 and fed["delivered"]
    # From JPN's own store: every KOR item it holds came from USA.
    held = _held_at(Path(fed["folder"]), "JPN")
    from_kor = [provider for origin, provider, _ in held if origin == "KOR"]
    assert from_kor and set(from_kor) == {"USA"}
    assert fed["held_from"]["JPN"]["KOR"] == len(from_kor)
    # The partners' relayed reports reached JPN's node before its own radars saw anything.
    assert fed["parties"]["JPN"]["first_detection_s"] < 150.0


def test_direct_and_trilateral_deliver_directly(demo: dict[str, Any]) -> None:
    for name in ("direct", "trilateral"):
        fed = demo["federations"][name]
        assert set(fed["links"]) == {f"{a}->{b}" for a in PARTIES for b in PARTIES
                                     if a != b}, name
        assert "relays" not in fed
        held = _held_at(Path(fed["folder"]), "JPN")
        from_kor = [provider for origin, provider, _ in held if origin == "KOR"]
        assert from_kor and set(from_kor) == {"KOR"}, name
    kinds = {name: {k for origin, _, content in _held_at(Path(fed["folder"]), "JPN")
                    if origin != "JPN" for k in json.loads(content) if k.startswith("x_gsomia")}
             for name, fed in demo["federations"].items() if name in ("direct", "trilateral")}
    # KOR's radar reports cross under the 2016 GSOMIA; the 2023 mechanism carries only
    # flight paths and impact predictions (and launch points), never reports or warnings.
    assert "x_gsomia_sensor_report" in kinds["direct"]
    assert kinds["trilateral"] and kinds["trilateral"] <= {"x_gsomia_track", "x_gsomia_ipp"}


def test_direct_sharing_warns_jpn_earlier_than_none(demo: dict[str, Any]) -> None:
    """The issue's first "must show", measured at JPN's own centre: with KOR's reports under
    ``direct`` its node warns earlier than alone, and it held KOR's detections before its
    own radars saw anything."""
    feds = demo["federations"]
    jpn = {name: fed["parties"]["JPN"] for name, fed in feds.items()}
    assert jpn["direct"]["first_warning_s"] < jpn["none"]["first_warning_s"]
    assert jpn["direct"]["first_detection_s"] < jpn["none"]["first_detection_s"]
    issued = [w for w in jpn["direct"]["warnings"] if w["action"] == "issued"]
    assert "Hokkaido" in issued[0]["regions"]
    for name, fed in feds.items():
        assert fed["model_first_warning_s"]["JPN"] is not None, name
    # KOR never warns in this launch (the impact is far from Korea).
    assert all(fed["parties"]["KOR"]["first_warning_s"] is None for fed in feds.values())


def test_kor_reports_let_jpn_warn_before_its_own_radars_could(
        demo: dict[str, Any], gsomia: Callable[..., CompletedProcess[str]]) -> None:
    """JPN's own radars first see the 2017-08-29 Hwasong-12 after burnout; under ``direct``
    its node held KOR's reports of the boost phase and warned more than 10 s earlier than
    under ``none``, and that warning comes out of ``gsomia warnings --cap`` as live CAP 1.2
    (a live centre's, not an exercise), its tracks, ellipses and warned areas out of
    ``--geojson``."""
    from test_warnings_out import cap_schema

    from gsomia.core.tracking.trajectory import fit
    from gsomia.shell import feeds
    from gsomia.shell.sensor_player import playlist

    burnout = fit(feeds.find_launch("2017-08-29").flight_request()).burnout_s
    _, own = playlist("2017-08-29", None, "JPN", 0)
    assert min(line["t"] for _, line in own) > burnout   # JPN's radars miss the boost phase
    feds = demo["federations"]
    direct = feds["direct"]["parties"]["JPN"]["first_warning_s"]
    alone = feds["none"]["parties"]["JPN"]["first_warning_s"]
    assert direct is not None
    assert alone is None or direct < alone - 10.0, (direct, alone)
    jpn = Path(feds["direct"]["folder"]) / "JPN"
    kor_reports = [json.loads(content)["x_gsomia_sensor_report"]
                   for origin, _, content in _held_at(jpn.parent, "JPN")
                   if origin == "KOR" and "x_gsomia_sensor_report" in content]
    assert min(min(r["t"]) for r in kor_reports) < burnout

    added = gsomia("user", "add", "--node", str(jpn), "--name", "sato", "--clearance", "極秘",
                   "--need-to-know", "dprk-missile", "--json")
    assert added.returncode == 0, added.stderr
    cap = gsomia("warnings", "--node", str(jpn), "--user", json.loads(added.stdout)["token"],
                 "--cap")
    assert cap.returncode == 0, cap.stderr
    cap_schema().validate(cap.stdout)
    assert "<status>Actual</status>" in cap.stdout     # a live centre's warning
    assert "Hokkaido" in cap.stdout
    # And its tracks, impact ellipses and warned regions as GeoJSON.
    from geojson_pydantic import FeatureCollection

    geo = gsomia("warnings", "--node", str(jpn), "--user", json.loads(added.stdout)["token"],
                 "--geojson")
    assert geo.returncode == 0, geo.stderr
    doc = json.loads(geo.stdout)
    FeatureCollection.model_validate(doc)
    assert {"track", "impact-ellipse", "warned-area"} <= {
        f["properties"]["kind"] for f in doc["features"]}


def test_sensor_sites_stay_with_their_owners(demo: dict[str, Any]) -> None:
    from gsomia.shell import feeds

    held = _held_at(Path(demo["federations"]["direct"]["folder"]), "JPN")
    text = " ".join(content for _, _, content in held)
    assert "sensor" in text
    for sensor in feeds.load_sensors():
        assert sensor.id not in text and sensor.name not in text


def test_report_names_the_warnings(demo: dict[str, Any]) -> None:
    report = Path(demo["report"])
    assert report.name == "index.html" and report.is_file()
    html = report.read_text("utf-8")
    assert "Hokkaido" in html and "jpn-kor-gsomia-2016" in html
    assert "Through the real federations" in html and "warning issued: Hokkaido" in html
    assert "tisa-2014" in html and "nothing crossed" in html


def test_topologies_configure_partners(tmp_path: Path) -> None:
    """``none`` leaves every node without partners, also in a folder that had some."""
    base = federation.free_base_port()
    doc = federation.configure(tmp_path, "trilateral", base)
    assert doc["label_policy"] == "trilateral-mwd-2023"
    assert {n["deliver_to"] == [p for p in PARTIES if p != c]
            for c, n in doc["nodes"].items()} == {True}
    assert len(list((tmp_path / "JPN" / "tls" / "partners").glob("*.crt"))) == 2
    doc = federation.configure(tmp_path, "none", base)
    assert all(n["deliver_to"] == [] for n in doc["nodes"].values())
    assert doc["label_policy"] is None
    for p in PARTIES:
        partners = json.loads((tmp_path / p / "partners.json").read_text("utf-8"))
        assert set(partners["parties"]) == {p} and partners["deliver_to"] == []
        assert list((tmp_path / p / "tls" / "partners").glob("*.crt")) == []
    assert federation.deliveries("hub", "KOR") == ("USA",)


@given(topology=st.sampled_from(federation.TOPOLOGIES), me=st.sampled_from(PARTIES))
def test_deliveries_follow_the_topology(topology: str, me: str) -> None:
    to = federation.deliveries(topology, me)
    assert me not in to and len(set(to)) == len(to)
    if topology == "none":
        assert to == ()
    elif topology == "hub":
        # JPN and KOR never reach each other but through USA.
        assert to == (("USA",) if me != "USA" else ("JPN", "KOR"))
    else:
        assert set(to) == set(PARTIES) - {me}


def test_demo_serve_keeps_the_dashboards_until_interrupted(tmp_path: Path) -> None:
    """Text output (not a terminal: no colours, no live panel), then the replayed (here:
    ``none``) federation serving with a demo user per node until SIGINT, and nothing left
    running: also when an impatient operator presses Ctrl-C again while the nodes stop."""
    import signal
    import sys
    import time

    import httpx

    # Under none nothing crosses, so no delivery can fall behind the flight: played fast,
    # and only its first 100 s (the nodes' own warnings are the module's run's to check).
    proc = subprocess.Popen([sys.executable, "-m", "gsomia", "demo", "--serve", "--regimes",
                             "none", "--speed", "100", "--until", "100", "--report",
                             str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 300
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "press Ctrl-C" in line:
                break
        text = "".join(lines)
        urls = [w for line in lines for w in line.split() if w.startswith("https://127.0.0.1")]
        assert len(urls) == 3, text
        tokens = [line.split("token ")[1].strip() for line in lines if "token " in line]
        assert len(tokens) == 3
        page = httpx.get(urls[0] + "login", verify=False, timeout=10)
        assert page.status_code == 200 and "<form" in page.text
        # The replayed federation serves on, not started again after the report: each
        # node's pid file was written before the report was.
        root = next(w for line in lines for w in line.split() if "gsomia-demo-" in w)
        reported = (tmp_path / "index.html").stat().st_mtime_ns
        for p in ("JPN", "KOR", "USA"):
            assert (Path(root) / "none" / p / "node.pid").stat().st_mtime_ns < reported, p
        # The demo user is an operator: the launch's first minutes of JPN's radars, played by
        # `gsomia sensors run` into its node's sensor intake over HTTPS (the node's CA).
        jpn = next(line for line in lines if line.strip().startswith("JPN: https://"))
        played = subprocess.run(
            [sys.executable, "-m", "gsomia", "sensors", "run", "--launch", "2017-08-29",
             "--party", "JPN", "--node", jpn.split()[1], "--token",
             jpn.split("token ")[1].strip(), "--ca", str(Path(root) / "none" / "JPN" / "tls"
                                                        / "ca.crt"),
             "--speed", "100", "--until", "200", "--json"],
            capture_output=True, text=True, timeout=120, check=False)
        assert played.returncode == 0, played.stderr
        assert json.loads(played.stdout)["counts"]["accepted"] > 0
    finally:
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.terminate()  # its TERM handler stops the nodes, so none outlives the test
            out, err = proc.communicate(timeout=60)
            raise AssertionError(f"SIGINT did not stop the demo: {out}{err}") from None
    assert proc.returncode == 0, out + err
    assert "Scenario model, first warning" in text and "Hokkaido" in text
    assert "PERMIT" in text and "DENY" in text
    assert "First warning per party and regime" in text and "nothing crossed" in text
    assert "Dashboards of the none federation" in text
    assert "until T+100 s" in " ".join(text.split())    # --until: the flight's first 100 s
    assert "audit JPN intact" in text
    assert "\x1b[" not in text   # no colour codes when not a terminal
    assert f"Report: {tmp_path / 'index.html'}" in text.replace("\n", "")
    assert "nodes stopped: JPN stopped, KOR stopped, USA stopped" in out
    folder = next(w for line in lines for w in line.split() if "gsomia-demo-" in w)
    left = subprocess.run(["pgrep", "-f", folder], capture_output=True, text=True)
    assert left.stdout.strip() == "", "a demo node process was left running"
    # Without --keep the node folders (keys, stores) go with the nodes.
    assert not Path(folder).exists(), f"{folder} was left behind"


def test_demo_refuses_an_unknown_regime(gsomia: Callable[..., CompletedProcess[str]]) -> None:
    out = gsomia("demo", "--regimes", "direct,bilateral", "--json")
    assert out.returncode == 2 and "bilateral" in out.stderr


def test_demo_refuses_a_desk_delay_without_per_item_consent(
        gsomia: Callable[..., CompletedProcess[str]]) -> None:
    """The desk answers per-item requests; under the default standing consents nobody asks,
    so a delay would silently mean nothing."""
    out = gsomia("demo", "--desk-delay", "60", "--json")
    assert out.returncode == 2 and "--desk-delay" in out.stderr and "per-item" in out.stderr
    assert out.stdout == ""
