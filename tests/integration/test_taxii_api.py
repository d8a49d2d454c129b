"""The TAXII 2.1 API over a real node store (SQLite file; the paging test also PostgreSQL):
shapes, media types, authentication, filters, keyset cursors shared by two app instances,
Art. 7 filtering with indistinguishable 404s, audit of every read, the peer API's skeleton,
and a property test over generated label mixes through every endpoint."""

from __future__ import annotations

import base64
import itertools
import json
import uuid
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gsomia.bootstrap import app_for_node, collection_id
from gsomia.core.agreements import Catalogue
from gsomia.core.audit import verify_tree_head
from gsomia.core.custody import item_version
from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import Person, decide_access
from gsomia.core.stix import label_marking
from gsomia.core.taxii import STIX_MEDIA, TAXII_MEDIA, timestamp
from gsomia.service import handlers
from gsomia.shell.node import Node, init_node, new_token, open_node
from gsomia.shell.store import audit_events
from tampering import wal_unreadable

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

NOW = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
CID = collection_id("JPN")
OBJECTS = f"/gsomia/collections/{CID}/objects/"
MANIFEST = f"/gsomia/collections/{CID}/manifest/"
_n = itertools.count(1)


def indicator(n: int, modified: str = "2024-03-01T08:00:00.000Z") -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1",
            "id": f"indicator--{uuid.UUID(int=n, version=4)}",
            "created": "2024-03-01T08:00:00.000Z", "modified": modified,
            "name": f"TEL activity {n}", "pattern": f"[x-dprk-site:name = 'Sunan-{n}']",
            "pattern_type": "stix", "valid_from": "2024-03-01T08:00:00Z"}


def marking(label: SecurityLabel, catalogue: Catalogue) -> dict[str, Any]:
    return label_marking(label, label.english_marking(catalogue.schemes), created=NOW)


def envelope(label: SecurityLabel, catalogue: Catalogue, objs: list[dict[str, Any]]
             ) -> dict[str, Any]:
    m = marking(label, catalogue)
    return {"objects": [m, *({**o, "object_marking_refs": [m["id"]]} for o in objs)]}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": TAXII_MEDIA}


POST = {"Content-Type": TAXII_MEDIA}
CONF = SecurityLabel("JPN", "秘", frozenset({"JPN", "KOR"}), "dprk-missile")
SECRET = SecurityLabel("JPN", "極秘", frozenset({"JPN", "KOR", "USA"}), "dprk-missile")
MARITIME = SecurityLabel("JPN", "秘", frozenset({"JPN"}), "regional-security")


class World:
    """One JPN node with three people and items under three labels."""

    def __init__(self, folder: Path, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self.node = init_node(folder, "JPN", catalogue=catalogue, now=NOW)
        self.tokens: dict[str, str] = {}
        everything = ["dprk-missile", "regional-security"]
        for name, clearance, ntk in (("kenji", "機密", everything),
                                     ("aiko", "秘", ["dprk-missile"]),
                                     ("hana", "極秘", ["regional-security"])):
            self.add_user(name, clearance, ntk)
        self.app = app_for_node(self.node)
        self.client = TestClient(self.app)

    def add_user(self, name: str, clearance: str, ntk: list[str]) -> str:
        token = new_token()
        handlers.add_user(self.node.uow(), keys=self.node.keys, schemes=self.catalogue.schemes,
                          name=name, clearance=clearance, need_to_know=ntk, token=token,
                          now=NOW)
        self.tokens[name] = token
        return token

    def publish(self, label: SecurityLabel, objs: list[dict[str, Any]],
                who: str = "kenji") -> dict[str, Any]:
        r = self.client.post(OBJECTS, headers={**auth(self.tokens[who]), **POST},
                             content=json.dumps(envelope(label, self.catalogue, objs)))
        assert r.status_code == 202, r.text
        body: dict[str, Any] = r.json()
        assert body["failure_count"] == 0, body["failures"]
        return body

    def get(self, who: str, path: str, **params: Any) -> Any:
        return self.client.get(path, headers=auth(self.tokens[who]), params=params)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from gsomia.shell.catalogue import load_catalogue

    w = World(tmp_path_factory.mktemp("taxii") / "jpn", load_catalogue())
    w.conf = [indicator(n) for n in range(1, 8)]  # type: ignore[attr-defined]
    w.secret = [indicator(n) for n in range(8, 12)]  # type: ignore[attr-defined]
    w.maritime = [indicator(n) for n in range(12, 15)]  # type: ignore[attr-defined]
    w.publish(CONF, w.conf)  # type: ignore[attr-defined]
    w.publish(SECRET, w.secret)  # type: ignore[attr-defined]
    w.publish(MARITIME, w.maritime)  # type: ignore[attr-defined]
    # a second version of the first CONF indicator
    w.publish(CONF, [indicator(1, "2024-03-01T08:30:00.000Z")])
    yield w
    w.node.close()


# ---- shapes, media types, authentication -------------------------------------------------------


def test_discovery_api_root_and_collections(world: World) -> None:
    d = world.get("aiko", "/taxii2/")
    assert d.status_code == 200 and d.headers["content-type"] == TAXII_MEDIA
    assert d.json()["api_roots"] == ["/gsomia/"] and d.json()["default"] == "/gsomia/"
    root = world.get("aiko", "/gsomia/").json()
    assert root["versions"] == [TAXII_MEDIA] and root["max_content_length"] > 0
    cols = world.get("aiko", "/gsomia/collections/").json()["collections"]
    assert [c["id"] for c in cols] == [CID]
    one = world.get("aiko", f"/gsomia/collections/{CID}/").json()
    assert one["can_read"] and one["can_write"] and one["media_types"] == [STIX_MEDIA]
    assert world.get("aiko", "/other-root/").status_code == 404
    assert world.get("aiko", "/gsomia/collections/nope/objects/").status_code == 404


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Bearer "},
    {"Authorization": "Basic !!notbase64"},
    {"Authorization": "Basic " + base64.b64encode(b"kenji:wrong").decode()},
    {"Authorization": "Digest abc"},
])
def test_no_or_bad_credentials_get_401_with_a_challenge(world: World,
                                                        headers: dict[str, str]) -> None:
    # Each case from an address of its own: failures from one address are throttled
    # (tests/e2e/test_auth_defences.py), which is not what this test looks at.
    client = TestClient(world.app, client=(f"192.0.2.{len(str(headers))}", 50000))
    for path in ("/taxii2/", OBJECTS, MANIFEST, "/gsomia/status/x/"):
        r = client.get(path, headers={**headers, "Accept": TAXII_MEDIA})
        assert r.status_code == 401
        assert "Bearer" in r.headers["www-authenticate"]
        assert r.json()["http_status"] == "401" and r.json()["title"]


def test_basic_auth_needs_the_right_user_name(world: World) -> None:
    def basic(user: str, token: str) -> dict[str, str]:
        raw = base64.b64encode(f"{user}:{token}".encode()).decode()
        return {"Authorization": f"Basic {raw}", "Accept": TAXII_MEDIA}

    assert world.client.get("/taxii2/", headers=basic("aiko", world.tokens["aiko"])
                            ).status_code == 200
    # the right token under another person's name is refused
    assert world.client.get("/taxii2/", headers=basic("kenji", world.tokens["aiko"])
                            ).status_code == 401


def test_media_types_406_415_and_bundles(world: World) -> None:
    h = auth(world.tokens["kenji"])
    assert world.client.get(OBJECTS, headers={**h, "Accept": "application/json"}
                            ).status_code == 406
    assert world.client.get("/taxii2/", headers={**h, "Accept": STIX_MEDIA}).status_code == 406
    bundle = world.client.get(OBJECTS, headers={**h, "Accept": STIX_MEDIA})
    assert bundle.status_code == 200 and bundle.headers["content-type"] == STIX_MEDIA
    assert bundle.json()["type"] == "bundle" and bundle.json()["objects"]
    body = json.dumps(envelope(CONF, world.catalogue, [indicator(99)]))
    r = world.client.post(OBJECTS, headers={**h, "Content-Type": "application/json"},
                          content=body)
    assert r.status_code == 415 and r.json()["http_status"] == "415"


@pytest.mark.parametrize(("body", "status"), [
    (b"{not json", 400), (b"[]", 422), (b"{}", 422), (b'{"objects": []}', 422),
    (b'{"objects": [1, 2]}', 422), (b'{"objects": [{"id": 1}]}', 422),
    (b'{"type": "bundle", "objects": []}', 422), (b"\xff\xfe", 400), (b"NaN", 400),
    (b'{"type": "report", "objects": [{"type": "x", "id": "x--1"}]}', 422),
])
def test_malformed_bodies_are_400_or_422_never_500(world: World, body: bytes,
                                                   status: int) -> None:
    r = world.client.post(OBJECTS, headers={**auth(world.tokens["kenji"]), **POST},
                          content=body)
    assert r.status_code == status
    assert r.json()["http_status"] == str(status) and "description" in r.json()


@pytest.mark.parametrize("params", [
    {"limit": "0"}, {"limit": "x"}, {"added_after": "yesterday"},
    {"match[version]": "newest"}, {"next": "forged.cursor"}, {"match[type]": ""},
])
def test_bad_queries_are_400(world: World, params: dict[str, str]) -> None:
    for path in (OBJECTS, MANIFEST):
        r = world.get("kenji", path, **params)
        assert r.status_code == 400 and r.json()["title"] == "Malformed request"


def test_unsupported_methods_answer_in_json(world: World) -> None:
    r = world.client.delete(OBJECTS, headers=auth(world.tokens["kenji"]))
    assert r.status_code == 405 and r.json()["http_status"] == "405"


# ---- objects, filters, versions, manifest ------------------------------------------------------


def test_filters_and_versions(world: World) -> None:
    everything = world.get("kenji", OBJECTS, **{"match[version]": "all"}).json()["objects"]
    # 14 objects, one of them in two versions, and the 3 label markings they were posted with
    assert len(everything) == 18
    last = world.get("kenji", OBJECTS).json()["objects"]
    assert len(last) == 17
    first_id = indicator(1)["id"]
    assert {o["modified"] for o in last if o["id"] == first_id} == {"2024-03-01T08:30:00.000Z"}
    first = world.get("kenji", OBJECTS, **{"match[version]": "first",
                                           "match[id]": first_id}).json()["objects"]
    assert [o["modified"] for o in first] == ["2024-03-01T08:00:00.000Z"]
    exact = world.get("kenji", OBJECTS, **{"match[version]": "2024-03-01T08:30:00Z",
                                           "match[id]": first_id}).json()["objects"]
    assert [o["modified"] for o in exact] == ["2024-03-01T08:30:00.000Z"]
    assert "objects" not in world.get("kenji", OBJECTS, **{"match[type]": "report"}).json()
    assert "objects" not in world.get("kenji", OBJECTS,
                                      **{"match[spec_version]": "2.0"}).json()
    versions = world.get("kenji", f"{OBJECTS}{first_id}/versions/").json()
    assert versions["versions"] == ["2024-03-01T08:00:00.000Z", "2024-03-01T08:30:00.000Z"]
    one = world.get("kenji", f"{OBJECTS}{first_id}/")
    assert [o["modified"] for o in one.json()["objects"]] == ["2024-03-01T08:30:00.000Z"]
    manifest = world.get("kenji", MANIFEST, limit=3)
    records = manifest.json()["objects"]
    assert manifest.json()["more"] and len(records) == 3
    assert manifest.headers["X-TAXII-Date-Added-First"] == records[0]["date_added"]
    assert manifest.headers["X-TAXII-Date-Added-Last"] == records[-1]["date_added"]
    cut = records[-1]["date_added"]
    after = world.get("kenji", MANIFEST, added_after=cut).json().get("objects", [])
    assert all(timestamp(r["date_added"], where="t") > timestamp(cut, where="t")
               for r in after)


def test_served_objects_carry_the_label_bound_here(world: World) -> None:
    served = world.get("kenji", OBJECTS).json()["objects"]
    markings = {o["id"] for o in served if o["type"] == "marking-definition"}
    objs = [o for o in served if o["type"] != "marking-definition"]
    assert all(len(o["object_marking_refs"]) == 1 for o in objs)
    # each object keeps the marking it was posted with, and that marking is served too
    assert {o["object_marking_refs"][0] for o in objs} == markings
    assert markings == {marking(lb, world.catalogue)["id"] for lb in (CONF, SECRET, MARITIME)}
    with world.node.store.repository() as repo:
        for o in objs[:3]:
            item = repo.get_item(o["id"], o["modified"])
            assert item is not None and item.object() == o  # served byte-for-byte as bound


def _page_all(clients: list[TestClient], token: str, path: str, limit: int,
              **params: str) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    headers = auth(token)
    r = clients[0].get(path, headers=headers, params={"limit": str(limit), **params})
    turn = 0
    while True:
        assert r.status_code == 200, r.text
        body = r.json()
        objs = body.get("objects", [])
        seen += [(o["id"], o["version"] if "version" in o else item_version(o)) for o in objs]
        if objs:
            assert r.headers["X-TAXII-Date-Added-First"] and r.headers["X-TAXII-Date-Added-Last"]
        if not body["more"]:
            return seen
        assert len(objs) == limit
        turn += 1
        r = clients[turn % len(clients)].get(
            path, headers=headers, params={"limit": str(limit), "next": body["next"], **params})


def test_keyset_cursors_page_across_two_app_instances(world: World) -> None:
    second = open_node(world.node.folder, catalogue=world.catalogue)
    try:
        other = TestClient(app_for_node(second))
        clients = [world.client, other]
        whole = [(o["id"], item_version(o)) for o in world.get(
            "kenji", OBJECTS, **{"match[version]": "all"}).json()["objects"]]
        for limit in (1, 2, 4, 7):
            assert _page_all(clients, world.tokens["kenji"], OBJECTS, limit,
                             **{"match[version]": "all"}) == whole
        # a cursor is bound to its query: replaying it with another filter is refused
        page = world.get("kenji", OBJECTS, limit=2).json()
        r = other.get(OBJECTS, headers=auth(world.tokens["kenji"]),
                      params={"limit": "2", "next": page["next"], "match[type]": "indicator"})
        assert r.status_code == 400
        # and to its reader: another person cannot resume it
        r = other.get(OBJECTS, headers=auth(world.tokens["aiko"]),
                      params={"limit": "2", "next": page["next"]})
        assert r.status_code == 400
        tampered = page["next"][:-2] + ("AA" if not page["next"].endswith("AA") else "BB")
        r = world.get("kenji", OBJECTS, limit=2, next=tampered)
        assert r.status_code == 400 and r.json()["details"]["where"] == "next"
    finally:
        second.close()


def test_paging_over_postgresql_with_two_api_instances(pg_url: str, tmp_path: Path,
                                                       shipped: Catalogue) -> None:
    """Two app instances (as two API processes would) over one PostgreSQL database."""
    node = init_node(tmp_path / "jpn", "JPN", catalogue=shipped, now=NOW, db_url=pg_url)
    second = open_node(node.folder, catalogue=shipped)
    try:
        token = new_token()
        handlers.add_user(node.uow(), keys=node.keys, schemes=shipped.schemes, name="kenji",
                          clearance="極秘", need_to_know=["dprk-missile"], token=token, now=NOW)
        a, b = TestClient(app_for_node(node)), TestClient(app_for_node(second))
        objs = [indicator(n) for n in range(2000, 2023)]
        for chunk in (objs[:10], objs[10:]):
            r = a.post(OBJECTS, headers={**auth(token), **POST},
                       content=json.dumps(envelope(CONF, shipped, chunk)))
            assert r.json()["failure_count"] == 0
        r = b.post(OBJECTS, headers={**auth(token), **POST},
                   content=json.dumps(envelope(CONF, shipped, [indicator(2000,
                                                                "2024-03-01T09:00:00.000Z")])))
        assert r.json()["failure_count"] == 0
        whole = [(o["id"], item_version(o)) for o in a.get(
            OBJECTS, headers=auth(token), params={"match[version]": "all"}).json()["objects"]]
        assert len(whole) == 25  # 24 versions and their label's marking
        for limit in (1, 4, 5):
            assert _page_all([a, b], token, OBJECTS, limit, **{"match[version]": "all"}) == whole
        latest = _page_all([b, a], token, OBJECTS, 3)
        assert len(latest) == 24 and (objs[0]["id"], "2024-03-01T09:00:00.000Z") in latest
        forged = b.get(OBJECTS, headers=auth(token), params={"next": "x.y"})
        assert forged.status_code == 400
    finally:
        second.close()
        node.close()


# ---- Art. 7 filtering, indistinguishable 404s, audit -------------------------------------------


def test_a_reader_sees_only_what_art7_allows(world: World) -> None:
    ids = {name: {o["id"] for o in world.get(name, OBJECTS).json().get("objects", [])}
           for name in ("kenji", "aiko", "hana")}
    conf = {o["id"] for o in world.conf}  # type: ignore[attr-defined]
    secret = {o["id"] for o in world.secret}  # type: ignore[attr-defined]
    maritime = {o["id"] for o in world.maritime}  # type: ignore[attr-defined]
    # each label's marking-definition, kept as an object, is seen exactly as its label is
    conf |= {marking(CONF, world.catalogue)["id"]}
    secret |= {marking(SECRET, world.catalogue)["id"]}
    maritime |= {marking(MARITIME, world.catalogue)["id"]}
    assert ids["kenji"] == conf | secret | maritime
    assert ids["aiko"] == conf  # no clearance for SECRET, no need-to-know for maritime
    assert ids["hana"] == maritime  # SECRET clearance but no need-to-know for dprk-missile
    manifest = {r["id"] for r in world.get("aiko", MANIFEST).json()["objects"]}
    assert manifest == conf


def test_a_hidden_item_is_indistinguishable_from_a_missing_one(world: World) -> None:
    hidden = world.secret[0]["id"]  # type: ignore[attr-defined]
    missing = f"indicator--{uuid.uuid4()}"
    for suffix in ("", "versions/"):
        a = world.get("aiko", f"{OBJECTS}{hidden}/{suffix}")
        b = world.get("aiko", f"{OBJECTS}{missing}/{suffix}")
        assert a.status_code == b.status_code == 404
        assert a.content == b.content
        assert dict(a.headers) == dict(b.headers)
    assert "objects" not in world.get("aiko", OBJECTS, **{"match[id]": hidden}).json()


def _events(node: Node, kind: str) -> list[Any]:
    with node.store.engine.connect() as conn:
        return list(conn.execute(sa.select(audit_events).where(audit_events.c.kind == kind)
                            .order_by(audit_events.c.seq)).all())


def test_every_read_is_audited_granted_or_denied_and_the_log_verifies(world: World) -> None:
    world.app.state.taxii_store.flush_access()  # what earlier tests' refusals queued
    granted_before = len(_events(world.node, "access-granted"))
    denied_before = len(_events(world.node, "access-denied"))
    conf_id = world.conf[2]["id"]  # type: ignore[attr-defined]
    assert world.get("aiko", f"{OBJECTS}{conf_id}/").status_code == 200
    granted = _events(world.node, "access-granted")
    assert len(granted) == granted_before + 1
    assert granted[-1].actor == "aiko" and granted[-1].item_id == conf_id
    hidden = world.secret[1]["id"]  # type: ignore[attr-defined]
    assert world.get("aiko", f"{OBJECTS}{hidden}/").status_code == 404
    world.app.state.taxii_store.flush_access()  # refusals are written off the request path
    denied = _events(world.node, "access-denied")
    assert len(denied) == denied_before + 1 and denied[-1].item_id == hidden
    assert "clearance" in json.loads(denied[-1].details)["reasons"][0]
    page = world.get("aiko", OBJECTS).json()["objects"]
    listed = json.loads(_events(world.node, "access-granted")[-1].details)["entries"]
    assert sorted(e["id"] for e in listed) == sorted(o["id"] for o in page)
    with world.node.store.reader() as reader:
        verdict = handlers.verify_audit(reader, public_key=world.node.keys.public_signing_key())
    assert verdict.ok, verdict.to_json()


def test_batched_read_audit_commits_within_moments_and_fails_closed(world: World) -> None:
    import time

    app = app_for_node(world.node, audit_reads="batched")
    store = app.state.taxii_store
    client = TestClient(app)
    conf_id = world.conf[3]["id"]  # type: ignore[attr-defined]
    path, headers = f"{OBJECTS}{conf_id}/", auth(world.tokens["aiko"])

    def wait_for(condition: Any) -> None:
        deadline = time.monotonic() + 5
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.01)

    before = len(_events(world.node, "access-granted"))
    assert client.get(path, headers=headers).status_code == 200
    wait_for(lambda: len(_events(world.node, "access-granted")) == before + 1)
    signer = world.node.store.signer
    world.node.store.signer = None  # the log can no longer be signed, so not written
    try:
        assert client.get(path, headers=headers).status_code == 200  # queued, then the flush fails
        wait_for(lambda: store._flush_error is not None)
        refused = client.get(path, headers=headers)
        assert refused.status_code == 503 and "audit" in refused.json()["description"]
    finally:
        world.node.store.signer = signer
    wait_for(lambda: store._flush_error is None)
    assert len(_events(world.node, "access-granted")) == before + 2  # the queued read, kept
    assert client.get(path, headers=headers).status_code == 200
    store.close()
    assert len(_events(world.node, "access-granted")) == before + 3


# ---- publishing through TAXII -----------------------------------------------------------------


def test_a_posts_status_commits_with_its_objects(world: World) -> None:
    # Looked at as each commit is made: the status appears in the very commit that first
    # holds the objects it reports on, never after them (a lost status) nor before.
    seen: list[tuple[set[str], set[str]]] = []

    def look(conn: sa.Connection) -> None:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        seen.append(({r[0] for r in raw.execute("SELECT id FROM taxii_statuses")},
                     {r[0] for r in raw.execute("SELECT id FROM items")}))

    n = 700 + next(_n)
    sa.event.listen(sa.engine.Engine, "commit", look)
    try:
        r = world.client.post(OBJECTS, headers={**auth(world.tokens["aiko"]), **POST},
                              content=json.dumps(envelope(CONF, world.catalogue,
                                                          [indicator(n), indicator(n + 1)])))
    finally:
        sa.event.remove(sa.engine.Engine, "commit", look)
    status = r.json()
    assert r.status_code == 202 and status["success_count"] == 3, status
    with_status = [items for statuses, items in seen if status["id"] in statuses]
    without = [items for statuses, items in seen if status["id"] not in statuses]
    assert with_status and {indicator(n)["id"], indicator(n + 1)["id"]} <= with_status[0]
    assert all(indicator(n)["id"] not in items for items in without)


def test_publishing_reports_each_object_and_keeps_the_rest(world: World) -> None:
    n = 500 + next(_n)
    ok, bad_pattern = indicator(n), {**indicator(n + 1), "pattern": "[unclosed"}
    body = envelope(CONF, world.catalogue, [ok, bad_pattern])
    body["objects"].append({**indicator(n + 2)})  # unlabelled
    r = world.client.post(OBJECTS, headers={**auth(world.tokens["aiko"]), **POST},
                          content=json.dumps(body))
    status = r.json()
    assert r.status_code == 202 and status["status"] == "complete"
    assert {f["id"] for f in status["failures"]} == {bad_pattern["id"], indicator(n + 2)["id"]}
    assert ok["id"] in {s["id"] for s in status["successes"]}
    again = world.get("aiko", f"/gsomia/status/{status['id']}/")
    assert again.status_code == 200 and again.json() == status
    assert world.get("kenji", f"/gsomia/status/{status['id']}/").status_code == 404
    # aiko may not publish SECRET: she could not read it
    r = world.client.post(OBJECTS, headers={**auth(world.tokens["aiko"]), **POST},
                          content=json.dumps(envelope(SECRET, world.catalogue,
                                                      [indicator(n + 3)])))
    assert r.json()["failure_count"] == 2  # nor keep its label's marking
    assert {f["message"] for f in r.json()["failures"]} == {handlers.REFUSED_TO_PUBLISH}
    # the same version again is idempotent
    r = world.client.post(OBJECTS, headers={**auth(world.tokens["aiko"]), **POST},
                          content=json.dumps(envelope(CONF, world.catalogue, [ok])))
    assert r.json()["success_count"] == 2 and "already held" in json.dumps(r.json())


def test_a_person_s_post_refused_for_their_rights_is_audited_within_a_bound(
        world: World) -> None:
    """issue 11: a low-cleared account probing what it may write leaves a trace (before, no
    event at all), answered exactly as before; repeated, it is counted, not written each
    time. About 0.5 s: the module's node, a user of its own."""
    world.add_user("taro", "秘", ["dprk-missile"])
    store = world.app.state.taxii_store
    n = 900 + next(_n)
    headers = {**auth(world.tokens["taro"]), **POST}
    r = world.client.post(OBJECTS, headers=headers, content=json.dumps(
        envelope(SECRET, world.catalogue, [indicator(n)])))
    assert r.status_code == 202 and r.json()["failure_count"] == 2
    assert {f["message"] for f in r.json()["failures"]} == {handlers.REFUSED_TO_PUBLISH}
    absent = world.client.post("/gsomia/collections/no-such/objects/", headers=headers,
                               content=json.dumps(envelope(CONF, world.catalogue, [])))
    assert absent.status_code == 404
    mine = [e for e in _events(world.node, "action-refused") if e.actor == "taro"]
    assert [json.loads(e.details)["collection"] for e in mine] == [CID, "no-such"]
    first = json.loads(mine[0].details)
    assert first["action"] == "taxii-post" and first["refused"] == 2
    assert indicator(n)["id"] in first["item_ids"]
    # the access rule's own reasons on record, not the one text the poster is told
    assert first["reasons"] and handlers.REFUSED_TO_PUBLISH not in first["reasons"]
    for k in range(12):  # in a loop: ten a window on record one by one, the rest counted
        again = world.client.post(OBJECTS, headers=headers, content=json.dumps(
            envelope(SECRET, world.catalogue, [indicator(n + 1 + k)])))
        assert again.status_code == 202 and again.json()["failure_count"] == 2
    assert len([e for e in _events(world.node, "action-refused") if e.actor == "taro"]) == 10
    handlers.record_action_summaries(world.node.uow(), refusals=store.refusals, now=None)
    [summary] = [json.loads(e.details) for e in _events(world.node, "action-refused")
                 if e.actor == "taro" and json.loads(e.details).get("summary")]
    assert summary["refused"] == 4 and summary["notices"] == {"taxii-post": 4}
    # `gsomia doctor` names the account, every post counted, past the bound
    from gsomia.shell.doctor import people_refusal_checks

    [check] = people_refusal_checks(world.node.folder, lambda: world.catalogue)
    assert not check.ok and not check.required and "taro 14 (past the bound)" in check.detail
    with world.node.store.reader() as reader:
        verdict = handlers.verify_audit(reader, public_key=world.node.keys.public_signing_key())
    assert verdict.ok, verdict.problems


def test_people_refused_are_counted_apart_by_name_beyond_fifty_and_the_rest_not_as_one(
        world: World) -> None:
    """review20: the people's refusal window counted 50 apart (a partner's bound) and the
    rest as "(other partners)", a label doctor then named as if it were a person. Now each
    of 60 people refused in one window keeps their name; those beyond the node's bound are
    "(other accounts)", which doctor reports as accounts together. Pure counting on the
    module's node, no request: about 0.1 s."""
    from gsomia.service.refusals import OTHER_ACCOUNTS, OTHER_PARTNERS, RefusalWindow
    from gsomia.shell.doctor import people_refusal_checks

    at = datetime.now(UTC)
    window = world.app.state.taxii_store.refusals
    people = [f"person-{n}" for n in range(60)]
    for person in people:
        for _ in range(11):  # ten on record one by one, the eleventh counted
            window.admit(person, "taxii-post", None, at)
    counted = {s.sender for s in window.closed(None)}
    assert set(people) <= counted and not counted & {OTHER_ACCOUNTS, OTHER_PARTNERS}
    beyond = RefusalWindow(per_window=0, max_partners=0, overflow=OTHER_ACCOUNTS)
    for person in people[:3]:
        beyond.admit(person, "taxii-post", None, at)
    handlers.record_action_summaries(world.node.uow(), refusals=beyond, now=None)
    [check] = people_refusal_checks(world.node.folder, lambda: world.catalogue)
    assert "accounts not counted apart 3 (past the bound)" in check.detail
    assert OTHER_ACCOUNTS not in check.detail and not check.ok


# ---- peer API skeleton ------------------------------------------------------------------------


def test_peer_api_needs_a_client_certificate_and_checks_shapes(world: World) -> None:
    assert world.client.get("/peer/v1/tree-heads/").status_code == 401
    assert world.client.post("/peer/v1/envelopes/", json={}).status_code == 401
    # a test app that takes the peer identity from a header, as the TLS layer would
    app = app_for_node(world.node, peer_identity=lambda scope: dict(
        scope["headers"]).get(b"x-peer", b"").decode() or None)
    peer = TestClient(app)
    head = peer.get("/peer/v1/tree-heads/", headers={"x-peer": "KOR"})
    assert head.status_code == 200
    from gsomia.core.audit import TreeHead
    verify_tree_head(TreeHead.from_json(head.json()), world.node.keys.public_signing_key())
    for path in ("/peer/v1/envelopes/", "/peer/v1/receipts/", "/peer/v1/consents/replies/",
                 "/peer/v1/incidents/", "/peer/v1/tree-heads/", "/peer/v1/consents/requests/"):
        r = peer.post(path, headers={"x-peer": "KOR"}, json={"junk": True})
        assert r.status_code == 422, (path, r.text)
        assert peer.post(path, headers={"x-peer": "KOR", "content-type": "application/json"},
                         content=b"{").status_code == 400
    # a well-formed tree head from a partner whose key this node does not have: 503, not 500
    r = peer.post("/peer/v1/tree-heads/", headers={"x-peer": "KOR"}, json=head.json())
    assert r.status_code == 503


def test_peer_head_routes_refuse_a_log_that_cannot_be_synced_with_a_reason(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A head is synced to disk before a partner gets it; a write-ahead log that cannot be
    opened for that refuses the head with a JSON 503 saying what to check, not a 500."""
    from gsomia.core.errors import Unavailable
    from gsomia.shell import notices
    peer = TestClient(app_for_node(world.node, peer_identity=lambda scope: dict(
        scope["headers"]).get(b"x-peer", b"").decode() or None))
    with wal_unreadable(monkeypatch):
        refused = peer.get("/peer/v1/tree-heads/", headers={"x-peer": "KOR"})
        # The exchange's answer (a partner's head with ``since``) reads it the same way.
        with pytest.raises(Unavailable, match="write-ahead log"):
            notices.head_with_proof(world.node, 0)
    assert refused.status_code == 503, refused.text
    body = refused.json()
    assert body["http_status"] == "503" and body["title"] == "Not available"
    assert "write-ahead log" in body["description"] and "-wal" in body["description"]
    assert "readable" in body["description"]
    assert peer.get("/peer/v1/tree-heads/", headers={"x-peer": "KOR"}).status_code == 200


def test_openapi_document(world: World) -> None:
    doc = world.client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert "/{api_root}/collections/{collection_id}/objects/" in doc["paths"]


# ---- property: nobody ever gets what the access rule denies -----------------------------------

LEVELS = ["機密", "特定秘密", "極秘", "秘"]
PURPOSES = ["dprk-missile", "regional-security"]
label_st = st.builds(
    lambda level, rel, purpose, noforn: SecurityLabel(
        "JPN", level, frozenset({"JPN", *rel}), purpose,
        frozenset({"NOFORN"}) if noforn else frozenset()),
    st.sampled_from(LEVELS), st.sets(st.sampled_from(["KOR", "USA"])),
    st.sampled_from(PURPOSES), st.booleans())
person_st = st.tuples(st.sampled_from(LEVELS), st.sets(st.sampled_from(PURPOSES), min_size=1))


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(items=st.lists(label_st, min_size=1, max_size=4), reader=person_st)
def test_no_endpoint_ever_serves_what_the_access_rule_denies(
        world: World, items: list[SecurityLabel], reader: tuple[str, set[str]]) -> None:
    published: list[tuple[str, SecurityLabel]] = []
    for label in items:
        obj = indicator(10_000 + next(_n))
        world.publish(label, [obj])
        published.append((obj["id"], label))
    name = f"p{next(_n)}"
    clearance, ntk = reader
    world.add_user(name, clearance, sorted(ntk))
    person = Person(name, "JPN", clearance, frozenset(ntk))
    labels: dict[str, SecurityLabel] = {}
    with world.node.store.repository() as repo:
        for h in repo.holdings():
            labels[h.item.item_id] = h.current.national_label

    def allowed(item_id: str) -> bool:
        return decide_access(person, labels[item_id], world.catalogue.schemes).permit

    listed = _page_all([world.client], world.tokens[name], OBJECTS, 5,
                       **{"match[version]": "all"})
    assert all(allowed(i) for i, _ in listed)
    assert {i for i, _ in listed} == {i for i in labels if allowed(i)}
    manifest = _page_all([world.client], world.tokens[name], MANIFEST, 7)
    assert all(allowed(i) for i, _ in manifest)
    missing = world.get(name, f"{OBJECTS}indicator--{uuid.uuid4()}/")
    for item_id, _label in published:
        for suffix in ("", "versions/"):
            r = world.get(name, f"{OBJECTS}{item_id}/{suffix}")
            if allowed(item_id):
                assert r.status_code == 200
            else:
                assert r.status_code == 404 and r.content == missing.content


def test_a_flush_returns_only_once_what_was_queued_before_it_is_in_the_log(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """flush_access is a barrier: when the writer thread has just taken the queue and is
    still committing it, a caller's flush waits for that commit instead of returning at
    once on an empty queue (the log was read before the refusal was in it)."""
    import threading
    import time

    from gsomia.shell import taxii_store

    store = world.app.state.taxii_store
    store.flush_access()
    committing = threading.Event()
    real = taxii_store.record_accesses  # type: ignore[attr-defined]  # patched where used

    def slow(uow: Any, batch: Any) -> Any:   # the real commit, begun late
        committing.set()
        time.sleep(0.3)
        return real(uow, batch)

    monkeypatch.setattr(taxii_store, "record_accesses", slow)
    before = len(_events(world.node, "access-denied"))
    hidden = world.secret[1]["id"]  # type: ignore[attr-defined]
    assert world.get("aiko", f"{OBJECTS}{hidden}/").status_code == 404
    assert committing.wait(5)       # the writer thread holds the refusal, not yet committed
    store.flush_access()
    assert len(_events(world.node, "access-denied")) == before + 1


def test_a_batched_read_recorded_on_the_loop_never_fills_the_queue(world: World) -> None:
    """``record_access_now`` in batched mode queues a read while the queue has room, and
    turns away, queuing nothing, the read that would fill it (that caller would flush, a
    commit the event loop must not wait for); the read then goes by ``record_access``."""
    from gsomia.service.taxii_ports import AccessRecord
    from gsomia.shell.taxii_store import SqlObjectStore

    store = SqlObjectStore(world.node.store, keys=world.node.keys,
                           catalogue=world.node.catalogue, validate=None,
                           audit_reads="batched")
    person = Person("kenji", "JPN", "機密", frozenset({"dprk-missile"}))
    record = AccessRecord(person, "objects", [("indicator--x", "v")], (), NOW)
    # A small queue, and a writer thread that flushes nothing while the test looks.
    store.MAX_QUEUED, store.FLUSH_EVERY = 4, 3600.0
    try:
        with store._queue_lock:
            store._queue = [record] * (store.MAX_QUEUED - 2)
        assert store.record_access_now(record, alone=True) is True
        assert len(store._queue) == store.MAX_QUEUED - 1
        assert store.record_access_now(record, alone=True) is False
        assert len(store._queue) == store.MAX_QUEUED - 1   # nothing queued by the refusal
    finally:
        with store._queue_lock:
            store._queue = []   # none of these reads happened: keep them out of the log
        store.close()


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(picks=st.lists(st.integers(0, 40), max_size=12),
       types=st.lists(st.sampled_from(["indicator", "marking-definition", "report"]),
                      max_size=3))
def test_id_and_type_lists_of_any_length_select_exactly_and_add_no_statements(
        world: World, picks: list[int], types: list[str]) -> None:
    """The page's IN lists are bound item by item only for the reader's label classes and
    a single id: whatever lists a request sends, it selects exactly what it names, and the
    statements the store keeps stay the few shapes of the API (a request cannot grow them)."""
    everything = world.get("kenji", OBJECTS, limit=1000,
                           **{"match[version]": "all"}).json()["objects"]
    held = sorted({o["id"] for o in everything})
    ids = sorted({held[p] if p < len(held) else f"indicator--{uuid.UUID(int=p)}"
                  for p in picks})
    params = {"match[version]": "all", "limit": 1000}
    if ids:
        params["match[id]"] = ",".join(ids)
    if types:
        params["match[type]"] = ",".join(types)
    got = world.get("kenji", OBJECTS, **params).json().get("objects", [])
    want = [o for o in everything if (not ids or o["id"] in ids)
            and (not types or o["type"] in types)]
    assert sorted(json.dumps(o, sort_keys=True) for o in got) == \
        sorted(json.dumps(o, sort_keys=True) for o in want)
    kept = [key for key in world.app.state.taxii_store._statements if key[0] == "page"]
    assert all(key[-3] in (0, 1) and key[-2:] == (0, 0) for key in kept), kept


def test_an_item_under_a_new_label_published_by_another_process_is_served_at_once(
        world: World) -> None:
    """Each API instance keeps the label classes it has seen, and reads those added since in
    the transaction of every page it reads: a class first stored by another process of the
    node is served on the next read, never held back until a refresh."""
    second = open_node(world.node.folder, catalogue=world.catalogue)
    try:
        other = TestClient(app_for_node(second))
        world.get("kenji", OBJECTS)  # this instance has read the classes held so far
        fresh = SecurityLabel("JPN", "極秘", frozenset({"JPN", "USA"}), "regional-security")
        obj = indicator(900_000 + next(_n))
        r = other.post(OBJECTS, headers={**auth(world.tokens["kenji"]), **POST},
                       content=json.dumps(envelope(fresh, world.catalogue, [obj])))
        assert r.status_code == 202 and r.json()["failure_count"] == 0, r.text
        one = world.get("kenji", f"{OBJECTS}{obj['id']}/")
        assert one.status_code == 200 and one.json()["objects"][0]["id"] == obj["id"]
        listed = world.get("kenji", OBJECTS, limit=1000).json()["objects"]
        assert obj["id"] in {o["id"] for o in listed}
        # and still only to whom the label allows
        assert world.get("aiko", f"{OBJECTS}{obj['id']}/").status_code == 404
    finally:
        second.close()
