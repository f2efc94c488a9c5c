"""The server as a plain STUN server, on loopback (RFC 8489 §12)."""

from __future__ import annotations

import asyncio
import socket
import struct
import zlib

import pytest

from punch.rendezvous.ratelimit import RateLimiter
from punch.rendezvous.server import RendezvousServer
from punch.stun import AttributeType, Message, MessageClass, Method, decode, encode, new_transaction_id
from tests.integration.conftest import Client

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def client_for(server: RendezvousServer, host: str = "127.0.0.1") -> tuple[asyncio.DatagramTransport, Client]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        Client, local_addr=(host, 0), remote_addr=server.address, family=socket.AF_INET
    )
    return transport, protocol


def binding(*attributes: tuple[int, object], message_class: MessageClass = MessageClass.REQUEST) -> Message:
    return Message(Method.BINDING, message_class, new_transaction_id(), attributes)


async def test_binding_success_carries_xor_mapped_address_software_fingerprint(
    server: RendezvousServer,
) -> None:
    transport, client = await client_for(server)
    request = binding()
    transport.sendto(encode(request))
    data = await asyncio.wait_for(client.queue.get(), 2)
    reply = decode(data)
    assert reply.message_class is MessageClass.SUCCESS
    assert reply.transaction_id == request.transaction_id
    assert reply.address(AttributeType.XOR_MAPPED_ADDRESS) == transport.get_extra_info("sockname")[:2]
    assert (reply.text(AttributeType.SOFTWARE) or "").startswith("punch/")
    # FINGERPRINT is last and is the CRC-32 of everything before it, XOR 0x5354554E (RFC 8489 §14.7).
    assert struct.unpack("!HH", data[-8:-4]) == (AttributeType.FINGERPRINT, 4)
    assert struct.unpack("!I", data[-4:])[0] == zlib.crc32(data[:-8]) ^ 0x5354554E
    transport.close()


async def test_unknown_comprehension_required_attribute_gets_420(server: RendezvousServer) -> None:
    transport, client = await client_for(server)
    transport.sendto(encode(binding((0x7FF0, b"\x00\x01\x02\x03"), (0xFFF0, b"opt!"))))
    reply = decode(await asyncio.wait_for(client.queue.get(), 2))
    assert reply.message_class is MessageClass.ERROR
    error = reply.error_code()
    assert error is not None
    assert error.code == 420
    assert reply.get(AttributeType.UNKNOWN_ATTRIBUTES) == (0x7FF0,)
    transport.close()


async def test_indications_and_garbage_get_no_answer_and_are_counted(server: RendezvousServer) -> None:
    transport, client = await client_for(server)
    transport.sendto(b"hello, not STUN at all")
    transport.sendto(encode(binding())[:-4] + b"\x00\x00\x00\x00")  # FINGERPRINT broken
    transport.sendto(encode(binding(message_class=MessageClass.INDICATION)))
    last = binding()
    transport.sendto(encode(last))
    # Loopback keeps order: the first reply to arrive answers the last request, so nothing before it answered.
    reply = decode(await asyncio.wait_for(client.queue.get(), 2))
    assert reply.transaction_id == last.transaction_id
    counters = server.endpoint.counters
    assert (counters["not-stun"], counters["malformed"], counters["indication"]) == (1, 1, 1)
    transport.close()


async def test_rendezvous_request_without_peer_id_gets_400(server: RendezvousServer) -> None:
    transport, client = await client_for(server)
    transport.sendto(encode(Message(Method.REGISTER, MessageClass.REQUEST, new_transaction_id(), ())))
    reply = decode(await asyncio.wait_for(client.queue.get(), 2))
    error = reply.error_code()
    assert error is not None
    assert (error.code, error.reason) == (400, "Register lacks PEER-ID")
    transport.close()


async def test_stats_line_counts_tables_and_drops(server: RendezvousServer) -> None:
    transport, client = await client_for(server)
    transport.sendto(b"junk junk junk junk junk")
    last = binding()
    transport.sendto(encode(last))
    await asyncio.wait_for(client.queue.get(), 2)
    line = server.stats()
    assert line.startswith("registrations=0 waiting=0 sessions=0 ")
    assert "not-stun=1" in line
    assert "request=1" in line
    transport.close()


async def test_a_source_over_its_rate_is_dropped_and_counted() -> None:
    async with RendezvousServer(rate_limit=RateLimiter(rate=0.001, burst=2)) as limited:
        await limited.start(("127.0.0.1", 0))
        transport, client = await client_for(limited)
        requests = [binding() for _ in range(3)]
        for request in requests:
            transport.sendto(encode(request))
        answered = [decode(await asyncio.wait_for(client.queue.get(), 2)).transaction_id for _ in range(2)]
        assert answered == [r.transaction_id for r in requests[:2]]
        # The third was dropped, not queued: a fourth from another source IP is answered; the counter says why.
        other, other_client = await client_for(limited, "127.0.0.2")
        last = binding()
        other.sendto(encode(last))
        assert decode(await asyncio.wait_for(other_client.queue.get(), 2)).transaction_id == last.transaction_id
        assert client.queue.empty()
        assert limited.endpoint.counters["rate-limited"] == 1
        transport.close()
        other.close()
