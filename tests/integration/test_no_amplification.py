"""No amplification: an unauthenticated request never gets an answer larger than itself by more than a Binding reply
adds to a header-only Binding request (measured from the server's own reply), whatever the request."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from punch.peer.client import RendezvousClient
from punch.rendezvous.server import RendezvousServer
from punch.stun import MAGIC_COOKIE, Address, AttributeType, Method, decode
from punch.stun.credentials import group_key
from punch.stun.protocol import open_endpoint
from tests.integration.conftest import FAST
from tests.integration.conftest import Client as Collector

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


def raw(method: int, *attributes: tuple[int, bytes], txid: bytes = b"amplifyme!!!", request: bool = True) -> bytes:
    """A message built by hand, with no FINGERPRINT: as small as a request of its kind can be."""
    body = b"".join(struct.pack("!HH", t, len(v)) + v + b"\x00" * (-len(v) % 4) for t, v in attributes)
    kind = (method & 0xF80) << 2 | (method & 0x070) << 1 | (method & 0x00F) | (0 if request else 0x100)
    return struct.pack("!HHI", kind, len(body), MAGIC_COOKIE) + txid + body


PEER, TARGET, SESSION = AttributeType.PEER_ID, AttributeType.TARGET_ID, AttributeType.SESSION_ID
SMALL_REQUESTS = {
    "header-only Binding": raw(Method.BINDING),
    "one unknown attribute": raw(Method.BINDING, (0x7FF0, b"")),
    "five unknown attributes": raw(Method.BINDING, *((0x7FF0 + n, b"") for n in range(5))),
    "CHANGE-REQUEST": raw(Method.BINDING, (AttributeType.CHANGE_REQUEST, bytes(4))),
    "unknown method": raw(0x0FF),
    "Register without PEER-ID": raw(Method.REGISTER),
    "smallest Register": raw(Method.REGISTER, (PEER, b"a")),
    "Register for a taken ID": raw(Method.REGISTER, (PEER, b"10")),
    "Register goodbye for nobody": raw(Method.REGISTER, (PEER, b"b"), (AttributeType.LEASE, bytes(4))),
    "Connect for an unregistered peer": raw(Method.CONNECT, (PEER, b"c"), (TARGET, b"d")),
    "Connect for itself": raw(Method.CONNECT, (PEER, b"10"), (TARGET, b"10")),
    "Connect in a taken ID's name": raw(Method.CONNECT, (PEER, b"10"), (TARGET, b"e")),
    "Ready without a session": raw(Method.READY, (PEER, b"f")),
    "Ready for an unknown session": raw(Method.READY, (PEER, b"f"), (SESSION, bytes(16))),
    "Relay request for an unknown session": raw(Method.RELAY, (PEER, b"g"), (SESSION, bytes(16))),
    "Move for an unknown session": raw(Method.MOVE, (PEER, b"g"), (SESSION, bytes(16))),
    "Notice request": raw(Method.NOTICE, (SESSION, bytes(16))),
    "a retired method (Data)": raw(0x0C6, (PEER, b"g"), (SESSION, bytes(16))),
    "a long unknown reason": raw(Method.CONNECT, (PEER, "é".encode() * 60), (TARGET, b"h")),
}


class Attacker:
    """A socket that sends requests and collects every answer each one got."""

    def __init__(self, transport: asyncio.DatagramTransport, collector: Collector) -> None:
        self.transport, self.collector = transport, collector

    async def answers(self, request: bytes, to: Address) -> list[bytes]:
        """Everything answered to ``request``: answers stop at the answer to a marker sent after it (loopback keeps
        the order, and the server's Python path handles datagrams one after another). The marker is a Register
        without PEER-ID, answered 400 by that path: a Binding could be answered earlier, by the C fast path."""
        marker = raw(Method.REGISTER, txid=b"marker-for-a")
        self.transport.sendto(request, to)
        self.transport.sendto(marker, to)
        got = []
        while (data := await asyncio.wait_for(self.collector.queue.get(), 5))[8:20] != marker[8:20]:
            got.append(data)
        return got

    async def allowance(self, to: Address) -> int:
        """What the server's Binding reply adds to a header-only Binding request."""
        request = raw(Method.BINDING)
        (reply,) = await self.answers(request, to)
        assert decode(reply).address(AttributeType.XOR_MAPPED_ADDRESS) == self.transport.get_extra_info("sockname")
        return len(reply) - len(request)


@asynccontextmanager
async def attacker() -> AsyncIterator[Attacker]:
    loop = asyncio.get_running_loop()
    transport, collector = await loop.create_datagram_endpoint(
        Collector, local_addr=("127.0.0.1", 0), family=socket.AF_INET
    )
    try:
        yield Attacker(transport, collector)
    finally:
        transport.close()


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def running(kind: str) -> AsyncIterator[Address]:
    """A server of ``kind`` with peer 10 registered; and the address to attack."""
    group = group_key(b"correct horse battery staple") if kind == "closed group" else None
    server = RendezvousServer(rate_limit=0, group=group, max_registrations=1 if kind == "full table" else 100)
    async with server:
        if kind == "alternate address":
            await server.start(("127.0.0.1", free_port("127.0.0.1")), ("127.0.0.2", free_port("127.0.0.2")))
        else:
            await server.start(("127.0.0.1", 0))
        owner = await open_endpoint(lambda m, s, d: None, ("127.0.0.1", 0))
        await RendezvousClient(owner, server.address, "10", (), policy=FAST, group=group).register()
        await owner.close()
        # With an alternate address, attack it (the primary port): rendezvous requests are refused there.
        yield ("127.0.0.2", server.address[1]) if kind == "alternate address" else server.address


@pytest.mark.parametrize("kind", ["open", "closed group", "full table", "alternate address"])
async def test_small_unauthenticated_requests_get_no_more_than_a_binding_reply_adds(kind: str) -> None:
    async with running(kind) as target, attacker() as attack:
        allowance = await attack.allowance(target)
        assert allowance >= 36  # XOR-MAPPED-ADDRESS, SOFTWARE, FINGERPRINT at least
        answered = {}
        for name, request in SMALL_REQUESTS.items():
            answers = await attack.answers(request, target)
            assert len(answers) <= 1, name
            for answer in answers:
                assert len(answer) <= len(request) + allowance, (name, decode(answer))
                answered[name] = decode(answer)
        # Most of them were answered (errors, cut short where needed), so the sizes above were really tested.
        assert len(answered) >= 14, sorted(set(SMALL_REQUESTS) - set(answered))
        error = answered["one unknown attribute"].error_code()
        assert error is not None
        assert error.code == 420
        assert answered["one unknown attribute"].get(AttributeType.UNKNOWN_ATTRIBUTES) == (0x7FF0,)
        if kind == "open":
            register = answered["Register for a taken ID"].error_code()
            assert register is not None
            assert register.code == 401
            # The whole reason would not fit: it was cut short, on a character boundary.
            assert "ID 10 is taken for 30 s; choose another".startswith(register.reason)
            assert len("ID 10 is") <= len(register.reason) < len("ID 10 is taken for 30 s; choose another")


attribute_types = st.sampled_from([*AttributeType, 0x7FF0, 0xFFF0, 0x0026])
requests = st.builds(
    lambda method, attributes: raw(method, *attributes),
    st.one_of(st.sampled_from(list(Method)), st.integers(0, 0xFFF)),
    st.lists(st.tuples(attribute_types, st.binary(max_size=24)), max_size=4),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(requests, min_size=1, max_size=8))
async def test_any_small_request_gets_no_more_than_a_binding_reply_adds(batch: list[bytes]) -> None:
    async with running("open") as target, attacker() as attack:
        allowance = await attack.allowance(target)
        for request in batch:
            for answer in await attack.answers(request, target):
                assert len(answer) <= len(request) + allowance
