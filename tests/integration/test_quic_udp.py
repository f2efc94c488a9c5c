"""Two QuicLinks on real loopback UDP sockets that also carry STUN, as the punched socket does: each datagram is
told apart by its first byte (punch.transport.demux) and goes to the STUN decoder or to the link, never both."""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from typing import cast

import pytest

from punch.identity.keyfile import Identity
from punch.stun import Message, MessageClass, Method, decode, encode
from punch.transport import Carried, QuicLink, classify
from tests.integration.quic_links import echo_streams, payload, round_trip

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

Address = tuple[str, int]


class PunchedSocket(asyncio.DatagramProtocol):
    """One peer's socket: STUN to a list of the Binding requests it got, QUIC to its link, the rest counted."""

    def __init__(self) -> None:
        self.link: QuicLink | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.binding_requests: list[bytes] = []  # their transaction IDs
        self.counts: Counter[Carried] = Counter()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # behaves as one, not always a subclass

    def datagram_received(self, data: bytes, addr: Address) -> None:
        kind = classify(data)
        self.counts[kind] += 1
        if kind is Carried.STUN:
            message = decode(data)
            assert message.method == Method.BINDING
            assert message.message_class == MessageClass.REQUEST
            self.binding_requests.append(message.transaction_id)
        elif kind is Carried.QUIC:
            assert self.link is not None
            self.link.datagram_received(data)

    def address(self) -> Address:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return str(host), int(port)


async def open_socket() -> PunchedSocket:
    _, protocol = await asyncio.get_running_loop().create_datagram_endpoint(PunchedSocket, local_addr=("127.0.0.1", 0))
    return protocol


async def test_quic_and_stun_share_one_socket_each() -> None:
    client_id, server_id = Identity.generate(), Identity.generate()
    client_socket, server_socket = await open_socket(), await open_socket()
    client_address, server_address = client_socket.address(), server_socket.address()
    try:
        assert client_socket.transport is not None
        assert server_socket.transport is not None
        client_transport, server_transport = client_socket.transport, server_socket.transport
        client = QuicLink(
            client_id, server_id.public_key, lambda d: client_transport.sendto(d, server_address), is_client=True
        )
        server = QuicLink(
            server_id, client_id.public_key, lambda d: server_transport.sendto(d, client_address), is_client=False
        )
        client_socket.link, server_socket.link = client, server
        sent_ids: dict[str, list[bytes]] = {"client": [], "server": []}

        async def checks(name: str, transport: asyncio.DatagramTransport, to: Address) -> None:
            """Binding requests to the other socket while QUIC runs, as connectivity checks and keepalives do."""
            for _ in range(100):
                request = Message.request(Method.BINDING)
                sent_ids[name].append(request.transaction_id)
                transport.sendto(encode(request), to)
                await asyncio.sleep(0.002)  # spread over the transfer, not a synchronisation

        async with server, client:
            async with asyncio.timeout(5):
                await client.wait_connected()
                await server.wait_connected()
            blobs = [payload(seed, 256 * 1024) for seed in range(8)]
            async with asyncio.timeout(60), asyncio.TaskGroup() as group:
                group.create_task(checks("client", client_transport, server_address))
                group.create_task(checks("server", server_transport, client_address))
                group.create_task(echo_streams(server, len(blobs)))
                trips = [group.create_task(round_trip(client, blob)) for blob in blobs]
            assert [t.result() for t in trips] == [hashlib.sha256(b).hexdigest() for b in blobs]

        # every Binding request that arrived went to STUN and is one that was sent; QUIC took all the rest
        assert server_socket.binding_requests
        assert client_socket.binding_requests
        assert set(server_socket.binding_requests) <= set(sent_ids["client"])
        assert set(client_socket.binding_requests) <= set(sent_ids["server"])
        for sock, link in ((client_socket, client), (server_socket, server)):
            assert sock.counts[Carried.NEITHER] == 0
            assert sock.counts[Carried.QUIC] == link.counters["received"] + link.counters["dropped-not-running"]
            assert sock.counts[Carried.STUN] == len(sock.binding_requests)
    finally:
        for sock in (client_socket, server_socket):
            if sock.transport is not None:
                sock.transport.close()
