"""Interop with a STUN stack nobody here wrote: aiortc's aioice (client side and decoder)."""

from __future__ import annotations

import asyncio

import pytest
from aioice import stun as aioice_stun

from punch.rendezvous.server import RendezvousServer
from punch.stun import (
    AttributeType,
    Message,
    MessageClass,
    Method,
    decode,
    encode,
    new_transaction_id,
    verify_integrity,
)

pytestmark = pytest.mark.integration


class AioiceClient(asyncio.DatagramProtocol):
    """aioice's own Protocol/Transaction machinery is ICE-bound; a bare socket plus its codec is enough here."""

    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.replies.put_nowait(data)


@pytest.mark.asyncio
async def test_aioice_binding_request_gets_an_answer_aioice_accepts(server: RendezvousServer) -> None:
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(
        AioiceClient, local_addr=("127.0.0.1", 0), remote_addr=server.address
    )
    request = aioice_stun.Message(aioice_stun.Method.BINDING, aioice_stun.Class.REQUEST)
    request.attributes["SOFTWARE"] = "aioice"
    request.add_fingerprint()
    transport.sendto(bytes(request))
    reply = aioice_stun.parse_message(await asyncio.wait_for(client.replies.get(), 2))
    assert reply.message_class == aioice_stun.Class.RESPONSE
    assert reply.transaction_id == request.transaction_id
    assert reply.attributes["XOR-MAPPED-ADDRESS"] == transport.get_extra_info("sockname")[:2]
    assert reply.attributes["SOFTWARE"].startswith("punch/")
    assert "FINGERPRINT" in reply.attributes  # aioice checks it while parsing
    transport.close()


def test_aioice_decodes_punch_messages_and_checks_their_integrity() -> None:
    message = Message(
        Method.BINDING,
        MessageClass.REQUEST,
        new_transaction_id(),
        ((AttributeType.USERNAME, "alice:bob"), (AttributeType.XOR_MAPPED_ADDRESS, ("2001:db8::1", 3478))),
    )
    data = encode(message, integrity_key=b"secret")
    theirs = aioice_stun.parse_message(data)
    assert theirs.transaction_id == message.transaction_id
    assert theirs.attributes["USERNAME"] == "alice:bob"
    assert theirs.attributes["XOR-MAPPED-ADDRESS"] == ("2001:db8::1", 3478)
    assert theirs.check_message_integrity(b"secret")
    assert not theirs.check_message_integrity(b"wrong")


def test_punch_decodes_aioice_messages_and_checks_their_integrity() -> None:
    theirs = aioice_stun.Message(aioice_stun.Method.BINDING, aioice_stun.Class.RESPONSE)
    theirs.attributes["XOR-MAPPED-ADDRESS"] = ("198.51.100.10", 40000)
    theirs.attributes["PRIORITY"] = 12345
    theirs.add_message_integrity(b"secret")
    theirs.add_fingerprint()
    data = bytes(theirs)
    ours = decode(data)
    assert (ours.method, ours.message_class) == (Method.BINDING, MessageClass.SUCCESS)
    assert ours.address(AttributeType.XOR_MAPPED_ADDRESS) == ("198.51.100.10", 40000)
    assert ours.integer(AttributeType.PRIORITY) == 12345
    assert verify_integrity(data, b"secret")
    assert not verify_integrity(data, b"wrong")
