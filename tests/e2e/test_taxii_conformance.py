"""Issue 14: TAXII as clients expect, against real node processes over HTTPS.

The OASIS ``taxii2-client`` runs a conformance sequence on a *fresh* node (nothing held
yet): a gsomia label marking-definition, printed by ``gsomia label --json``, posted in its
own envelope, then ``stix2`` objects that reference it in the next; every check passes and
everything reads back exactly as posted. Labelled collections (``[[taxii.collections]]`` in
``node.toml``) take plain STIX from tools that know nothing of gsomia labels; one of KOR's
carries a plain ``stix2`` indicator to JPN, re-marked there under Art. 4, with custody and
the receipts in ``items --json`` at both ends. And what issue 10 promised still holds: a
label marking, or a labelled collection, that a person may not see answers exactly as one
that does not exist.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_federation import WAIT, Federation
from test_taxii_interop import Running, free_port, serving, validates

from gsomia.core.labels import SecurityLabel
from gsomia.core.stix import marking_id, printed_marking
from gsomia.core.taxii import STIX_MEDIA, TAXII_MEDIA, collection_id
from gsomia.service import handlers
from gsomia.shell import exchange
from gsomia.shell.catalogue import load_catalogue
from gsomia.shell.node import init_node, new_token

pytestmark = pytest.mark.timeout(300)

CATALOGUE = load_catalogue()
CONF = {"level": "秘", "rel_to": ["JPN", "KOR"], "purpose": "dprk-missile"}
JPN_COLLECTIONS = """
[[taxii.collections]]
name = "dprk-conf"
title = "DPRK missile reporting, CONFIDENTIAL REL TO JPN, KOR, USA"
level = "秘"
rel_to = ["JPN", "KOR", "USA"]
purpose = "dprk-missile"

[[taxii.collections]]
name = "dprk-secret"
level = "極秘"
rel_to = ["JPN", "KOR", "USA"]
purpose = "dprk-missile"
"""


@pytest.fixture(autouse=True)
def _session_verify_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """taxii2-client sets the session's CA from ``verify=``; these variables would win."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A JPN node that holds nothing, with two labelled collections and three people."""
    folder = tmp_path_factory.mktemp("conformance") / "jpn"
    made = init_node(folder, "JPN", catalogue=CATALOGUE, now=datetime.now(UTC))
    tokens = {}
    for name, clearance, ntk in (("taro", "機密", ["dprk-missile", "regional-security"]),
                                 ("kenji", "極秘", ["dprk-missile"]),
                                 ("aiko", "秘", ["dprk-missile"])):
        tokens[name] = new_token()
        handlers.add_user(made.uow(), keys=made.keys, schemes=CATALOGUE.schemes, name=name,
                          clearance=clearance, need_to_know=ntk, token=tokens[name],
                          now=datetime.now(UTC))
    made.close()
    with open(folder / "node.toml", "a", encoding="utf-8") as config:
        config.write(JPN_COLLECTIONS)
    with serving(folder, tokens) as running:
        yield running


def gsomia_label(*args: str) -> dict[str, Any]:
    """``gsomia label ... --json``, run as a script would."""
    done = subprocess.run([sys.executable, "-m", "gsomia", "label", *args, "--json"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def label_args(label: dict[str, Any]) -> list[str]:
    return ["--level", label["level"], "--rel-to", ",".join(label["rel_to"]),
            "--purpose", label["purpose"]]


def client_collection(node: Running, who: str, cid: str) -> Any:
    from taxii2client.v21 import Server

    server = Server(node.url + "taxii2/", user=who, password=node.tokens[who], verify=node.ca)
    return next(c for c in server.api_roots[0].collections if c.id == cid)


def stix2_objects(marking_ref: str | None, n: int = 3) -> list[dict[str, Any]]:
    """What a script with ``stix2`` makes: indicators, a malware, relationships."""
    import stix2

    refs = {"object_marking_refs": [marking_ref]} if marking_ref else {}
    malware = stix2.Malware(name="Hwasong-12 TEL", is_family=False, **refs)
    out: list[Any] = [malware]
    for i in range(n):
        ind = stix2.Indicator(name=f"TEL movement {i} at Sinpo", pattern_type="stix",
                              pattern=f"[x-dprk-site:name = 'Sinpo-{i}']",
                              valid_from="2026-11-01T00:00:00Z", allow_custom=True, **refs)
        out += [ind, stix2.Relationship(ind, "indicates", malware, **refs)]
    return [json.loads(o.serialize()) for o in out]


def _same(got: dict[str, Any], posted: dict[str, Any]) -> None:
    assert got == posted, f"read back {got}\nposted    {posted}"


# ---- the OASIS client's conformance run on a fresh node ---------------------------------------


def conformance_checks(node: Running, marking: dict[str, Any], objects: list[dict[str, Any]]
                       ) -> list[tuple[str, Callable[[], None]]]:
    """The 21 checks, in the order a client meets them: discovery, the collection, the
    label marking alone, the objects that reference it, and reading everything back (the
    client's own calls, and stix2-validator on what it read)."""
    from requests import HTTPError
    from taxii2client.v21 import Collection, Server, Status, as_pages

    server = Server(node.url + "taxii2/", user="kenji", password=node.tokens["kenji"],
                    verify=node.ca)
    holdings = collection_id("JPN")
    coll = client_collection(node, "kenji", holdings)
    posted = {o["id"]: o for o in [marking, *objects]}
    state: dict[str, Any] = {}

    def everything(**filters: Any) -> list[dict[str, Any]]:
        return [o for page in as_pages(coll.get_objects, per_request=1000, **filters)
                for o in page.get("objects", [])]

    def discovery() -> None:
        assert server.title and server.default is not None
        assert [r.url for r in server.api_roots] == [node.url + "gsomia/"]

    def api_root() -> None:
        root = server.api_roots[0]
        assert TAXII_MEDIA in root.versions and root.max_content_length > 0

    def collections() -> None:
        listed = server.api_roots[0].collections
        assert holdings in {c.id for c in listed}
        assert all(c.title and c.can_read and c.media_types == [STIX_MEDIA] for c in listed)

    def one_collection() -> None:
        alone = Collection(coll.url, user="kenji", password=node.tokens["kenji"],
                           verify=node.ca)
        assert alone.id == holdings and alone.can_write and alone.can_read

    def marking_alone() -> None:
        status = coll.add_objects({"objects": [marking]})
        state["status"] = status
        assert status.status == "complete" and status.success_count == 1, status._raw
        assert status.failure_count == 0 and status.total_count == 1

    def status_by_id() -> None:
        again = Status(state["status"].url, user="kenji", password=node.tokens["kenji"],
                       verify=node.ca)
        assert again.id == state["status"].id and again.success_count == 1

    def objects_next() -> None:
        status = coll.add_objects({"objects": objects})
        assert status.success_count == len(objects), status._raw
        assert status.failure_count == 0 and status.pending_count == 0

    def all_there() -> None:
        assert {o["id"] for o in everything()} == set(posted)

    def objects_as_posted() -> None:
        for obj in objects:
            _same(coll.get_object(obj["id"])["objects"][0], obj)

    def marking_as_posted() -> None:
        _same(coll.get_object(marking["id"])["objects"][0], marking)

    def marking_refs_unchanged() -> None:
        for obj in everything(type=["indicator", "malware", "relationship"]):
            assert obj["object_marking_refs"] == [marking["id"]]

    def valid_stix() -> None:
        assert all(validates(o) for o in everything())

    def manifest() -> None:
        records = coll.get_manifest()["objects"]
        assert {(r["id"], r["version"]) for r in records} == {
            (o["id"], o.get("modified", o["created"])) for o in posted.values()}

    def versions() -> None:
        for obj in objects:
            assert coll.object_versions(obj["id"])["versions"] == [obj["modified"]]

    def match_type() -> None:
        assert {o["id"] for o in everything(type="indicator")} == {
            o["id"] for o in objects if o["type"] == "indicator"}

    def match_id() -> None:
        wanted = [objects[0]["id"], marking["id"]]
        assert sorted(o["id"] for o in everything(id=wanted)) == sorted(wanted)

    def match_version_all() -> None:
        assert len(everything(version="all")) == len(posted)

    def added_after() -> None:
        last = max(r["date_added"] for r in coll.get_manifest()["objects"])
        assert everything(added_after=last) == []

    def paging() -> None:
        pages = [page.get("objects", []) for page in as_pages(coll.get_objects, per_request=2)]
        ids = [o["id"] for page in pages for o in page]
        assert len(pages) >= 4 and sorted(ids) == sorted(posted)

    def unknown_object() -> None:
        try:
            coll.get_object(f"indicator--{uuid.uuid4()}")
        except HTTPError as exc:
            assert exc.response.status_code == 404
        else:
            raise AssertionError("an unknown object was found")

    def repost_is_idempotent() -> None:
        status = coll.add_objects({"objects": [marking, *objects]})
        assert status.failure_count == 0 and status.success_count == len(posted)
        assert len(everything(version="all")) == len(posted)

    return [(f.__name__, f) for f in (
        discovery, api_root, collections, one_collection, marking_alone, status_by_id,
        objects_next, all_there, objects_as_posted, marking_as_posted, marking_refs_unchanged,
        valid_stix, manifest, versions, match_type, match_id, match_version_all, added_after,
        paging, unknown_object, repost_is_idempotent)]


def test_the_oasis_client_conformance_run_passes_on_a_fresh_node(fresh: Running) -> None:
    marking = gsomia_label(*label_args(CONF))
    assert marking["id"] == marking_id(SecurityLabel("JPN", "秘", frozenset({"JPN", "KOR"}),
                                                     "dprk-missile"))
    checks = conformance_checks(fresh, marking, stix2_objects(marking["id"]))
    assert len(checks) == 21
    failed = []
    for name, check in checks:
        try:
            check()
        except Exception as exc:  # a check that fails in any way is a failed check
            failed.append(f"{name}: {type(exc).__name__}: {str(exc)[:300]}")
    print(f"\nconformance: {len(checks) - len(failed)} of {len(checks)} checks pass")
    assert failed == [], "\n".join(failed)


# ---- labelled collections ---------------------------------------------------------------------


def taxii(node: Running, who: str, path: str, body: dict[str, Any] | None = None
          ) -> requests.Response:
    headers = {"Authorization": f"Bearer {node.tokens[who]}", "Accept": TAXII_MEDIA}
    if body is None:
        return requests.get(node.url + path, headers=headers, verify=node.ca, timeout=20)
    return requests.post(node.url + path, data=json.dumps(body, ensure_ascii=False),
                         headers={**headers, "Content-Type": TAXII_MEDIA}, verify=node.ca,
                         timeout=20)


def test_plain_stix_posted_to_a_labelled_collection_gets_its_label(fresh: Running) -> None:
    cid = collection_id("JPN", "dprk-conf")
    coll = client_collection(fresh, "aiko", cid)
    applied = coll.custom_properties["x_gsomia_label"]
    assert applied["marking"] == "CONFIDENTIAL//REL TO USA, JPN, KOR"
    assert applied["national_marking"] == "秘//REL TO USA, JPN, KOR"
    discovered = requests.get(fresh.url + "taxii2/", verify=fresh.ca, timeout=20, headers={
        "Authorization": f"Bearer {fresh.tokens['aiko']}", "Accept": TAXII_MEDIA}).json()
    assert {"id": cid, "title": coll.title, "marking": applied} in \
        discovered["x_gsomia_collections"]
    plain = stix2_objects(None, n=1)
    status = coll.add_objects({"objects": plain})
    assert status.success_count == len(plain) and status.failure_count == 0, status._raw
    served = {o["id"]: o for page in [coll.get_objects()] for o in page["objects"]}
    for obj in plain:  # as posted, plus the reference to the label the collection applied
        _same(served[obj["id"]], {**obj, "object_marking_refs": [applied["marking_ref"]]})
    # the label's marking-definition is there too, as `gsomia label` prints it
    label = {"level": "秘", "rel_to": ["JPN", "KOR", "USA"], "purpose": "dprk-missile"}
    _same(served[applied["marking_ref"]], gsomia_label(*label_args(label)))
    # the holdings collection serves the same objects; a SECRET collection shows none of them
    assert {o["id"] for o in client_collection(fresh, "aiko", collection_id("JPN"))
            .get_objects()["objects"]} >= set(served)
    secret = taxii(fresh, "kenji", f"gsomia/collections/{collection_id('JPN', 'dprk-secret')}"
                                   "/objects/").json()
    assert "objects" not in secret
    # an object labelled otherwise than the collection is refused, not relabelled
    other = gsomia_label(*label_args(CONF))
    mixed = coll.add_objects({"objects": [other, *stix2_objects(other["id"], n=1)]})
    assert mixed.success_count == 0 and mixed.failure_count == 4  # marking and 3 objects
    assert all("labelled otherwise" in f["message"] for f in mixed.failures)


def test_a_collection_whose_label_one_may_not_read_does_not_exist_for_them(
        fresh: Running) -> None:
    secret, absent = collection_id("JPN", "dprk-secret"), collection_id("JPN", "no-such")
    listed = taxii(fresh, "aiko", "gsomia/collections/").json()["collections"]
    assert secret not in {c["id"] for c in listed}
    assert secret in {c["id"] for c in taxii(fresh, "kenji", "gsomia/collections/")
                      .json()["collections"]}
    found = taxii(fresh, "aiko", "taxii2/").json()["x_gsomia_collections"]
    assert secret not in {c["id"] for c in found}
    envelope = {"objects": stix2_objects(None, n=1)}
    for path, body in (("gsomia/collections/{}/", None),
                       ("gsomia/collections/{}/objects/", None),
                       ("gsomia/collections/{}/manifest/", None),
                       ("gsomia/collections/{}/objects/", envelope)):
        hidden = taxii(fresh, "aiko", path.format(secret), body)
        missing = taxii(fresh, "aiko", path.format(absent), body)
        assert hidden.status_code == missing.status_code == 404
        assert hidden.content == missing.content


# ---- a label marking one may not see is one that does not exist -------------------------------

_LEVELS = st.sampled_from(["機密", "極秘", "秘"])
_REL_TO = st.sets(st.sampled_from(["JPN", "KOR", "USA"]), min_size=1).map(sorted)
_PURPOSE = st.sampled_from(["dprk-missile", "regional-security"])
_posted: set[str] = set()


def _refusal(node: Running, marking_ref: str) -> dict[str, Any]:
    """aiko's status for an object referencing ``marking_ref`` (not sent along), without
    its id, version and time."""
    obj = stix2_objects(marking_ref, n=1)[1]
    status = taxii(node, "aiko", f"gsomia/collections/{collection_id('JPN')}/objects/",
                   {"objects": [obj]})
    assert status.status_code == 202, status.text
    body = status.json()
    return {"counts": [body[k] for k in ("total_count", "success_count", "failure_count")],
            "messages": [f.get("message") for f in body["failures"]]}


@settings(max_examples=12, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(level=_LEVELS, rel_to=_REL_TO, purpose=_PURPOSE)
def test_referencing_a_label_one_may_not_read_answers_as_one_never_posted(
        fresh: Running, level: str, rel_to: list[str], purpose: str) -> None:
    label = SecurityLabel("JPN", level, frozenset(rel_to), purpose)
    mid = marking_id(label)
    readable = level == "秘" and purpose == "dprk-missile"
    if readable or mid in _posted:
        return  # aiko may read it (she may use it), or it is not absent any more
    before = _refusal(fresh, mid)
    marking = printed_marking(label, label.english_marking(CATALOGUE.schemes))
    held = taxii(fresh, "taro", f"gsomia/collections/{collection_id('JPN')}/objects/",
                 {"objects": [marking, stix2_objects(mid, n=1)[1]]})
    assert held.json()["success_count"] == 2, held.text
    _posted.add(mid)
    assert _refusal(fresh, mid) == before  # held now, and still nothing to aiko
    assert before["messages"] != [handlers.REFUSED_TO_PUBLISH]
    hidden = taxii(fresh, "aiko", f"gsomia/collections/{collection_id('JPN')}/objects/{mid}/")
    absent = taxii(fresh, "aiko", f"gsomia/collections/{collection_id('JPN')}/objects/"
                                  f"marking-definition--{uuid.uuid4()}/")
    assert hidden.status_code == absent.status_code == 404 and hidden.content == absent.content


# ---- a plain stix2 indicator, through a labelled collection, to the partner --------------------

KOR_COLLECTION = """
[[taxii.collections]]
name = "dprk-ii"
level = "군사II급비밀"
rel_to = ["KOR", "JPN"]
purpose = "dprk-missile"
"""


def _kor_collection(fed: Federation) -> None:
    with open(fed.folder / "KOR" / "node.toml", "a", encoding="utf-8") as config:
        config.write(KOR_COLLECTION)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    with Federation.running(tmp_path_factory.mktemp("labelled"), "direct",
                            prepare=_kor_collection) as fed:
        yield fed


def items_json(folder: Path) -> dict[str, dict[str, Any]]:
    done = subprocess.run([sys.executable, "-m", "gsomia", "items", "--node", str(folder),
                           "--json"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return {i["id"]: i for i in json.loads(done.stdout)["items"]}


def test_a_plain_stix2_indicator_reaches_the_partner_remarked_with_custody_and_receipts(
        pair: Federation) -> None:
    import stix2
    from taxii2client.v21 import Server

    kor, jpn = pair.nodes["KOR"], pair.nodes["JPN"]
    token = new_token()
    handlers.add_user(kor.uow(), keys=kor.keys, schemes=kor.catalogue.schemes, name="kim",
                      clearance="군사II급비밀", need_to_know=["dprk-missile"], token=token,
                      now=datetime.now(UTC))
    url = pair.up()["nodes"]["KOR"]["url"]
    server = Server(f"{url}/taxii2/", user="kim", password=token,
                    verify=str(pair.folder / "KOR" / "tls" / "ca.crt"))
    coll = next(c for c in server.api_roots[0].collections
                if c.id == collection_id("KOR", "dprk-ii"))
    indicator = json.loads(stix2.Indicator(
        name="Launch preparations at Sohae", pattern_type="stix",
        pattern="[ipv4-addr:value = '10.0.0.1']", valid_from="2026-11-01T00:00:00Z"
    ).serialize())
    status = coll.add_objects({"objects": [indicator]})
    assert status.success_count == 1 and status.failure_count == 0, status._raw
    oid = indicator["id"]

    def receipted() -> bool:
        with kor.store.repository() as repo:
            return any(r.direction == "obtained" for r in repo.receipts_for(oid))

    assert exchange.wait_until(receipted, WAIT)
    at_jpn = items_json(pair.folder / "JPN")[oid]
    assert at_jpn["national_marking"] == "極秘//FGI KOR//REL TO JPN, KOR"  # Art. 4
    assert [(c["event"], c["holder"], c.get("provider"), c.get("to"))
            for c in at_jpn["custody"]] == [
        ("received", "JPN", "KOR", None), ("receipt", "JPN", None, "KOR")]
    at_kor = items_json(pair.folder / "KOR")[oid]
    assert at_kor["national_marking"] == "군사II급비밀//REL TO JPN, KOR"
    assert [(c["event"], c.get("recipient") or c.get("from")) for c in at_kor["custody"]] == [
        ("created", None), ("released", "JPN"), ("receipt", "JPN")]
    # what JPN holds is the object as posted, marked with the collection's label
    applied = coll.custom_properties["x_gsomia_label"]["marking_ref"]
    with jpn.store.repository() as repo:
        held = repo.get_item(oid, indicator["modified"])
    assert held is not None
    assert held.object() == {**indicator, "object_marking_refs": [applied]}


@pytest.mark.parametrize(("entry", "field", "expected"), [
    ('name = "x"\nlevel = "秘"\nrel_to = ["JPN", "XYZ"]\npurpose = "dprk-missile"',
     "taxii.collections[0].rel_to", "one of JPN, KOR, USA"),
    ('name = "x"\nlevel = "군사II급비밀"\nrel_to = ["JPN"]\npurpose = "dprk-missile"',
     "taxii.collections[0].level", "極秘"),
    ('name = "x"\nlevel = "秘"\nrel_to = ["JPN"]\npurpose = "dprk-missile"\ncolour = "red"',
     "taxii.collections[0]", "some of name"),
    ('name = "holdings"\nlevel = "秘"\nrel_to = ["JPN"]\npurpose = "dprk-missile"',
     "taxii.collections[0].name", "not holdings"),
])
def test_a_collection_the_agreements_do_not_allow_stops_the_node_at_start(
        tmp_path: Path, entry: str, field: str, expected: str) -> None:
    folder = tmp_path / "jpn"
    init_node(folder, "JPN", catalogue=CATALOGUE, now=datetime.now(UTC)).close()
    with open(folder / "node.toml", "a", encoding="utf-8") as config:
        config.write(f"\n[[taxii.collections]]\n{entry}\n")
    done = subprocess.run([sys.executable, "-m", "gsomia", "node", "serve", "--dir",
                           str(folder), "--host", "127.0.0.1", "--port", str(free_port())],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{folder / 'node.toml'}: {field}" in done.stderr and expected in done.stderr
    assert "Traceback" not in done.stderr
    doctor = subprocess.run([sys.executable, "-m", "gsomia", "doctor", "--node", str(folder),
                             "--json"], capture_output=True, text=True, timeout=60, check=False)
    check = next(c for c in json.loads(doctor.stdout)["checks"]
                 if c["check"] == "TAXII collections")
    assert not check["ok"] and field in check["detail"] and expected in check["detail"]
