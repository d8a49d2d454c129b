"""A node process's start beside its own writers, and its stop (test_sensor_partner_down's
failures under load, partnerdown23): the statuses table is made under the write lock, the
background loops are told to stop all at once, and as the server begins to stop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sqlite3
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import uvicorn
from cryptography import x509

from gsomia.shell.commands.serve import ConnectionSlots, stopping_server
from gsomia.shell.exchange import stop_background
from gsomia.shell.store import make_engine
from gsomia.shell.taxii_store import create_statuses


def started_port(server: uvicorn.Server, serving: threading.Thread) -> int:
    """The port ``server`` listens on, once ``serving`` has started it (60 s hang guard)."""
    end = time.monotonic() + 60
    while not server.started:
        assert serving.is_alive() and time.monotonic() < end
        time.sleep(0.02)
    return int(server.servers[0].sockets[0].getsockname()[1])


@contextmanager
def served(server: uvicorn.Server) -> Iterator[tuple[int, threading.Thread]]:
    """``server`` run on a thread of its own: its port and that thread; at the end it is told
    to exit, at once if it still runs, and waited for."""
    serving = threading.Thread(target=server.run)
    serving.start()
    try:
        yield started_port(server, serving), serving
    finally:
        server.should_exit = server.force_exit = True
        serving.join(60)


def test_the_statuses_table_is_made_while_another_connection_writes(tmp_path: Path) -> None:
    """``node run``'s sender and centre write before its API makes the table: made in a read
    transaction, the CREATE was refused at once (``database is locked``), and the node
    exited at its first start."""
    path = tmp_path / "node.db"
    engine = make_engine(f"sqlite:///{path}")
    holding = threading.Event()

    def writer() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE outbox_like (x)")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO outbox_like VALUES (1)")
        holding.set()
        time.sleep(0.5)
        conn.execute("COMMIT")
        conn.close()

    other = threading.Thread(target=writer)
    other.start()
    try:
        assert holding.wait(30)
        create_statuses(engine)
    finally:
        other.join()
    with engine.connect() as conn:
        assert sa.inspect(conn).has_table("taxii_statuses")
        assert conn.exec_driver_sql("SELECT x FROM outbox_like").scalar() == 1
    create_statuses(engine)  # made once: a restart finds it
    engine.dispose()


def test_the_loops_are_told_to_stop_all_at_once() -> None:
    """The sender, waited for first, is told with the others, not after they ended."""
    first, second = threading.Event(), threading.Event()
    saw: list[bool] = []

    def sender() -> None:
        first.wait()
        saw.append(second.wait(2.0))   # told too while this one still ends

    loops = [(threading.Thread(target=sender), first),
             (threading.Thread(target=second.wait), second)]
    for thread, _ in loops:
        thread.start()
    stop_background(loops, timeout=10)
    assert saw == [True]
    assert not any(thread.is_alive() for thread, _ in loops)


def test_the_server_calls_on_stop_before_it_waits_for_the_requests_running() -> None:
    """A request still running when the server is told to stop sees ``on_stop`` called: the
    loops of ``node run`` end during the graceful wait, not after it."""
    stopped, entered = threading.Event(), threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        entered.set()
        for _ in range(100):   # 5 s at most, more than the wait it must not need
            if stopped.is_set():
                break
            await asyncio.sleep(0.05)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body",
                    "body": b"told" if stopped.is_set() else b"not told"})

    server = stopping_server(uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off",
                                            log_level="warning", timeout_graceful_shutdown=10),
                             stopped.set)
    answers: list[str] = []
    with served(server) as (port, _):
        asking = threading.Thread(target=lambda: answers.append(
            httpx.get(f"http://127.0.0.1:{port}/", timeout=60).text))
        asking.start()
        assert entered.wait(60)
        assert not stopped.is_set()
        server.should_exit = True
        asking.join(60)
    assert answers == ["told"]


def test_a_partners_idle_connection_does_not_hold_the_stop(tmp_path: Path) -> None:
    """A partner's courier keeps its TLS connection alive between batches: closed at the
    stop, the server waited for a close_notify the idle client never sends, the whole
    graceful timeout (3 s of the 10 s before a node is killed, at every stop)."""
    from datetime import UTC, datetime

    from gsomia.shell.commands.serve import tls_protocol
    from gsomia.shell.keys import create_identity

    create_identity(tmp_path, "JPN", datetime.now(UTC))

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    protocol = tls_protocol()
    server = stopping_server(uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="off", log_level="critical",
        http=protocol, timeout_graceful_shutdown=60,
        ssl_certfile=str(tmp_path / "tls" / "server.crt"),
        ssl_keyfile=str(tmp_path / "tls" / "server.key")))
    with served(server) as (port, serving):
        trusted = ssl.create_default_context(cafile=str(tmp_path / "tls" / "ca.crt"))
        with httpx.Client(verify=trusted) as client, \
                socket.create_connection(("127.0.0.1", port), 30) as silent:
            assert client.get(f"https://127.0.0.1:{port}/").text == "ok"
            assert slots_of(protocol).held() == 1
            end = time.monotonic() + 10
            while handshakes_of(server).held() < 1 and time.monotonic() < end:
                time.sleep(0.01)
            assert handshakes_of(server).held() == 1  # ``silent``: its handshake under way
            begun = time.monotonic()
            server.should_exit = True   # the client's connection idle, kept alive
            serving.join(30)
            assert not serving.is_alive(), "the stop waited for the idle connection"
            assert slots_of(protocol).held() == 0, "the slot of the connection cut at the stop"
            # mergereview28: a handshake under way was left to its own 10 s, past the stop:
            # its slot never came back (the loop closed under it), and from Python 3.12 the
            # stop's wait_closed waits for it. Cut at the stop, as one made after it is.
            assert handshakes_of(server).held() == 0, "the handshake under way at the stop"
            silent.settimeout(5)
            with contextlib.suppress(ConnectionResetError):
                assert silent.recv(64) == b""
            assert time.monotonic() - begun < 5


def _plain(sock: socket.socket, tls: ssl.SSLObject, incoming: ssl.MemoryBIO) -> bytes:
    """What the server answered on ``sock``, decrypted; b"" if it cut the connection."""
    while True:
        try:
            return tls.read(65536)
        except ssl.SSLWantReadError:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                return b""
            if not data:
                return b""
            incoming.write(data)
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
            return b""


def test_a_connection_whose_handshake_ends_after_the_stop_began_does_not_hold_it(
        tmp_path: Path) -> None:
    """A partner's connection accepted before the stop whose TLS handshake ended after the
    server had told its connections to stop (fedwait26: partnerdown23's one unexplained 3 s,
    'Cancel 0 running task(s)'): served and kept alive, it held the stop for the whole
    graceful timeout. It is cut as it is made, before anything is read on it, so nothing
    answered is lost: the request under way at the stop still gets its answer."""
    from datetime import UTC, datetime

    from gsomia.shell.commands.serve import tls_protocol
    from gsomia.shell.keys import create_identity

    create_identity(tmp_path, "JPN", datetime.now(UTC))
    release, stopping = threading.Event(), threading.Event()
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        while (await receive()).get("more_body"):
            pass
        while scope["path"] == "/under-way" and not release.is_set():
            await asyncio.sleep(0.02)   # the request under way keeps the stop open
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    server = stopping_server(uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="off", log_level="critical",
        http=tls_protocol(), timeout_graceful_shutdown=60,
        ssl_certfile=str(tmp_path / "tls" / "server.crt"),
        ssl_keyfile=str(tmp_path / "tls" / "server.key")), stopping.set)

    def post(path: str) -> bytes:
        return f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\nhi".encode()

    with served(server) as (port, serving):
        try:
            trusted = ssl.create_default_context(cafile=str(tmp_path / "tls" / "ca.crt"))
            under_way = trusted.wrap_socket(socket.create_connection(("127.0.0.1", port), 30),
                                            server_hostname="127.0.0.1")
            under_way.sendall(post("/under-way"))
            # The late one: accepted (the server's flight read), its client Finished held back.
            late = socket.create_connection(("127.0.0.1", port), 30)
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            tls = trusted.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    late.sendall(outgoing.read())
                    incoming.write(late.recv(65536))
            server.should_exit = True
            assert stopping.wait(30)
            tls.write(post("/late"))
            late.sendall(outgoing.read())
            assert _plain(late, tls, incoming) == b"", "served after the stop began"
            late.close()
            release.set()
            assert under_way.recv(4096).startswith(b"HTTP/1.1 200"), "the answer under way lost"
            under_way.close()
            serving.join(30)
            assert not serving.is_alive(), "the stop waited for the late connection"
            assert seen == ["/under-way"]   # the late request was never read
        finally:
            release.set()


async def _answers_ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _client_of(homes: dict[str, Path], code: str | None) -> ssl.SSLContext:
    """A TLS client trusting JPN's CA, holding ``code``'s client certificate (None: none)."""
    context = ssl.create_default_context(cafile=str(homes["JPN"] / "tls" / "ca.crt"))
    if code is not None:
        tls = homes[code] / "tls"
        context.load_cert_chain(str(tls / "client.crt"), str(tls / "client.key"))
    return context


def _three_pinned(tmp_path: Path) -> tuple[dict[str, Path], Any]:
    """JPN, KOR and USA homes, JPN pinning all three; the catalogue JPN serves under: JPN and
    KOR under the 2016 GSOMIA, USA pinned but under no agreement JPN knows."""
    from datetime import UTC, datetime

    from gsomia import bootstrap
    from gsomia.core.agreements import Catalogue
    from gsomia.shell.keys import create_identity

    homes = {p: tmp_path / p for p in ("JPN", "KOR", "USA")}
    for code, home in homes.items():
        create_identity(home, code, datetime.now(UTC))
    _pin_partners(homes)
    shipped = bootstrap.catalogue()
    return homes, Catalogue.of([shipped.get("jpn-kor-gsomia-2016")], shipped.schemes)


def _pin_partners(homes: dict[str, Path]) -> None:
    """JPN's partners.json pinning every party's CA, their CA files beside it."""
    import base64
    import json

    from gsomia.shell.keys import cert_fingerprint

    jpn = homes["JPN"]
    (jpn / "tls" / "partners").mkdir()
    raw = base64.urlsafe_b64encode(bytes(32)).rstrip(b"=").decode()
    parties = {}
    for i, (code, home) in enumerate(sorted(homes.items())):
        ca = (home / "tls" / "ca.crt").read_bytes()
        if code != "JPN":
            (jpn / "tls" / "partners" / f"{code}.crt").write_bytes(ca)
        parties[code] = {"url": f"https://127.0.0.1:{i + 1}", "signing_public": raw,
                         "envelope_public": raw,
                         "tls_ca_sha256": cert_fingerprint(
                             x509.load_pem_x509_certificate(ca))}
    (jpn / "partners.json").write_text(json.dumps(
        {"party": "JPN", "topology": "direct", "deliver_to": ["KOR"], "parties": parties}))


def test_only_a_current_partners_idle_connections_are_kept_for_its_next_batch(
        tmp_path: Path) -> None:
    """A courier's second connection (the batch beside the one in flight) went idle for
    seconds between such batches, and uvicorn closed it after 5: 12% of the reports that
    went beside another paid a fresh mutual TLS handshake (33 ms at the median, trace26).
    A current partner's connection is kept PARTNER_IDLE_KEPT_S, longer than the courier
    keeps it, PARTNER_CONNECTIONS_KEPT of them at once. keepalive27: any certificate the TLS
    layer verified was kept 30 s, JPN's own CA's (a local account's) and that of a party
    pinned with no agreement in force with JPN too, and any number of connections each:
    now they, the connections beyond the bound and anyone without a certificate lose an
    idle one after uvicorn's 5 s."""

    from gsomia.shell.commands.serve import tls_protocol
    from gsomia.shell.exchange import (
        COURIER_IDLE_KEPT_S,
        PARTNER_CONNECTIONS_KEPT,
        PARTNER_IDLE_KEPT_S,
    )
    from gsomia.shell.peer_identity import CurrentPartners, PinnedPeers, ca_bundle

    assert COURIER_IDLE_KEPT_S < PARTNER_IDLE_KEPT_S
    homes, catalogue = _three_pinned(tmp_path)
    jpn = homes["JPN"] / "tls"

    app = _answers_ok

    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="off", log_level="critical",
        http=tls_protocol(CurrentPartners(PinnedPeers(homes["JPN"], "JPN"), catalogue)),
        ssl_certfile=str(jpn / "server.crt"), ssl_keyfile=str(jpn / "server.key"),
        ssl_ca_certs=str(ca_bundle(homes["JPN"])), ssl_cert_reqs=ssl.CERT_OPTIONAL)
    server = stopping_server(config)

    def client(code: str | None) -> ssl.SSLContext:
        return _client_of(homes, code)

    def kept(port: int, context: ssl.SSLContext, count: int = 1) -> list[float]:
        """The keep-alive the server gives each of ``count`` connections held open at once,
        each idle after one request."""
        held = []
        try:
            for _ in range(count):
                sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port), 30),
                                           server_hostname="127.0.0.1")
                held.append(sock)
                sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            return sorted(keep_alive_of(c) for c in server.server_state.connections)
        finally:
            for sock in held:
                sock.close()
            end = time.monotonic() + 30
            while server.server_state.connections and time.monotonic() < end:
                time.sleep(0.01)

    with served(server) as (port, serving):
        partner = client("KOR")
        found = {who: kept(port, client(code)) for who, code in (
            ("partner", "KOR"), ("own CA", "JPN"), ("pinned, no agreement", "USA"),
            ("no certificate", None))}
        assert found == {"partner": [PARTNER_IDLE_KEPT_S],
                         "own CA": [config.timeout_keep_alive],
                         "pinned, no agreement": [config.timeout_keep_alive],
                         "no certificate": [config.timeout_keep_alive]}
        # The partner's connections beyond the bound are anyone's, and no crash: the server
        # answers them, and once those kept are closed the partner's next is kept again.
        beyond = kept(port, partner, PARTNER_CONNECTIONS_KEPT + 2)
        assert beyond == [config.timeout_keep_alive] * 2 \
            + [PARTNER_IDLE_KEPT_S] * PARTNER_CONNECTIONS_KEPT
        assert kept(port, partner) == [PARTNER_IDLE_KEPT_S]
        # A partners file that cannot be read now: the partner is still answered, kept no
        # longer than anyone, and the server stays up.
        (homes["JPN"] / "partners.json").write_text("{")
        assert kept(port, partner) == [config.timeout_keep_alive]
        assert serving.is_alive()
    assert config.timeout_keep_alive < COURIER_IDLE_KEPT_S


def slots_of(protocol: type) -> ConnectionSlots:
    """The connection slots of a class ``tls_protocol`` made (its class attribute)."""
    slots = getattr(protocol, "slots")  # noqa: B009
    assert isinstance(slots, ConnectionSlots), protocol
    return slots


def handshakes_of(server: uvicorn.Server) -> ConnectionSlots:
    """The handshakes under way of a server ``stopping_server`` made."""
    handshakes = getattr(server, "handshakes")  # noqa: B009
    assert isinstance(handshakes, ConnectionSlots), server
    return handshakes


def keep_alive_of(connection: object) -> float:
    """The keep-alive a connection of the HTTP protocol's was given (uvicorn types the
    server's connections as any of its protocols, WebSockets' too, which have none)."""
    kept = getattr(connection, "timeout_keep_alive")  # noqa: B009
    assert isinstance(kept, int | float), connection
    return kept


def held_gone(slots: ConnectionSlots, within: float = 10.0) -> bool:
    """Whether the server's ``slots`` come back to holding nothing within ``within`` s."""
    end = time.monotonic() + within
    while slots.held() and time.monotonic() < end:
        time.sleep(0.02)
    return slots.held() == 0


def test_strangers_hold_no_more_than_their_slots_and_a_partner_is_served_beside_them(
        tmp_path: Path) -> None:
    """conncap28: nothing bounded how many connections a client that is no current partner
    held at once (each answered every few seconds): 293 without a certificate held every
    descriptor of a server allowed 300, the next stranger's connect timed out and a partner's
    request waited 8.5 s. Now strangers hold ``strangers`` connections at most (``per_address``
    from one address), the next cut as made with nothing read; a current partner has its own,
    served while strangers hold all of theirs, and beyond those its are anyone's. Each close
    (the client's, the cut) gives the slot back."""

    from gsomia.shell.commands.serve import ConnectionSlots, tls_protocol
    from gsomia.shell.peer_identity import CurrentPartners, PinnedPeers, ca_bundle

    homes, catalogue = _three_pinned(tmp_path)
    jpn = homes["JPN"] / "tls"

    app = _answers_ok

    slots = ConnectionSlots(strangers=3, per_address=2, per_partner=2)
    server = stopping_server(uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="off", log_level="critical",
        http=tls_protocol(CurrentPartners(PinnedPeers(homes["JPN"], "JPN"), catalogue),
                          slots=slots),
        ssl_certfile=str(jpn / "server.crt"), ssl_keyfile=str(jpn / "server.key"),
        ssl_ca_certs=str(ca_bundle(homes["JPN"])), ssl_cert_reqs=ssl.CERT_OPTIONAL))

    def client(code: str | None) -> ssl.SSLContext:
        return _client_of(homes, code)

    held: list[ssl.SSLSocket] = []

    def served_on(port: int, code: str | None, source: str = "127.0.0.1") -> bool:
        """Whether a connection of ``code``'s from ``source`` is answered; if so it stays
        open (in ``held``)."""
        sock = client(code).wrap_socket(
            socket.create_connection(("127.0.0.1", port), 30, source_address=(source, 0)),
            server_hostname="127.0.0.1")
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = sock.recv(4096)
        except OSError:  # cut as made: reset
            answer = b""
        if answer.startswith(b"HTTP/1.1 200"):
            held.append(sock)
            return True
        sock.close()
        return False

    with served(server) as (port, serving):
        try:
            # No certificate, then this node's own CA's (a local account's), then a pinned
            # party with no agreement: all strangers. Two from one address, the third there cut.
            assert [served_on(port, None) for _ in range(3)] == [True, True, False]
            assert served_on(port, "JPN", "127.0.0.2")
            assert not served_on(port, "USA", "127.0.0.3"), "beyond the strangers' bound"
            assert slots.held() == 3
            # The partner is served while strangers hold every slot of theirs; beyond its own
            # two, its connection is a stranger's, and there is none left.
            assert [served_on(port, "KOR") for _ in range(3)] == [True, True, False]
            assert slots.partners == {"KOR": 2} and slots.strangers_held == 3
            # A client's close gives its slot back: the next stranger is served.
            held.pop(0).close()
            end = time.monotonic() + 10
            while slots.held() > 4 and time.monotonic() < end:
                time.sleep(0.02)
            assert served_on(port, None, "127.0.0.4")
            assert serving.is_alive()
        finally:
            for sock in held:
                sock.close()
        assert held_gone(slots), slots.held()


def test_a_tls_handshake_left_unfinished_is_cut_and_few_are_under_way_at_once(
        tmp_path: Path) -> None:
    """conncap28: uvicorn gives asyncio no ssl_handshake_timeout (60 s by default), and
    asyncio holds as many handshakes at once as are sent: 400 TCP connections that sent
    nothing, or half a ClientHello, held every descriptor of a server allowed 300 for 60 s,
    and a partner's connection timed out. Each is now cut once ``handshake_within`` has
    passed, and no more are under way than the server's ``handshakes`` slots (here 3, 2 from
    one address): one beyond its address's share is cut at once, while a handshake from
    elsewhere is made and answered; one beyond them all cuts the oldest. Every handshake
    gives its slot back, made or cut."""
    from datetime import UTC, datetime

    from gsomia.shell.commands.serve import HANDSHAKE_WITHIN_S, ConnectionSlots, tls_protocol
    from gsomia.shell.keys import create_identity

    assert HANDSHAKE_WITHIN_S <= 10
    create_identity(tmp_path, "JPN", datetime.now(UTC))
    tls = tmp_path / "tls"

    app = _answers_ok

    within = 1.5
    server = stopping_server(uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="off", log_level="critical",
        http=tls_protocol(), ssl_certfile=str(tls / "server.crt"),
        ssl_keyfile=str(tls / "server.key")), handshake_within=within,
        handshakes=ConnectionSlots(3, 2, 0))
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"  # half a ClientHello

    def closed(sock: socket.socket) -> bool:
        with contextlib.suppress(ConnectionResetError):
            return sock.recv(4096) == b""
        return True

    with served(server) as (port, serving):
        unfinished = []
        try:
            def silent(source: str, first: bytes = b"") -> socket.socket:
                sock = socket.create_connection(("127.0.0.1", port), 30,
                                                source_address=(source, 0))
                sock.sendall(first)
                sock.settimeout(5)
                unfinished.append(sock)
                return sock

            begun = time.monotonic()
            silent("127.0.0.1")
            silent("127.0.0.1", hello)
            end = time.monotonic() + 5
            while handshakes_of(server).held() < 2 and time.monotonic() < end:
                time.sleep(0.01)
            assert handshakes_of(server).held() == 2
            beyond = silent("127.0.0.1")
            assert closed(beyond) and time.monotonic() - begun < within, "not cut at once"
            unfinished.remove(beyond)
            # A handshake from another address is made meanwhile, and answered.
            trusted = ssl.create_default_context(cafile=str(tls / "ca.crt"))
            with trusted.wrap_socket(
                    socket.create_connection(("127.0.0.1", port), 30,
                                             source_address=("127.0.0.2", 0)),
                    server_hostname="127.0.0.1") as made:
                made.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                assert made.recv(4096).startswith(b"HTTP/1.1 200")
            silent("127.0.0.3", hello)
            # Every slot taken: a newcomer from another address cuts the oldest handshake
            # under way (pinned29), and holds its slot.
            newcomer = silent("127.0.0.4")
            assert closed(unfinished[0]) and time.monotonic() - begun < within, \
                "the oldest not cut at once"
            assert handshakes_of(server).held() == 3
            for sock in unfinished[1:]:
                assert closed(sock), "the server answered half a handshake"
            assert newcomer in unfinished[1:]
            assert time.monotonic() - begun < within + 3, "held past the handshake's time"
        finally:
            for sock in unfinished:
                sock.close()
        assert held_gone(handshakes_of(server)), handshakes_of(server).held()
        with httpx.Client(verify=trusted) as web:
            assert web.get(f"https://127.0.0.1:{port}/").text == "ok"
        assert serving.is_alive()


def test_a_partner_connects_while_strangers_from_many_addresses_hold_every_handshake(
        tmp_path: Path) -> None:
    """pinned29: handshakes under way were capped (256, 64 from one address) and one beyond
    was cut at once: 398 TCP connections that never began their handshake, two from each of
    127.0.0.2 to 127.0.0.200, held all 256 slots, and a partner's connect was cut until theirs
    timed out (and sent again, for ever). Now a connection beyond every slot cuts the oldest
    handshake under way: the flood's last 256 are held, the partner's handshake cuts the
    oldest of them, is made and answered. Every slot comes back once they close."""
    import selectors

    from gsomia.shell.commands.serve import HANDSHAKES_UNDER_WAY, tls_protocol
    from gsomia.shell.peer_identity import CurrentPartners, PinnedPeers, ca_bundle

    homes, catalogue = _three_pinned(tmp_path)
    jpn = homes["JPN"] / "tls"
    server = stopping_server(uvicorn.Config(
        _answers_ok, host="127.0.0.1", port=0, lifespan="off", log_level="critical",
        http=tls_protocol(CurrentPartners(PinnedPeers(homes["JPN"], "JPN"), catalogue)),
        ssl_certfile=str(jpn / "server.crt"), ssl_keyfile=str(jpn / "server.key"),
        ssl_ca_certs=str(ca_bundle(homes["JPN"])), ssl_cert_reqs=ssl.CERT_OPTIONAL),
        handshake_within=60)  # the flood's handshakes outlast the test

    def open_(sock: socket.socket) -> bool:
        try:
            return sock.recv(1) != b""
        except BlockingIOError:
            return True
        except OSError:  # reset: cut
            return False

    flood: list[socket.socket] = []
    with served(server) as (port, serving), selectors.DefaultSelector() as watch:
        try:
            for host in range(2, 201):
                for _ in range(2):
                    sock = socket.create_connection(("127.0.0.1", port), 30,
                                                    source_address=(f"127.0.0.{host}", 0))
                    sock.setblocking(False)  # open_ looks, never waits
                    flood.append(sock)
                    watch.register(sock, selectors.EVENT_READ)
            assert len(flood) > HANDSHAKES_UNDER_WAY
            # Until the server has taken every one: those beyond the slots cut.
            cut, end = 0, time.monotonic() + 60
            while cut < len(flood) - HANDSHAKES_UNDER_WAY and time.monotonic() < end:
                for key, _ in watch.select(0.2):
                    watch.unregister(key.fileobj)
                    cut += not open_(key.fileobj)  # type: ignore[arg-type]
            assert handshakes_of(server).held() == HANDSHAKES_UNDER_WAY

            def partner_asks() -> bytes:
                try:
                    with _client_of(homes, "KOR").wrap_socket(
                            socket.create_connection(("127.0.0.1", port), 30,
                                                     source_address=("127.0.0.1", 0)),
                            server_hostname="127.0.0.1") as partner:
                        partner.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                        return partner.recv(4096)
                except OSError as e:  # main: cut as accepted, its handshake reset
                    return repr(e).encode()

            assert partner_asks().startswith(b"HTTP/1.1 200")
            # Held: the flood's newest (each beyond the slots cut the oldest then held), but
            # the one the partner's handshake cut, the oldest held then.
            held = HANDSHAKES_UNDER_WAY - 1
            end = time.monotonic() + 10
            while open_(flood[-held - 1]) and time.monotonic() < end:
                time.sleep(0.02)
            assert [open_(sock) for sock in flood] == \
                [False] * (len(flood) - held) + [True] * held
            assert handshakes_of(server).held() == HANDSHAKES_UNDER_WAY - 1
        finally:
            for sock in flood:
                sock.close()
        assert held_gone(handshakes_of(server)), handshakes_of(server).held()
        assert serving.is_alive()


def test_a_connection_is_cut_when_it_sends_no_request_or_half_of_ones_head(
        tmp_path: Path) -> None:
    """keepalive27: uvicorn arms its keep-alive timer after a response only, and its first
    byte stops it: a client without a certificate that sent nothing after its handshake, half
    a request head, or a byte now and then, held its connection for ever (three such, after
    12 s with a keep-alive of 5: all three still held). Idle before the first request is cut
    as after a response, a head not whole within ``head_within`` is cut, and an idle one is
    cut rather than left waiting up to 30 s for the TLS close. A request sent at once is
    answered as before."""
    from datetime import UTC, datetime

    from gsomia.shell.commands.serve import tls_protocol
    from gsomia.shell.keys import create_identity

    create_identity(tmp_path, "JPN", datetime.now(UTC))
    tls = tmp_path / "tls"

    app = _answers_ok

    protocol = tls_protocol(head_within=1.0)
    server = stopping_server(uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="off", log_level="critical",
        http=protocol, timeout_keep_alive=1,
        ssl_certfile=str(tls / "server.crt"), ssl_keyfile=str(tls / "server.key")))
    with served(server) as (port, serving):
        trusted = ssl.create_default_context(cafile=str(tls / "ca.crt"))
        held = []
        try:
            for first in (b"", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n", b"G"):
                sock = trusted.wrap_socket(socket.create_connection(("127.0.0.1", port), 30),
                                           server_hostname="127.0.0.1")
                sock.sendall(first)
                held.append(sock)
            begun = time.monotonic()
            while server.server_state.connections and time.monotonic() - begun < 10:
                with contextlib.suppress(OSError):  # once cut, the send fails
                    held[2].sendall(b"E")  # a byte now and then: the head is never whole
                time.sleep(0.2)
            assert not server.server_state.connections, "held past the keep-alive and head"
            assert slots_of(protocol).held() == 0, "the slots of the connections cut"
            assert time.monotonic() - begun < 3
            answered = trusted.wrap_socket(socket.create_connection(("127.0.0.1", port), 30),
                                           server_hostname="127.0.0.1")
            held.append(answered)
            answered.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            reply = b""
            while not reply.endswith(b"ok"):
                reply += answered.recv(4096)
            assert reply.startswith(b"HTTP/1.1 200")
            assert serving.is_alive()
        finally:
            for sock in held:
                sock.close()


def test_a_body_sent_slowly_is_refused_and_its_connection_cut(tmp_path: Path) -> None:
    """peerself27: uvicorn has no body timeout; a client (any, where a route reads a body
    before deciding) that sent its head at once and then its body a byte now and then held
    its connection and the handler's task for ever (main: still held, nothing answered,
    after 3 s with a head time of 1 s). A body not whole within ``body_floor`` + its declared
    size at BODY_RATE is refused 408 (JSON) and the connection cut; the handler, waiting on
    it, is told the client left and keeps nothing of it. A body sent at once is answered."""
    from datetime import UTC, datetime

    from starlette.requests import ClientDisconnect, Request

    from gsomia.shell.commands.serve import BODY_RATE, body_within, tls_protocol
    from gsomia.shell.keys import create_identity

    create_identity(tmp_path, "JPN", datetime.now(UTC))
    tls = tmp_path / "tls"
    kept: list[bytes] = []
    left: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            body = await Request(scope, receive).body()
        except ClientDisconnect:
            left.append(scope["path"])
            return
        kept.append(body)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    size = 1000
    assert body_within(size, 1.0) == 1.0 + size / BODY_RATE
    protocol = tls_protocol(head_within=1.0, body_floor=1.0)
    server = stopping_server(uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="off", log_level="critical",
        http=protocol,
        ssl_certfile=str(tls / "server.crt"), ssl_keyfile=str(tls / "server.key")))
    head = (b"POST /slow HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(size).encode() + b"\r\n\r\n")
    with served(server) as (port, serving):
        trusted = ssl.create_default_context(cafile=str(tls / "ca.crt"))
        slow = trusted.wrap_socket(socket.create_connection(("127.0.0.1", port), 30),
                                   server_hostname="127.0.0.1")
        try:
            slow.sendall(head)
            begun = time.monotonic()
            reply = b""
            slow.settimeout(0.2)
            while time.monotonic() - begun < 6:
                with contextlib.suppress(OSError):  # once cut, the send fails
                    slow.sendall(b" ")  # a byte now and then: the body is never whole
                try:
                    chunk = slow.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 408"), reply
            assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["http_status"] == "408"
            assert time.monotonic() - begun < 4
            end = time.monotonic() + 5
            while (server.server_state.connections or not left) and time.monotonic() < end:
                time.sleep(0.05)
            assert not server.server_state.connections, "held past the body's time"
            assert slots_of(protocol).held() == 0, "the slot of the connection cut at 408"
            assert left == ["/slow"] and kept == []
        finally:
            slow.close()
        whole = trusted.wrap_socket(socket.create_connection(("127.0.0.1", port), 30),
                                    server_hostname="127.0.0.1")
        try:
            whole.sendall(head + b"x" * size)
            reply = b""
            while not reply.endswith(b"ok"):
                reply += whole.recv(4096)
            assert reply.startswith(b"HTTP/1.1 200") and kept == [b"x" * size]
        finally:
            whole.close()
        assert serving.is_alive()


def large_answer_server(tmp_path: Path, **config: Any) -> tuple[Any, Path, bytes]:
    """A TLS server (JPN's certificates, made in ``tmp_path``) answering every request with
    8 MiB, more than the kernel's buffers take at once; ``config``: uvicorn's."""
    from datetime import UTC, datetime

    from gsomia.shell.keys import create_identity

    create_identity(tmp_path, "JPN", datetime.now(UTC))
    tls = tmp_path / "tls"
    body = bytes(8 * 1024 * 1024)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return stopping_server(uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="off", log_level="critical",
        ssl_certfile=str(tls / "server.crt"), ssl_keyfile=str(tls / "server.key"),
        **config)), tls, body


def test_an_answer_to_a_client_reading_slowly_leaves_whole_before_its_connection_is_cut(
        tmp_path: Path) -> None:
    """review27: keepalive27 cut an idle connection, or one whose next head was not whole in
    ``head_within``, by an abort whenever asyncio's TLS transport held nothing unsent; but it
    hands its ciphertext at once to the socket's transport below, which the abort dropped
    too: an answer still leaving for a client reading slowly (a large one: here 8 MiB,
    read after 2 s, with a keep-alive of 1 s) was cut short, 4 MiB of it arrived. Now such a
    connection is closed, and the answer leaves whole; the half head is still never read."""

    from gsomia.shell.commands.serve import tls_protocol

    protocol = tls_protocol(head_within=0.5)
    server, tls, body = large_answer_server(tmp_path, http=protocol, timeout_keep_alive=1)
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    trusted = ssl.create_default_context(cafile=str(tls / "ca.crt"))
    with served(server) as (port, serving):
        held = {}
        try:
            # A request alone (then idle), and one with half of the next one's head.
            for who, sent in (("idle", request), ("half a head", request + b"GET / HTTP/1.1\r\n")):
                raw = socket.socket()
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
                raw.settimeout(30)
                raw.connect(("127.0.0.1", port))
                held[who] = trusted.wrap_socket(raw, server_hostname="127.0.0.1")
                held[who].sendall(sent)
            time.sleep(2)  # nothing read meanwhile: both timers have run out
            answered = {}
            for who, sock in held.items():
                got = b""
                with contextlib.suppress(OSError):
                    while chunk := sock.recv(1 << 20):
                        got += chunk
                head, _, answered[who] = got.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200"), (who, head[:100])
        finally:
            for sock in held.values():
                sock.close()
        assert {who: len(got) for who, got in answered.items()} == {
            "idle": len(body), "half a head": len(body)}
        assert held_gone(slots_of(protocol)), "the slots of the connections closed, not cut"
        assert serving.is_alive()


def test_a_stop_lets_an_answer_still_leaving_go_out_whole(tmp_path: Path) -> None:
    """review27: at a stop a connection whose answer was written was aborted at once, the
    answer's tail still waiting below asyncio's TLS transport dropped (a slow reader's 8 MiB:
    about 4 MiB arrived). It is closed instead, the answer leaving whole within the graceful
    timeout; an idle connection with nothing unsent is still cut at once."""

    from gsomia.shell.commands.serve import tls_protocol

    server, tls, body = large_answer_server(
        tmp_path, http=tls_protocol(), timeout_graceful_shutdown=3)
    trusted = ssl.create_default_context(cafile=str(tls / "ca.crt"))
    with served(server) as (port, serving):
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        raw.settimeout(30)
        raw.connect(("127.0.0.1", port))
        with trusted.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            first = sock.recv(4096)  # the answer has begun: written, all of it, server-side
            time.sleep(0.3)
            server.should_exit = True
            time.sleep(0.5)  # the stop has told the connection
            got = first
            with contextlib.suppress(OSError):
                while chunk := sock.recv(1 << 20):
                    got += chunk
        serving.join(10)
        assert not serving.is_alive()
    head, _, answered = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:100]
    assert len(answered) == len(body), f"{len(answered)} of {len(body)} bytes"
