"""Refusals a caller can repeat at will go on record bounded: the first of each window one
by one, the rest counted in one summary, none lost (``gsomia.service.refusals``)."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from datetime import datetime
from typing import Any

from federating import federate
from gsomia.bootstrap import app_for_node
from gsomia.core import crypto
from gsomia.core.audit import AuditKind
from gsomia.service import exchange as exchange_handlers
from gsomia.service import handlers
from gsomia.service.ports import QueuedDelivery
from gsomia.shell import exchange
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


def test_a_partner_refusing_a_whole_batch_adds_a_bounded_number_of_events(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]],
        now: datetime) -> None:
    """JPN answers each of 15 deliveries with a refusal: KOR gives each up (refused, not
    retried, its reason kept on its row) with 10 events in full and one for the other 5
    (consent18: before, 15), and ``audit verify`` still holds every refused row against
    the log."""
    kor, jpn = node_factory("KOR"), node_factory("JPN")
    federate(kor, jpn)
    handlers.publish_many(kor.uow(), keys=kor.keys, catalogue=kor.catalogue, now=now,
                          entries=[(make_indicator(n), handlers.LabelRequest(
                              "군사II급비밀", ("KOR", "JPN"), "dprk-missile"))
                                   for n in range(15)])
    exchange.scan(kor, exchange.require_partners(kor), now)
    rows = exchange.outbox_rows(kor)
    assert len(rows) == 15
    posted = crypto.seal_envelope(
        sender="KOR", recipient="JPN", item_id=rows[0]["item_id"], version=rows[0]["version"],
        nonce=os.urandom(16), sent_at=now, payload={}, sender_key=kor.keys.signing_key(),
        recipient_public=jpn.keys.envelope_key().public_key())
    sent = [exchange_handlers.Sent(
        QueuedDelivery(r["row"], r["item_id"], r["version"], "JPN", r["attempts"]), posted,
        {"reasons": [f"JPN refuses {r['item_id']}"]}) for r in rows]
    assert exchange_handlers.settle(kor.uow(), peer="JPN",
                                    peer_public=jpn.keys.public_signing_key(), sent=sent,
                                    now=now) == (0, 15)
    assert {r["status"] for r in exchange.outbox_rows(kor)} == {exchange.REFUSED}
    events = logged(kor, AuditKind.DELIVERY_REFUSED)
    assert len(events) == exchange_handlers.REFUSALS_ONE_BY_ONE + 1
    [together] = [e for e in events if e["details"].get("summary")]
    assert together["details"]["refused"] == 5
    assert {(e["item_id"], e["item_version"]) for e in events if e["item_id"]} | \
        {tuple(d) for d in together["details"]["deliveries"]} == \
        {(r["item_id"], r["version"]) for r in rows}
    with kor.store.reader() as reader:
        verdict = handlers.verify_audit(reader, public_key=kor.keys.public_signing_key())
    assert verdict.ok, verdict.problems
