"""A second batch in flight on a link while the first is unanswered: a report published
while the partner has not yet answered for an earlier one leaves at once rather than a
round trip later, and never beside a batch carrying another version of its item (the
partner would refuse the older after the newer). KOR's courier loop against JPN's real
peer API (in process), behind a link that holds back the answer to the first post."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from federating import TestClient, api_of, federate
from gsomia.bootstrap import app_for_node
from gsomia.service import handlers
from gsomia.shell import exchange
from gsomia.shell.node import Node

II = "군사II급비밀"


class FirstAnswerHeld(TestClient):
    """JPN's peer API as KOR reaches it, over a link that holds the answer to the first
    post on its way back until ``release`` is set, and notes which items each post on the
    way carries: ``shared``, any item two posts on the way carried at once. ``not_now``:
    the posts after the first are answered 429 with that Retry-After, as a partner at a
    bound answers, without reaching JPN."""

    def __init__(self, jpn: Node, not_now: int | None = None) -> None:
        super().__init__(app_for_node(jpn, peer_identity=lambda scope: "KOR"),
                         base_url="https://jpn.test")
        self.release = threading.Event()
        self.posted = threading.Event()
        self._lock = threading.Lock()
        self._numbers = itertools.count()
        self.on_the_way: dict[int, set[str]] = {}
        self.shared: set[str] = set()
        self.most = 0
        self.not_now = not_now

    def post(self, url: Any, **kwargs: Any) -> httpx.Response:
        items = {e["item_id"] for e in json.loads(kwargs["content"])["envelopes"]}
        with self._lock:
            number = next(self._numbers)
            for other in self.on_the_way.values():
                self.shared |= other & items
            self.on_the_way[number] = items
            self.most = max(self.most, len(self.on_the_way))
        try:
            if number and self.not_now is not None:
                return httpx.Response(429, headers={"retry-after": str(self.not_now)},
                                      text="not now")
            response: httpx.Response = super().post(url, **kwargs)
            if number == 0:
                self.posted.set()
                self.release.wait(30)
            return response
        finally:
            with self._lock:
                del self.on_the_way[number]


@pytest.fixture
def federated(node_factory: Callable[..., Node]) -> tuple[Node, Node]:
    """KOR and JPN, each the other's partner."""
    kor, jpn = node_factory("KOR"), node_factory("JPN")
    federate(kor, jpn)
    return kor, jpn


@contextmanager
def courier_loop(kor: Node, link: FirstAnswerHeld
                 ) -> Iterator[tuple[exchange.Sender, exchange.Kick, threading.Event,
                                 threading.Thread]]:
    """KOR's courier loop to JPN running: its sender, kick, stop and thread; at the end the
    held answer is let go and the loop told to stop and waited for."""
    sender = exchange.Sender(kor, link="JPN", client=link)
    kick, stop = exchange.Kick(), threading.Event()
    loop = threading.Thread(target=sender.run, args=(stop, kick), name="kor-to-jpn")
    loop.start()
    try:
        yield sender, kick, stop, loop
    finally:
        link.release.set()
        stop.set()
        kick.set()
        loop.join(timeout=30)
        sender.close()


@contextmanager
def courier(kor: Node, link: FirstAnswerHeld) -> Iterator[exchange.Kick]:
    """KOR's courier loop to JPN; the kick, set after each publish, as the couriers set it
    at the publish's commit signal."""
    with courier_loop(kor, link) as (_, kick, _, _):
        yield kick


def publish(kor: Node, obj: dict[str, Any], kick: exchange.Kick) -> str:
    [done] = handlers.publish_many(
        kor.uow(), keys=kor.keys, catalogue=kor.catalogue, now=datetime.now(UTC),
        entries=[(obj, handlers.LabelRequest(II, ("KOR", "JPN"), "dprk-missile"))])
    kick.set()
    return done.item_id


def statuses(kor: Node) -> dict[tuple[str, str], str]:
    return {(r["item_id"], r["version"]): r["status"] for r in exchange.outbox_rows(kor)}


def test_a_report_goes_while_the_partner_has_not_answered_for_the_one_before(
        federated: tuple[Node, Node], make_indicator: Callable[..., dict[str, Any]]
        ) -> None:
    """Before: the second report waited for the answer to the first (here held 30 s)."""
    kor, jpn = federated
    link = FirstAnswerHeld(jpn)
    with courier(kor, link) as kick:
        first = publish(kor, make_indicator(1), kick)
        assert link.posted.wait(20)
        second = publish(kor, make_indicator(2), kick)
        assert exchange.wait_until(
            lambda: [s for (i, _), s in statuses(kor).items() if i == second] ==
            ["delivered"], 15), statuses(kor)
        assert not link.release.is_set()
        assert [s for (i, _), s in statuses(kor).items() if i == first] == ["pending"]
        link.release.set()
        assert exchange.wait_until(lambda: exchange.pending(kor) == 0, 20), statuses(kor)
    assert set(statuses(kor).values()) == {"delivered"}
    assert link.most == 2 and not link.shared


def test_two_versions_of_an_item_never_travel_at_once(
        federated: tuple[Node, Node], make_indicator: Callable[..., dict[str, Any]]
        ) -> None:
    """A newer version queued while the older is on the way waits for its answer; another
    item queued with it goes at once. Both versions reach JPN, in order: none refused."""
    kor, jpn = federated
    link = FirstAnswerHeld(jpn)
    with courier(kor, link) as kick:
        item = publish(kor, make_indicator(1), kick)
        assert link.posted.wait(20)
        publish(kor, make_indicator(1, modified="2024-03-01T08:30:00.000Z"), kick)
        other = publish(kor, make_indicator(2), kick)
        assert exchange.wait_until(
            lambda: [s for (i, _), s in statuses(kor).items() if i == other] ==
            ["delivered"], 15), statuses(kor)
        assert [s for (i, _), s in statuses(kor).items() if i == item] == \
            ["pending", "pending"]
        link.release.set()
        assert exchange.wait_until(lambda: exchange.pending(kor) == 0, 20), statuses(kor)
    assert set(statuses(kor).values()) == {"delivered"}, statuses(kor)
    assert not link.shared
    with jpn.store.repository() as repo:
        assert repo.versions_held([item]) == {k for k in statuses(kor) if k[0] == item}


def test_each_batch_in_flight_is_settled_by_its_own_answer(
        federated: tuple[Node, Node], make_indicator: Callable[..., dict[str, Any]]
        ) -> None:
    """The batch beside answered "not now": only its row waits, as long as the partner
    said; the first, answered later, is receipted."""
    kor, jpn = federated
    link = FirstAnswerHeld(jpn, not_now=120)
    with courier(kor, link) as kick:
        first = publish(kor, make_indicator(1), kick)
        assert link.posted.wait(20)
        second = publish(kor, make_indicator(2), kick)
        assert exchange.wait_until(lambda: any(
            r["attempts"] for r in exchange.outbox_rows(kor) if r["item_id"] == second), 15)
        link.release.set()
        assert exchange.wait_until(lambda: exchange.pending(kor) == 1, 20), statuses(kor)
    rows = {r["item_id"]: r for r in exchange.outbox_rows(kor)}
    assert (rows[first]["status"], rows[first]["attempts"]) == ("delivered", 1)  # one post
    held = rows[second]
    assert (held["status"], held["attempts"]) == ("pending", 1)
    assert held["last_error"].startswith("HTTP 429")
    due = held["next_at"]
    due = due if due.tzinfo else due.replace(tzinfo=UTC)
    wait = (due - datetime.now(UTC)).total_seconds()
    assert 100 < wait <= 120


def test_a_pass_beside_asked_during_the_loops_post_seals_nothing_once_it_ended(
        federated: tuple[Node, Node], make_indicator: Callable[..., dict[str, Any]]
        ) -> None:
    """A pass beside asked while the loop posted its own batch but run after that post
    ended: the loop's next pass may have sealed the rows queued meanwhile and not yet
    recorded them in flight. Before (29b97b1): the pass sealed and posted them too, two
    batches on the way with the same item. Driven in that order, without a loop thread."""
    kor, jpn = federated
    link = FirstAnswerHeld(jpn)
    link.release.set()  # nothing is held: the test orders the steps itself
    sender = exchange.Sender(kor, link="JPN", client=link)
    try:
        item = publish(kor, make_indicator(1), exchange.Kick())
        peer = exchange.require_partners(kor).peers["JPN"]
        loops = sender._seal(peer)  # the loop's next pass: sealed, not yet in flight
        assert loops is not None and [r.item_id for r, _ in loops.sealed] == [item]
        sender._beside_pass(peer)
        assert not link.posted.is_set()
    finally:
        sender.close()
    assert [(r["status"], r["attempts"]) for r in exchange.outbox_rows(kor)] == \
        [("pending", 0)]


def test_no_batch_goes_beside_once_the_loop_is_told_to_stop(
        federated: tuple[Node, Node], make_indicator: Callable[..., dict[str, Any]]
        ) -> None:
    """The node stops while the loop waits for the answer to its own batch and a pass
    beside it is queued but not begun (it waits for the seal): that pass posts nothing, and
    the kick that tells the loop to stop asks none. Before (04e2253): a batch went beside,
    and the node's stop waited for its answer."""
    kor, jpn = federated
    link = FirstAnswerHeld(jpn)
    with courier_loop(kor, link) as (sender, kick, stop, loop):
        first = publish(kor, make_indicator(1), kick)
        assert link.posted.wait(20)
        with sender.sealing:  # the pass beside, asked by the kick, waits here
            second = publish(kor, make_indicator(2), kick)
            stop.set()
        assert sender._pool is not None
        sender._pool.shutdown(wait=True)  # the pass beside has run
        # As the node's stop tells the loop: no pass is even asked (the pool, shut down,
        # would refuse it).
        kick.set()
        assert link.most == 1
    assert not loop.is_alive()
    assert {r["item_id"]: (r["status"], r["attempts"]) for r in exchange.outbox_rows(kor)} \
        == {first: ("delivered", 1), second: ("pending", 0)}


def test_a_delivery_ends_when_the_answer_comes_back_not_when_it_is_recorded(
        federated: tuple[Node, Node], make_indicator: Callable[..., dict[str, Any]]
        ) -> None:
    """KOR's outbox marks the delivery delivered at the instant JPN's answer reached the
    sender; the receipt's audit event bears the later instant it was recorded. Before, both
    bore the record's: a receipt handed to the settling thread, or waiting for the write
    lock, made the delivery look that much slower."""
    import sqlalchemy as sa

    from gsomia.core.types import instant
    from gsomia.shell.store import audit_events

    kor, jpn = federated
    start = datetime.now(UTC)
    ticks = itertools.count(1)
    item = publish(kor, make_indicator(1), exchange.Kick())
    # Each reading a second after the last: what the sender read when is seen in the times.
    sender = exchange.Sender(kor, link="JPN", client=api_of(jpn, kor),
                             clock=lambda: start + timedelta(seconds=next(ticks)))
    try:
        sender.step()
    finally:
        sender.close()
    [row] = exchange.outbox_rows(kor)
    assert row["status"] == "delivered"
    with kor.store.engine.connect() as conn:
        [recorded] = conn.execute(sa.select(audit_events.c.at).where(
            audit_events.c.kind == "receipt", audit_events.c.item_id == item)).scalars()
    assert start < instant(row["delivered_at"]) < instant(recorded)
