"""The dashboard's server side over a real node store: sessions and their cookie, the access
rule on what the page is sent (reads audited), what the node's warning centre publishes from
its own radars (valid STIX, its properties fitting their schemas), ``gsomia replay`` refusing
a node that does not run, and clear refusals. The browser side is in
``tests/e2e/test_dashboard.py``."""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gsomia.bootstrap import app_for_node
from gsomia.core.agreements import Catalogue
from gsomia.service import handlers
from gsomia.shell.node import Node, init_node, new_token, open_node
from gsomia.shell.stix_check import check_stix
from gsomia.shell.web import Sessions
from tampering import wal_unreadable

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
                                 ("taro", "極秘", ["maritime-security"]),
                                 # cleared for all a JPN node may hold: sees the audit log
                                 ("hana", "機密", ["dprk-missile", "regional-security"])):
        out[name] = new_token()
        handlers.add_user(node.uow(), keys=node.keys, schemes=shipped.schemes, name=name,
                          clearance=clearance, need_to_know=ntk, token=out[name],
                          now=datetime.now(UTC),
                          role="operator" if name == "kenji" else "reader")
    node.close()
    return out


@pytest.fixture(scope="module")
def warned(folder: Path, tokens: dict[str, str], shipped: Catalogue) -> dict[str, Any]:
    """JPN's radars on 2017-08-29 taken by the node's sensor intake (one batch per second of
    reports, to 260 s of flight: past the first prediction and warning), then its warning
    centre run over what the node holds, in this process and without waiting for the flight
    (``gsomia replay`` plays them into a running node: ``tests/e2e/test_sensor_regimes.py``).
    How many items the node holds, and the warnings its centre published."""
    from gsomia.shell.sensor_intake import SensorIntake
    from gsomia.shell.sensor_player import playlist
    from gsomia.shell.warning_centre import CentreWorker

    node = open_node(folder, catalogue=shipped)
    try:
        intake = SensorIntake(node)
        indicators, lines = playlist("2017-08-29", None, "JPN", 0, 260.0)
        by_second: dict[int, list[bytes]] = {}
        for at, line in lines:
            by_second.setdefault(int(at), []).append(json.dumps(line).encode())
        intake.take([json.dumps(i).encode() for i in indicators], datetime.now(UTC))
        for second in sorted(by_second):
            intake.take(by_second[second], datetime.now(UTC))
        worker = CentreWorker(node)
        while worker.pass_once():
            pass
        with node.store.repository() as repo:
            held = [json.loads(h.item.content) for h in repo.holdings()]
    finally:
        node.close()
    return {"held": len(held), "published": worker.published,
            "warnings": [o["x_gsomia_warning"] for o in held if "x_gsomia_warning" in o]}


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


def test_the_centre_warns_hokkaido_from_the_node_s_own_radars(warned: dict[str, Any]) -> None:
    issued = [w for w in warned["warnings"] if w["action"] == "issued"]
    assert issued and "Hokkaido" in issued[0]["regions"]
    assert warned["published"] > len(warned["warnings"])    # its tracks and predictions too


def test_the_replay_reads_the_centre_s_warnings_back_through_the_repository(
        warned: dict[str, Any], node: Node) -> None:
    from gsomia.shell import feeds
    from gsomia.shell.sensor_player import _newest_seq, centre_warnings, liftoff

    began = liftoff(feeds.find_launch("2017-08-29", None))
    found = centre_warnings(node, 0, began)
    assert [(w["action"], w["regions"]) for w in found] == [
        (w["action"], list(w["regions"])) for w in warned["warnings"]]
    assert all(w["after_launch_s"] > 0 for w in found)
    assert centre_warnings(node, _newest_seq(node), began) == []


def test_replay_refuses_a_node_that_does_not_run(
        folder: Path, node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    """``gsomia replay`` plays into a running node's intake and waits for its centre: with
    none running it says so and how to start one, exits 2, and publishes nothing."""
    from gsomia.shell.cli import main

    with node.store.repository() as repo:
        before = repo.count_items()
    capsys.readouterr()
    assert main(["replay", "--node", str(folder), "--launch", "2017-08-29", "--json"]) == 2
    err = capsys.readouterr().err
    assert "not running" in err and f"gsomia node run --dir {folder}" in err, err
    with node.store.repository() as repo:
        assert repo.count_items() == before


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
                                     warned: dict[str, Any]) -> None:
    seen = {}
    for name in ("kenji", "aiko", "taro", "hana"):
        client = client_for(node)
        sign_in(client, name, tokens[name])
        seen[name] = client.get("/dashboard/state").json()
    kenji, aiko, taro = seen["kenji"], seen["aiko"], seen["taro"]
    # Cleared 極秘: the radars' reports (秘), the indicators (特定秘密) and the centre's
    # tracks, predictions and warnings (極秘).
    assert len(kenji["items"]) == warned["held"]
    kinds = {i["kind"] for i in kenji["items"]}
    assert kinds == {None, "track", "ipp", "warning"}
    # Cleared 秘: the radars' reports only, none of what the centre made of them.
    assert aiko["items"] and {i["kind"] for i in aiko["items"]} == {None}
    assert all(i["marking"].startswith("秘") for i in aiko["items"])
    assert taro["items"] == []     # no need-to-know
    for doc in (aiko, taro):
        # not even a count of what they may not read (issue 10, finding 3)
        assert "withheld" not in doc
        assert "Hokkaido" not in json.dumps(doc, ensure_ascii=False)
    # The audit log counts every item: only hana, cleared for all the node may hold, sees
    # it (review28; tests/integration/test_dashboard_oracles.py).
    hana = seen["hana"]
    head = hana["audit"]["head"]
    assert hana["audit"]["shown"] and head is not None
    assert 0 < head["size"] <= hana["audit"]["size"]
    assert hana["audit"]["partners"] == [] and hana["audit"]["error"] is None
    for doc in (kenji, aiko, taro):
        assert doc["audit"] == {"size": None, "head": None, "partners": [], "error": None,
                                "published": None, "shown": False}
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
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
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


def test_what_the_centre_published_is_valid_stix_fitting_the_schemas(
        node: Node, warned: dict[str, Any]) -> None:
    import jsonschema

    from gsomia.core.stix import EXTENSION_PROPERTY_SCHEMAS, check_extension_properties

    with node.store.repository() as repo:
        holdings = repo.holdings()
    assert holdings
    names = set()
    for h in holdings:
        obj = json.loads(h.item.content)
        check_stix(obj)
        check_extension_properties(obj)
        for name, value in obj.items():
            if name.startswith("x_gsomia_"):
                names.add(name)
                jsonschema.validate(value, EXTENSION_PROPERTY_SCHEMAS[name])
    assert names == {"x_gsomia_sensor_report", "x_gsomia_track", "x_gsomia_ipp",
                     "x_gsomia_warning"}


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


@pytest.fixture(scope="module")
def heads_node(tmp_path_factory: pytest.TempPathFactory,
               shipped: Catalogue) -> Iterator[Node]:
    """A JPN node of its own, whose log the partner-head tests fill."""
    node = init_node(tmp_path_factory.mktemp("heads") / "jpn", "JPN", catalogue=shipped,
                     now=datetime.now(UTC))
    yield node
    node.close()


_HEAD_KEYS: dict[str, Any] = {}


def _log_head(node: Node, partner: str, size: int, how: str) -> None:
    """``partner``'s head of ``size`` on ``node``'s record: posted by the partner, or asked
    for and found consistent or inconsistent."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gsomia.core.audit import sign_tree_head
    from gsomia.core.partner_heads import HeadVerdict
    from gsomia.service import notices as notice_handlers

    key = _HEAD_KEYS.setdefault(partner, Ed25519PrivateKey.generate())
    now = datetime.now(UTC)
    head = sign_tree_head(size, bytes([size % 256]) * 32, now, key)
    if how == "posted":
        notice_handlers.record_partner_head(node.uow(), sender=partner, head=head,
                                            sender_key=key.public_key(), now=now)
    else:
        notice_handlers.record_head_exchange(
            node.uow(), partner=partner, previous=None, head=head, now=now,
            verdict=HeadVerdict(how == "consistent", size - 1, "rolled back"))


def _every_head_read(node: Node) -> list[dict[str, Any]]:
    """What ``partner_heads`` answered when it read every head event of the log."""
    from gsomia.shell import notices

    with node.store.repository() as repo:
        return notices._partner_heads(notices.head_events(repo))


def test_the_dashboard_shows_a_partner_inconsistent_once_any_of_its_heads_was(
        heads_node: Node, shipped: Catalogue) -> None:
    """KOR's log was found rewritten, then its later heads extended the rewritten one: the
    dashboard still says INCONSISTENT (before: it read the exchanged heads only and showed
    KOR consistent, the evidence out of sight); USA's posted head was never checked."""
    from gsomia.shell.web import NodeView, partner_heads

    for partner, size, how in (("KOR", 5, "consistent"), ("KOR", 6, "inconsistent"),
                               ("KOR", 7, "consistent"), ("USA", 3, "posted")):
        _log_head(heads_node, partner, size, how)
    view = NodeView(heads_node.store, heads_node.keys, shipped, "JPN")
    got = {h["partner"]: h for h in partner_heads(view)}
    assert list(got) == ["KOR", "USA"]
    assert got["KOR"]["consistent"] is False and got["KOR"]["head"]["size"] == 7
    assert got["USA"]["consistent"] is None and got["USA"]["head"]["size"] == 3
    assert got["KOR"]["received_at"] == got["KOR"]["at"]


def test_a_partner_of_no_agreement_found_inconsistent_stays_in_sight(
        heads_node: Node, shipped: Catalogue) -> None:
    """KOR left every agreement JPN knows but is still in its federation (partners.json),
    and its log was once found rewritten: the dashboard, doctor and ``audit partners`` still
    show it INCONSISTENT (review18: before, only agreement partners were listed, and the
    evidence dropped out of sight)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from gsomia.shell import exchange
    from gsomia.shell.web import NodeView, partner_heads

    _log_head(heads_node, "KOR", 9, "inconsistent")
    without_kor = Catalogue({k: a for k, a in shipped.agreements.items()
                             if "KOR" not in a.parties}, shipped.schemes)
    exchange.Partners("JPN", "direct", {"KOR": exchange.Peer(
        "KOR", "https://kor.invalid", Ed25519PrivateKey.generate().public_key(),
        X25519PrivateKey.generate().public_key(), None)}, ()).write(heads_node.folder)
    try:
        view = NodeView(heads_node.store, heads_node.keys, without_kor, "JPN",
                        Path(heads_node.folder))
        got = {h["partner"]: h for h in partner_heads(view)}
        assert got["KOR"]["consistent"] is False
    finally:
        (Path(heads_node.folder) / exchange.PARTNERS_FILE).unlink()


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(st.sampled_from(["KOR", "USA"]), st.integers(1, 50),
                                st.sampled_from(["posted", "consistent", "inconsistent"])),
                      max_size=6))
def test_each_partners_heads_read_by_index_are_what_reading_every_head_finds(
        heads_node: Node, shipped: Catalogue, steps: list[tuple[str, int, str]]) -> None:
    """However partners' heads were posted, checked and found rewritten, the few records
    read per partner give the answer that reading every head of the log gave."""
    from gsomia.shell import notices

    for partner, size, how in steps:
        _log_head(heads_node, partner, size, how)
    view = node_view(heads_node, shipped)
    assert notices.partner_heads(view) == _every_head_read(heads_node)


def node_view(node: Node, catalogue: Catalogue) -> Any:
    from gsomia.shell.web import NodeView

    return NodeView(node.store, node.keys, catalogue, node.party)


def test_state_answers_an_unwritable_audit_log_as_the_api_does(
        node: Node, tokens: dict[str, str], warned: dict[str, Any]) -> None:
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


def test_state_answers_a_log_that_cannot_be_synced_with_a_reason(
        node: Node, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The head is synced before it is shown; a write-ahead log that cannot be opened for it
    refuses the state with 503 and what to check, not a 500."""
    client = client_for(node)
    sign_in(client, "hana", tokens["hana"])     # one who sees the head
    with wal_unreadable(monkeypatch):  # nothing known on disk yet: the head is synced
        refused = client.get("/dashboard/state")
    assert refused.status_code == 503, refused.text
    error = refused.json()["error"]
    assert "write-ahead log" in error and "-wal" in error and "readable" in error
    assert client.get("/dashboard/state").status_code == 200
