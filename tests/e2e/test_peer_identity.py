"""A partner cannot pose as another partner (issue 10, finding 1), between three real node
processes (``gsomia federation up``) on loopback.

JPN mints, with its own CA key, a client certificate that says ``OU=USA`` and calls every
``/peer/v1/`` route of KOR's running node with it (the routes are read from the app, so a
new route is covered without touching this test): every call is refused with a 403 JSON
body and audited at KOR as ``peer-refused`` under JPN, whose CA made the certificate, and
nothing is recorded as reported, requested or refused by USA. The other way round, a node
calling a partner trusts that partner's pinned CA alone: a server whose certificate another
partner's CA issued is refused at the handshake."""

from __future__ import annotations

import json
import shutil
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from starlette.routing import Route
from test_federation import Federation, drained, events, held, indicator, publish

from gsomia.bootstrap import app_for_node
from gsomia.core.audit import AuditKind
from gsomia.shell import exchange, notices
from gsomia.shell.keys import FileKeyStore, _certificate, _name, write_private, write_public
from gsomia.shell.node import Node
from starting import WAIT_S

pytestmark = [pytest.mark.timeout(170), pytest.mark.slow]

WAIT = WAIT_S  # a hang guard (starting.py)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    with Federation.running(tmp_path_factory.mktemp("impostor"), "direct") as federation:
        yield federation


@pytest.fixture(scope="module")
def shared(fed: Federation) -> str:
    """A KOR item delivered to JPN and USA: USA may report it compromised, ask KOR's
    consent to pass it on, and KOR takes USA's answers about it."""
    kor, jpn, usa = fed.nodes["KOR"], fed.nodes["JPN"], fed.nodes["USA"]
    item = publish(kor, indicator(), "군사II급비밀", ("KOR", "JPN", "USA"))
    assert exchange.wait_until(lambda: held(jpn, item) and held(usa, item) and drained(kor),
                               WAIT)
    return item


def mint(issuer: Path, party: str, claimed: str, into: Path) -> Path:
    """A client folder (``tls/client.crt`` and ``client.key``) whose certificate says
    ``OU=claimed`` and is signed by the CA key in the node folder ``issuer``, as an operator
    with that node's folder can do."""
    keys = FileKeyStore(issuer, party)
    ca_key = serialization.load_pem_private_key(keys.path("ca_key").read_bytes(), None)
    ca_cert = keys.certificate("ca")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(_name(claimed, "node client"), key.public_key(), ca_cert.subject,
                        ca_key, datetime.now(UTC), ca=False,
                        usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
                        issuer_public=ca_cert.public_key())
    write_private(into / "tls" / "client.key", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    write_public(into / "tls" / "client.crt", cert.public_bytes(serialization.Encoding.PEM))
    return into


def tls_towards(client: Path, server: Node) -> ssl.SSLContext:
    """Mutual TLS with the certificate in ``client``, trusting ``server``'s CA."""
    ctx = ssl.create_default_context(cafile=str(server.keys.path("ca_cert")))
    ctx.load_cert_chain(str(client / "tls" / "client.crt"), str(client / "tls" / "client.key"))
    return ctx


def refusals(node: Node) -> list[dict[str, Any]]:
    with node.store.reader() as reader:
        return [dict(r) for r in reader.rows() if r["kind"] == "peer-refused"]


def peer_routes(node: Node) -> list[tuple[str, str]]:
    """Every (method, path) of the node's peer API, as its app serves them."""
    app = app_for_node(node)
    try:
        found = sorted({(method, route.path) for route in app.routes
                        if isinstance(route, Route) and route.path.startswith("/peer/v1/")
                        for method in route.methods or () if method != "HEAD"})
    finally:
        app.state.taxii_store.close()
    return found


def bodies(item: str) -> dict[str, dict[str, Any]]:
    """What USA itself could send and KOR would take: the attack's payloads."""
    return {
        "/peer/v1/incidents/": {"kind": "compromise", "item_id": item,
                                "description": "the item was photographed"},
        "/peer/v1/consents/requests/": {"item_id": item, "recipient": "JPN",
                                        "reason": "relay to JPN"},
        "/peer/v1/consents/replies/": {"granted": False, "item_id": item,
                                       "reason": "not for JPN"},
    }


def test_a_certificate_from_another_partners_ca_is_refused_on_every_route(
        fed: Federation, shared: str, tmp_path: Path) -> None:
    kor, jpn = fed.nodes["KOR"], fed.nodes["JPN"]
    kor_url = str(fed.up()["nodes"]["KOR"]["url"])
    routes = peer_routes(kor)
    assert {p for _, p in routes} >= {"/peer/v1/envelopes/", "/peer/v1/incidents/",
                                      "/peer/v1/consents/requests/",
                                      "/peer/v1/consents/replies/", "/peer/v1/tree-heads/"}
    impostor = mint(jpn.folder, "JPN", "USA", tmp_path / "impostor")
    refused_before = len(refusals(kor))
    consents_before = len(exchange.consent_rows(kor))
    payloads = bodies(shared)
    answers = []
    with httpx.Client(verify=tls_towards(impostor, kor), timeout=10.0) as client:
        for method, path in routes:
            body = payloads.get(path, {})
            answers.append(client.request(method, kor_url + path, json=body
                                          if method != "GET" else None))
    statuses = {f"{m} {p}": a.status_code for (m, p), a in zip(routes, answers, strict=True)}
    assert statuses == {route: 403 for route in statuses}, [a.text for a in answers]
    for answer in answers:
        assert "json" in answer.headers["content-type"]
        doc = answer.json()
        assert doc["http_status"] == "403" and "JPN's CA" in doc["description"], doc
    # Each refusal is audited at KOR under the party whose CA made the certificate.
    refused = refusals(kor)[refused_before:]
    assert [e["actor"] for e in refused] == ["JPN"] * len(routes)
    assert sorted(e["details"]["route"] for e in refused) == sorted(
        f"{m} {p}" for m, p in routes)
    assert all(e["details"]["claimed_ou"] == ["USA"] and e["details"]["issuer"] == "JPN"
               for e in refused)
    # Nothing was taken in USA's name.
    assert [r for r in notices.incident_rows(kor) if r["reported_by"] == "USA"] == []
    assert exchange.consent_rows(kor)[consents_before:] == []
    assert [e for e in events(kor, AuditKind.CONSENT) if e["actor"] == "USA"] == []
    assert [e for e in events(kor, AuditKind.INCIDENT) if e["actor"] == "USA"] == []


def test_genuine_partner_certificates_still_count(fed: Federation, shared: str,
                                                  tmp_path: Path) -> None:
    """The refusal above is the pin's doing: USA's own certificate, and a certificate JPN's
    CA issued in JPN's name, are taken as USA and JPN."""
    kor, jpn, usa = fed.nodes["KOR"], fed.nodes["JPN"], fed.nodes["USA"]
    kor_url = str(fed.up()["nodes"]["KOR"]["url"])
    with exchange.peer_client(usa.folder) as client:
        assert client.get(kor_url + "/peer/v1/tree-heads/").status_code == 200
        asked = client.post(kor_url + "/peer/v1/consents/requests/",
                            content=json.dumps(bodies(shared)["/peer/v1/consents/requests/"]))
        assert asked.status_code == 202, asked.text
    assert exchange.consent_rows(kor)[-1]["holder"] == "USA"
    own = mint(jpn.folder, "JPN", "JPN", tmp_path / "jpn-again")
    with httpx.Client(verify=tls_towards(own, kor), timeout=10.0) as client:
        assert client.get(kor_url + "/peer/v1/tree-heads/").status_code == 200


def test_a_node_trusts_each_partner_url_to_that_partners_ca_only(
        fed: Federation, tmp_path: Path) -> None:
    """JPN's partners file with USA's address pointing at KOR's node (a hijacked address):
    JPN's client refuses KOR's server certificate there, while it is good at KOR's URL."""
    jpn = fed.nodes["JPN"]
    urls = {c: str(n["url"]) for c, n in fed.up()["nodes"].items()}
    hijacked = tmp_path / "jpn"
    shutil.copytree(jpn.folder / "tls", hijacked / "tls")
    doc = json.loads((jpn.folder / exchange.PARTNERS_FILE).read_text("utf-8"))
    doc["parties"]["USA"]["url"] = urls["KOR"]
    doc["parties"]["KOR"]["url"] = "https://127.0.0.1:9"
    (hijacked / exchange.PARTNERS_FILE).write_text(json.dumps(doc), "utf-8")
    with exchange.peer_client(hijacked) as client, pytest.raises(httpx.ConnectError,
                                                                 match="CERTIFICATE_VERIFY"):
        client.get(urls["KOR"] + "/peer/v1/tree-heads/")
    with exchange.peer_client(jpn.folder) as client:
        assert client.get(urls["KOR"] + "/peer/v1/tree-heads/").status_code == 200
        # An address that is no party's is trusted to nobody.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY"):
            client.get(urls["KOR"].replace("127.0.0.1", "localhost") + "/peer/v1/tree-heads/")
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY"), httpx.Client(
            verify=exchange.client_tls(jpn.folder, "USA"), timeout=10.0) as client:
        client.get(urls["KOR"] + "/taxii2/")
