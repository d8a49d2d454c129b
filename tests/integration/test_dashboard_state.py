"""The dashboard's server side over a real node store: sessions and their cookie, the access
rule on what the page is sent (reads audited), ``gsomia replay`` publishing valid STIX notes,
and clear refusals. The browser side is in ``tests/e2e/test_dashboard.py``."""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gsomia.bootstrap import app_for_node
from gsomia.core.agreements import Catalogue
from gsomia.service import handlers
from gsomia.shell.commands.report import register
from gsomia.shell.node import Node, init_node, new_token, open_node
from gsomia.shell.stix_check import check_stix
from gsomia.shell.web import Sessions

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, shipped: Catalogue) -> Path:
    path = tmp_path_factory.mktemp("dash") / "jpn"
    node = init_node(path, "JPN", catalogue=shipped, now=datetime.now(UTC))
    node.close()
    return path


@pytest.fixture(scope="module")
def tokens(folder: Path, shipped: Catalogue) -> dict[str, str]:
    out = {}
    node = open_node(folder, catalogue=shipped)
    for name, clearance, ntk in (("kenji", "極秘", ["dprk-missile"]),
                                 ("aiko", "秘", ["dprk-missile"]),
                                 ("taro", "極秘", ["maritime-security"])):
        out[name] = new_token()
        handlers.add_user(node.uow(), keys=node.keys, schemes=shipped.schemes, name=name,
                          clearance=clearance, need_to_know=ntk, token=out[name],
                          now=datetime.now(UTC),
                          role="operator" if name == "kenji" else "reader")
    node.close()
    return out


@pytest.fixture(scope="module")
def replayed(folder: Path, tokens: dict[str, str]) -> dict[str, Any]:
    cli = click.Group()
    register(cli)
    from click.testing import CliRunner

    out = CliRunner().invoke(cli, ["replay", "--node", str(folder), "--launch", "2017-08-29",
                                   "--regime", "direct", "--json"])
    assert out.exit_code == 0, out.output
    doc: dict[str, Any] = json.loads(out.output)
    return doc


@pytest.fixture()
def node(folder: Path, shipped: Catalogue) -> Iterator[Node]:
    n = open_node(folder, catalogue=shipped)
    yield n
    n.close()


ORIGIN = {"Origin": "https://testserver"}


def client_for(node: Node) -> TestClient:
    return TestClient(app_for_node(node), base_url="https://testserver")


def hidden_csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def post_login(client: TestClient, name: str, token: str) -> Any:
    """The sign-in form as a browser sends it: its CSRF token, from this origin."""
    csrf = hidden_csrf(client.get("/login").text)
    return client.post("/login", data={"name": name, "token": token, "csrf": csrf},
                       headers=ORIGIN, follow_redirects=False)


def sign_in(client: TestClient, name: str, token: str) -> str:
    """Sign in; the session's CSRF token (from the dashboard page)."""
    r = post_login(client, name, token)
    assert r.status_code == 303, r.text
    return hidden_csrf(client.get("/").text)


def replay(client: TestClient, csrf: str, **body: Any) -> Any:
    return client.post("/dashboard/replay", json=body,
                       headers={**ORIGIN, "X-CSRF-Token": csrf})


def test_replay_publishes_the_warning(replayed: dict[str, Any]) -> None:
    issued = [w for w in replayed["warnings"] if w["action"] == "issued"]
    assert issued and "Hokkaido" in issued[0]["regions"]
    assert replayed["published"] > len(replayed["warnings"])


def test_login_sets_a_strict_http_only_cookie(node: Node, tokens: dict[str, str]) -> None:
    client = client_for(node)
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    assert client.get("/dashboard/state").status_code == 401
    r = post_login(client, "kenji", tokens["kenji"])
    cookie = next(c for c in r.headers.get_list("set-cookie")
                  if c.startswith("gsomia_session=")).lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" in cookie
    page = client.get("/")
    assert page.status_code == 200 and "script-src 'self'" in page.headers[
        "content-security-policy"]
    for asset in ("dashboard.js", "dashboard.css"):
        assert client.get(f"/dashboard/static/{asset}").status_code == 200
    assert client.get("/dashboard/static/..%2Fschemes.yaml").status_code == 404
    csrf = hidden_csrf(page.text)
    client.post("/logout", data={"csrf": csrf}, headers=ORIGIN)
    assert client.get("/dashboard/state").status_code == 401


def test_a_token_of_another_user_does_not_sign_in(node: Node,
                                                 tokens: dict[str, str]) -> None:
    client = client_for(node)
    r = post_login(client, "kenji", tokens["taro"])
    assert r.status_code == 401 and "Unknown user name or token." in r.text
    assert "gsomia_session" not in r.headers.get("set-cookie", "")


def test_state_obeys_the_access_rule(node: Node, tokens: dict[str, str],
                                     replayed: dict[str, Any]) -> None:
    seen = {}
    for name in ("kenji", "aiko", "taro"):
        client = client_for(node)
        sign_in(client, name, tokens[name])
        seen[name] = client.get("/dashboard/state").json()
    kenji, aiko, taro = seen["kenji"], seen["aiko"], seen["taro"]
    assert len(kenji["items"]) == replayed["published"]
    kinds = {i["kind"] for i in kenji["items"]}
    assert kinds == {"track", "ipp", "warning"}
    for doc in (aiko, taro):      # too low a clearance; no need-to-know
        # not even a count of what they may not read (issue 10, finding 3)
        assert doc["items"] == [] and "withheld" not in doc
        assert "Hokkaido" not in json.dumps(doc, ensure_ascii=False)
    head = kenji["audit"]["head"]
    assert head is not None and 0 < head["size"] <= kenji["audit"]["size"]
    assert kenji["audit"]["partners"] == [] and kenji["audit"]["error"] is None
    assert {a["id"] for a in kenji["agreements"]} >= {"jpn-kor-gsomia-2016", "tisa-2014"}
    # Each item shown to kenji was read through the audited path, once per session.
    with node.store.reader() as reader:
        granted = [r for r in reader.rows() if r["kind"] == "access-granted"
                   and r["actor"] == "kenji"]
    assert len(granted) == len(kenji["items"])


def test_replay_needs_need_to_know(node: Node, tokens: dict[str, str]) -> None:
    client = client_for(node)
    csrf = sign_in(client, "taro", tokens["taro"])
    refused = replay(client, csrf, launch="2017-08-29")
    assert refused.status_code == 403 and "need-to-know" in refused.json()["error"]
    csrf = sign_in(client, "kenji", tokens["kenji"])
    bad = replay(client, csrf, launch="2017-08-29", speed="fast")
    assert bad.status_code == 400 and "speed" in bad.json()["error"]
    unknown = replay(client, csrf, launch="1900-01-01")
    assert unknown.status_code == 400
    # Live, a node shares as its federation does: a regime to replay under is refused.
    regime = replay(client, csrf, launch="2017-08-29", regime="direct", speed=20)
    assert regime.status_code == 400 and "regime" in regime.json()["error"]
    assert client.get("/dashboard/replay").json()["running"] is False


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(clearance=st.sampled_from(["機密", "特定秘密", "極秘", "秘"]),
       need_to_know=st.sets(st.sampled_from(["dprk-missile", "regional-security"]),
                            min_size=1),
       role=st.sampled_from(["reader", "operator", "admin"]))
def test_only_who_may_read_all_a_replay_publishes_may_start_one(
        node: Node, shipped: Catalogue, clearance: str, need_to_know: set[str],
        role: str) -> None:
    """A replay publishes the node's radars' reports (JPN: 秘) and its centre's tracks,
    predictions and warnings (極秘), all for dprk-missile: a user who could not read one of
    them is refused (403) before the request is even read, and so is a reader (a replay
    feeds the node's sensor intake, and its centre's warnings reach partners: the intake's
    operator role); anyone else gets as far as the body (here a bad speed: 400, so no
    replay starts)."""
    name = f"u{new_token()[:12]}"
    token = new_token()
    handlers.add_user(node.uow(), keys=node.keys, schemes=shipped.schemes, name=name,
                      clearance=clearance, need_to_know=sorted(need_to_know), token=token,
                      now=datetime.now(UTC), role=role)
    client = client_for(node)
    csrf = sign_in(client, name, token)
    answer = replay(client, csrf, launch="2017-08-29", speed="fast")
    secret = {"機密": 3, "特定秘密": 2, "極秘": 2, "秘": 1}[clearance] >= 2
    may = secret and "dprk-missile" in need_to_know and role != "reader"
    assert answer.status_code == (400 if may else 403), answer.text
    assert client.get("/dashboard/replay").json()["running"] is False


def test_replayed_objects_are_valid_stix(node: Node, replayed: dict[str, Any]) -> None:
    with node.store.repository() as repo:
        holdings = repo.holdings()
    assert holdings
    for h in holdings:
        check_stix(json.loads(h.item.content))


@given(st.text(min_size=1, max_size=60))
def test_forged_cookies_open_no_session(cookie: str) -> None:
    sessions = Sessions()
    real = sessions.open("kenji", "gs_x")
    assert sessions.get(real) is not None
    sid, _, mac = real.partition(".")
    assume(cookie not in (real, mac))
    assert sessions.get(cookie) is None
    assert sessions.get(f"{sid}.{cookie}") is None


def test_sessions_expire() -> None:
    now = [datetime(2024, 1, 1, tzinfo=UTC)]
    sessions = Sessions(clock=lambda: now[0])
    cookie = sessions.open("kenji", "gs_x")
    now[0] += timedelta(hours=9)
    assert sessions.get(cookie) is None


# ---- sensor coverage -------------------------------------------------------------------------
def test_state_draws_the_node_s_own_sensor_coverage_by_the_access_rule(
        node: Node, tokens: dict[str, str]) -> None:
    from gsomia.shell import feeds

    seen = {}
    for name in ("kenji", "aiko", "taro"):
        client = client_for(node)
        sign_in(client, name, tokens[name])
        seen[name] = client.get("/dashboard/state").json()["coverage"]
    kenji = seen["kenji"]
    assert kenji["error"] is None and kenji["withheld"] == 0
    ours = {s.id for s in feeds.load_sensors() if s.owner == "JPN"}
    # The shipped partners keep their sensors' sites to themselves (REL TO the owner only).
    assert {a["id"] for a in kenji["areas"]} == ours
    for a in kenji["areas"]:
        assert a["relation"] == "own" and a["owner"] == "JPN" and a["known_by"] == "own sensor"
        assert a["kind"] == "radar" and len(a["outline"]) > 3 and "特定秘密" in a["marking"]
    # 秘 does not cover 特定秘密; without need-to-know for DPRK missiles, nothing either.
    for name in ("aiko", "taro"):
        assert seen[name]["areas"] == [] and seen[name]["withheld"] == len(ours)


def test_a_partner_sensor_is_shown_once_its_owner_releases_its_label(
        shipped: Catalogue) -> None:
    from dataclasses import replace

    from gsomia.core.policy import Person
    from gsomia.shell import feeds
    from gsomia.shell.web import sensor_coverage

    kenji = Person("kenji", "JPN", "極秘", frozenset({"dprk-missile"}))
    aiko = Person("aiko", "JPN", "秘", frozenset({"dprk-missile"}))
    sensors = feeds.load_sensors()
    shipped_view = sensor_coverage("JPN", kenji, shipped, sensors)
    assert {a["relation"] for a in shipped_view["areas"]} == {"own"}
    ship = next(s for s in sensors if s.id == "kor-aegis-east-sea-1")
    shared = replace(ship, label=replace(ship.label, rel_to=frozenset({"KOR", "JPN"})))
    got = sensor_coverage("JPN", kenji, shipped, [shared])
    assert [(a["id"], a["relation"], a["known_by"]) for a in got["areas"]] == [
        ("kor-aegis-east-sea-1", "partner", "released by KOR")]
    assert got["areas"][0]["outline"][0] == got["areas"][0]["outline"][-1]   # a ring
    # The same release to a user whose clearance is below 군사II급비밀: withheld.
    low = sensor_coverage("JPN", aiko, shipped, [shared])
    assert low == {"areas": [], "withheld": 1}
    # Released to the USA only: JPN still does not know of it.
    elsewhere = replace(ship, label=replace(ship.label, rel_to=frozenset({"KOR", "USA"})))
    assert sensor_coverage("JPN", kenji, shipped, [elsewhere]) == {"areas": [],
                                                                    "withheld": 0}


def test_partner_heads_carry_the_consistency_flag_when_logged() -> None:
    from gsomia.shell.web import latest_partner_heads

    rows = [  # newest first, as partner_heads reads them
        ("2026-01-01T00:00:02Z", json.dumps({"partner": "USA", "head": {"size": 5},
                                             "consistent": False})),
        ("2026-01-01T00:00:01Z", json.dumps({"partner": "KOR", "head": {"size": 3},
                                             "consistent": True})),
        ("2026-01-01T00:00:00Z", json.dumps({"partner": "KOR", "head": {"size": 2}})),
        ("2026-01-01T00:00:00Z", json.dumps({"partner": "JPN", "head": {"size": 1},
                                             "consistent": "yes"})),
    ]
    got = {h["partner"]: h for h in latest_partner_heads(rows)}
    assert [h for h in got] == ["JPN", "KOR", "USA"]
    assert got["USA"]["consistent"] is False and got["KOR"]["consistent"] is True
    assert got["KOR"]["head"] == {"size": 3}
    assert got["JPN"]["consistent"] is None          # not a flag: shown as unknown


def test_state_answers_an_unwritable_audit_log_as_the_api_does(
        node: Node, tokens: dict[str, str], replayed: dict[str, Any]) -> None:
    """A read the log cannot record is refused with 503 and a JSON reason, as TAXII refuses
    it, not a 500 (the dashboard had its own mapping of service errors)."""
    client = client_for(node)
    sign_in(client, "kenji", tokens["kenji"])
    signer, node.store.signer = node.store.signer, None   # the log can no longer be signed
    try:
        refused = client.get("/dashboard/state")
    finally:
        node.store.signer = signer
    assert refused.status_code == 503, refused.text
    assert "audit" in refused.json()["error"].lower()
    assert client.get("/dashboard/state").status_code == 200
