"""Two real nodes federated in process, shared by the integration tests: each one's
partners file names the other, and a node's peer API is reached through its app in this
process (no server, no TLS: the caller's identity is what the TLS layer would have said)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509

from gsomia.bootstrap import app_for_node
from gsomia.shell import exchange
from gsomia.shell.keys import cert_fingerprint

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's deprecation notice about httpx
    from starlette.testclient import TestClient


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
