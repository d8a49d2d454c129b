"""A partner at one of its bounds says "not now" (429) and when to ask again: the sender
honours what it says (through a proxy that says it as an HTTP date), and the operator hears
of the rows held back (``gsomia doctor``). Real nodes, the partner's real peer API in
process."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx

from federating import TestClient, federate, one_pass
from gsomia.bootstrap import app_for_node
from gsomia.core.outbox import STANDING_CONSENT
from gsomia.service import handlers
from gsomia.shell import consents, exchange
from gsomia.shell.node import CONFIG, Node, NodeConfig
from gsomia.shell.store import now_utc

LATER = timedelta(seconds=300)


class SaysWhen(TestClient):
    """JPN's peer API behind a proxy that turns its Retry-After into an HTTP date, later
    than JPN said (RFC 9110 allows either form; a gsomia node says seconds)."""

    def post(self, url: Any, **kwargs: Any) -> httpx.Response:
        response: httpx.Response = super().post(url, **kwargs)
        if "retry-after" in response.headers:
            response.headers["retry-after"] = format_datetime(now_utc() + LATER, usegmt=True)
        return response


def test_a_partner_at_its_bound_is_asked_again_when_it_says_and_the_operator_hears(
        node_factory: Callable[..., Node]) -> None:
    kor, jpn = node_factory("KOR"), node_factory("JPN")
    federate(kor, jpn)
    path = jpn.folder / CONFIG
    path.write_text(path.read_text("utf-8") + "\n[limits]\nstanding_consents_per_partner = 1\n",
                    "utf-8")
    jpn.config = NodeConfig.load(jpn.folder)
    for _ in range(2):
        consents.standing_grant(kor, to="USA", categories=["sensor-report"],
                                purpose="dprk-missile", until="2099-01-01T00:00:00Z")
    sender = exchange.Sender(kor, client=SaysWhen(
        app_for_node(jpn, peer_identity=lambda scope: "KOR"), base_url="https://jpn.test"))
    try:
        before = now_utc()
        sender.step()
    finally:
        sender.close()
    rows = [r for r in exchange_notices(kor) if r["kind"] == STANDING_CONSENT]
    assert sorted(r["status"] for r in rows) == ["delivered", "pending"]
    [held] = [r for r in rows if r["status"] == "pending"]
    assert held["last_error"].startswith("HTTP 429") and held["not_now"] == 1
    # When the proxy said (300 s), not JPN's 60 s nor the sender's own backoff.
    due = datetime.fromisoformat(held["next_at"].replace("Z", "+00:00"))
    assert before + LATER - timedelta(seconds=2) <= due <= now_utc() + LATER
    from gsomia import bootstrap
    from gsomia.shell.doctor import delivery_checks

    checks = {c.name: c for c in delivery_checks(kor.folder, bootstrap.catalogue)}
    check = checks["held back at partners' bounds"]
    assert not check.ok and "JPN: 1 standing-consent" in check.detail
    assert '1 "not now" in a row' in check.detail


def exchange_notices(node: Node) -> list[dict[str, Any]]:
    from gsomia.shell.notices import notice_rows

    return notice_rows(node)


def test_a_delivery_answered_not_now_again_counts_both(
        node_factory: Callable[..., Node], make_indicator: Callable[..., dict[str, Any]]
        ) -> None:
    """Each "not now" in a row of a delivery is counted on its row: the count the sender
    seals with the row is the one the next answer builds on (sealed without it, every row
    would start again at none, and a partner at its bound be asked again each minute rather
    than after a wait doubled with each "not now")."""
    kor, jpn = node_factory("KOR"), node_factory("JPN")
    federate(kor, jpn)
    handlers.publish_many(kor.uow(), keys=kor.keys, catalogue=kor.catalogue, now=now_utc(),
                          entries=[(make_indicator(1), handlers.LabelRequest(
                              "군사II급비밀", ("KOR", "JPN"), "dprk-missile"))])
    start, readings = now_utc(), iter(range(10**6))
    posts: list[int] = []

    def at_its_bound(request: httpx.Request) -> httpx.Response:
        posts.append(len(request.content))
        return httpx.Response(429, headers={"retry-after": "1"}, text="not now")

    def clock() -> datetime:  # two hours a reading: each pass finds the row due again
        return start + timedelta(hours=2 * next(readings))

    counts = []
    for _ in range(3):  # a pass each, its answer recorded as the sender closes
        one_pass(kor, at_its_bound, clock=clock)
        [row] = exchange.outbox_rows(kor)
        counts.append((row["status"], row["attempts"], row["not_now"]))
    assert len(posts) == 3, (counts, posts)
    assert counts == [("pending", 1, 1), ("pending", 2, 2), ("pending", 3, 3)]
