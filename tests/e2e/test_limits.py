"""Limits, through real node processes (``gsomia federation up``: HTTPS on loopback, mutual
TLS between nodes, real user tokens): request bodies are bounded before they are read, deep
JSON is bad input everywhere (never a 500 or a traceback), what no partner would accept is
refused at publish, a delivery that cannot succeed is refused once instead of retried for
ever, and only STIX 2.1 is taken."""

from __future__ import annotations

import importlib
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_federation import Federation, drained, events, held, indicator

from gsomia.bootstrap import collection_id
from gsomia.core import crypto
from gsomia.core.audit import AuditKind
from gsomia.core.labels import SecurityLabel
from gsomia.core.stix import label_marking
from gsomia.core.taxii import TAXII_MEDIA
from gsomia.service import handlers
from gsomia.shell import exchange, federation, notices
from gsomia.shell.node import Node, new_token
from starting import WAIT_S, waited

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

WAIT = WAIT_S  # a hang guard (starting.py)
MB = 1024 * 1024



class Site:
    """The federation, with a cleared JPN user and the addresses the tests talk to."""

    def __init__(self, fed: Federation, urls: dict[str, str]) -> None:
        self.fed = fed
        self.urls = urls
        self.jpn, self.kor = fed.nodes["JPN"], fed.nodes["KOR"]
        self.token = new_token()
        handlers.add_user(self.jpn.uow(), keys=self.jpn.keys,
                          schemes=self.jpn.catalogue.schemes, name="kenji", clearance="機密",
                          need_to_know=["dprk-missile"], token=self.token,
                          now=datetime.now(UTC))
        self.objects = (f"{urls['JPN']}/gsomia/collections/{collection_id('JPN')}"
                        "/objects/")

    def pid(self, code: str) -> int:
        return int((self.fed.folder / code / "node.pid").read_text())

    def taxii(self) -> httpx.Client:
        return httpx.Client(verify=str(self.jpn.folder / "tls" / "ca.crt"), timeout=60,
                            headers={"Authorization": f"Bearer {self.token}",
                                     "Accept": TAXII_MEDIA})

    def post_objects(self, objects: list[Any] | bytes) -> httpx.Response:
        body = objects if isinstance(objects, bytes) else json.dumps(
            {"objects": [marking(), *objects]}).encode()
        with self.taxii() as client:
            return client.post(self.objects, content=body,
                               headers={"Content-Type": TAXII_MEDIA})


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    fed = Federation(tmp_path_factory.mktemp("limits"), "direct")
    try:
        # KOR keeps one incident report of a partner's a day (test_an_incident_past_...).
        federation.configure(fed.folder, "direct", fed.base)
        toml = fed.folder / "KOR" / "node.toml"
        toml.write_text(toml.read_text("utf-8") + "\n[limits]\nincidents_per_partner = 1\n",
                        "utf-8")
        doc = fed.up()
        yield Site(fed, {c: n["url"] for c, n in doc["nodes"].items()})
    finally:
        fed.down()
        fed.close()


JPN_LABEL = SecurityLabel("JPN", "秘", frozenset({"JPN", "KOR"}), "dprk-missile")


def marking() -> dict[str, Any]:
    from gsomia.shell.catalogue import load_catalogue

    return label_marking(JPN_LABEL, JPN_LABEL.english_marking(load_catalogue().schemes),
                         created=datetime(2026, 1, 1, tzinfo=UTC))


def labelled(obj: dict[str, Any]) -> dict[str, Any]:
    return {**obj, "object_marking_refs": [marking()["id"]]}


def deepened(doc: Any, levels: int) -> str:
    """``doc`` as JSON text with its string "DEEP" replaced by a value ``levels`` deep
    (json.dumps itself would recurse too deeply to write it)."""
    return json.dumps(doc).replace('"DEEP"', "[" * levels + '"bottom"' + "]" * levels)


def peak_rss_kb(pid: int) -> int:
    """The process's resident set high-water mark (VmHWM), kB."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def tls_to(site: Site, code: str) -> ssl.SSLSocket:
    host, port = site.urls[code].removeprefix("https://").split(":")
    ctx = ssl.create_default_context(cafile=str(site.fed.folder / code / "tls" / "ca.crt"))
    return ctx.wrap_socket(socket.create_connection((host, int(port)), timeout=20),
                           server_hostname=host)


def read_response(sock: ssl.SSLSocket, data: bytes = b"", timeout: float = 20
                  ) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length (``data``: what was read already)."""
    sock.settimeout(timeout)
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def _answered(sock: ssl.SSLSocket) -> bytes:
    """Application data the server sent already, without waiting (a readable socket may
    only hold TLS session tickets)."""
    sock.setblocking(False)
    try:
        return sock.recv(65536)
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
        return b""
    finally:
        sock.settimeout(20)


def stream_chunked(sock: ssl.SSLSocket, path: str, total: int,
                   content_type: str = "application/x-www-form-urlencoded"
                   ) -> tuple[int, dict[str, str], bytes, int]:
    """POST ``total`` bytes as a chunked body (no Content-Length), looking for an answer
    between chunks as a careful client does; the response and the bytes sent."""
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}"
                 "\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    piece = b"name=kenji&token=" + b"a" * (64 * 1024 - 17)
    frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    sent = 0
    early = b""
    try:
        while sent < total:
            early = _answered(sock)
            if early:
                break
            sock.sendall(frame)
            sent += len(piece)
        else:
            sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
        pass  # it answered and closed while we were still sending: read what it said
    status, headers, body = read_response(sock, early)
    return status, headers, body, sent


# ---- bodies are bounded before they are read ---------------------------------------------------


def test_a_streamed_50_mb_login_is_413_and_the_node_does_not_grow(site: Site) -> None:
    pid = site.pid("JPN")
    before = peak_rss_kb(pid)
    with tls_to(site, "JPN") as sock:
        status, headers, body, sent = stream_chunked(sock, "/login", 50 * MB)
    grown = peak_rss_kb(pid) - before
    assert grown < 8 * 1024, f"the node's peak memory grew by {grown} kB (answer {status})"
    assert status == 413, body[:300]
    assert headers["content-type"].startswith("application/json")
    answer = json.loads(body)
    assert answer["http_status"] == "413" and answer["details"]["max_content_length"] < MB
    assert sent < 50 * MB  # refused while the client was still sending


def test_a_declared_400_mb_login_is_refused_before_any_of_it_is_sent(site: Site) -> None:
    with tls_to(site, "JPN") as sock:
        sock.sendall(b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: 400000000\r\n\r\nname=kenji")
        status, _, body = read_response(sock, timeout=10)
    assert status == 413 and json.loads(body)["title"] == "Request too large"


def test_a_streamed_16_mb_request_head_is_400_and_the_node_does_not_grow(site: Site) -> None:
    """The request line and headers are bounded too (``serve.MAX_REQUEST_HEAD``): llhttp,
    which parses them, keeps a header's value whole however long it grows."""
    pid = site.pid("JPN")
    before = peak_rss_kb(pid)
    piece = b"a" * (64 * 1024)
    sent = 0
    early = b""
    with tls_to(site, "JPN") as sock:
        sock.sendall(b"GET /taxii2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ")
        try:
            while sent < 16 * MB:
                early = _answered(sock)
                if early:
                    break
                sock.sendall(piece)
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # it answered and closed while we were still sending: read what it said
        status, _, body = read_response(sock, early)
    grown = peak_rss_kb(pid) - before
    assert status == 400, body[:300]
    assert sent < 16 * MB  # refused while the client was still sending
    assert grown < 4 * 1024, f"the node's peak memory grew by {grown} kB"


def test_taxii_advertises_the_bound_it_enforces(site: Site) -> None:
    with site.taxii() as client:
        root = client.get(site.urls["JPN"] + "/gsomia/").json()
    bound = root["max_content_length"]
    with tls_to(site, "JPN") as sock:
        sock.sendall(f"POST /gsomia/collections/{collection_id('JPN')}/objects/ HTTP/1.1\r\n"
                     f"Host: 127.0.0.1\r\nAuthorization: Bearer {site.token}\r\n"
                     f"Accept: {TAXII_MEDIA}\r\nContent-Type: {TAXII_MEDIA}\r\n"
                     f"Content-Length: {bound + 1}\r\n\r\n".encode())
        status, headers, body = read_response(sock)
    assert status == 413 and headers["content-type"] == TAXII_MEDIA
    assert json.loads(body)["details"]["max_content_length"] == bound


def test_a_streamed_peer_body_over_the_bound_is_413(site: Site) -> None:
    # A partner's certificate, a body larger than any batch of envelopes may be.
    ctx = exchange.client_tls(site.kor.folder, "JPN")
    host, port = site.urls["JPN"].removeprefix("https://").split(":")
    with ctx.wrap_socket(socket.create_connection((host, int(port)), timeout=20),
                         server_hostname=host) as sock:
        status, _, body, sent = stream_chunked(sock, "/peer/v1/envelopes/", 40 * MB,
                                               "application/json")
    assert status == 413 and sent < 40 * MB, body[:200]


# ---- deep JSON is bad input --------------------------------------------------------------------


@pytest.mark.parametrize("levels", [1000, 2000])
def test_a_deeply_nested_object_at_taxii_is_4xx_and_not_stored(site: Site,
                                                               levels: int) -> None:
    obj = labelled({**indicator(), "x_test_deep": "DEEP"})
    answer = site.post_objects(deepened({"objects": [marking(), obj]}, levels).encode())
    assert 400 <= answer.status_code < 500, answer.text[:300]
    assert answer.json()["http_status"] == str(answer.status_code)
    assert not held(site.jpn, obj["id"])


def _sealed_raw(sender: Node, recipient: Node, item_id: str, plaintext: bytes
                ) -> crypto.Envelope:
    """An envelope around ``plaintext`` as given: what a partner's node (or one that
    misbehaves) can seal, whether or not this node's own sealing would take it."""
    probe = crypto.Envelope(sender.party, recipient.party, item_id, "2026-11-01T00:00:00.000Z",
                            os.urandom(16), datetime.now(UTC),
                            crypto.fingerprint(sender.keys.signing_key()),
                            crypto.fingerprint(recipient.keys.envelope_key().public_key()),
                            b"", b"", b"")
    header = crypto.canonical(probe.header())
    enc, ciphertext = crypto.seal(recipient.keys.envelope_key().public_key(),
                                  crypto.ENVELOPE_CONTEXT, header, plaintext)
    message = crypto.signed_message(crypto.ENVELOPE_CONTEXT, crypto.sha256(header)
                                    + crypto.sha256(enc) + crypto.sha256(ciphertext))
    return crypto.Envelope(*[getattr(probe, f) for f in (
        "sender", "recipient", "item_id", "version", "nonce", "sent_at", "sender_key",
        "recipient_key")], enc, ciphertext, crypto.sign(sender.keys.signing_key(), message))


def _deep_payload(sender: Node, levels: int) -> tuple[str, bytes]:
    obj = {**indicator(), "x_test_deep": "DEEP"}
    label = SecurityLabel("KOR", "군사II급비밀", frozenset({"KOR", "JPN"}), "dprk-missile",
                          created=datetime.now(UTC))
    binding = crypto.bind(label.to_json(), obj, sender.keys.signing_key())
    return obj["id"], deepened({"object": obj, "label": label.to_json(),
                                "binding": binding.to_json(), "consents": []}, levels).encode()


@pytest.mark.parametrize("levels", [1000, 2000])
def test_a_deeply_nested_object_from_a_partner_is_4xx_and_not_stored(site: Site,
                                                                    levels: int) -> None:
    url = site.urls["JPN"] + "/peer/v1/envelopes/"
    before = len(events(site.jpn, AuditKind.ENVELOPE_REFUSED))
    one_id, plaintext = _deep_payload(site.kor, levels)
    batch_id, batch_text = _deep_payload(site.kor, levels)
    with exchange.peer_client(site.kor.folder) as client:
        alone = client.post(url, content=json.dumps(
            _sealed_raw(site.kor, site.jpn, one_id, plaintext).to_json()))
        batch = client.post(url, content=json.dumps({"envelopes": [
            _sealed_raw(site.kor, site.jpn, batch_id, batch_text).to_json()]}))
    assert alone.status_code == 422, alone.text[:300]
    assert "nested" in alone.json()["description"]
    assert batch.status_code == 202, batch.text[:300]
    [result] = batch.json()["results"]
    assert result["refused"] and result["status"] == 422
    assert not held(site.jpn, one_id) and not held(site.jpn, batch_id)
    assert len(events(site.jpn, AuditKind.ENVELOPE_REFUSED)) == before + 2


def gsomia(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gsomia", *args], input=stdin,
                          capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ})


def cli_publish(site: Site, obj: Any) -> subprocess.CompletedProcess[str]:
    return gsomia("publish", "--node", str(site.jpn.folder), "--file", "-", "--level", "秘",
                  "--rel-to", "JPN,KOR", "--purpose", "dprk-missile",
                  stdin=obj if isinstance(obj, str) else json.dumps(obj))


def test_a_deeply_nested_object_on_the_command_line_is_exit_2(site: Site) -> None:
    for levels in (900, 2000):
        obj = {**indicator(), "x_test_deep": "DEEP"}
        out = cli_publish(site, deepened(obj, levels))
        assert out.returncode == 2, out.stderr[-500:]
        assert "Traceback" not in out.stderr and "nested" in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
        assert not held(site.jpn, obj["id"])


# ---- only STIX 2.1 ---------------------------------------------------------------------------


def test_an_object_of_another_stix_version_is_refused(site: Site) -> None:
    old = labelled({**indicator(), "spec_version": "2.0"})
    no_version = labelled({k: v for k, v in indicator().items() if k != "spec_version"})
    fine = labelled(indicator())
    answer = site.post_objects([old, no_version, fine])
    assert answer.status_code == 202, answer.text
    status = answer.json()
    failed = {f["id"]: f["message"] for f in status.get("failures", [])}
    assert set(failed) == {old["id"], no_version["id"]}
    assert "2.1" in failed[old["id"]] and "spec_version" in failed[old["id"]]
    assert [s["id"] for s in status["successes"] if s["id"].startswith("indicator--")] \
        == [fine["id"]]
    assert not held(site.jpn, old["id"]) and not held(site.jpn, no_version["id"])
    out = cli_publish(site, {**indicator(), "spec_version": "2.0"})
    assert out.returncode == 2 and "spec_version" in out.stderr, out.stderr


# ---- what no partner accepts is refused at publish ---------------------------------------------


def big_indicator(size: int) -> dict[str, Any]:
    return {**indicator(), "description": "x" * size}


def test_an_item_too_large_to_deliver_is_refused_at_publish(site: Site) -> None:
    obj = big_indicator(13 * MB)
    out = cli_publish(site, obj)
    assert out.returncode == 2, out.stderr[-300:]
    assert "bytes" in out.stderr and "partner" in out.stderr
    answer = site.post_objects([labelled(obj)])
    assert 400 <= answer.status_code < 500 or answer.json()["failure_count"] == 1, answer.text
    with pytest.raises(Exception, match="partner"):
        exchange.publish(site.jpn, entries=[(obj, handlers.LabelRequest(
            "秘", ("JPN", "KOR"), "dprk-missile"))])
    assert not held(site.jpn, obj["id"])


def _store_unbounded(node: Node, obj: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Store ``obj`` as a node of a version without the bound at publish did."""
    try:
        limits = importlib.import_module("gsomia.core.limits")
    except ImportError:  # that version
        pass
    else:
        monkeypatch.setattr(limits, "MAX_ITEM_BYTES", 10**9)
    exchange.publish(node, entries=[(obj, handlers.LabelRequest("秘", ("JPN", "KOR"),
                                                                "dprk-missile"))])


def test_a_delivery_that_cannot_succeed_is_refused_once_not_retried(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    big = big_indicator(25 * MB)
    _store_unbounded(site.jpn, big, monkeypatch)
    monkeypatch.undo()

    def row() -> dict[str, Any]:
        return next(r for r in exchange.outbox_rows(site.jpn) if r["item_id"] == big["id"])

    assert exchange.wait_until(lambda: row()["status"] != exchange.PENDING, WAIT), row()
    first = row()
    assert first["status"] == exchange.REFUSED
    assert "bytes" in first["last_error"]
    refused = [e for e in events(site.jpn, AuditKind.DELIVERY_REFUSED)
               if e["item_id"] == big["id"]]
    assert len(refused) == 1 and refused[0]["details"]["recipient"] == "KOR"
    # Deliveries after it go through, and it is not tried again.
    small = indicator()
    exchange.publish(site.jpn, entries=[(small, handlers.LabelRequest(
        "秘", ("JPN", "KOR"), "dprk-missile"))])
    assert exchange.wait_until(lambda: held(site.kor, small["id"]), WAIT)
    assert exchange.wait_until(lambda: drained(site.jpn), WAIT)
    time.sleep(1.0)
    assert row()["attempts"] == first["attempts"] and row()["status"] == exchange.REFUSED
    assert not held(site.kor, big["id"])
    doctor = gsomia("doctor", "--node", str(site.jpn.folder), "--json", stdin="")
    checks = {c["check"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert not checks["deliveries"]["ok"] and big["id"] in checks["deliveries"]["detail"]


def test_a_batch_the_partner_refuses_whole_is_sent_again_one_by_one(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sender packing bigger batches than the partner takes (another version, another
    bound): KOR refuses the batch whole (413). The envelopes that fit alone are delivered;
    the one that does not is refused for good with KOR's answer, not retried."""
    from gsomia.shell import federation

    first, too_big, last = (big_indicator(9 * MB), big_indicator(13 * MB),
                            big_indicator(9 * MB))
    home = site.fed.folder / "JPN"
    assert federation.stop_node(home) == "stopped"  # its own sender must not step in
    try:
        for obj in (first, too_big, last):
            _store_unbounded(site.jpn, obj, monkeypatch)
        try:
            limits = importlib.import_module("gsomia.core.limits")
        except ImportError:
            pass
        else:
            monkeypatch.setattr(limits, "PEER_BODY", 64 * MB)
        ids = {o["id"] for o in (first, too_big, last)}

        def settled() -> bool:
            sender.step()
            return all(r["status"] != exchange.PENDING for r in exchange.outbox_rows(site.jpn)
                       if r["item_id"] in ids)

        sender = exchange.Sender(site.jpn)
        try:
            waited(settled, "every one of the three answered",
                   lambda: [(r["item_id"], r["status"], r["last_error"])
                            for r in exchange.outbox_rows(site.jpn) if r["item_id"] in ids],
                   timeout=WAIT * 2, interval=0.2)
        finally:
            sender.close()
    finally:
        monkeypatch.undo()
        site.fed.up()
    rows = {r["item_id"]: r for r in exchange.outbox_rows(site.jpn) if r["item_id"] in ids}
    assert held(site.kor, first["id"]) and held(site.kor, last["id"])
    assert rows[first["id"]]["status"] == rows[last["id"]]["status"] == exchange.DELIVERED
    assert rows[too_big["id"]]["status"] == exchange.REFUSED, rows[too_big["id"]]
    assert "413" in rows[too_big["id"]]["last_error"]
    assert not held(site.kor, too_big["id"])


# ---- a partner's bound says "not now", never "never" -----------------------------------------


def test_an_incident_past_the_partners_bound_is_kept_and_retried_not_refused(
        site: Site) -> None:
    """KOR keeps one of JPN's incident reports a day (``[limits]`` in its node.toml): the
    second is answered 429 with Retry-After over mutual TLS, on record at KOR naming the
    limit, and JPN keeps it queued to try again (review18: it was 403, which JPN's outbox
    took as final: the report was marked refused and never reached KOR)."""
    kor, jpn = site.kor, site.jpn
    obj = indicator()
    item = str(obj["id"])
    exchange.publish(kor, entries=[(obj, handlers.LabelRequest(
        "군사II급비밀", ("KOR", "JPN"), "dprk-missile"))])
    assert exchange.wait_until(lambda: held(jpn, item) and drained(kor), WAIT)
    for text in ("a copy is missing", "another copy is missing"):
        notices.report_incident(jpn, item_id=item, kind="loss", description=text)

    def mine() -> list[dict[str, Any]]:
        return [r for r in notices.notice_rows(jpn) if r["item_id"] == item]
    assert exchange.wait_until(lambda: sorted(
        (r["status"], "429" in (r["last_error"] or "")) for r in mine()) ==
        [("delivered", False), ("pending", True)], WAIT), mine()
    refused = [e for e in events(kor, AuditKind.NOTICE_REFUSED)
               if e["actor"] == "JPN" and "incidents_per_partner" in str(e["details"])]
    assert refused, "KOR's refusal at the bound is on record"


# ---- never a 5xx, never stored when refused ---------------------------------------------------


def payload_text(levels: int, width: int, size: int) -> str:
    """JSON text of a value ``levels`` deep around a string of ``size`` characters, its
    outer three levels ``width`` wide (written as text: json.dumps recurses)."""
    text = json.dumps("y" * size)
    for level in range(levels):
        copies = width if level >= levels - 3 else 1
        text = "[" + ",".join([text] * copies) + "]"
    return text


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(levels=st.one_of(st.integers(0, 70), st.integers(900, 1100)),
       width=st.integers(1, 4), size=st.integers(0, 100_000),
       version=st.sampled_from(["2.1", "2.1", "2.0", None]))
def test_taxii_ingest_answers_2xx_or_4xx_and_stores_only_what_it_accepts(
        site: Site, levels: int, width: int, size: int, version: str | None) -> None:
    obj: dict[str, Any] = labelled(indicator())
    if version is None:
        del obj["spec_version"]
    else:
        obj["spec_version"] = version
    obj["x_test_payload"] = "PAYLOAD"
    body = json.dumps({"objects": [marking(), obj]}).replace(
        '"PAYLOAD"', payload_text(levels, width, size))
    answer = site.post_objects(body.encode())
    assert 200 <= answer.status_code < 300 or 400 <= answer.status_code < 500, \
        (answer.status_code, answer.text[:300])
    accepted = answer.status_code == 202 and any(
        s["id"] == obj["id"] for s in answer.json().get("successes", []))
    assert held(site.jpn, obj["id"]) == accepted
    # The object nests levels + 1 deep; every size generated is deliverable.
    assert accepted == (version == "2.1" and levels + 1 <= 64), answer.text[:300]


def test_zz_every_node_log_verifies(site: Site) -> None:
    with site.jpn.store.engine.connect() as conn:
        refused = conn.execute(sa.text(
            "SELECT count(*) FROM outbox WHERE status = 'refused'")).scalar()
    assert refused is not None
    for code in ("JPN", "KOR"):
        out = gsomia("audit", "verify", "--node", str(site.fed.folder / code), stdin="")
        assert out.returncode == 0, out.stdout + out.stderr
