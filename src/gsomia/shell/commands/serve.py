"""``gsomia node serve``: the node's HTTP API over HTTPS, served by uvicorn.

People authenticate with bearer or basic credentials; partner nodes with TLS client
certificates, which the server asks for but does not require at the handshake
(``CERT_OPTIONAL``), so that people's tools need none. A certificate that is presented must
chain to a CA this node trusts (its own, and the partners' CAs pinned in ``partners.json``);
the peer API then takes the party from *which* pinned CA issued it
(:mod:`gsomia.shell.peer_identity`), never from what the certificate says, and refuses
requests without one (401) or with one that counts as no party (403, audited).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

from gsomia.bootstrap import app_for_node
from gsomia.core import limits
from gsomia.core.errors import MalformedInput
from gsomia.core.taxii import error_body
from gsomia.core.types import Party

if TYPE_CHECKING:
    import uvicorn

    from gsomia.shell.signatures import SignatureWorker

__all__ = ["ConnectionSlots", "refuse_exposed_keys", "register", "serve", "stopping_server",
           "tls_protocol"]


# Set on uvicorn's server state once the server has begun to stop (stopping_server).
STOPPING = "gsomia_stopping"
# On uvicorn's server state: how many connections of each partner are kept idle for
# PARTNER_IDLE_KEPT_S (tls_protocol), PARTNER_CONNECTIONS_KEPT at most.
KEPT = "gsomia_partners_kept"
MAX_REQUEST_HEAD = 64 * 1024
"""Bytes of a request line and headers the server reads before it answers 400 and closes:
h11 stopped at 16 KiB, llhttp has no bound of its own and would keep what it is sent."""
HEAD_WITHIN_S = 10.0
"""Seconds from a request's first byte to the end of its head, then the connection is cut:
uvicorn's keep-alive timer runs only while a connection is idle and stops at the first byte,
so a client sending half a head, or a byte now and then, held its connection for ever."""

BODY_WITHIN_S = 10.0
BODY_RATE = 64 * 1024
"""A request's body must be whole within BODY_WITHIN_S + its declared size / BODY_RATE
seconds of its head's end, then it is refused (408) and the connection cut: uvicorn has no
body timeout, and a body sent a byte now and then held a connection and a task for ever.
64 KiB/s is a slow link's pace (a 16 MiB peer batch gets 266 s), the 10 s floor the head's
own; a body of no declared size (chunked) gets the time of the largest any route takes."""
BODY_UNDECLARED = max(limits.PEER_BODY, limits.TAXII_BODY)

HANDSHAKE_WITHIN_S = 10.0
"""Seconds a TLS handshake has to end from the connection's accept, then it is cut: uvicorn
gives asyncio no ``ssl_handshake_timeout``, whose default is 60 s, and a client that opened a
TCP connection and sent nothing, or half a ClientHello, held a descriptor all that time
(conncap28: 400 such at once, costing their sender nothing, held every descriptor of a server
allowed 300 for 60 s, and a partner's connection timed out meanwhile)."""
STRANGER_CONNECTIONS = 256
"""Connections a server process holds at once of clients that are no current partner (people's
tools, strangers, a certificate of this node's own CA, a pinned party with no agreement in
force, a partner beyond PARTNER_CONNECTIONS); the next one is cut as it is made. Each must
send a request every few seconds to stay, but nothing bounded how many: 293 such held a
server's every descriptor and a partner's request waited 8.5 s (conncap28)."""
ADDRESS_CONNECTIONS = 64
"""Of those, connections from one client address (an IPv6 one's /64): one host does not take
them all."""
HANDSHAKES_UNDER_WAY = 256
"""TLS handshakes a server process has under way at once, HANDSHAKES_FROM_ONE_ADDRESS of them
from one address; a connection accepted beyond its address's share is cut at once, and one
beyond them all cuts the oldest under way (``_Handshaking``). Who holds a handshake is
not known until it ends: without this bound, connections that never end theirs held as many
descriptors as were sent in HANDSHAKE_WITHIN_S, the server's own (its database, its deliveries
to partners) included."""
HANDSHAKES_FROM_ONE_ADDRESS = 64
PARTNER_CONNECTIONS = 32
"""Connections of one current partner a server process holds at once, beside the strangers'
(never refused because strangers hold theirs); a partner's keys turned against the node hold
no more. A node opens a few towards a partner (PARTNER_CONNECTIONS_KEPT); beyond this bound
a partner's are anyone's."""


class ConnectionSlots:
    """The connections a server process holds, by who holds them: each current partner up to
    ``per_partner`` of its own; everyone else, and a partner beyond those, up to ``strangers``
    in all and ``per_address`` from one address. :meth:`take` as a connection is made (None:
    cut it), :meth:`give_back` as it is lost, once."""

    def __init__(self, strangers: int = STRANGER_CONNECTIONS,
                 per_address: int = ADDRESS_CONNECTIONS,
                 per_partner: int = PARTNER_CONNECTIONS) -> None:
        self.strangers, self.per_address, self.per_partner = strangers, per_address, per_partner
        self.partners: dict[Party, int] = {}
        self.addresses: dict[str, int] = {}
        self.strangers_held = 0

    def take(self, partner: Party | None, address: str) -> tuple[str, Any] | None:
        """The slot a connection of ``partner`` (None: no current partner) from ``address``
        holds, or None if there is none for it."""
        if partner is not None and self.partners.get(partner, 0) < self.per_partner:
            self.partners[partner] = self.partners.get(partner, 0) + 1
            return ("partner", partner)
        if self.strangers_held >= self.strangers \
                or self.addresses.get(address, 0) >= self.per_address:
            return None
        self.strangers_held += 1
        self.addresses[address] = self.addresses.get(address, 0) + 1
        return ("address", address)

    def give_back(self, slot: tuple[str, Any]) -> None:
        kind, key = slot
        held = self.partners if kind == "partner" else self.addresses
        held[key] -= 1
        if not held[key]:
            del held[key]  # a stranger's address is not kept once it holds nothing
        if kind == "address":
            self.strangers_held -= 1

    def held(self) -> int:
        return sum(self.partners.values()) + self.strangers_held


def _share_of(peer: Any) -> str:
    """Whose share of the slots a connection from ``peer`` (its transport's ``peername``)
    counts in: its IPv4 address, or its IPv6 address's /64 (an IPv4 one mapped: that IPv4).
    One host is routinely given a whole /64: counted by address, one host alone took every
    stranger's slot and every handshake's (mergereview28)."""
    if not peer:
        return ""
    host = str(peer[0])
    if ":" not in host:
        return host
    try:
        address = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return host
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, 64), strict=False))


def body_within(declared: int | None, floor: float = BODY_WITHIN_S) -> float:
    """Seconds a body of ``declared`` bytes (None: undeclared) has to arrive whole."""
    size = BODY_UNDECLARED if declared is None else min(declared, BODY_UNDECLARED)
    return floor + size / BODY_RATE


def _timed_out(floor: float) -> bytes:
    """The whole 408 answer, written by the server itself: no handler has the body to answer."""
    body = orjson.dumps(error_body(
        "Request timeout", 408, "The request body did not arrive whole in time",
        {"floor_s": floor, "bytes_per_s": BODY_RATE}))
    return (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n"
            + body)


def tls_protocol(partner_of: Callable[[dict[str, Any]], Party | None] | None = None, *,
                 head_within: float = HEAD_WITHIN_S, body_floor: float = BODY_WITHIN_S,
                 slots: ConnectionSlots | None = None) -> type:
    """uvicorn's httptools protocol (llhttp, in C, rather than h11's parser in Python),
    putting the client certificate the TLS layer verified into the ASGI TLS extension
    (``scope["extensions"]["tls"]``) of every request on the connection; which party it is,
    if any, is the app's to decide (``PinnedPeers``). The requests the server has under way
    go with it (``api.IN_FLIGHT``). A request's head is bounded in size
    (:data:`MAX_REQUEST_HEAD`) and in time (``head_within``), its body in time
    (:func:`body_within`, ``body_floor`` its floor), a connection idle before its first
    request as after a response (uvicorn's keep-alive).
    ``partner_of``: the current partner, if any, whose certificate that TLS extension holds
    (:class:`gsomia.shell.peer_identity.CurrentPartners`); only such a connection is kept
    idle PARTNER_IDLE_KEPT_S, PARTNER_CONNECTIONS_KEPT of each partner at once (None: none
    is). ``slots``: how many connections are held at once, and whose (a
    :class:`ConnectionSlots` of the default bounds if None; the class's ``slots``); one beyond
    them is cut as it is made, before anything is read on it."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from gsomia.shell.api import IN_FLIGHT
    from gsomia.shell.exchange import PARTNER_CONNECTIONS_KEPT, PARTNER_IDLE_KEPT_S

    held = slots if slots is not None else ConnectionSlots()

    class TlsHttpProtocol(HttpToolsProtocol):
        slots = held
        # The slot this connection holds in ``slots``, from its making to its loss.
        _slot: tuple[str, Any] | None = None
        # Bytes received since the current request began, while its head is still read.
        _head_bytes = 0
        _in_head = True
        # The partner whose connection this is, while it counts in the server's KEPT.
        _kept_for: Party | None = None
        # Cuts the connection if the head of the request begun is not whole in head_within,
        # or its body in body_within (one request is read at a time: one timer).
        _head_timer: asyncio.TimerHandle | None = None

        def data_received(self, data: bytes) -> None:
            if self._in_head:
                self._head_bytes += len(data)
            super().data_received(data)
            # Checked after the parser took the data: a chunk may hold a whole head and the
            # start of a large body, which is no reason to refuse.
            if self._in_head and self._head_bytes > MAX_REQUEST_HEAD \
                    and not self.transport.is_closing():
                self._in_head = False
                self.send_400_response("Request line and headers too large.")

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_head, self._head_bytes = True, 0
            self._stop_head_timer()
            self._head_timer = self.loop.call_later(head_within, self._head_too_slow)

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._stop_head_timer()
            super().on_headers_complete()
            if self.transport.is_closing():
                return
            declared: int | None = 0  # neither header: no body (RFC 9112 6.3)
            for name, value in self.headers:
                if name == b"transfer-encoding":
                    declared = None
                    break
                if name == b"content-length":
                    text = value.strip()
                    declared = int(text) if text.isdigit() and len(text) < 20 else None
            if declared == 0:
                return  # no body to wait for
            self._head_timer = self.loop.call_later(body_within(declared, body_floor),
                                                    self._body_too_slow)

        def on_message_complete(self) -> None:
            self._stop_head_timer()
            super().on_message_complete()

        def _body_too_slow(self) -> None:
            self._head_timer = None
            if self.transport.is_closing():
                return
            if self.pipeline:
                # Queued behind a request still running, its reading paused by the server:
                # its time runs once it is taken up, as for a head.
                self._head_timer = self.loop.call_later(body_within(None, body_floor),
                                                        self._body_too_slow)
                return
            cycle = self.cycle
            if cycle is not None and not cycle.response_started:
                # Nothing answered yet: the client learns why. The handler, still waiting on
                # the body, is told the client left (and so stores nothing of it).
                cycle.response_started = cycle.response_complete = True
                self.transport.write(_timed_out(body_floor))
            if cycle is not None:
                cycle.disconnected = True
                cycle.message_event.set()
            self._cut()  # the 408 leaves first

        def _stop_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_too_slow(self) -> None:
            self._head_timer = None
            if not self._in_head or self.transport.is_closing():
                return
            if self.cycle is not None and not self.cycle.response_complete:
                # Pipelined behind a request still running: its head is not read until that
                # answer is out, so it is given head_within again, as often as needed.
                self._head_timer = self.loop.call_later(head_within, self._head_too_slow)
                return
            # Nothing of this head was read, so nothing of it is answered; the answer
            # before it may still be leaving (a client reading slowly), and goes out whole.
            self._cut()

        def timeout_keep_alive_handler(self) -> None:
            if not self.transport.is_closing():
                self._cut()

        def _cut(self) -> None:
            # Cut once what was answered has left, not closed, as at the stop: a TLS close
            # waits up to asyncio's 30 s for a close_notify that a client need never send,
            # and the connection was held all that time. With an answer not yet all handed
            # to the kernel (a client reading slowly), closed: an abort drops its tail.
            if self._unsent() == 0:
                self.transport.abort()
            else:
                self.transport.close()

        def _unsent(self) -> int:
            # asyncio's TLS transport counts only what it has not yet encrypted: the
            # ciphertext waits in the socket's transport below it, which an abort drops
            # too (an 8 MiB answer to a client reading slowly: 4 MiB of it arrived).
            below = getattr(getattr(self.transport, "_ssl_protocol", None), "_transport", None)
            unsent = int(self.transport.get_write_buffer_size())
            return unsent + (int(below.get_write_buffer_size()) if below is not None else 0)

        def shutdown(self) -> None:
            # An idle connection (a partner's courier keeps one alive) is cut at the stop,
            # not closed: a TLS close waits for the client's close_notify, which an idle
            # client never sends, and every stop waited out the 3 s graceful timeout (of
            # the 10 s before a kill). A request still running ends first, as before; an
            # answer written but not yet all sent leaves whole, within that timeout (_cut).
            if self.cycle is None or self.cycle.response_complete:
                self._cut()
            else:
                super().shutdown()

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if getattr(self.server_state, STOPPING, False):
                # Accepted before the stop, its TLS handshake ended after the server had
                # told its connections to stop: served, it stayed kept alive and the stop
                # waited out the whole graceful timeout ("Cancel 0 running task(s)").
                # Nothing was read on it, so nothing was answered: the partner sends again.
                transport.abort()
                return
            ssl_object = transport.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            tls: dict[str, Any] = {
                "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
                "client_cert_der": der or None,
            }
            partner = self._partner(tls) if der else None
            self._slot = held.take(partner, _share_of(transport.get_extra_info("peername")))
            if self._slot is None:
                # Strangers hold every slot (or this address its share): cut before anything
                # is read, so nothing is answered; a partner's own slots are never theirs.
                transport.abort()
                return
            if partner is not None:
                self._keep_for_partner(partner)
            # uvicorn arms its keep-alive timer after a response only: a client that sent
            # nothing after its handshake held its connection for ever. Idle before the
            # first request is idle: the same timer, which the first byte stops.
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler)
            inner = self.app

            async def app(scope: Any, receive: Any, send: Any) -> None:
                extensions = scope.setdefault("extensions", {})
                extensions["tls"] = tls
                extensions[IN_FLIGHT] = self.tasks
                await inner(scope, receive, send)

            self.app = app

        def _partner(self, tls: dict[str, Any]) -> Party | None:
            """The current partner whose certificate ``tls`` holds, if any. Verified by the
            TLS layer is not enough: ca_bundle holds this node's own CA, whose certificates
            are this node's own (a local account's, whoever holds one), and a pinned party's
            with no agreement in force is no partner now."""
            if partner_of is None:
                return None
            try:
                return partner_of(tls)
            except Exception:  # only a privilege is decided here: none is given
                # A partners file or CA that cannot be read now: a stranger's slot and
                # keep-alive; the peer API's own decision answers the requests (audited).
                return None

        def _keep_for_partner(self, partner: Party) -> None:
            """A current partner's courier keeps its idle connection for its next batch:
            kept PARTNER_IDLE_KEPT_S, not uvicorn's 5 s, up to PARTNER_CONNECTIONS_KEPT of
            that partner at once; the others, a partner's connections beyond the bound and
            anyone without a certificate lose an idle connection after uvicorn's 5 s."""
            kept: dict[Party, int] = getattr(self.server_state, KEPT, None) or {}
            if kept.get(partner, 0) >= PARTNER_CONNECTIONS_KEPT:
                return
            kept[partner] = kept.get(partner, 0) + 1
            setattr(self.server_state, KEPT, kept)  # uvicorn's object: no field of ours
            self._kept_for = partner
            self.timeout_keep_alive = PARTNER_IDLE_KEPT_S

        def connection_lost(self, exc: Exception | None) -> None:
            if self.transport is None:
                return  # never made (its handshake failed): nothing of it to end
            super().connection_lost(exc)
            self._stop_head_timer()
            if self._kept_for is not None:
                getattr(self.server_state, KEPT)[self._kept_for] -= 1
                self._kept_for = None
            if self._slot is not None:
                held.give_back(self._slot)
                self._slot = None

    return TlsHttpProtocol


def refuse_exposed_keys(node_dir: str) -> None:
    """MalformedInput (exit 2) if a private key of the node may be read by the group or
    others: a node does not start with a key that anyone else on the host may have copied.
    The same check as ``gsomia doctor``."""
    from gsomia.shell.keys import exposed_private_keys
    from gsomia.shell.node import NodeConfig

    folder = Path(node_dir).resolve()
    exposed = exposed_private_keys(folder, NodeConfig.load(folder).keys)
    if exposed:
        path, mode = exposed[0]
        more = f" (and {len(exposed) - 1} more key file(s))" if len(exposed) > 1 else ""
        raise MalformedInput(
            f"the private key file has mode {oct(mode)}: the group or others may read it; "
            f"the node does not start{more}", where=str(path),
            expected=f"mode 0600: run `chmod 600 {path}` (and check who may have copied it)")


def serve(node_dir: str, host: str, port: int, *, log_level: str = "warning",
          audit_reads: str = "sync", check_partners: bool = True,
          sockets: list[socket.socket] | None = None,
          signatures: SignatureWorker | None = None,
          on_stop: Callable[[], None] | None = None) -> None:
    """Serve until SIGTERM; on ``sockets`` (a listening socket shared by the workers of
    ``gsomia node run --workers``) instead of binding ``host:port``; ``signatures``: the
    worker ``node run`` forked before it held a key, used by the peer inbox here too;
    ``on_stop``: called as the server begins to stop (:func:`stopping_server`)."""
    import uvicorn

    from gsomia import bootstrap
    from gsomia.shell.partner_check import check_at_start
    from gsomia.shell.peer_identity import CurrentPartners, PinnedPeers, ca_bundle

    refuse_exposed_keys(node_dir)

    # The server, the sender and the notice threads share the GIL. A thread back from a
    # disk sync or a socket waits for it up to the switch interval while another computes
    # (5 ms by default, paid at each of a delivery's many SQLite calls when the node is
    # busy): 0.5 ms bounds that wait at light load for a few more switches under load.
    sys.setswitchinterval(0.0005)
    node = bootstrap.open_node(node_dir)
    if signatures is not None:
        node.signatures.close()
        node.signatures = signatures
    node.store.copy_heads_behind()
    node.store.checkpoint_behind()
    if check_partners:
        try:
            check_at_start(node)
        except BaseException:
            node.close()
            raise
    folder = Path(node.folder)
    # One idea of who calls: the peer API's, and the server's of whose idle connection it
    # keeps longer (decided as the connection is made, kept for the API's requests on it).
    identity = PinnedPeers(folder, node.party)
    app = app_for_node(node, audit_reads=audit_reads, sign_apart=True, peer_identity=identity)
    from gsomia.shell.stix_check import _enums, _validators

    _validators()  # read the schemas before the first request (a type's compile: ~2.5 ms)
    _enums()  # and load the tables of the MUST rules
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=False,
        http=tls_protocol(CurrentPartners(identity, node.catalogue)), lifespan="off",
        timeout_graceful_shutdown=3,
        ssl_certfile=str(folder / "tls" / "server.crt"),
        ssl_keyfile=str(folder / "tls" / "server.key"),
        ssl_ca_certs=str(ca_bundle(folder)), ssl_cert_reqs=ssl.CERT_OPTIONAL)
    server = stopping_server(config, on_stop)
    click.echo(f"gsomia {node.party} node: https://{host}:{port}/taxii2/", err=True)
    if threading.current_thread() is threading.main_thread():
        # uvicorn stops gracefully on SIGTERM, then raises the signal again: with the
        # default handler that kills the process before the block below writes what is
        # still queued (access events, counts of failed authentications). Exit instead.
        signal.signal(signal.SIGTERM, _exit_on_signal)
    # What start-up made (the app, uvicorn, the schemas) lives as long as the server.
    bootstrap.settle_heap()
    try:
        server.run(sockets=sockets)
    finally:
        app.state.defences.close()  # the last counts of failed authentications
        app.state.peer_inbox.close()  # the last counts of partners' refused notices
        app.state.taxii_store.close()  # commit queued access events before leaving
        node.close()


class _Handshaking(asyncio.Protocol):
    """A connection accepted: it takes one of the server's handshake slots, then its TLS
    handshake runs as asyncio runs one (the same ``SSLProtocol``, ``app``'s made at its end),
    within ``within`` seconds; the slot is given back as it ends, made, failed or cut.
    asyncio's own TLS accept gives no such moment: a handshake that fails tells the
    application nothing. ``under_way``: the server's handshakes under way, oldest first, each
    with what cuts it; its stop cuts them all (``stopping``: true once it has begun; one
    accepted then is cut at once).

    With every slot taken, a connection from an address under its share cuts the oldest
    handshake under way and takes its slot, rather than being cut itself: who holds a
    handshake is unknown until it ends, and a partner's ends in milliseconds, so the oldest
    is the one least likely to be anyone's. Refused instead, connections that never end
    theirs from a few hundred addresses kept every slot, and a partner's every connect was
    cut, for as long as they were sent again each HANDSHAKE_WITHIN_S (pinned29). A newcomer
    from an address holding its share is still cut: one host does not cut others'."""

    def __init__(self, app: Callable[[], asyncio.BaseProtocol], context: ssl.SSLContext,
                 slots: ConnectionSlots, within: float,
                 under_way: dict[asyncio.BaseTransport, Callable[[], None]] | None = None,
                 stopping: Callable[[], bool] = lambda: False) -> None:
        self.app, self.context, self.slots, self.within = app, context, slots, within
        self.under_way = under_way if under_way is not None else {}
        self.stopping = stopping

    def _slot_for(self, share: str) -> tuple[str, Any] | None:
        """A handshake slot for a connection from ``share``, the oldest handshake under way
        cut for it if every slot is taken; None: cut this one."""
        if self.stopping():
            return None
        slot = self.slots.take(None, share)
        if slot is None and self.under_way \
                and self.slots.addresses.get(share, 0) < self.slots.per_address:
            self.under_way[next(iter(self.under_way))]()  # its slot back, at once
            slot = self.slots.take(None, share)
        return slot

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        from asyncio.sslproto import SSLProtocol

        slot = self._slot_for(_share_of(transport.get_extra_info("peername")))
        if slot is None:
            transport.abort()  # type: ignore[attr-defined]
            return
        loop = asyncio.get_running_loop()
        ended = loop.create_future()

        def give_back() -> None:
            # Once: by its end, or earlier by its cut for a newcomer (its end comes later,
            # as asyncio tells the protocol its transport is lost).
            if self.under_way.pop(transport, None) is not None:
                self.slots.give_back(slot)

        def cut() -> None:
            give_back()
            transport.abort()  # type: ignore[attr-defined]

        self.under_way[transport] = cut

        def end(handshake: asyncio.Future[None]) -> None:
            give_back()
            if not handshake.cancelled():
                # Why it failed is the client's affair: taken, so that asyncio does not log
                # each one a client leaves unfinished ("exception was never retrieved").
                handshake.exception()

        ended.add_done_callback(end)
        try:
            tls = SSLProtocol(loop, self.app(), self.context, ended, server_side=True,
                              ssl_handshake_timeout=self.within)  # type: ignore[arg-type]
            transport.set_protocol(tls)
            tls.connection_made(transport)  # reading starts after this call: all tls's
        except BaseException:
            # No handshake will end it (asyncio's classes not as this expects, a protocol
            # that could not be made): its slot back and the connection cut, not held with
            # nothing reading it; cancelled, as SSLProtocol leaves a cancelled waiter be.
            ended.cancel()
            cut()
            raise


def stopping_server(config: uvicorn.Config, on_stop: Callable[[], None] | None = None, *,
                    handshake_within: float = HANDSHAKE_WITHIN_S,
                    handshakes: ConnectionSlots | None = None) -> uvicorn.Server:
    """A uvicorn server that calls ``on_stop`` as its shutdown begins, before it waits up to
    its graceful timeout for the requests still running. ``node run`` stops its loops
    there: its sender, stopped only once the server had returned and after the centre and
    the head exchange had ended (up to 3 + 5 + 5 s), could still be posting when the node
    was killed 10 s after SIGTERM (``stop_node``, ``federation down``), and the answer to
    its last batch was lost (the partner held what the node still had as pending).
    Served over TLS, a handshake not ended within ``handshake_within`` seconds is cut, and
    no more are under way at once than ``handshakes`` holds (the server's ``handshakes``; by
    default HANDSHAKES_UNDER_WAY, HANDSHAKES_FROM_ONE_ADDRESS from one address)."""
    import uvicorn

    class Stopping(uvicorn.Server):
        def __init__(self, config: uvicorn.Config) -> None:
            super().__init__(config)
            self.handshakes = handshakes if handshakes is not None else ConnectionSlots(
                HANDSHAKES_UNDER_WAY, HANDSHAKES_FROM_ONE_ADDRESS, 0)
            # The connections whose TLS handshake is under way (_Handshaking), oldest first,
            # each with what cuts it: cut at the stop.
            self.under_way: dict[asyncio.BaseTransport, Callable[[], None]] = {}

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            if self.config.ssl is None:
                await super().startup(sockets=sockets)
                return
            # uvicorn passes asyncio's create_server its TLS context, and asyncio then holds a
            # handshake up to 60 s, as many at once as are sent: this start's calls of it are
            # given a plain server whose connections run their handshake through _Handshaking.
            loop = asyncio.get_running_loop()
            own = loop.create_server

            def create_server(factory: Callable[[], asyncio.BaseProtocol], *args: Any,
                              **kwargs: Any) -> Any:
                context = kwargs.pop("ssl")  # uvicorn's: config.ssl
                return own(functools.partial(
                    _Handshaking, factory, context, self.handshakes, handshake_within,
                    self.under_way, lambda: getattr(self.server_state, STOPPING, False)),
                    *args, ssl=None, **kwargs)

            loop.create_server = create_server  # type: ignore[method-assign,assignment]
            try:
                await super().startup(sockets=sockets)
            finally:
                del loop.create_server  # the loop's own method again

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # Before uvicorn tells the connections it has to stop: one whose handshake
            # ends later is cut by tls_protocol as it is made.
            setattr(self.server_state, STOPPING, True)   # uvicorn's object: no field of ours
            # A handshake under way is cut now, not left to its HANDSHAKE_WITHIN_S: nothing of
            # it was read, so nothing is answered (the partner sends again). Left, it held its
            # slot past the stop (the loop closed under it), and from Python 3.12 the stop's
            # wait_closed waits for every connection the listening server made.
            for cut in list(self.under_way.values()):
                cut()
            try:
                if on_stop is not None:
                    on_stop()
            finally:
                await super().shutdown(sockets=sockets)

    return Stopping(config)


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def register(cli: click.Group) -> None:
    node_group = cli.commands.get("node")
    if not isinstance(node_group, click.Group):
        @cli.group("node")
        def node_group_fn() -> None:
            """Create, inspect and serve a node."""

        node_group = node_group_fn

    @node_group.command("serve")
    @click.option("--dir", "node_dir", required=True, type=click.Path(file_okay=False),
                  help="The node folder (from node init).")
    @click.option("--host", default="127.0.0.1", show_default=True,
                  help="Address to listen on.")
    @click.option("--port", default=8443, show_default=True, type=int, help="TCP port.")
    @click.option("--log-level", default="warning", show_default=True,
                  type=click.Choice(["critical", "error", "warning", "info", "debug"]))
    @click.option("--audit-reads", default="sync", show_default=True,
                  type=click.Choice(["sync", "batched"]),
                  help="sync: each read's audit event is durable before it is served; "
                       "batched: events are committed together within 50 ms (faster reads; "
                       "a crash in that window loses the record of reads already served).")
    def serve_cmd(node_dir: str, host: str, port: int, log_level: str,
                  audit_reads: str) -> None:
        """Serve the node's TAXII 2.1 and peer API over HTTPS (uvicorn)."""
        from gsomia.shell.stop_with import stop_with_named_process

        stop_with_named_process()   # $GSOMIA_STOP_WITH, as for node run
        if not 0 < port < 65536:
            raise MalformedInput(f"{port} is not a TCP port", where="--port",
                                 expected="1 to 65535")
        serve(node_dir, host, port, log_level=log_level, audit_reads=audit_reads)
