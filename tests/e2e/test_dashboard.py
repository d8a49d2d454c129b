"""The node dashboard in a real browser: Debian's Chromium, headless, driven by Playwright,
against a real node process (``gsomia node serve`` over HTTPS). Screenshots go to
``test-artifacts/``. Chromium comes from ``tools/install-chromium.sh`` (``make test``)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3
from playwright.sync_api import Browser, Page, expect, sync_playwright

from gsomia.bootstrap import open_node
from gsomia.service import handlers
from gsomia.shell.catalogue import load_catalogue
from gsomia.shell.node import init_node, new_token
from starting import WAIT_S, piped, wait_started, waited

ROOT = Path(__file__).resolve().parents[2]
# What the page is waited for to show (a pushed item, the map, a replay's steps): a hang guard,
# not a measure; the claims are that they come without a reload.
WAIT_MS = int(WAIT_S * 1000)
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CATALOGUE = load_catalogue()
pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


@dataclass
class Running:
    url: str
    folder: Path
    tokens: dict[str, str]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

    def answers() -> bool:
        try:
            return requests.get(url + "login", verify=False, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    # Judged by the CPU it took (starting.py), not by 60 s of wall time: the same start took
    # 32 to 42 s for test_taxii_interop at a load of 20 to 23.
    wait_started(answers, process, lambda: piped(process))


def created_by(opened: Any) -> dict[str, str]:
    """Who made each item the node made itself, from its own audit log."""
    import sqlalchemy as sa

    from gsomia.shell.store import audit_events, items

    # An item's seq is the event that stored it: its own item-created, or the
    # items-published leaf of the TAXII envelope it came in.
    e = audit_events.c
    with opened.store.engine.connect() as conn:
        return {str(r.id): str(r.actor) for r in conn.execute(
            sa.select(items.c.id, e.actor).join(audit_events, e.seq == items.c.seq)
            .where(e.kind.in_(("item-created", "items-published"))))}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    folder = tmp_path_factory.mktemp("dashboard") / "jpn"
    made = init_node(folder, "JPN", catalogue=CATALOGUE, now=datetime.now(UTC))
    tokens = {}
    # Both hold the clearance; only kenji needs to know about DPRK missiles. hana is cleared
    # for all the node may hold: she alone is shown the audit log (review28).
    for name, ntk, clearance in (("kenji", ["dprk-missile"], "極秘"),
                                 ("taro", ["maritime-security"], "極秘"),
                                 ("hana", ["dprk-missile", "regional-security"], "機密")):
        tokens[name] = new_token()
        # kenji replays launches: feeding the node's sensors takes the operator role
        handlers.add_user(made.uow(), keys=made.keys, schemes=CATALOGUE.schemes, name=name,
                          clearance=clearance, need_to_know=ntk, token=tokens[name],
                          now=datetime.now(UTC),
                          role="operator" if name == "kenji" else "reader")
    made.close()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gsomia", "node", "serve", "--dir", str(folder),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ})
    url = f"https://127.0.0.1:{port}/"
    try:
        wait_ready(url, process)
        yield Running(url, folder, tokens)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode is not None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def signed_in(browser: Browser, node: Running, name: str) -> Page:
    context = browser.new_context(ignore_https_errors=True,
                                  viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(node.url)
    expect(page).to_have_url(node.url + "login")
    page.fill("input[name=name]", name)
    page.fill("input[name=token]", node.tokens[name])
    page.click("button[type=submit]")
    expect(page.locator("#who")).to_contain_text(name)
    expect(page.locator("#live")).to_have_text("live")
    return page


def publish(node: Running, obj: dict[str, Any]) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "gsomia", "publish", "--node", str(node.folder), "--file", "-",
         "--level", "極秘", "--rel-to", "JPN,KOR,USA", "--purpose", "dprk-missile",
         "--category", "pre-launch-indicator"],
        input=json.dumps(obj), capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def indicator(name: str) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
            "created": "2017-08-28T20:00:00.000Z", "modified": "2017-08-28T20:00:00.000Z",
            "name": name, "pattern": "[x-dprk-site:name = 'Sunan']", "pattern_type": "stix",
            "valid_from": "2017-08-28T20:00:00Z", "indicator_types": ["malicious-activity"]}


def test_wrong_token_is_refused_with_a_clear_error(browser: Browser, node: Running) -> None:
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    page.goto(node.url + "login")
    page.fill("input[name=name]", "kenji")
    page.fill("input[name=token]", "gs_not-a-token")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_have_text("Unknown user name or token.")
    # Only the sign-in form's CSRF nonce (path /login); no session.
    assert [c["name"] for c in context.cookies()] == ["gsomia_login"]
    state = requests.get(node.url + "dashboard/state", verify=False, timeout=10)
    assert state.status_code == 401
    context.close()


def test_item_appears_live_after_publish(browser: Browser, node: Running) -> None:
    page = signed_in(browser, node, "kenji")
    cookie = next(c for c in page.context.cookies() if c["name"] == "gsomia_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["secure"]
    expect(page.locator("#items .empty")).to_have_text("No item you may read.")
    expect(page.locator("#warnings .empty")).to_have_text("No warnings.")
    expect(page.locator("#agreements tr[data-agreement=jpn-kor-gsomia-2016]")).to_be_visible()
    item = publish(node, indicator("TEL activity at Sunan airfield"))
    row = page.locator(f'#items tr[data-id="{item}"]')
    expect(row).to_be_visible(timeout=WAIT_MS)       # pushed by SSE: no reload
    expect(row.locator(".summary")).to_have_text("TEL activity at Sunan airfield")
    expect(row.locator(".marking")).to_contain_text("極秘")
    # The log counts every item: kenji is not cleared for all the node may hold.
    expect(page.locator("#audit .empty")).to_contain_text("cleared for all")
    expect(page.locator("#tree-head")).to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / "dashboard-item-published.png"), full_page=True)
    page.context.close()
    hana = signed_in(browser, node, "hana")
    expect(hana.locator("#tree-head")).to_be_visible(timeout=WAIT_MS)
    hana.context.close()


def test_sensor_coverage_is_drawn_with_owners_and_a_legend(browser: Browser,
                                                           node: Running) -> None:
    from gsomia.shell import feeds

    ours = sorted(s.id for s in feeds.load_sensors()
                  if s.owner == "JPN" and s.platform != "satellite")
    page = signed_in(browser, node, "kenji")
    own = page.locator("#coverage path.coverage.own")
    expect(own.first).to_be_attached(timeout=WAIT_MS)
    assert own.count() == len(ours) > 0
    assert sorted(page.eval_on_selector_all(
        "#coverage path.coverage.own", "els => els.map(e => e.dataset.sensor)")) == ours
    assert set(page.eval_on_selector_all(
        "#coverage path.coverage", "els => els.map(e => e.dataset.owner)")) == {"JPN"}
    # The shipped partners keep their sensors' sites: none is drawn, and the page says why.
    assert page.locator("#coverage path.coverage.partner").count() == 0
    expect(page.locator("#coverage-note")).to_contain_text(
        "No partner has released a sensor's site to JPN")
    labels = page.eval_on_selector_all("#coverage text.coverage-owner",
                                       "els => els.map(e => e.textContent)")
    assert labels == ["JPN"] * len(ours)
    title = page.locator("#coverage path.coverage.own").first.locator("title")
    assert "JPN radar" in title.text_content() and "own sensor" in title.text_content()
    expect(page.locator('#coverage-key .key[data-owner="JPN"][data-relation="own"]')
           ).to_have_text(f"JPN (own): {len(ours)}")
    # Every drawn footprint lies at least partly inside the map's frame.
    boxes = page.eval_on_selector_all(
        "#coverage path.coverage", "els => els.map(e => { const b = e.getBBox(); "
        "return [b.x, b.y, b.x + b.width, b.y + b.height]; })")
    width, height = page.evaluate("() => [document.getElementById('map').viewBox.baseVal"
                                  ".width, document.getElementById('map').viewBox.baseVal"
                                  ".height]")
    assert all(x0 < width and y0 < height and x1 > 0 and y1 > 0
               for x0, y0, x1, y1 in boxes)
    page.locator("#map").screenshot(path=str(ARTIFACTS / "dashboard-coverage.png"))
    page.uncheck("#show-coverage")
    expect(page.locator("#coverage")).to_be_hidden()
    page.check("#show-coverage")
    expect(own.first).to_be_visible()
    page.context.close()


def test_replayed_launch_puts_a_warning_on_the_map(browser: Browser, node: Running) -> None:
    page = signed_in(browser, node, "kenji")
    page.fill("#replay input[name=speed]", "60")
    page.click("#replay button[type=submit]")
    expect(page.locator("#replay-status")).to_contain_text("replaying", timeout=WAIT_MS)
    expect(page.locator("#overlay polyline.track")).to_have_count(1, timeout=WAIT_MS)
    # The first alert comes from the track's cut-off corridor while it still burns (issue 13):
    # it names Hokkaido, overflown, before any impact point is known, so the map marks the
    # region; the impact predictions are drawn as ellipses as they arrive.
    expect(page.locator('path.land.warned[data-region="Hokkaido"]')).to_have_count(
        1, timeout=WAIT_MS)
    expect(page.locator("#warnings li.warning.active").first).to_contain_text("Hokkaido")
    ipp = page.locator("#overlay ellipse.ipp").first
    expect(ipp).to_be_attached(timeout=WAIT_MS)
    # In one step: the page redraws the overlay whenever a new state arrives.
    cx, width = page.evaluate(
        "() => [parseFloat(document.querySelector('#overlay ellipse.ipp')"
        ".getAttribute('cx')), document.getElementById('map').viewBox.baseVal.width]")
    assert 0 <= cx <= width                 # the predicted impact area is inside the map
    # Let the replay finish, for a complete picture.
    waited(lambda: not page.request.get(node.url + "dashboard/replay").json()["running"],
           "the replay to finish", lambda: page.request.get(node.url + "dashboard/replay")
           .json(), timeout=WAIT_S, interval=0.1)
    expect(page.locator("#warnings li.warning.active").first).to_contain_text("Hokkaido")
    # Played live: the radars' reports came in through the node's sensor intake in kenji's
    # name, and every track, prediction and warning was made by the node's warning centre
    # (a node served by ``node serve`` starts it for the replay); nothing was precomputed.
    made = {"x_gsomia_track", "x_gsomia_ipp", "x_gsomia_warning"}
    by_kind: dict[str, set[str]] = {}
    with open_node(node.folder) as opened:
        with opened.store.repository() as repo:
            held = [(h.item.item_id, json.loads(h.item.content)) for h in repo.holdings()]
        # Read after the holdings: the centre may store more meanwhile, never fewer.
        actors = created_by(opened)
    for item_id, obj in held:
        kind = next((k for k in obj if k.startswith("x_gsomia_")), "")
        if kind in made or kind == "x_gsomia_sensor_report":
            by_kind.setdefault(kind, set()).add(actors[item_id])
    assert by_kind["x_gsomia_sensor_report"] == {"kenji"}
    assert by_kind["x_gsomia_warning"] == {"warning-centre"}
    assert {a for k in made & set(by_kind) for a in by_kind[k]} == {"warning-centre"}
    page.screenshot(path=str(ARTIFACTS / "dashboard-warning.png"), full_page=True)
    if os.environ.get("GSOMIA_UPDATE_DOCS"):    # the README's screenshot
        shutil.copyfile(ARTIFACTS / "dashboard-warning.png", ROOT / "docs" / "dashboard.png")
    page.context.close()


def test_user_without_need_to_know_gets_no_item_content(browser: Browser,
                                                        node: Running) -> None:
    secret = "Hwasong launch window from Sunan"
    item = publish(node, indicator(secret))
    page = signed_in(browser, node, "taro")
    assert page.locator("#withheld").count() == 0  # not even a count of hidden items
    expect(page.locator("#items .empty")).to_have_text("No item you may read.")
    assert page.locator(f'#items tr[data-id="{item}"]').count() == 0
    assert secret not in page.content()
    assert item not in page.content()
    assert page.locator("#overlay > *").count() == 0      # no warnings, tracks or ellipses
    expect(page.locator("#coverage-note")).to_contain_text("No sensor coverage you may see.")
    expect(page.locator("#coverage-note")).to_contain_text("withheld")
    assert page.locator("#coverage > *").count() == 0    # no sensor sites either
    state = page.request.get(node.url + "dashboard/state").json()
    assert state["items"] == [] and "withheld" not in state
    assert secret not in json.dumps(state, ensure_ascii=False)
    # With this page's own CSRF token and origin: refused all the same (need-to-know).
    csrf = page.locator("#logout input[name=csrf]").get_attribute("value")
    refused = page.request.post(node.url + "dashboard/replay", data={"launch": "2017-08-29"},
                                headers={"X-CSRF-Token": csrf or "",
                                         "Origin": node.url.rstrip("/"),
                                         "Content-Type": "application/json"})
    assert refused.status == 403 and "need-to-know" in refused.json()["error"]
    page.screenshot(path=str(ARTIFACTS / "dashboard-denied.png"), full_page=True)
    page.context.close()
