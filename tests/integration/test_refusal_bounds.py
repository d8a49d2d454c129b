"""Refusals a caller can repeat at will go on record bounded: the first of each window one
by one, the rest counted in one summary, none lost (``gsomia.service.refusals``)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from typing import Any

from gsomia.bootstrap import app_for_node
from gsomia.core.audit import AuditKind
from gsomia.shell.node import Node
from gsomia.shell.peer_identity import PeerRefused

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's deprecation notice about httpx
    from starlette.testclient import TestClient


def logged(node: Node, kind: AuditKind) -> list[dict[str, Any]]:
    with node.store.reader() as reader:
        return [{**dict(r), "details": json.loads(r["details"])
                 if isinstance(r["details"], str) else r["details"]}
                for r in reader.rows() if r["kind"] == kind.value]


def test_a_certificate_of_no_partner_calling_in_a_loop_is_on_record_bounded(
        node_factory: Callable[..., Node]) -> None:
    """JPN's CA minted a certificate claiming USA (pinned CAs refuse it): each call is
    refused 403; 40 in a minute are 30 events in full and one summary of 10 (consent18:
    before, 40 events, one per call, without end)."""
    kor = node_factory("KOR")
    impostor = PeerRefused("the certificate chains to JPN's CA but claims USA", "JPN",
                           ("USA",), "ab" * 32)
    app = app_for_node(kor, peer_identity=lambda scope: impostor)
    client = TestClient(app, base_url="https://kor.test")
    for n in range(40):
        path = "/peer/v1/tree-heads/" if n % 2 else "/peer/v1/incidents/"
        answer = client.get(path) if n % 2 else client.post(path, content=b"{}")
        assert answer.status_code == 403, answer.text
    one_by_one = logged(kor, AuditKind.PEER_REFUSED)
    assert len(one_by_one) == 30
    assert all(e["actor"] == "JPN" and e["details"]["claimed_ou"] == ["USA"]
               for e in one_by_one)
    app.state.peer_inbox.close()  # the node stops: what is counted goes on record
    [summary] = [e for e in logged(kor, AuditKind.PEER_REFUSED) if e["details"].get("summary")]
    assert summary["actor"] == "JPN" and summary["details"]["refused"] == 10
    assert summary["details"]["notices"] == {"GET /peer/v1/tree-heads/": 5,
                                             "POST /peer/v1/incidents/": 5}
