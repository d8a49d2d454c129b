"""Issue 10, finding 5 in a real browser (Chromium, Playwright) against a real node process:
one malformed record no longer stops the map and the items table from drawing, and a form
posted from another origin (a page on the same host, another port: the same site, so the
SameSite=Strict cookie goes along) neither starts a replay nor signs the browser in."""

from __future__ import annotations

import http.server
import json
import ssl
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Route, expect
from test_dashboard import (
    ARTIFACTS,
    CATALOGUE,
    Running,
    browser,
    free_port,
    node,
    signed_in,
)

from gsomia.service import handlers
from gsomia.shell.node import open_node

__all__ = ["browser", "node"]  # fixtures of test_dashboard, one node per module
pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]
LABEL = handlers.LabelRequest("極秘", ("JPN", "KOR", "USA"), "dprk-missile",
                              category="impact-prediction")
RUN = {"launch": "2017-08-28#115", "regime": "direct", "seed": 0}
IPP = {"at_s": 122.7, "track": "USA-1@USA", "lat_deg": 39.6, "lon_deg": 135.4, "time": 268.3,
       "time_sigma_s": 4.9, "ellipse": {"semi_major_km": 60.0, "semi_minor_km": 20.0,
                                         "orientation_deg": 67.3, "sigma": 2.0}, **RUN}
TRACK = {"points": [[39.2, 125.7], [41.0, 138.0], [42.0, 157.6]], **RUN}


def note(abstract: str, name: str, value: Any) -> dict[str, Any]:
    return {"type": "note", "spec_version": "2.1", "id": f"note--{uuid.uuid4()}",
            "created": "2017-08-28T21:00:00.000Z", "modified": "2017-08-28T21:00:00.000Z",
            "abstract": abstract, "content": abstract,
            "object_refs": ["identity--0b7a2a4e-8d5c-4b59-8a55-2c9a1f0e6d21"], name: value}


@pytest.fixture(scope="module")
def held(node: Running) -> dict[str, str]:
    """Good notes published as usual, and one whose x_gsomia_ipp lacks its fields, stored
    as a node did before the property was checked on ingest (that check switched off)."""
    opened = open_node(node.folder, catalogue=CATALOGUE)
    out = {}
    try:
        for key, obj in (("track", note("JPN flight path", "x_gsomia_track", TRACK)),
                         ("ipp", note("JPN impact prediction", "x_gsomia_ipp", IPP))):
            out[key] = handlers.publish(opened.uow(), keys=opened.keys,
                                        catalogue=opened.catalogue, obj=obj, label=LABEL,
                                        now=datetime.now(UTC)).item_id
        bad = note("JPN impact prediction (malformed)", "x_gsomia_ipp",
                   {"at_s": 130.0, **RUN})
        with pytest.MonkeyPatch.context() as before_the_fix:
            before_the_fix.setattr(handlers._publishing, "check_extension_properties",
                                   lambda obj, where: None, raising=False)
            out["bad"] = handlers.publish(opened.uow(), keys=opened.keys,
                                          catalogue=opened.catalogue, obj=bad, label=LABEL,
                                          now=datetime.now(UTC)).item_id
    finally:
        opened.close()
    return out


def test_a_malformed_record_does_not_stop_the_map_or_the_table(
        browser: Browser, node: Running, held: dict[str, str]) -> None:
    page = signed_in(browser, node, "kenji")
    for key in ("track", "ipp", "bad"):
        expect(page.locator(f'#items tr[data-id="{held[key]}"]')).to_be_visible()
    expect(page.locator(f'#items tr[data-id="{held["bad"]}"] .error')).to_contain_text(
        "x_gsomia_ipp")
    expect(page.locator("#overlay polyline.track")).to_have_count(1)
    expect(page.locator("#overlay ellipse.ipp")).to_have_count(1)
    page.screenshot(path=str(ARTIFACTS / "dashboard-malformed-record.png"), full_page=True)
    page.context.close()


def test_the_page_draws_around_a_record_it_cannot_draw(browser: Browser, node: Running,
                                                       held: dict[str, str]) -> None:
    """Whatever the server sends, each record is drawn on its own (the server already
    flags the malformed one; here the browser gets it raw, as an older node sends it)."""
    page = signed_in(browser, node, "kenji")
    expect(page.locator("#overlay ellipse.ipp")).to_have_count(1)

    def raw(route: Route) -> None:
        doc = route.fetch().json()
        for item in doc["items"]:
            if item["id"] == held["bad"]:
                item.update(data={"at_s": 130.0, **RUN}, problem=None)
        doc["items"].append({**doc["items"][0], "id": "note--garbage", "kind": "warning",
                             "data": {"action": 7}, "custody": None, "receipts": None})
        route.fulfill(status=200, content_type="application/json", body=json.dumps(doc))

    page.route("**/dashboard/events", lambda route: route.abort())
    page.route("**/dashboard/state", raw)
    page.reload()
    expect(page.locator("#items tbody tr")).to_have_count(4)
    expect(page.locator("#overlay polyline.track")).to_have_count(1)
    expect(page.locator("#overlay ellipse.ipp")).to_have_count(1)
    page.context.close()


# ---- CSRF from a page of the same site --------------------------------------------------------
@pytest.fixture(scope="module")
def elsewhere(node: Running) -> Iterator[tuple[str, dict[str, str]]]:
    """An HTTPS server on 127.0.0.1, another port (same site, other origin); serves the
    pages put in the returned dict by path."""
    pages: dict[str, str] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path, "").encode()
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(node.folder / "tls" / "server.crt",
                            node.folder / "tls" / "server.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{port}", pages
    finally:
        server.shutdown()
        server.server_close()


def auto_post(action: str, fields: dict[str, str], enctype: str) -> str:
    inputs = "".join(f'<input name="{k}" value="{v}">' for k, v in fields.items())
    return (f'<!doctype html><form id="f" method="post" action="{action}" '
            f'enctype="{enctype}">{inputs}</form><script>document.getElementById("f")'
            ".submit()</script>")


def replay_progress(page: Page, node: Running) -> Any:
    return page.request.get(node.url + "dashboard/replay").json()


def test_a_replay_posted_from_another_origin_is_refused(
        browser: Browser, node: Running, elsewhere: tuple[str, dict[str, str]]) -> None:
    origin, pages = elsewhere
    # text/plain needs no preflight: the field's value smuggles the form's own fields.
    pages["/replay"] = auto_post(node.url + "dashboard/replay",
                                 {"launch": "2017-08-29&regime=direct&speed=0&x="},
                                 "text/plain")
    page = signed_in(browser, node, "kenji")
    before = page.request.get(node.url + "dashboard/state").json()["items"]
    progress = replay_progress(page, node)
    with page.expect_response(node.url + "dashboard/replay", timeout=60_000) as answer:
        page.goto(origin + "/replay", wait_until="commit")
    assert answer.value.status == 403
    page.wait_for_load_state()
    assert "replay refused" in page.content()
    page.wait_for_timeout(1500)
    assert replay_progress(page, node) == progress
    after = page.request.get(node.url + "dashboard/state").json()["items"]
    assert [i["id"] for i in after] == [i["id"] for i in before]
    page.context.close()


def test_a_sign_in_posted_from_another_origin_is_refused(
        browser: Browser, node: Running, elsewhere: tuple[str, dict[str, str]]) -> None:
    """Login CSRF: a page signs the visitor in as the attacker, to collect what they do."""
    origin, pages = elsewhere
    pages["/login"] = auto_post(node.url + "login",
                                {"name": "taro", "token": node.tokens["taro"]},
                                "application/x-www-form-urlencoded")
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    page.goto(node.url + "login")          # the visitor has the sign-in form's cookie, too
    with page.expect_response(node.url + "login") as answer:
        page.goto(origin + "/login")
    assert answer.value.status == 403
    expect(page.locator(".error")).to_contain_text("Sign-in refused")
    assert not [c for c in context.cookies() if c["name"] == "gsomia_session"]
    assert page.request.get(node.url + "dashboard/state").status == 401
    context.close()


def test_the_page_s_own_replay_and_sign_out_still_work(browser: Browser,
                                                       node: Running) -> None:
    page = signed_in(browser, node, "kenji")
    page.fill("#replay input[name=speed]", "1000")
    page.click("#replay button[type=submit]")
    expect(page.locator("#replay-status")).to_contain_text("replaying", timeout=60_000)
    page.click("#logout button[type=submit]")
    expect(page).to_have_url(node.url + "login")
    assert page.request.get(node.url + "dashboard/state").status == 401
    page.context.close()
