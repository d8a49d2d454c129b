"""The connections a server process holds at once, and whose (conncap28): strangers share a
bounded number, one address a bounded share of it, and each current partner has its own, which
no stranger can take."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.shell.commands.serve import ConnectionSlots

PARTNERS = ["KOR", "USA"]
ADDRESSES = ["127.0.0.1", "127.0.0.2", "::1"]

opens = st.tuples(st.just("open"), st.sampled_from([None, *PARTNERS]),
                  st.sampled_from(ADDRESSES))
closes = st.tuples(st.just("close"), st.integers(0, 10_000), st.just(""))


@settings(max_examples=200, deadline=None)
@given(bounds=st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(0, 4)),
       steps=st.lists(st.one_of(opens, closes), max_size=80))
def test_the_connections_held_never_exceed_their_bounds_and_all_come_back(
        bounds: tuple[int, int, int], steps: list[tuple[str, Any, str]]) -> None:
    """Over any sequence of opens (a partner's, or no partner's, from some address) and closes
    of the connections held: strangers (and partners beyond their own) never hold more than
    their bound, one address no more than its share, a partner no more than its own; a
    partner is given one of its own whenever it holds fewer, however many strangers hold
    theirs, and a stranger is refused exactly when the bound or its address's share is
    reached. Every close gives its slot back: once all are closed, nothing is held."""
    strangers, per_address, per_partner = bounds
    slots = ConnectionSlots(strangers, per_address, per_partner)
    held: list[tuple[Any, str, tuple[str, Any]]] = []
    for kind, who, address in steps:
        if kind == "close":
            if held:
                _, _, slot = held.pop(who % len(held))
                slots.give_back(slot)
        else:
            own = sum(1 for p, _, s in held if p == who and s[0] == "partner")
            shared = sum(1 for _, _, s in held if s[0] == "address")
            here = sum(1 for _, a, s in held if a == address and s[0] == "address")
            taken = slots.take(who, address)
            if who is not None and own < per_partner:
                assert taken == ("partner", who)
            elif shared >= strangers or here >= per_address:
                assert taken is None
            else:
                assert taken == ("address", address)
            if taken is not None:
                held.append((who, address, taken))
        assert slots.strangers_held <= strangers
        assert all(n <= per_address for n in slots.addresses.values())
        assert all(n <= per_partner for n in slots.partners.values())
        assert slots.held() == len(held)
    for _, _, slot in held:
        slots.give_back(slot)
    assert slots.held() == 0 and slots.partners == {} and slots.addresses == {}


def test_a_handshake_that_cannot_begin_gives_its_slot_back_and_is_cut() -> None:
    """mergereview28: a connection whose TLS protocol could not be made (the app's protocol
    factory raising, asyncio's SSLProtocol not as expected) kept its handshake slot for good
    and its descriptor open with nothing reading it, no handshake time running: enough of
    them and the server took no connection at all. Now the slot comes back and the
    connection is cut; the error still reaches the loop's handler."""
    import asyncio
    import ssl

    from gsomia.shell.commands.serve import _Handshaking

    said: list[Any] = []

    def broken() -> asyncio.BaseProtocol:
        raise RuntimeError("no protocol")

    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: said.append(context.get("exception")))
        slots = ConnectionSlots(4, 4, 0)
        server = await loop.create_server(
            lambda: _Handshaking(broken, ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), slots, 5.0),
            "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            got = await asyncio.wait_for(reader.read(64), 2)  # cut, not held
        except ConnectionResetError:
            got = b""
        writer.close()
        server.close()
        assert slots.held() == 0
        return got

    assert asyncio.run(main()) == b""
    assert [type(e) for e in said] == [RuntimeError]


def test_one_ipv6_host_holds_one_share_however_many_of_its_addresses_it_uses() -> None:
    """mergereview28: the share of one address was that of one IPv6 address, and a host is
    routinely given a whole /64 (2**64 addresses): alone it took every stranger's slot and
    every handshake's. An IPv6 address now counts in its /64's share, an IPv4 one mapped
    into IPv6 in that IPv4's."""
    from gsomia.shell.commands.serve import _share_of

    slots = ConnectionSlots(strangers=10, per_address=2, per_partner=0)
    one_host = [(f"2001:db8:1:2::{k:x}", 443, 0, 0) for k in range(1, 6)]
    taken = [slots.take(None, _share_of(peer)) for peer in one_host]
    assert [slot is not None for slot in taken] == [True, True, False, False, False]
    assert slots.take(None, _share_of(("2001:db8:1:3::1", 443, 0, 0))) is not None
    assert _share_of(("::ffff:192.0.2.7", 443, 0, 0)) == _share_of(("192.0.2.7", 443)) \
        == "192.0.2.7"
    assert _share_of(("fe80::1%eth0", 443, 0, 2)) == _share_of(("fe80::2", 443, 0, 2))
    assert _share_of(None) == ""


@settings(max_examples=40, deadline=None)
@given(bounds=st.tuples(st.integers(1, 4), st.integers(1, 3)),
       steps=st.lists(st.one_of(
           st.tuples(st.just("connect"), st.sampled_from(["127.0.0.1", "127.0.0.2",
                                                          "127.0.0.3"])),
           st.tuples(st.just("close"), st.integers(0, 1_000).map(str))), max_size=16))
def test_a_newcomer_beyond_every_handshake_slot_cuts_the_oldest_not_itself(
        bounds: tuple[int, int], steps: list[tuple[str, str]]) -> None:
    """pinned29: over any sequence of connections that never begin their handshake (from some
    address) and of their clients' closes, on a real listening socket: the handshakes under
    way never exceed the bound nor one address its share; a newcomer from an address holding
    its share is cut; any other is held, and if every slot was taken the oldest handshake
    under way is cut for it, so the held ones are always the newest taken. Every slot comes
    back once the clients close."""
    import asyncio
    import ssl

    from gsomia.shell.commands.serve import _Handshaking, _share_of

    total, share = bounds

    async def main() -> None:
        loop = asyncio.get_running_loop()
        slots = ConnectionSlots(total, share, 0)
        under_way: dict[Any, Any] = {}
        made = [0]
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)

        class Counted(_Handshaking):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                made[0] += 1

        server = await loop.create_server(
            lambda: Counted(asyncio.Protocol, context, slots, 60.0, under_way),
            "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        clients: dict[tuple[str, int], asyncio.StreamWriter] = {}
        expected: list[tuple[str, int]] = []  # the handshakes under way, oldest first

        def now_held() -> list[tuple[str, int]]:
            return [tuple(t.get_extra_info("peername")[:2]) for t in under_way]

        async def until(done: Any) -> None:
            end = loop.time() + 10
            while not done() and loop.time() < end:
                await asyncio.sleep(0.002)
            assert done()

        try:
            for kind, arg in steps:
                if kind == "connect":
                    before = made[0]
                    _, writer = await asyncio.open_connection("127.0.0.1", port,
                                                              local_addr=(arg, 0))
                    me = writer.get_extra_info("sockname")[:2]
                    clients[me] = writer
                    await until(lambda b=before: made[0] > b)
                    here = sum(1 for a, _ in expected if _share_of((a, 0)) == arg)
                    if here < share:
                        if len(expected) >= total:
                            expected.pop(0)
                        expected.append(me)
                elif expected:
                    me = expected.pop(int(arg) % len(expected))
                    clients[me].close()
                    await until(lambda me=me: me not in now_held())
                assert now_held() == expected
                assert slots.strangers_held == len(expected) <= total
                assert all(n <= share for n in slots.addresses.values())
        finally:
            for writer in clients.values():
                writer.close()
            await until(lambda: slots.held() == 0)
            server.close()
        assert under_way == {} and slots.addresses == {}

    asyncio.run(main())
