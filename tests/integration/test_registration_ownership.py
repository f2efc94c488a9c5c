"""First come, first served: an ID belongs to its first registrant until its lease ends or it says goodbye."""

from __future__ import annotations

import asyncio

import pytest

from punch.peer.client import RendezvousClient
from punch.rendezvous.server import RendezvousServer
from punch.rendezvous.wire import request
from punch.stun import AttributeType, MessageClass, Method
from punch.stun.protocol import StunEndpoint, open_endpoint
from tests.integration.conftest import FAST

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def endpoint() -> StunEndpoint:
    return await open_endpoint(lambda m, s, d: None, ("127.0.0.1", 0))


async def test_a_second_registrant_cannot_take_a_live_id(server: RendezvousServer) -> None:
    owner_socket, thief_socket = await endpoint(), await endpoint()
    owner = RendezvousClient(owner_socket, server.address, "10", (), policy=FAST)
    await owner.register()
    steal = request(Method.REGISTER, (AttributeType.PEER_ID, "10"), (AttributeType.LEASE, 30))
    answer, _ = await thief_socket.request(steal, server.address, FAST)
    error = answer.error_code()
    assert answer.message_class is MessageClass.ERROR
    assert error is not None
    assert error.code == 401
    assert error.reason == "peer ID 10 is registered by someone else for 30 s more; choose another ID"
    forged = request(Method.REGISTER, (AttributeType.PEER_ID, "10"))
    answer, _ = await thief_socket.request(forged, server.address, FAST, integrity_key=b"\x00" * 16)
    assert answer.message_class is MessageClass.ERROR
    ask = request(Method.CONNECT, (AttributeType.PEER_ID, "10"), (AttributeType.TARGET_ID, "14"))
    answer, _ = await thief_socket.request(ask, server.address, FAST)
    error = answer.error_code()
    assert error is not None
    assert error.code == 401
    registration = server.registry.lookup("10", asyncio.get_running_loop().time())
    assert registration is not None
    assert registration.observed == owner_socket.local_address
    assert server.endpoint.counters["unauthorized"] == 3
    # The owner's own refresh, signed with its token, still works.
    assert await owner.register() == owner_socket.local_address
    for socket in (owner_socket, thief_socket):
        await socket.close()


async def test_goodbye_frees_the_id_at_once(server: RendezvousServer) -> None:
    first_socket, second_socket = await endpoint(), await endpoint()
    first = RendezvousClient(first_socket, server.address, "10", (), policy=FAST)
    await first.register()
    await first.unregister()
    assert server.registry.lookup("10", asyncio.get_running_loop().time()) is None
    second = RendezvousClient(second_socket, server.address, "10", (), policy=FAST)
    assert await second.register() == second_socket.local_address
    for socket in (first_socket, second_socket):
        await socket.close()
