"""Standing consents at the operator desk, in Chromium (Playwright), against a real
three-node federation (direct): KOR's operator grants one in the browser, JPN's desk shows it
obtained and JPN relays a covered KOR item to the USA under it with no per-item request; the
operator revokes it in the browser and JPN relays no more; a reader can neither see nor
grant nor revoke one."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Browser, expect
from test_dashboard import ARTIFACTS, Running, browser
from test_desk import desk, events, post
from test_federation import Federation, held, indicator

from gsomia.core.audit import AuditKind
from gsomia.core.types import iso
from gsomia.service import handlers
from gsomia.shell import consents, exchange
from gsomia.shell.node import new_token
from starting import WAIT_S

__all__ = ["browser"]  # the fixture of test_dashboard
pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]
WAIT = WAIT_S  # a hang guard (starting.py)
II = "군사II급비밀"
PEOPLE = {"kim": ("KOR", II, "operator"), "park": ("KOR", II, "reader"),
          "sato": ("JPN", "極秘", "operator")}


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    with Federation.running(tmp_path_factory.mktemp("desk-standing"), "direct") as federation:
        yield federation


@pytest.fixture(scope="module")
def sites(fed: Federation) -> dict[str, Running]:
    tokens: dict[str, dict[str, str]] = {"KOR": {}, "JPN": {}}
    for name, (code, clearance, role) in PEOPLE.items():
        node = fed.nodes[code]
        tokens[code][name] = new_token()
        handlers.add_user(node.uow(), keys=node.keys, schemes=node.catalogue.schemes,
                          name=name, clearance=clearance, need_to_know=["dprk-missile"],
                          token=tokens[code][name], now=datetime.now(UTC), role=role)
    urls = fed.up()["nodes"]
    return {code: Running(str(urls[code]["url"]).rstrip("/") + "/", fed.folder / code,
                          tokens[code]) for code in tokens}


def relayed(fed: Federation, item: str) -> str | None:
    """What became of JPN's relay of ``item`` to the USA (None: JPN never queued one). KOR
    delivers to the USA itself too; JPN's outbox says what JPN decided."""
    import sqlalchemy as sa

    from gsomia.shell.store import outbox

    with fed.nodes["JPN"].store.engine.connect() as conn:
        row = conn.execute(sa.select(outbox.c.status).where(
            outbox.c.item_id == item, outbox.c.recipient == "USA")).first()
    return None if row is None else str(row.status)


def test_an_operator_grants_and_revokes_a_standing_consent(browser: Browser, fed: Federation,
                                                           sites: dict[str, Running]) -> None:
    kor, jpn = fed.nodes["KOR"], fed.nodes["JPN"]
    page = desk(browser, sites["KOR"], "kim")
    form = page.locator("#standing-form")
    form.locator("select[name=to]").select_option("USA")
    form.locator(".categories input[value=flight-path]").check()
    form.locator("select[name=purpose]").select_option("dprk-missile")
    # No date: bad input, said where.
    form.locator("button[type=submit]").click()
    expect(page.locator("#standing .status")).to_contain_text("until is missing")
    form.locator("input[name=until]").fill(iso(datetime.now(UTC) + timedelta(days=7)))
    form.locator("button[type=submit]").click()
    expect(page.locator("#standing .status")).to_contain_text("granted: flight-path → USA")
    row = page.locator("#standing tr[data-direction=given]")
    expect(row.locator(".state")).to_have_text("in force")
    consent_id = row.get_attribute("data-standing")
    assert consent_id
    given = [e for e in events(kor, AuditKind.CONSENT)
             if e["details"].get("direction") == "standing-given"]
    assert [(e["actor"], e["details"]["standing_consent"]) for e in given] == \
        [("kim", consent_id)]
    # JPN's operator sees it obtained, and JPN relays what it covers to the USA.
    assert exchange.wait_until(
        lambda: any(c["id"] == consent_id for c in consents.standing_list(jpn)), WAIT)
    jpn_page = desk(browser, sites["JPN"], "sato")
    obtained = jpn_page.locator(f'#standing tr[data-standing="{consent_id}"]')
    expect(obtained).to_have_attribute("data-direction", "obtained")
    expect(obtained.locator(".state")).to_have_text("in force")
    expect(obtained.locator("button")).to_have_count(0)  # not JPN's to revoke
    page.screenshot(path=str(ARTIFACTS / "desk-standing-consent.png"), full_page=True)
    jpn_page.context.close()
    covered = _publish(fed)
    assert exchange.wait_until(lambda: relayed(fed, covered) == "delivered", WAIT)
    assert [r for r in exchange.consent_rows(jpn) if r["item_id"] == covered] == []
    # Revoked in the browser: JPN learns it and relays nothing more.
    row.locator("button.revoke-standing").click()
    expect(page.locator("#standing .status")).to_contain_text("revoked")
    expect(row.locator(".state")).to_have_text("revoked")
    assert exchange.wait_until(lambda: next(
        c["state"] for c in consents.standing_list(jpn) if c["id"] == consent_id)
        == "revoked", WAIT)
    after = _publish(fed)
    assert exchange.wait_until(lambda: held(jpn, after), WAIT)
    assert exchange.wait_until(lambda: exchange.pending(jpn) == 0, WAIT)
    assert relayed(fed, after) is None
    page.context.close()


def _publish(fed: Federation) -> str:
    obj = indicator()
    exchange.publish(fed.nodes["KOR"], entries=[(obj, handlers.LabelRequest(
        II, ("KOR", "JPN", "USA"), "dprk-missile", category="flight-path"))])
    return str(obj["id"])


def test_a_reader_cannot_see_grant_or_revoke_standing_consents(
        browser: Browser, fed: Federation, sites: dict[str, Running]) -> None:
    kor = fed.nodes["KOR"]
    page = desk(browser, sites["KOR"], "park")
    expect(page.locator("#standing")).to_be_hidden()
    state = page.evaluate("fetch('/desk/state').then(r => r.json())")
    assert "standing" not in state
    before = len(events(kor, AuditKind.ACTION_REFUSED))
    held_before = consents.standing_list(kor)
    status, body = post(page, "standing-grant", {
        "to": "USA", "categories": ["flight-path"], "purpose": "dprk-missile",
        "until": iso(datetime.now(UTC) + timedelta(days=1))})
    assert status == 403 and "needs the operator role" in body["error"]
    assert post(page, "standing-revoke", {"id": "standing-consent--none"})[0] == 403
    assert consents.standing_list(kor) == held_before
    refused = events(kor, AuditKind.ACTION_REFUSED)[before:]
    assert [(e["actor"], e["details"]["action"]) for e in refused] == [
        ("park", "standing-grant"), ("park", "standing-revoke")]
    page.context.close()
