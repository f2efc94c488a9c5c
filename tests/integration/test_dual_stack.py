"""A server on [::] serves both families from one socket (punch.stun.families): an IPv4 client learns its IPv4
address (XOR-MAPPED-ADDRESS family 0x01, RFC 8489 §14.2), an IPv6 client its IPv6 one (family 0x02); each answer
leaves from the address the client sent to (punch.stun.arrival); peers register over either, punch over the family
they reach it by, and given both of its addresses, offer both families and take IPv6 (punch.peer.dualstack)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any

import pytest
import pytest_asyncio

import punch
from punch.api import Connection
from punch.identity.keyfile import Identity
from punch.peer.puncher import PunchTimings
from punch.rendezvous.server import RendezvousServer
from punch.stun import AttributeType, Message, MessageClass, Method, decode, encode, new_transaction_id
from punch.stun.protocol import format_address, open_endpoint
from tests.integration.conftest import FAST, Client, rendezvous_client

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

FAMILIES = [("127.0.0.1", socket.AF_INET, 0x01), ("::1", socket.AF_INET6, 0x02)]


@pytest_asyncio.fixture
async def dual_server() -> AsyncIterator[RendezvousServer]:
    async with RendezvousServer(push_policy=FAST) as running:
        await running.start(("::", 0))
        yield running


async def ask(port: int, host: str, family: int, message: Message, to: str = "") -> tuple[bytes, tuple[str, int]]:
    """Send ``message`` from a fresh socket on ``host`` to the server's ``port`` at ``to`` (default: ``host``), a
    socket connected there (it takes an answer only from there): (the answer, our address)."""
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(
        Client, local_addr=(host, 0), remote_addr=(to or host, port), family=family
    )
    try:
        transport.sendto(encode(message))
        return await asyncio.wait_for(client.queue.get(), 2), transport.get_extra_info("sockname")[:2]
    finally:
        transport.close()


@pytest.mark.parametrize(("host", "family", "wire_family"), FAMILIES, ids=["IPv4", "IPv6"])
async def test_binding_on_a_dual_stack_server_tells_each_family_its_own_address(
    dual_server: RendezvousServer, host: str, family: int, wire_family: int
) -> None:
    assert dual_server.address[0] == "::"
    request = Message(Method.BINDING, MessageClass.REQUEST, new_transaction_id())
    data, ours = await ask(dual_server.address[1], host, family, request)
    reply = decode(data)
    assert reply.message_class is MessageClass.SUCCESS
    assert reply.address(AttributeType.XOR_MAPPED_ADDRESS) == ours
    # The attribute's value starts after the 20-byte header and its own 4-byte type and length: 0, family, ...
    assert (data[20:22], data[25]) == (AttributeType.XOR_MAPPED_ADDRESS.to_bytes(2, "big"), wire_family)


async def test_each_answer_leaves_from_the_address_the_client_sent_to(dual_server: RendezvousServer) -> None:
    """127.0.0.2 is ours too (all of 127/8 is); the kernel would answer 127.0.0.1 from 127.0.0.1, which a client
    connected to 127.0.0.2 does not take (as a firewall would not)."""
    request = Message(Method.BINDING, MessageClass.REQUEST, new_transaction_id())
    data, _ = await ask(dual_server.address[1], "127.0.0.1", socket.AF_INET, request, to="127.0.0.2")
    assert decode(data).transaction_id == request.transaction_id


async def test_peers_register_over_either_family_and_are_known_by_it(dual_server: RendezvousServer) -> None:
    port = dual_server.address[1]
    four = await rendezvous_client(("127.0.0.1", port), "four")
    six = await rendezvous_client(("::1", port), "six", host="::1")
    try:
        for client in (four, six):
            ours = client._endpoint.local_address
            assert await client.register() == ours
            found = dual_server.registry.registrations.get(client.peer_id)
            assert found is not None
            assert found.observed == ours
    finally:
        for client in (four, six):
            await client._endpoint.close()


def pair_through(server: tuple[str, int], options: dict[str, Any]) -> list[AbstractAsyncContextManager[Connection]]:
    """alice and bob, each with a key of its own that the other expects (no key remembered from elsewhere)."""
    alice, bob = Identity.generate(), Identity.generate()
    return [
        punch.connect(server, "bob", me="alice", identity=alice, pin=bob.fingerprint, **options),
        punch.connect(server, "alice", me="bob", identity=bob, pin=alice.fingerprint, **options),
    ]


@pytest.mark.parametrize(("host", "family"), [("::1", "ipv6"), ("127.0.0.1", "ipv4")], ids=["IPv6", "IPv4"])
async def test_two_peers_of_a_dual_stack_server_punch_over_the_family_they_reach_it_by(
    dual_server: RendezvousServer, host: str, family: str
) -> None:
    # No bind: a peer binds the wildcard of its server's family ([::] for an IPv6 one, which takes IPv4 too).
    server = (host, dual_server.address[1])
    options: dict[str, Any] = {"rendezvous": FAST, "punch": PunchTimings(timeout=3.0), "timeout": 5.0}
    async with AsyncExitStack() as stack:
        alice, bob = await asyncio.gather(
            *(stack.enter_async_context(connection) for connection in pair_through(server, options)),
        )
        for ours, theirs in ((alice, bob), (bob, alice)):
            result = ours.result
            assert result.family == family
            assert result.path in ("direct", "direct-lan")
            port = str(theirs.result.local).rsplit(":", 1)[1]
            assert result.remote == format_address((host, int(port)))
            assert result.mapped == format_address((host, int(str(result.local).rsplit(":", 1)[1])))


@pytest.mark.parametrize(
    ("server_host", "other_host"), [("::1", "127.0.0.1"), ("127.0.0.1", "::1")], ids=["IPv6 first", "IPv4 first"]
)
async def test_peers_with_the_servers_both_addresses_offer_both_families_and_take_ipv6(
    dual_server: RendezvousServer, server_host: str, other_host: str
) -> None:
    port = dual_server.address[1]
    # One server, two addresses: each peer registers by one, and learns its endpoint in the other family by a
    # Binding request to the other (punch.peer.dualstack). No bind: [::], which takes both families.
    options: dict[str, Any] = {
        "servers": ((other_host, port),),
        "rendezvous": FAST,
        "punch": PunchTimings(timeout=3.0),
        "timeout": 5.0,
    }
    server = (server_host, port)
    async with AsyncExitStack() as stack:
        alice, bob = await asyncio.gather(
            *(stack.enter_async_context(connection) for connection in pair_through(server, options)),
        )
        for me, connection in (("alice", alice), ("bob", bob)):
            registration = dual_server.registry.registrations[me]
            ours = int(str(connection.result.local).rsplit(":", 1)[1])
            families = {":" in host for host, _ in registration.candidates()}
            assert families == {True, False}, registration.candidates()  # an IPv6 and an IPv4 candidate
            assert (other_host, ours) in registration.candidates()  # what the other address saw
            assert connection.result.family == "ipv6"  # preferred where both work


@pytest.mark.parametrize(
    ("host", "family"), [("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)], ids=["IPv4", "IPv6"]
)
async def test_a_dual_stack_socket_hears_refusals_of_either_family(host: str, family: int) -> None:
    """ICMP Port Unreachable, or ICMPv6's: the destination and the refusing host as the endpoint speaks of them."""
    refused: asyncio.Queue[tuple[tuple[str, int], str]] = asyncio.Queue()
    endpoint = await open_endpoint(lambda message, source, data: None, ("::", 0))
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        closed = (host, int(probe.getsockname()[1]))
    try:
        assert endpoint.watch_refusals(lambda destination, offender: refused.put_nowait((destination, offender)))
        endpoint.send(Message(Method.BINDING, MessageClass.REQUEST, new_transaction_id()), closed)
        assert await asyncio.wait_for(refused.get(), 2) == (closed, host)
    finally:
        endpoint.unwatch_refusals()
        await endpoint.close()
