"""The peer API answers partners only: a certificate of the node's own CA (a local account's,
whoever holds one) is no partner's (peerself27)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route
from starlette.testclient import TestClient

from federating import certificate_holders
from gsomia.bootstrap import app_for_node
from gsomia.core.audit import AuditKind
from gsomia.shell.node import Node

# Who holds the client certificate: JPN's own CA's, KOR's (pinned, the 2016 GSOMIA in force),
# XYZ's (a CA JPN pins for nobody), or no certificate at all.
HOLDERS = ("JPN", "KOR", "XYZ", None)


@pytest.fixture
def jpn_api(node_factory: Callable[..., Node], tmp_path: Path, now: datetime
            ) -> Iterator[tuple[Node, Callable[[str | None], TestClient], list[tuple[str, str]],
                                Any]]:
    """JPN's real app, its peer identity the real pins (at ``now``), and a client holding each
    of HOLDERS' client certificates; the peer routes as the app lists them."""
    jpn, kor = node_factory("JPN"), node_factory("KOR")
    ders, holding, identity = certificate_holders(jpn, kor, tmp_path, now)

    app = app_for_node(jpn, peer_identity=identity)
    routes = sorted((m, r.path) for r in app.routes if isinstance(r, Route)
                    and r.path.startswith("/peer/v1/") for m in (r.methods or ()) if m != "HEAD")
    client = TestClient(app, base_url="https://jpn.test")

    def as_holder(code: str | None) -> TestClient:
        holding["der"] = ders[code] if code is not None else None
        return client

    yield jpn, as_holder, routes, app
    app.state.peer_inbox.close()


def call(client: TestClient, method: str, path: str) -> Any:
    return client.request(method, path, content=b"{}" if method == "POST" else None,
                          headers={"content-type": "application/json"}
                          if method == "POST" else None)


def test_the_nodes_own_certificate_is_answered_as_a_stranger_on_every_peer_route(
        jpn_api: Any) -> None:
    """keepalive27 found JPN's own client certificate answered 200 on JPN's
    ``GET /peer/v1/tree-heads/``: PinnedPeers took JPN's own CA as party JPN, and each
    handler's own checks were all that stood between a local account's certificate and the
    partner interface. Now every peer route (as the app lists them) answers it exactly as a
    certificate of no partner's CA: 403, the same body, audited with JPN as its issuer."""
    jpn, as_holder, routes, _ = jpn_api
    assert ("GET", "/peer/v1/tree-heads/") in routes and len(routes) >= 10
    for method, path in routes:
        own = call(as_holder("JPN"), method, path)
        stranger = call(as_holder("XYZ"), method, path)
        assert (own.status_code, own.json()) == (403, stranger.json()), (method, path, own.text)
    with jpn.store.reader() as reader:
        actors = [r["actor"] for r in reader.rows() if r["kind"] == AuditKind.PEER_REFUSED.value]
    # Each refusal on record, the own certificate's under its issuer, the stranger's under none.
    assert actors.count("JPN") == len(routes) and len(actors) == 2 * len(routes)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_only_a_current_partner_passes_the_peer_apis_identity(jpn_api: Any,
                                                               data: st.DataObject) -> None:
    """Over holders (JPN's own CA, KOR a partner in force, XYZ nobody's, no certificate) and
    the app's peer routes: only KOR's certificate gets past the identity (401 without one,
    the same 403 as a stranger's for the others), whatever the handler then says of its
    empty body."""
    _, as_holder, routes, _ = jpn_api
    holder = data.draw(st.sampled_from(HOLDERS), label="holder")
    method, path = data.draw(st.sampled_from(routes), label="route")
    answer = call(as_holder(holder), method, path)
    if holder is None:
        assert answer.status_code == 401
        return
    stranger = call(as_holder("XYZ"), method, path).json()
    refused = answer.status_code == 403 and answer.json() == stranger
    assert refused == (holder != "KOR"), (holder, method, path, answer.text)


def test_a_partner_leaving_mid_body_is_no_error_and_leaves_nothing(jpn_api: Any) -> None:
    """``node serve`` cuts a body that does not arrive in time (408): the handler, waiting on
    it, is told the client left. Each peer route that reads a body ends quietly (before:
    Starlette's ClientDisconnect went up to uvicorn, logged as an exception in the app),
    sends nothing, and nothing of it is on record."""
    jpn, as_holder, routes, app = jpn_api
    as_holder("KOR")
    with jpn.store.reader() as reader:
        before = len(list(reader.rows()))
    for method, path in routes:
        if method != "POST":
            continue
        sent: list[dict[str, Any]] = []
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "https", "path": path, "raw_path": path.encode(),
                 "query_string": b"", "root_path": "", "server": ("jpn.test", 443),
                 "client": ("127.0.0.1", 5000),
                 "headers": [(b"host", b"jpn.test"), (b"content-type", b"application/json"),
                             (b"content-length", b"1000")]}
        messages: list[dict[str, Any]] = [
            {"type": "http.request", "body": b'{"env', "more_body": True},
            {"type": "http.disconnect"}]

        async def receive(messages: list[dict[str, Any]] = messages) -> dict[str, Any]:
            return messages.pop(0)

        async def send(message: dict[str, Any], sent: list[dict[str, Any]] = sent) -> None:
            sent.append(message)

        asyncio.run(app(scope, receive, send))  # raises nothing
        # uvicorn drops what is sent once the client left; the app answers nothing else.
        assert [m.get("status") for m in sent if m["type"] == "http.response.start"] \
            in ([], [408]), (path, sent)
    with jpn.store.reader() as reader:
        assert len(list(reader.rows())) == before
