"""RFC 5780 on loopback: the server's alternate address and CHANGE-REQUEST, and `punch probe` against it."""

from __future__ import annotations

import asyncio

import pytest

from punch.probe import probe
from punch.rendezvous.server import RendezvousServer
from punch.stun import CHANGE_IP, CHANGE_PORT, AttributeType, Message, MessageClass, Method, decode, encode
from punch.stun import new_transaction_id as txid
from tests.integration.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def ask(server: tuple[str, int], change: int | None) -> tuple[Message, tuple[str, int]]:
    loop = asyncio.get_running_loop()
    replies: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
            replies.put_nowait((data, (str(addr[0]), int(addr[1]))))

    transport, _ = await loop.create_datagram_endpoint(Client, local_addr=("127.0.0.1", 0))
    attributes = ((AttributeType.CHANGE_REQUEST, change),) if change is not None else ()
    transport.sendto(encode(Message(Method.BINDING, MessageClass.REQUEST, txid(), attributes)), server)
    data, source = await asyncio.wait_for(replies.get(), 2)
    transport.close()
    return decode(data), source


async def test_change_request_is_answered_from_the_asked_address_and_port() -> None:
    primary, alternate = ("127.0.0.1", free_port("127.0.0.1")), ("127.0.0.2", free_port("127.0.0.2"))
    async with RendezvousServer() as server:
        await server.start(primary, alternate)
        for change, origin in [
            (None, primary),
            (CHANGE_PORT, (primary[0], alternate[1])),
            (CHANGE_IP, (alternate[0], primary[1])),
            (CHANGE_IP | CHANGE_PORT, alternate),
        ]:
            reply, source = await ask(primary, change)
            assert source == origin
            assert reply.address(AttributeType.RESPONSE_ORIGIN) == origin
            assert reply.address(AttributeType.OTHER_ADDRESS) == alternate


async def test_change_request_without_an_alternate_address_gets_420(server: RendezvousServer) -> None:
    reply, _ = await ask(server.address, CHANGE_PORT)
    error = reply.error_code()
    assert error is not None
    assert error.code == 420
    assert reply.get(AttributeType.UNKNOWN_ATTRIBUTES) == (AttributeType.CHANGE_REQUEST,)


async def test_probe_on_loopback_finds_no_nat() -> None:
    primary, alternate = ("127.0.0.1", free_port("127.0.0.1")), ("127.0.0.2", free_port("127.0.0.2"))
    async with RendezvousServer() as server:
        await server.start(primary, alternate)
        found = await probe(primary, ("127.0.0.1", 0))
    assert found.mapped == found.local
    assert (found.mapping, found.filtering, found.hairpinning, found.nat) == (
        "endpoint-independent",
        "endpoint-independent",
        True,
        "no NAT",
    )
    assert found.other_address == alternate
