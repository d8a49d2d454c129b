"""Two real nodes federated in process, shared by the integration tests: each one's
partners file names the other, and a node's peer API is reached through its app in this
process (no server, no TLS: the caller's identity is what the TLS layer would have said)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import httpx

from gsomia.bootstrap import app_for_node
from gsomia.shell import exchange

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
