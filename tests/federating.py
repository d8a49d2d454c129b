"""Two real nodes federated in process, shared by the integration tests: each one's
partners file names the other, and a node's peer API is reached through its app in this
process (no server, no TLS: the caller's identity is what the TLS layer would have said)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gsomia.bootstrap import app_for_node
from gsomia.service import handlers
from gsomia.service.handlers import Incoming
from gsomia.shell import exchange
from gsomia.shell.keys import cert_fingerprint

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's deprecation notice about httpx
    from starlette.testclient import TestClient as TestClient  # re-exported to the tests


def federate(one: Any, other: Any) -> None:
    """``one`` and ``other`` deliver to each other (``direct``)."""
    peers = {n.party: exchange.Peer(n.party, f"https://{n.party.lower()}.test",
                                    n.keys.public_signing_key(),
                                    n.keys.envelope_key().public_key())
             for n in (one, other)}
    exchange.Partners(one.party, "direct", peers, (other.party,)).write(one.folder)
    exchange.Partners(other.party, "direct", peers, (one.party,)).write(other.folder)


def api_of(node: Any, caller: Any) -> TestClient:
    """``node``'s peer API as ``caller`` reaches it (the TLS layer's answer fixed)."""
    app = app_for_node(node, peer_identity=lambda scope: caller.party)
    return TestClient(app, base_url=f"https://{node.party.lower()}.test")


def one_pass(node: Any, partner: Callable[[httpx.Request], Any], **options: Any) -> None:
    """One pass of ``node``'s sender (``options`` as ``exchange.Sender`` takes them), each
    post answered in this process by ``partner`` (as ``httpx.MockTransport`` calls it)."""
    sender = exchange.Sender(node, client=httpx.Client(transport=httpx.MockTransport(partner)),
                             **options)
    try:
        sender.step()
    finally:
        sender.close()


def pinned_federation(jpn: Any, kor: Any) -> None:
    """``jpn`` and ``kor`` (any two nodes) deliver to each other, each pinning the other's TLS
    CA (its file beside): a client certificate of either is the other's partner's."""
    cas = {n.party: (Path(n.folder) / "tls" / "ca.crt").read_bytes() for n in (jpn, kor)}
    peers = {n.party: exchange.Peer(n.party, f"https://{n.party.lower()}.test",
                                    n.keys.public_signing_key(),
                                    n.keys.envelope_key().public_key(),
                                    cert_fingerprint(x509.load_pem_x509_certificate(
                                        cas[n.party])))
             for n in (jpn, kor)}
    for one, other in ((jpn, kor), (kor, jpn)):
        (Path(one.folder) / "tls" / "partners").mkdir(exist_ok=True)
        (Path(one.folder) / "tls" / "partners" / f"{other.party}.crt").write_bytes(
            cas[other.party])
        exchange.Partners(one.party, "direct", peers, (other.party,)).write(one.folder)


def certificate_holders(jpn: Any, kor: Any, folder: Path, now: datetime
                        ) -> tuple[dict[str, bytes], dict[str, Any], Callable[[Any], Any]]:
    """``jpn`` and ``kor`` pinned to each other, and a stranger XYZ's identity made in
    ``folder``: each holder's client certificate (DER, by party), the holding (set its
    ``"der"``, None for no certificate) and JPN's peer identity as the server hands it, the
    TLS layer's certificate decided by JPN's real pins at ``now``."""
    from cryptography.hazmat.primitives import serialization

    from gsomia.shell.keys import create_identity
    from gsomia.shell.peer_identity import PinnedPeers

    pinned_federation(jpn, kor)
    create_identity(folder / "xyz", "XYZ", now)
    certs = {"JPN": Path(jpn.folder), "KOR": Path(kor.folder), "XYZ": folder / "xyz"}
    ders = {code: x509.load_pem_x509_certificate(
        (home / "tls" / "client.crt").read_bytes()).public_bytes(serialization.Encoding.DER)
        for code, home in certs.items()}
    pins = PinnedPeers(Path(jpn.folder), "JPN", clock=lambda: now)
    holding: dict[str, Any] = {"der": None}

    def identity(scope: Any) -> Any:
        return pins({"extensions": {"tls": {"client_cert_der": holding["der"]}}})

    return ders, holding, identity


def delivered_to(node: Any, sender: str) -> Callable[[httpx.Request], httpx.Response]:
    """``node``'s inbox answering ``sender``'s posts of envelopes in this process, as its peer
    API would (for :func:`one_pass`)."""
    import json

    from gsomia.core import crypto
    from gsomia.shell.peer_inbox import NodeInbox
    from gsomia.shell.store import now_utc

    inbox = NodeInbox(node)

    def deliver(request: httpx.Request) -> httpx.Response:
        envelopes = [crypto.Envelope.from_json(e)
                     for e in json.loads(request.content)["envelopes"]]
        held = inbox.deliver_many(envelopes, sender, now_utc())
        return httpx.Response(202, json={"results": [r.to_json() for r in held]})
    return deliver


def ingested(holder: Any, originator: Any, item_id: str, now: datetime) -> Ed25519PublicKey:
    """``item_id`` as ``originator`` stores it, ingested by ``holder`` as a delivery would
    leave it (no exchange between them); the originator's public key, which checked it."""
    with originator.store.repository() as repo:
        item = repo.get_item(item_id)
    assert item is not None
    key: Ed25519PublicKey = originator.keys.public_signing_key()
    handlers.ingest(holder.uow(), keys=holder.keys, catalogue=holder.catalogue,
                    batch=[Incoming(item.object(), item.security_label(), item.bound(),
                                    originator.party)],
                    originator_keys={originator.party: key}, now=now)
    return key
