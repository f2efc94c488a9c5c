"""Messages of a session carry MESSAGE-INTEGRITY-SHA256 under its key; the endpoint drops the rest."""

from __future__ import annotations

import asyncio

import pytest

from punch.stun import Address, AttributeType, Message, MessageClass, Method, decode, encode, make_success
from punch.stun.protocol import open_endpoint
from punch.stun.transaction import RetransmitPolicy, TransactionTimeout
from punch.stun.wire import request

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

SESSION = b"\x05" * 16
KEY = b"k" * 32
QUICK = RetransmitPolicy(rto=0.05, max_sends=3, last_wait=2)


class Raw(asyncio.DatagramProtocol):
    """A host that knows the endpoints and the session ID, but not the key."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.inbox.put_nowait((data, (str(addr[0]), int(addr[1]))))


def our_key(session: bytes, method: int) -> bytes | None:
    return KEY if session == SESSION else None


def check() -> Message:
    return request(Method.BINDING, (AttributeType.PEER_ID, "14"), (AttributeType.SESSION_ID, SESSION))


async def test_requests_without_the_right_integrity_are_dropped_and_counted() -> None:
    handled: asyncio.Queue[Message] = asyncio.Queue()
    endpoint = await open_endpoint(lambda m, s, d: handled.put_nowait(m), ("127.0.0.1", 0), keys=our_key)
    transport, _raw = await asyncio.get_running_loop().create_datagram_endpoint(Raw, local_addr=("127.0.0.1", 0))
    unsigned, forged, genuine = check(), check(), check()
    transport.sendto(encode(unsigned), endpoint.local_address)
    transport.sendto(encode(forged, integrity_sha256_key=b"guess" * 8), endpoint.local_address)
    transport.sendto(encode(genuine, integrity_sha256_key=KEY), endpoint.local_address)
    other_session = request(Method.BINDING, (AttributeType.SESSION_ID, b"\x06" * 16))
    transport.sendto(encode(other_session), endpoint.local_address)  # no key for it: not ours to judge
    # Loopback keeps order: the two handled messages come after the two dropped ones were judged.
    first, second = [await asyncio.wait_for(handled.get(), 2) for _ in range(2)]
    assert [first.transaction_id, second.transaction_id] == [genuine.transaction_id, other_session.transaction_id]
    assert endpoint.counters["bad-integrity"] == 2
    transport.close()
    await endpoint.close()


async def test_an_unsigned_answer_to_a_session_request_is_not_accepted() -> None:
    endpoint = await open_endpoint(lambda m, s, d: None, ("127.0.0.1", 0), keys=our_key)
    transport, raw = await asyncio.get_running_loop().create_datagram_endpoint(Raw, local_addr=("127.0.0.1", 0))
    attacker: Address = transport.get_extra_info("sockname")[:2]
    asking = asyncio.create_task(endpoint.request(check(), attacker, QUICK))
    data, source = await asyncio.wait_for(raw.inbox.get(), 2)
    seen = decode(data)
    assert seen.has(AttributeType.MESSAGE_INTEGRITY_SHA256)  # what we send is signed
    transport.sendto(encode(make_success(seen, ((AttributeType.SESSION_ID, SESSION),))), source)
    with pytest.raises(TransactionTimeout):
        await asyncio.wait_for(asking, 5)
    assert endpoint.counters["bad-integrity"] == 1
    assert seen.message_class is MessageClass.REQUEST
    transport.close()
    await endpoint.close()
