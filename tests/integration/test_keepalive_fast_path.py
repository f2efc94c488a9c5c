"""Keepalives on loopback: an unchanged, signed refresh takes the fast path (counted as ``keepalive``) and gets
the answer the general path gives; anything else still goes through the general path."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from punch.errors import PeerError
from punch.peer.client import RendezvousClient
from punch.rendezvous.server import RendezvousServer
from punch.stun import AttributeType, Message, MessageClass, Method, encode
from punch.stun.protocol import StunEndpoint, open_endpoint
from punch.stun.wire import request
from tests.integration.conftest import FAST

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

HOSTS = (("10.0.10.2", 40000),)
MOVED = ("10.0.10.3", 40000)


@pytest_asyncio.fixture(
    params=[(True, True), (True, False), (False, True)], ids=["fast (C where built)", "fast in pure Python", "general"]
)
async def either(request: pytest.FixtureRequest) -> AsyncIterator[tuple[RendezvousServer, bool]]:
    fast, accelerate = request.param
    async with RendezvousServer(push_policy=FAST, fast_refresh=fast, accelerate=accelerate) as running:
        await running.start(("127.0.0.1", 0))
        yield running, fast


async def endpoint() -> StunEndpoint:
    return await open_endpoint(lambda m, s, d: None, ("127.0.0.1", 0))


def shape(answer: Message) -> list[tuple[int, object]]:
    """The answer without what differs between servers (the token) and the FINGERPRINT."""
    return [
        (k, v) for k, v in answer.attributes if k not in (AttributeType.REGISTRATION_TOKEN, AttributeType.FINGERPRINT)
    ]


async def test_a_keepalive_gets_the_same_answer_on_either_path(either: tuple[RendezvousServer, bool]) -> None:
    server, fast = either
    socket = await endpoint()
    await RendezvousClient(socket, server.address, "10", HOSTS, policy=FAST).register()
    token = server.registry.registrations["10"].token
    refresh = request(
        Method.REGISTER, (AttributeType.PEER_ID, "10"), (AttributeType.CANDIDATE, HOSTS[0]), (AttributeType.LEASE, 30)
    )
    answer, _ = await socket.request(refresh, server.address, FAST, integrity_key=token)
    assert answer.message_class is MessageClass.SUCCESS
    assert shape(answer) == [
        (AttributeType.XOR_MAPPED_ADDRESS, socket.local_address),
        (AttributeType.LEASE, 30),
        (AttributeType.SOFTWARE, answer.text(AttributeType.SOFTWARE)),
    ]
    assert answer.raw(AttributeType.REGISTRATION_TOKEN) == token
    assert server.endpoint.counters["keepalive"] == (1 if fast else 0)
    assert server.endpoint.counters["request"] == 2
    await socket.close()


async def test_a_keepalive_renews_the_lease(server: RendezvousServer) -> None:
    socket = await endpoint()
    client = RendezvousClient(socket, server.address, "10", HOSTS, policy=FAST)
    await client.register()
    before = server.registry.registrations["10"]
    await client.register()
    after = server.registry.registrations["10"]
    assert server.endpoint.counters["keepalive"] == 1
    assert after.expires > before.expires
    assert (after.endpoints, after.credentials) == (before.endpoints, before.credentials)
    await socket.close()


async def test_a_refresh_that_changes_something_takes_the_general_path(server: RendezvousServer) -> None:
    socket = await endpoint()
    await RendezvousClient(socket, server.address, "10", HOSTS, policy=FAST).register()
    moved = RendezvousClient(socket, server.address, "10", (MOVED,), policy=FAST)
    with pytest.raises(PeerError, match="401"):  # a new client holds no token yet
        await moved.register()
    refresh = request(
        Method.REGISTER, (AttributeType.PEER_ID, "10"), (AttributeType.CANDIDATE, MOVED), (AttributeType.LEASE, 30)
    )
    token = server.registry.registrations["10"].token
    answer, _ = await socket.request(refresh, server.address, FAST, integrity_key=token)
    assert answer.message_class is MessageClass.SUCCESS
    assert server.endpoint.counters["keepalive"] == 0
    assert server.registry.registrations["10"].host_candidates == (MOVED,)
    await socket.close()


async def test_a_keepalive_signed_with_another_key_gets_the_general_401(server: RendezvousServer) -> None:
    owner, thief = await endpoint(), await endpoint()
    await RendezvousClient(owner, server.address, "10", HOSTS, policy=FAST).register()
    refresh = request(
        Method.REGISTER, (AttributeType.PEER_ID, "10"), (AttributeType.CANDIDATE, HOSTS[0]), (AttributeType.LEASE, 30)
    )
    answer, _ = await owner.request(refresh, server.address, FAST, integrity_key=bytes(16))
    error = answer.error_code()
    assert error is not None
    assert (error.code, error.reason) == (401, "ID 10 is taken for 30 s; choose another")
    assert server.endpoint.counters["keepalive"] == 0
    for socket in (owner, thief):
        await socket.close()


async def test_keepalives_over_the_rate_limit_are_dropped_and_counted() -> None:
    async with RendezvousServer(push_policy=FAST, rate_limit=1.0, clock=lambda: 100.0) as small:  # bursts of 2
        await small.start(("127.0.0.1", 0))
        socket = await endpoint()
        await RendezvousClient(socket, small.address, "10", HOSTS, policy=FAST).register()  # the first token
        token = small.registry.registrations["10"].token
        refresh = request(
            Method.REGISTER,
            (AttributeType.PEER_ID, "10"),
            (AttributeType.CANDIDATE, HOSTS[0]),
            (AttributeType.LEASE, 9),
        )
        for _ in range(2):  # delivered as asyncio would, so that the clock and the bucket stand still
            small.endpoint.datagram_received(encode(refresh, integrity_sha256_key=token), socket.local_address)
        counters = small.endpoint.counters
        assert (counters["keepalive"], counters["rate-limited"]) == (2, 1)
        assert small.registry.registrations["10"].expires == 109  # the first keepalive renewed it
        await socket.close()


async def test_a_first_register_gets_the_same_answer_on_either_path(
    either: tuple[RendezvousServer, bool], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="punch.rendezvous.server")
    server, fast = either
    socket = await endpoint()
    first = request(
        Method.REGISTER,
        (AttributeType.PEER_ID, "10"),
        (AttributeType.CANDIDATE, HOSTS[0]),
        (AttributeType.LEASE, 45),
        (AttributeType.NAT_MAPPING, 1),
    )
    answer, _ = await socket.request(first, server.address, FAST)
    assert answer.message_class is MessageClass.SUCCESS
    assert shape(answer) == [
        (AttributeType.XOR_MAPPED_ADDRESS, socket.local_address),
        (AttributeType.LEASE, 45),
        (AttributeType.SOFTWARE, answer.text(AttributeType.SOFTWARE)),
    ]
    assert answer.raw(AttributeType.REGISTRATION_TOKEN) == server.registry.registrations["10"].token
    assert server.endpoint.counters["request"] == 1
    assert server.endpoint.counters["arrival"] == (1 if fast else 0)  # read from its bytes
    line = f"registered 10 at 127.0.0.1:{socket.local_address[1]} (host candidates: 10.0.10.2:40000; lease 45 s; "
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("registered")] == [
        line + "NAT mapping endpoint-independent)"
    ]
    await socket.close()
