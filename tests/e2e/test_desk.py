"""The operator desk (issue 14) in Chromium, driven by Playwright, against a real three-node
federation (``gsomia federation up``, direct): each operator action and its refusals, the
audit events they leave, and what reaches the partner. Users are added to the nodes'
registers as ``gsomia user add --role`` does; everything else goes through the browser."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect
from test_dashboard import ARTIFACTS, Running, browser, signed_in
from test_federation import Federation, custody, held, indicator, publish

from gsomia.core.audit import AuditKind
from gsomia.service import handlers
from gsomia.shell import exchange, notices
from gsomia.shell.consents import consent_request
from gsomia.shell.node import Node, new_token
from starting import WAIT_S

__all__ = ["browser"]  # the fixture of test_dashboard
pytestmark = pytest.mark.timeout(300)
WAIT = WAIT_S  # a hang guard (starting.py)
II, III = "군사II급비밀", "군사III급비밀"
# name: (node, clearance, need-to-know, role)
PEOPLE = {"kim": ("KOR", II, ["dprk-missile"], "operator"),
          "park": ("KOR", II, ["dprk-missile"], "reader"),
          "lee": ("KOR", III, ["dprk-missile"], "operator"),
          "yoon": ("KOR", II, ["dprk-missile"], "admin"),
          "sato": ("JPN", "極秘", ["dprk-missile"], "operator")}


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    with Federation.running(tmp_path_factory.mktemp("desk"), "direct") as federation:
        yield federation


@pytest.fixture(scope="module")
def sites(fed: Federation) -> dict[str, Running]:
    """Each node's dashboard, with the tokens of its users."""
    tokens: dict[str, dict[str, str]] = {"KOR": {}, "JPN": {}}
    for name, (code, clearance, ntk, role) in PEOPLE.items():
        node = fed.nodes[code]
        tokens[code][name] = new_token()
        handlers.add_user(node.uow(), keys=node.keys, schemes=node.catalogue.schemes,
                          name=name, clearance=clearance, need_to_know=ntk,
                          token=tokens[code][name], now=datetime.now(UTC), role=role)
    urls = fed.up()["nodes"]
    return {code: Running(str(urls[code]["url"]).rstrip("/") + "/", fed.folder / code,
                          tokens[code]) for code in tokens}


@pytest.fixture(scope="module")
def shared(fed: Federation) -> dict[str, str]:
    """KOR items held at JPN, and JPN's consent requests to KOR to pass three of them to
    the USA (the third-party rule)."""
    kor, jpn = fed.nodes["KOR"], fed.nodes["JPN"]
    items = {k: publish(kor, indicator(i), II, ("KOR", "JPN")) for i, k in
             enumerate(("grant", "deny", "pending", "reclassify", "incident"))}
    assert exchange.wait_until(lambda: all(held(jpn, i) for i in items.values()), WAIT)
    out = dict(items)
    for key in ("grant", "deny", "pending"):
        out[f"request-{key}"] = consent_request(jpn, items[key], "USA",
                                                f"USFJ needs it ({key})")["request"]
    return out


def desk(browser: Browser, site: Running, name: str) -> Page:
    page = signed_in(browser, site, name)
    page.click("#desk-link")
    expect(page).to_have_url(site.url + "desk")
    expect(page.locator("#desk[data-ready=true]")).to_be_attached()
    return page


def post(page: Page, action: str, body: dict[str, Any], *, csrf: bool = True
         ) -> tuple[int, dict[str, Any]]:
    """A POST from the desk page itself (its origin, and its CSRF token unless told not)."""
    status, text = page.evaluate(
        """([action, body, csrf]) => fetch('/desk/' + action, {method: 'POST',
             headers: Object.assign({'Content-Type': 'application/json'}, csrf ?
               {'X-CSRF-Token': document.getElementById('desk').dataset.csrf} : {}),
             body: JSON.stringify(body)}).then(r => r.text().then(t => [r.status, t]))""",
        [action, body, csrf])
    return status, json.loads(text)


def events(node: Node, kind: AuditKind) -> list[dict[str, Any]]:
    with node.store.reader() as reader:
        return [{**dict(r), "details": json.loads(r["details"])
                 if isinstance(r["details"], str) else r["details"]}
                for r in reader.rows() if r["kind"] == kind.value]


def outgoing(node: Node, request: str) -> str:
    return next(r["status"] for r in exchange.consent_rows(node) if r["id"] == request)


# ---- consent inbox ----------------------------------------------------------------------------
def test_an_operator_grants_a_consent_request(browser: Browser, fed: Federation,
                                              sites: dict[str, Running],
                                              shared: dict[str, str]) -> None:
    kor, jpn = fed.nodes["KOR"], fed.nodes["JPN"]
    page = desk(browser, sites["KOR"], "kim")
    row = page.locator(f'#consents tr[data-request="{shared["request-grant"]}"]')
    expect(row.locator(".marking")).to_contain_text(II)
    expect(row.locator(".requester")).to_have_text("JPN")
    expect(row.locator(".recipient")).to_have_text("USA")
    expect(row).to_contain_text("USFJ needs it (grant)")
    row.locator("input[name=reason]").fill("agreed with the ROK JCS")
    row.locator("button.grant").click()
    expect(page.locator("#consents .status")).to_contain_text("granted")
    expect(row.locator(".state")).to_have_text("granted")
    page.screenshot(path=str(ARTIFACTS / "desk-consent-granted.png"), full_page=True)
    given = [e for e in events(kor, AuditKind.CONSENT) if e["item_id"] == shared["grant"]
             and e["details"].get("direction") == "given"]
    assert [e["actor"] for e in given] == ["kim"]
    # The holder got the signed consent: its request is settled as granted.
    assert exchange.wait_until(lambda: outgoing(jpn, shared["request-grant"]) == "granted",
                               WAIT)
    page.context.close()


def test_an_operator_denies_a_consent_request_with_a_reason(
        browser: Browser, fed: Federation, sites: dict[str, Running],
        shared: dict[str, str]) -> None:
    kor, jpn = fed.nodes["KOR"], fed.nodes["JPN"]
    page = desk(browser, sites["KOR"], "kim")
    row = page.locator(f'#consents tr[data-request="{shared["request-deny"]}"]')
    row.locator("button.deny").click()  # no reason: a denial must say why
    expect(page.locator("#consents .status")).to_contain_text("reason is missing")
    expect(row.locator(".state")).to_have_text("pending")
    row.locator("input[name=reason]").fill("source protection")
    row.locator("button.deny").click()
    expect(row.locator(".state")).to_have_text("denied")
    refused = [e for e in events(kor, AuditKind.CONSENT) if e["item_id"] == shared["deny"]
               and e["details"].get("direction") == "refused-given"]
    assert [(e["actor"], e["details"]["reason"]) for e in refused] == [
        ("kim", "source protection")]
    assert exchange.wait_until(lambda: outgoing(jpn, shared["request-deny"]) == "denied", WAIT)
    page.context.close()


def test_a_reader_cannot_grant_consent(browser: Browser, fed: Federation,
                                       sites: dict[str, Running],
                                       shared: dict[str, str]) -> None:
    kor = fed.nodes["KOR"]
    page = desk(browser, sites["KOR"], "park")
    expect(page.locator("#role-note")).to_contain_text("Your role (reader)")
    for section in ("consents", "incidents", "reclassify", "publish", "users"):
        expect(page.locator(f"#{section}")).to_be_hidden()
    state = page.evaluate("fetch('/desk/state').then(r => r.json())")
    assert "consents" not in state and state["user"]["role"] == "reader"
    before = len(events(kor, AuditKind.ACTION_REFUSED))
    status, body = post(page, "grant", {"request": shared["request-pending"], "reason": "x"})
    assert status == 403 and "needs the operator role" in body["error"]
    # Nor with a request id that does not exist: the role is checked first, so the answer
    # says nothing about which requests exist.
    assert post(page, "grant", {"request": "KOR-consent-none", "reason": "x"}) == (403, body)
    for action, doc in (("deny", {"request": shared["request-pending"], "reason": "x"}),
                        ("reclassify", {"item_id": shared["reclassify"], "level": III}),
                        ("incident", {"item_id": shared["incident"], "kind": "loss",
                                      "description": "x"}),
                        ("publish", {"object": indicator(), "label": {}}),
                        ("add-user", {"name": "x"}), ("revoke-user", {"name": "kim"})):
        assert post(page, action, doc)[0] == 403, action
    assert outgoing(kor, shared["request-pending"]) == "pending"
    refused = events(kor, AuditKind.ACTION_REFUSED)[before:]
    assert len(refused) == 8 and {e["actor"] for e in refused} == {"park"}
    page.context.close()


def test_the_inbox_shows_an_operator_only_what_they_may_read(
        browser: Browser, fed: Federation, sites: dict[str, Running],
        shared: dict[str, str]) -> None:
    """lee holds 군사III급비밀: requests about 군사II급비밀 items are neither listed nor
    answerable, and answer exactly as a request that does not exist."""
    kor = fed.nodes["KOR"]
    page = desk(browser, sites["KOR"], "lee")
    expect(page.locator("#consents")).to_be_visible()
    expect(page.locator("#consents .empty")).to_have_text("No consent request.")
    state = page.evaluate("fetch('/desk/state').then(r => r.json())")
    assert state["consents"] == [] and state["items"] == []
    hidden = post(page, "grant", {"request": shared["request-pending"], "reason": "x"})
    absent = post(page, "grant", {"request": "KOR-consent-none", "reason": "x"})
    assert hidden[0] == absent[0] == 404
    assert hidden[1]["error"].replace(shared["request-pending"], "ID") == \
        absent[1]["error"].replace("KOR-consent-none", "ID")
    assert post(page, "reclassify", {"item_id": shared["reclassify"], "level": III})[1][
        "error"] == f"no item {shared['reclassify']} that you may read is held here"
    assert outgoing(kor, shared["request-pending"]) == "pending"
    refused = events(kor, AuditKind.ACTION_REFUSED)[-3:]
    assert [e["actor"] for e in refused] == ["lee"] * 3
    page.context.close()


def test_a_forged_desk_request_is_refused(browser: Browser, fed: Federation,
                                          sites: dict[str, Running],
                                          shared: dict[str, str]) -> None:
    page = desk(browser, sites["KOR"], "kim")
    status, body = post(page, "grant", {"request": shared["request-pending"], "reason": "x"},
                        csrf=False)
    assert status == 403 and "CSRF token" in body["error"]
    assert outgoing(fed.nodes["KOR"], shared["request-pending"]) == "pending"
    assert events(fed.nodes["KOR"], AuditKind.ACTION_REFUSED)[-1]["actor"] == "kim"
    page.context.close()


# ---- incidents and reclassification -----------------------------------------------------------
def test_an_incident_filed_at_jpn_is_seen_at_kor(browser: Browser, fed: Federation,
                                                 sites: dict[str, Running],
                                                 shared: dict[str, str]) -> None:
    kor = fed.nodes["KOR"]
    page = desk(browser, sites["JPN"], "sato")
    form = page.locator("#incident-form")
    form.locator("select[name=item_id]").select_option(shared["incident"])
    form.locator("select[name=kind]").select_option("possible-compromise")
    form.locator("input[name=description]").fill("a laptop holding it was left on a train")
    form.locator("button[type=submit]").click()
    expect(page.locator("#incidents .status")).to_contain_text("notice to KOR")
    expect(page.locator('#incidents tr[data-direction="reported"]')).to_contain_text(
        "laptop")
    assert [e["actor"] for e in events(fed.nodes["JPN"], AuditKind.INCIDENT)
            if e["item_id"] == shared["incident"]] == ["sato"]
    assert exchange.wait_until(lambda: any(
        r["direction"] == "received" and r["item_id"] == shared["incident"]
        for r in notices.incident_rows(kor)), WAIT)
    there = desk(browser, sites["KOR"], "kim")
    row = there.locator('#incidents tr[data-direction="received"]')
    expect(row).to_contain_text("laptop")
    expect(row).to_contain_text("JPN")
    there.screenshot(path=str(ARTIFACTS / "desk-incident-received.png"), full_page=True)
    there.context.close()
    page.context.close()


def test_the_originator_reclassifies_and_a_holder_cannot(
        browser: Browser, fed: Federation, sites: dict[str, Running],
        shared: dict[str, str]) -> None:
    jpn, item = fed.nodes["JPN"], shared["reclassify"]
    page = desk(browser, sites["KOR"], "kim")
    row = page.locator(f'#reclassify tr[data-id="{item}"]')
    row.locator("select[name=level]").select_option(III)
    row.locator("button.reclassify").click()
    expect(page.locator("#reclassify .status")).to_contain_text(f"{II} → {III}")
    expect(row.locator(".marking")).to_contain_text(III)
    changed = [e for e in events(fed.nodes["KOR"], AuditKind.CLASSIFICATION_CHANGED)
               if e["item_id"] == item]
    assert [(e["actor"], e["details"]["permit"]) for e in changed] == [("kim", True)]
    assert exchange.wait_until(lambda: custody(jpn, item)[-1].national_label.level == "秘",
                               WAIT)
    page.context.close()
    # At JPN, a holder: no button, and the handler refuses (and logs) a direct request.
    holder = desk(browser, sites["JPN"], "sato")
    there = holder.locator(f'#reclassify tr[data-id="{item}"]')
    expect(there).to_contain_text("originated at KOR")
    expect(there.locator("button")).to_have_count(0)
    status, body = post(holder, "reclassify", {"item_id": item, "level": "極秘"})
    assert status == 403 and "not the originator" in body["error"]
    refused = [e for e in events(jpn, AuditKind.CLASSIFICATION_CHANGED)
               if e["item_id"] == item and e["details"]["permit"] is False]
    assert [e["actor"] for e in refused] == ["sato"]
    assert custody(jpn, item)[-1].national_label.level == "秘"
    holder.context.close()


# ---- publishing ------------------------------------------------------------------------------
def test_publish_with_a_label_previewed_by_the_release_policy(
        browser: Browser, fed: Federation, sites: dict[str, Running]) -> None:
    kor, jpn = fed.nodes["KOR"], fed.nodes["JPN"]
    page = desk(browser, sites["KOR"], "kim")
    form = page.locator("#publish-form")
    preview = page.locator("#preview")
    # Only KOR in REL TO: nobody else could receive it.
    expect(preview.locator('li[data-partner="JPN"]')).to_have_attribute("data-permit", "false")
    form.locator('.rel-to input[value="JPN"]').check()
    form.locator('.rel-to input[value="USA"]').check()
    expect(preview.locator('li[data-partner="JPN"]')).to_contain_text(
        "could receive it under jpn-kor-gsomia-2016 as 極秘")
    expect(preview.locator('li[data-partner="USA"]')).to_contain_text(
        "could receive it under usa-kor-gsomia-1987")
    form.locator('.caveats input[value="NOFORN"]').check()
    expect(preview.locator('li[data-partner="JPN"]')).to_contain_text("NOFORN")
    expect(preview.locator('li[data-permit="true"]')).to_have_count(0)
    form.locator('.caveats input[value="NOFORN"]').uncheck()
    form.locator('.rel-to input[value="USA"]').uncheck()
    expect(preview.locator('li[data-partner="USA"]')).to_contain_text("not in REL TO")
    # Above kim's clearance: the preview says kim could not read it, and publishing fails.
    form.locator("select[name=level]").select_option("군사I급비밀")
    expect(preview).to_contain_text("You could not read it")
    obj = indicator(7)
    form.locator("textarea[name=object]").fill(json.dumps(obj))
    form.locator("button[type=submit]").click()
    expect(page.locator("#publish .status")).to_contain_text("refused")
    assert not held(kor, obj["id"])
    form.locator("select[name=level]").select_option(II)
    form.locator("button[type=submit]").click()
    expect(page.locator("#publish .status")).to_contain_text(f"{obj['id']} published as {II}")
    page.screenshot(path=str(ARTIFACTS / "desk-published.png"), full_page=True)
    created = [e for e in events(kor, AuditKind.ITEM_CREATED) if e["item_id"] == obj["id"]]
    assert [e["actor"] for e in created] == ["kim"]
    assert exchange.wait_until(lambda: held(jpn, obj["id"]), WAIT)
    assert not held(fed.nodes["USA"], obj["id"])
    page.context.close()


# ---- users ------------------------------------------------------------------------------------
def test_an_admin_adds_and_revokes_users(browser: Browser, fed: Federation,
                                         sites: dict[str, Running]) -> None:
    kor, site = fed.nodes["KOR"], sites["KOR"]
    page = desk(browser, site, "yoon")
    form = page.locator("#user-form")
    # Above the admin's own clearance: refused.
    form.locator("input[name=name]").fill("choi")
    form.locator("select[name=clearance]").select_option("군사I급비밀")
    form.locator("button[type=submit]").click()
    expect(page.locator("#users .status")).to_contain_text("above your own")
    expect(page.locator("#new-token")).to_be_hidden()
    form.locator("select[name=clearance]").select_option(III)
    form.locator("select[name=role]").select_option("operator")
    form.locator("button[type=submit]").click()
    expect(page.locator("#users .status")).to_contain_text("choi added as operator")
    token = page.locator("#new-token .token").text_content() or ""
    assert len(token) >= 32
    expect(page.locator('#users tr[data-user="choi"]')).to_contain_text("operator")
    assert token not in page.evaluate("fetch('/desk/state').then(r => r.text())")
    assert [e["actor"] for e in events(kor, AuditKind.USER_ADDED)
            if e["details"]["name"] == "choi"] == ["yoon"]
    # The token signs choi in, with the operator's desk.
    choi = desk(browser, Running(site.url, site.folder, {"choi": token}), "choi")
    expect(choi.locator("#consents")).to_be_visible()
    expect(choi.locator("#users")).to_be_hidden()
    assert post(choi, "add-user", {"name": "x", "clearance": III, "role": "reader",
                                   "need_to_know": ["dprk-missile"]})[0] == 403
    page.locator('#users tr[data-user="choi"] button.revoke').click()
    expect(page.locator('#users tr[data-user="choi"]')).to_have_attribute("data-state",
                                                                         "revoked")
    assert [e["actor"] for e in events(kor, AuditKind.USER_REVOKED)
            if e["details"]["name"] == "choi"] == ["yoon"]
    # choi's session ends at once.
    assert choi.evaluate("fetch('/desk/state').then(r => r.status)") == 401
    choi.context.close()
    page.context.close()
