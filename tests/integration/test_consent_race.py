"""A consent request and its answer racing, through the real peer API (in process): the
originator's operator answers while the holder's request is still being posted, before the
holder's POST has returned. The holder keeps the request pending before it asks, so the
answer counts, once."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from federating import api_of, federate
from gsomia.bootstrap import app_for_node
from gsomia.core.audit import AuditKind
from gsomia.core.errors import MalformedInput, PolicyDenied
from gsomia.service import handlers
from gsomia.shell import consents, exchange
from gsomia.shell.node import Node
from gsomia.shell.notices import notice_rows
from starting import WAIT_S

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's deprecation notice about httpx
    from starlette.testclient import TestClient

II = "군사II급비밀"


class AnsweredWhileAsked(TestClient):
    """KOR's peer API for JPN, whose operator answers each request as soon as KOR has
    taken it, before JPN's POST returns (as a quick operator, or a slow link, would)."""

    def __init__(self, kor: Node, jpn: Node, grant: bool) -> None:
        super().__init__(app_for_node(kor, peer_identity=lambda scope: "JPN"),
                         base_url="https://kor.test")
        self.kor, self.grant = kor, grant
        self.to_jpn = api_of(jpn, kor)
        self.answers: list[object] = []

    def post(self, url: Any, **kwargs: Any) -> httpx.Response:
        response: httpx.Response = super().post(url, **kwargs)
        if url.endswith("/consents/requests/") and response.status_code < 300:
            request = response.json()["request"]
            try:
                self.answers.append(consents.answer_consent(
                    self.kor, request, self.grant, "source protection", client=self.to_jpn))
            except PolicyDenied as exc:  # the holder refused the answer: it is lost
                self.answers.append(exc)
        return response


class AnswerLost(TestClient):
    """KOR's peer API for JPN, whose answer is lost on the way back: KOR took the
    request, JPN never learns it."""

    def post(self, url: Any, **kwargs: Any) -> httpx.Response:
        super().post(url, **kwargs)
        raise httpx.ReadTimeout("the answer was lost on the way back")


class NeverArrives(TestClient):
    """A link on which the post is lost before it reaches the other end."""

    def post(self, url: Any, **kwargs: Any) -> httpx.Response:
        raise httpx.ReadTimeout("lost on the way")


def consent_events(node: Node, item_id: str) -> list[dict[str, Any]]:
    with node.store.reader() as reader:
        return [json.loads(r["details"]) if isinstance(r["details"], str) else r["details"]
                for r in reader.rows()
                if r["kind"] == AuditKind.CONSENT.value and r["item_id"] == item_id]


def held_at_jpn(node_factory: Callable[..., Node],
                make_indicator: Callable[..., dict[str, Any]]) -> tuple[Node, Node, list[str]]:
    """KOR and JPN federated, and two items of KOR's delivered to JPN by KOR's courier."""
    kor, jpn = node_factory("KOR"), node_factory("JPN")
    federate(kor, jpn)
    items = [handlers.publish(kor.uow(), keys=kor.keys, catalogue=kor.catalogue,
                              obj=make_indicator(n), now=datetime.now(UTC),
                              label=handlers.LabelRequest(II, ("KOR", "JPN"), "dprk-missile")
                              ).item_id for n in (1, 2)]
    courier = exchange.Sender(kor, client=api_of(jpn, kor))
    try:
        assert exchange.wait_until(lambda: courier.step().in_flight == 0 and
                                   exchange.pending(kor) == 0, WAIT_S)
    finally:
        courier.close()
    return kor, jpn, items


def test_an_answer_that_races_its_request_counts_once(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]]
        ) -> None:
    """A refusal (first item) and a grant (second) each answering a request before the
    holder's POST of it returned (before the fix: the refusal was answered 403 and lost,
    the request pending for ever; the grant kept, its request pending for ever)."""
    kor, jpn, items = held_at_jpn(node_factory, make_indicator)
    for item, grant in zip(items, (False, True), strict=True):
        to_kor = AnsweredWhileAsked(kor, jpn, grant)
        asked = consents.consent_request(jpn, item, "USA", "USFJ needs it", client=to_kor)
        [answer] = to_kor.answers
        assert isinstance(answer, dict), answer
        # Both sides name the request alike; the holder's is settled as the originator's.
        [row] = [r for r in exchange.consent_rows(jpn) if r["item_id"] == item]
        assert row["id"] == asked["request"] == answer["request"]
        assert row["status"] == ("granted" if grant else "denied")
        taken = [e["direction"] for e in consent_events(jpn, item)
                 if e.get("direction") in ("refused", "obtained")]
        assert taken == ["obtained" if grant else "refused"]
        # Once: the same refusal again finds nothing pending, and is refused, not recorded.
        again = to_kor.to_jpn.post("https://jpn.test/peer/v1/consents/replies/",
                                   content=json.dumps({"granted": False, "request": row["id"],
                                                       "item_id": item, "reason": "again"}))
        assert again.status_code == 403
        assert [e["direction"] for e in consent_events(jpn, item)
                if e.get("direction") in ("refused", "obtained")] == taken

    # A holder names its requests only in its own name space; asked again under one of
    # them (its answer lost), it is the one request, not a second row.
    to_kor = api_of(kor, jpn)
    for taken_id in (f"KOR-consent-{row['id']}", f"USA-{row['id']}", row["id"] + "/x"):
        refused = to_kor.post("https://kor.test/peer/v1/consents/requests/", content=json.dumps(
            {"item_id": item, "recipient": "USA", "request": taken_id}))
        assert refused.status_code == 422, refused.text
    same = to_kor.post("https://kor.test/peer/v1/consents/requests/", content=json.dumps(
        {"item_id": item, "recipient": "USA", "request": row["id"]}))
    assert {k: v for k, v in same.json().items() if k != "consent"} == \
        {"request": row["id"], "status": "granted"}
    # With the consent again: the reply that carried it may be what the holder lost.
    assert same.json()["consent"]["item_id"] == item
    assert len(exchange.consent_rows(kor)) == 2

    # A request already answered stays answered: "failed" settles only one still pending
    # (review18: it overwrote whatever the originator's answer had made it).
    exchange.decide_request(jpn, row["id"], "failed", datetime.now(UTC))
    assert exchange.consent_row(jpn, row["id"])["status"] == "granted"

    # Asked again after the answer was lost on the way back: the request still pending
    # here, under its id, and the originator answers with the one it kept (review18:
    # before, each asking was a new request at both ends).
    lost = AnswerLost(app_for_node(kor, peer_identity=lambda scope: "JPN"),
                      base_url="https://kor.test")
    with pytest.raises(MalformedInput, match="kept pending"):
        consents.consent_request(jpn, item, "USA", "USFJ needs it", client=lost)
    again = consents.consent_request(jpn, item, "USA", "USFJ needs it", client=to_kor)
    assert [r["id"] for r in exchange.consent_rows(jpn) if r["status"] == "pending"] == \
        [again["request"]]
    assert [r["id"] for r in exchange.consent_rows(kor) if r["status"] == "pending"] == \
        [again["request"]]
    assert len(exchange.consent_rows(kor)) == 3

    # The originator grants, and its reply is lost on the way to the holder: asked again,
    # the request is reported granted, and the consent the originator sends again is kept
    # here (before: reported "pending", and the holder never held the consent).
    with pytest.raises(MalformedInput, match="kept pending"):
        consents.consent_request(jpn, items[0], "USA", "lost twice", client=lost)
    [asked] = [r["id"] for r in exchange.consent_rows(jpn) if r["reason"] == "lost twice"]
    with pytest.raises(MalformedInput):
        consents.answer_consent(kor, asked, True, "", client=NeverArrives(
            app_for_node(jpn, peer_identity=lambda scope: "KOR"), base_url="https://jpn.test"))
    assert exchange.consent_row(jpn, asked)["status"] == "pending"
    answered = consents.consent_request(jpn, items[0], "USA", "lost twice", client=to_kor)
    assert (answered["request"], answered["status"]) == (asked, "granted")
    assert exchange.consent_row(jpn, asked)["status"] == "granted"
    with jpn.store.repository() as repo:
        assert [(c.originator, c.recipient) for c in repo.consents_for(items[0])
                if c.direction == "obtained"] == [("KOR", "USA")]
    assert len(exchange.consent_rows(kor)) == 4

    # A request whose POST never reached the originator (a timeout: no answer either way):
    # the node's courier asks again under its id until the originator takes it (before:
    # pending here for ever, and the originator never had it).
    with pytest.raises(MalformedInput, match="sends it again"):
        consents.consent_request(jpn, items[0], "USA", "timed out", client=NeverArrives(
            app_for_node(kor, peer_identity=lambda scope: "JPN"), base_url="https://kor.test"))
    [timed_out] = [r["id"] for r in exchange.consent_rows(jpn) if r["reason"] == "timed out"]
    assert timed_out not in {r["id"] for r in exchange.consent_rows(kor)}
    courier = exchange.Sender(jpn, client=to_kor)
    try:
        courier.step()
    finally:
        courier.close()
    [row] = [r for r in exchange.consent_rows(kor) if r["id"] == timed_out]
    assert (row["status"], row["reason"], row["holder"]) == ("pending", "timed out", "JPN")
    resent = [n for n in notice_rows(jpn) if n["kind"] == "consent-request"]
    assert timed_out in {n["reference"] for n in resent}
    assert {n["status"] for n in resent} == {"delivered"}  # the earlier ones: deduplicated
    assert len(exchange.consent_rows(kor)) == 5
    # ... and its answer counts, as any request's.
    consents.answer_consent(kor, timed_out, False, "not now", client=api_of(jpn, kor))
    assert exchange.consent_row(jpn, timed_out)["status"] == "denied"
    with jpn.store.reader() as reader:
        assert handlers.verify_audit(reader, public_key=jpn.keys.public_signing_key()).ok

    # Nothing will answer a request the originator refused to take (here: KOR has left JPN
    # out of its federation since): failed, not left pending where a refusal would count.
    partners = exchange.require_partners(kor)
    exchange.Partners("KOR", "direct", {"KOR": partners.peers["KOR"]}, ()).write(kor.folder)
    with pytest.raises(PolicyDenied):
        consents.consent_request(jpn, items[0], "USA", "again", client=api_of(kor, jpn))
    assert [r["status"] for r in exchange.consent_rows(jpn) if r["reason"] == "again"] == \
        ["failed"]
    assert len(exchange.consent_rows(kor)) == 5


@settings(max_examples=50)
@given(requester=hs.sampled_from(["JPN", "KOR", "USA"]),
       value=hs.one_of(hs.none(), hs.integers(), hs.text(max_size=120),
                       hs.builds("{}-consent-{}".format, hs.sampled_from(["JPN", "KOR", "USA"]),
                                 hs.text(max_size=90))))
def test_a_proposed_request_id_is_the_requesters_own_or_refused(requester: str,
                                                                value: object) -> None:
    """The originator keeps a holder's request under the id it proposes only in that
    holder's name space: one partner can neither take another's ids nor this node's."""
    try:
        kept = exchange.proposed_request_id(value, requester)
    except MalformedInput:
        assert value is not None
        return
    assert kept is None if value is None else kept == value
    if kept is not None:
        assert kept.startswith(f"{requester}-consent-") and len(kept) <= 100
        assert all(c.isascii() and (c.isalnum() or c == "-") for c in kept)
