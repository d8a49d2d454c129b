"""The warning centre gives way to the couriers beside it on what they say, not for a fixed
15 ms (headstart29): its pass waits while a link owed a post by the commits it saw has not
written it, starts as soon as it has, never waits for a link backing off, and never longer
than ``HEAD_START_S``. The progress alone, the store's hooks that feed it, and KOR's real
courier loop to JPN's real peer API (in process) behind a link that holds its posts."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from federating import TestClient, federate
from gsomia.bootstrap import app_for_node
from gsomia.service import handlers
from gsomia.shell import exchange, warning_centre
from gsomia.shell import store as node_store
from gsomia.shell.exchange import CourierProgress
from gsomia.shell.exchange._sender import _when_written
from gsomia.shell.node import Node
from gsomia.shell.store import Changes
from gsomia.shell.warning_centre import HEAD_START_S, CentreWorker

II = "군사II급비밀"
LONG = 30.0  # a bound no passing test waits out: what returns before it was let go


def _waiting(progress: CourierProgress, bound: float = LONG
             ) -> tuple[threading.Thread, list[float]]:
    waited: list[float] = []
    thread = threading.Thread(target=lambda: waited.append(progress.wait(bound)))
    thread.start()
    return thread, waited


def _held_until(progress: CourierProgress, release: Callable[[], None]) -> None:
    """The centre, waiting, is still held a moment later; ``release`` lets it go, well
    inside its bound."""
    centre, waited = _waiting(progress)
    centre.join(0.3)
    assert centre.is_alive()
    release()
    centre.join(LONG / 3)
    assert not centre.is_alive() and waited[0] < LONG


def _committed(progress: CourierProgress, link: str = "JPN") -> None:
    progress.queueing([link])
    progress.queued([link])


def test_the_pass_waits_for_the_link_that_owes_a_post_and_starts_once_it_is_written(
        ) -> None:
    progress = CourierProgress()
    _committed(progress)
    assert progress.owing() == {"JPN": 1}
    ticket = progress.taking("JPN")
    progress.sealed("JPN")
    # The pass ended with its batch on a posting thread: not yet written, still owed.
    progress.dealt("JPN", ticket)
    _held_until(progress, lambda: progress.sent("JPN", ticket))
    assert progress.owing() == {}


def test_a_pass_that_took_its_ticket_before_the_commit_was_over_does_not_deal_with_it(
        ) -> None:
    """The commit is counted while it holds the write lock; a pass that read the outbox
    before it was visible did not see its rows."""
    progress = CourierProgress()
    progress.queueing(["JPN"])
    early = progress.taking("JPN")
    progress.dealt("JPN", early)
    assert progress.owing() == {"JPN": 1}
    progress.queued(["JPN"])
    progress.dealt("JPN", progress.taking("JPN"))
    assert progress.owing() == {}


def test_commits_after_the_centre_began_to_wait_do_not_hold_it_longer() -> None:
    progress = CourierProgress()
    _committed(progress)
    centre, waited = _waiting(progress)
    ticket = progress.taking("JPN")
    _committed(progress)  # the next report, after the centre took its measure
    progress.dealt("JPN", ticket)
    centre.join(LONG / 3)
    assert not centre.is_alive() and waited[0] < LONG
    assert progress.owing() == {"JPN": 2}


def test_a_link_backing_off_holds_the_centre_not_at_all() -> None:
    progress = CourierProgress()
    _committed(progress, "USA")
    progress.resting("USA", True)
    assert progress.owing() == {}
    assert progress.wait(LONG) < LONG
    # A link that starts to back off while the centre waits lets it go at once.
    progress.resting("USA", False)
    _held_until(progress, lambda: progress.resting("USA", True))


def test_the_bound_holds_with_a_courier_that_never_says_anything() -> None:
    progress = CourierProgress()
    _committed(progress)
    assert progress.wait(0.05) >= 0.05
    assert progress.owing() == {"JPN": 1}


def _publish(node: Node, n: int) -> None:
    handlers.publish_many(node.uow(), keys=node.keys, catalogue=node.catalogue,
                          now=datetime.now(UTC), entries=[(
                              {"type": "note", "spec_version": "2.1",
                               "id": f"note--{uuid.UUID(int=n + 1)}",
                               "created": "2024-03-01T08:00:00.000Z",
                               "modified": "2024-03-01T08:00:00.000Z",
                               "content": f"report {n}",
                               "object_refs": [f"indicator--{uuid.UUID(int=n + 1)}"]},
                              handlers.LabelRequest(II, ("KOR", "JPN"), "dprk-missile"))])


def test_a_commit_is_counted_before_anyone_can_see_it_and_again_once_it_is_over(
        node_factory: Callable[..., Node]) -> None:
    """Were it counted only once visible (on_queued's callback, after the commit), a centre
    that looked in between would see the note and no link owing: no head start."""
    kor, jpn = node_factory("KOR"), node_factory("JPN")
    federate(kor, jpn)
    look = Changes(kor.store.engine)
    seen: list[tuple[str, frozenset[str], int | None]] = []
    engine = kor.store.engine
    node_store.on_queueing(engine, lambda to: seen.append(("asked", to, look.newest_seq())))
    node_store.on_queued(engine, lambda to: seen.append(("over", to, look.newest_seq())))
    try:
        before = look.newest_seq()
        _publish(kor, 1)
    finally:
        node_store.on_queueing(engine, None)
        node_store.on_queued(engine, None)
        look.close()
    [(asked, to, then), (over, to_again, after)] = seen
    assert (asked, over) == ("asked", "over") and to == to_again == {"JPN"}
    assert then == before and after is not None and before is not None and after > before


class HeldLink(TestClient):
    """JPN's peer API as KOR reaches it, over a link that writes a post's request only once
    ``write`` is set (telling httpcore's ``trace`` as the real connection does) and answers
    only once ``answer`` is set. ``down``: every post fails as against a partner down."""

    def __init__(self, jpn: Node, down: bool = False) -> None:
        super().__init__(app_for_node(jpn, peer_identity=lambda scope: "KOR"),
                         base_url="https://jpn.test")
        self.write, self.written, self.answer = (threading.Event() for _ in range(3))
        self.posts = 0
        self.down = down

    def post(self, url: Any, **kwargs: Any) -> httpx.Response:
        self.posts += 1
        if self.down:
            raise httpx.ConnectError("connection refused")
        trace = kwargs.get("extensions", {}).get("trace")
        self.write.wait(LONG)
        if trace is not None:
            trace("http11.send_request_headers.complete", {})
            trace("http11.send_request_body.complete", {})
        self.written.set()
        self.answer.wait(LONG)
        response: httpx.Response = super().post(url, **kwargs)
        return response


@contextmanager
def couriers_beside(kor: Node, link: HeldLink
                    ) -> Iterator[tuple[CentreWorker, exchange.Sender]]:
    """KOR's couriers with one link, to JPN, over ``link``, hooked to KOR's commits as
    ``node run`` hooks them, and KOR's centre beside them with its commit watch."""
    progress = CourierProgress()
    couriers = exchange.Couriers(kor, progress=progress)
    sender = exchange.Sender(kor, link="JPN", client=link)
    sender.progress = progress
    kick, stop = exchange.Kick(), threading.Event()
    loop = threading.Thread(target=sender.run, args=(stop, kick), name="kor-to-jpn")
    couriers._links["JPN"] = (sender, loop, kick)
    engine = kor.store.engine
    node_store.on_queueing(engine, couriers._queueing)
    node_store.on_queued(engine, couriers._queued)
    centre = CentreWorker(kor, couriers=progress)
    centre._changes = Changes(engine)
    loop.start()
    try:
        yield centre, sender
    finally:
        node_store.on_queueing(engine, None)
        node_store.on_queued(engine, None)
        link.write.set()
        link.answer.set()
        stop.set()
        kick.set()
        loop.join(LONG)
        sender.close()
        centre._changes.close()


def _giving_way(centre: CentreWorker) -> tuple[threading.Thread, list[float]]:
    waited: list[float] = []
    thread = threading.Thread(target=lambda: waited.append(centre.give_way()))
    thread.start()
    return thread, waited


def test_the_centre_waits_for_the_report_to_be_posted_not_for_the_answer(
        node_factory: Callable[..., Node], monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: a fixed 15 ms, whether the courier had posted in 3 or was still sealing."""
    monkeypatch.setattr(warning_centre, "HEAD_START_S", LONG)
    kor, jpn = node_factory("KOR"), node_factory("JPN")
    federate(kor, jpn)
    link = HeldLink(jpn)
    with couriers_beside(kor, link) as (centre, _):
        _publish(kor, 1)
        centre_thread, waited = _giving_way(centre)
        centre_thread.join(0.5)
        assert centre_thread.is_alive()  # the courier has not written its post
        link.write.set()
        centre_thread.join(LONG / 2)
        assert not centre_thread.is_alive() and waited[0] < LONG
        assert link.written.is_set() and not link.answer.is_set()
        # Read, nothing new: the next pass waits for nobody.
        assert centre.pass_once()
        assert centre.give_way() == 0.0
        link.answer.set()
        assert exchange.wait_until(lambda: exchange.pending(kor) == 0, LONG / 2)


def test_a_partner_down_holds_the_centre_not_at_all(
        node_factory: Callable[..., Node], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(warning_centre, "HEAD_START_S", LONG)
    kor, jpn = node_factory("KOR"), node_factory("JPN")
    federate(kor, jpn)
    link = HeldLink(jpn, down=True)
    with couriers_beside(kor, link) as (centre, _):
        _publish(kor, 1)
        # Four posts failed: the link backs off 0.8 s and more (its own pause, in which it
        # takes no commit's rows): the next report is not posted meanwhile, and the
        # centre does not wait for it.
        assert exchange.wait_until(lambda: link.posts >= 4, LONG)
        _publish(kor, 2)
        assert centre.couriers is not None and centre.couriers.owing() == {}
        assert centre.give_way() < LONG


def test_the_bound_holds_when_the_courier_never_posts(
        node_factory: Callable[..., Node]) -> None:
    kor, jpn = node_factory("KOR"), node_factory("JPN")
    federate(kor, jpn)
    link = HeldLink(jpn)  # holds the write until the end
    with couriers_beside(kor, link) as (centre, _):
        _publish(kor, 1)
        assert centre.give_way() >= HEAD_START_S
        assert not link.written.is_set()
        assert centre.couriers is not None and centre.couriers.owing() == {"JPN": 1}


def test_a_centre_without_couriers_beside_it_waits_for_nothing(
        node_factory: Callable[..., Node]) -> None:
    """``node serve``'s centre, or one whose couriers run in another process: the head
    start only kept two threads of one interpreter apart."""
    kor, jpn = node_factory("KOR"), node_factory("JPN")
    federate(kor, jpn)
    centre = CentreWorker(kor)
    centre._changes = Changes(kor.store.engine)
    try:
        _publish(kor, 1)
        assert centre.give_way() == 0.0
    finally:
        centre._changes.close()


def test_the_post_tells_once_its_body_is_written_before_any_answer() -> None:
    """httpcore's trace names, against a real connection: a server on 127.0.0.1 that reads
    the whole request and answers only when told."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(LONG)
    answer, body_read = threading.Event(), threading.Event()

    def serve() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(LONG)
                got = b""
                while not got.endswith(b"hello"):
                    got += conn.recv(4096)
                body_read.set()
                answer.wait(LONG)
                conn.sendall(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n"
                             b"connection: close\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    written: list[float] = []
    port = server.getsockname()[1]
    try:
        with httpx.Client() as client:
            posting = threading.Thread(target=lambda: client.post(
                f"http://127.0.0.1:{port}/", content=b"hello",
                extensions={"trace": _when_written(lambda: written.append(time.monotonic()))}))
            posting.start()
            assert body_read.wait(LONG)
            assert exchange.wait_until(lambda: bool(written), LONG / 2)
            assert not answer.is_set()
            answer.set()
            posting.join(LONG)
    finally:
        answer.set()
        thread.join(LONG)
    assert len(written) == 1
