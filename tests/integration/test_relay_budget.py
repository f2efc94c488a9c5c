"""The relay on loopback: only between two peers that asked for each other, within each session's budget."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
import pytest_asyncio

from punch.errors import PeerError
from punch.peer.channel import Channel
from punch.peer.client import RendezvousClient
from punch.peer.keys import PeerKeys
from punch.rendezvous.relay import RelayBudget
from punch.rendezvous.relayed import ANSWER_TYPES, REQUEST_TYPES
from punch.rendezvous.server import RendezvousServer
from punch.stun import Address, AttributeType, Message, MessageClass, Method, encode, make_success, new_transaction_id
from punch.stun.protocol import StunEndpoint, format_address
from punch.stun.transaction import RetransmitPolicy
from punch.stun.wire import Introduction, request
from tests.integration.conftest import FAST, keyed, peer_socket

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

QUICK = RetransmitPolicy(rto=0.05, backoff=1.0, max_rto=0.05, max_sends=20, last_wait=1.0)


@dataclass
class Peer:
    """A registered peer on its own socket; requests the client does not take go to ``inbox``."""

    endpoint: StunEndpoint
    client: RendezvousClient
    inbox: asyncio.Queue[Message]
    keys: PeerKeys

    async def introduced(self, target: str) -> Introduction:
        await self.client.connect(target)
        return await asyncio.wait_for(asyncio.shield(self.client.introduction), 5)

    def data(self, session_id: bytes, sequence: int, payload: bytes) -> Message:
        return Message(
            Method.DATA,
            MessageClass.REQUEST,
            new_transaction_id(),
            (
                (AttributeType.PEER_ID, self.client.peer_id),
                (AttributeType.SESSION_ID, session_id),
                (AttributeType.SEQUENCE, sequence),
                (AttributeType.DATA_PAYLOAD, payload),
            ),
        )

    async def synced(self, server: Address) -> None:
        """Once the server answers a Binding sent after them, it has handled everything we sent before."""
        await self.endpoint.request(request(Method.BINDING), server, FAST)


async def peer(server: Address, peer_id: str) -> Peer:
    inbox: asyncio.Queue[Message] = asyncio.Queue()

    def handle(message: Message, source: Address, data: bytes) -> None:
        if message.message_class is MessageClass.REQUEST and not client.on_request(message, source):
            inbox.put_nowait(message)

    endpoint, keys = await peer_socket(handle)
    client = RendezvousClient(endpoint, server, peer_id, (), policy=FAST, credentials=keys.request)
    await client.register()
    return Peer(endpoint, client, inbox, keys)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest_asyncio.fixture
async def budgeted(clock: Clock) -> AsyncIterator[RendezvousServer]:
    """A server with a small rate (a 300-byte bucket) and a 4000-byte total per session, on a clock we move."""
    budget = RelayBudget(rate=1500, total=4000, burst=300)
    async with RendezvousServer(push_policy=FAST, clock=clock, rate_limit=0, relay_budget=budget) as running:
        await running.start(("127.0.0.1", 0))
        yield running


async def test_only_two_peers_that_asked_for_each_other_are_relayed(server: RendezvousServer) -> None:
    ten, fourteen, stranger = [await peer(server.address, name) for name in ("10", "14", "66")]
    await ten.client.connect("14")  # 14 has not asked for 10: no session, nothing to relay through
    answer, _ = await ten.endpoint.request(ten.data(bytes(16), 0, b"hello?"), server.address, FAST)
    error = answer.error_code()
    assert error is not None
    where = format_address(ten.endpoint.local_address)
    assert (error.code, error.reason) == (400, f"10 at {where} is not in this session")
    session = await fourteen.introduced("10")
    keyed(fourteen.keys, fourteen.client, session)
    keyed(ten.keys, ten.client, await asyncio.wait_for(asyncio.shield(ten.client.introduction), 5))
    # A third registered peer that learnt the session ID (the relay holds no key to judge it by): not in the session.
    answer, _ = await stranger.endpoint.request(stranger.data(session.session_id, 0, b"injected"), server.address, FAST)
    error = answer.error_code()
    assert error is not None
    assert (error.code, error.reason) == (
        400,
        f"66 at {format_address(stranger.endpoint.local_address)} is not in this session",
    )
    # ... and in 10's name, from its own endpoint: refused too.
    forged = Message(
        Method.DATA,
        MessageClass.REQUEST,
        new_transaction_id(),
        ((AttributeType.PEER_ID, "10"), (AttributeType.SESSION_ID, session.session_id), (AttributeType.SEQUENCE, 0)),
    )
    answer, _ = await stranger.endpoint.request(forged, server.address, FAST)
    error = answer.error_code()
    assert error is not None
    where = format_address(stranger.endpoint.local_address)
    assert (error.code, error.reason) == (400, f"10 at {where} is not in this session")
    # 10 itself is relayed: the first Data 14 sees is 10's, none of the refused ones.
    real = ten.data(session.session_id, 0, b"from 10")
    ten.endpoint.send(real, server.address)
    relayed = await asyncio.wait_for(fourteen.inbox.get(), 5)
    assert relayed.transaction_id == real.transaction_id
    assert server.endpoint.counters["relayed-request"] == 1
    for each in (ten, fourteen, stranger):
        await each.endpoint.close()


async def introduce(server: RendezvousServer) -> tuple[Peer, Peer, Introduction]:
    ten, fourteen = await peer(server.address, "10"), await peer(server.address, "14")
    await ten.client.connect("14")
    session = await fourteen.introduced("10")
    keyed(fourteen.keys, fourteen.client, session)
    keyed(ten.keys, ten.client, await asyncio.wait_for(asyncio.shield(ten.client.introduction), 5))
    return ten, fourteen, session


async def test_over_its_rate_a_session_is_dropped_counted_and_logged_once_until_the_bucket_refills(
    budgeted: RendezvousServer, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="punch.rendezvous")
    ten, fourteen, session = await introduce(budgeted)
    first, second, third = (ten.data(session.session_id, n, bytes(120)) for n in range(3))  # 232 bytes each
    for message in (first, second, third):  # the bucket holds 300 bytes: the first fits, then it is empty
        ten.endpoint.send(message, budgeted.address)
    await ten.synced(budgeted.address)
    assert budgeted.endpoint.counters["relayed-request"] == 1
    assert budgeted.endpoint.counters["relay-over-rate"] == 2
    assert caplog.text.count("is over its rate of 1500 bytes/s") == 1
    clock.now += 1.0  # 1500 bytes later: the retransmission gets through
    ten.endpoint.send(second, budgeted.address)
    relayed = [await asyncio.wait_for(fourteen.inbox.get(), 5) for _ in range(2)]
    assert [m.transaction_id for m in relayed] == [first.transaction_id, second.transaction_id]
    assert fourteen.inbox.empty()
    assert "relay-over-rate=2" in budgeted.stats()
    for each in (ten, fourteen):
        await each.endpoint.close()


async def test_over_its_total_a_session_gets_486_and_the_peer_says_the_relay_refused(
    budgeted: RendezvousServer, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="punch.rendezvous")
    ten, fourteen, session = await introduce(budgeted)
    received: list[str] = []
    channels = {}
    for me, other, side in (("10", "14", ten), ("14", "10", fourteen)):
        key = side.client.session_key(side.client.introduction.result())
        assert key is not None
        channel = Channel(
            side.endpoint,
            me,
            other,
            session.session_id,
            key,
            received.append,
            relay=budgeted.address,
            relay_key=side.keys.request,
        )
        channel.point_at(budgeted.address)
        channels[me] = channel
    fourteen_answers = asyncio.create_task(answer_from(fourteen, channels["14"]))
    sent, refused = await send_until_refused(channels["10"], clock)
    assert 5 <= sent < 40
    assert received == [f"text {n}" for n in range(sent)]
    where = format_address(budgeted.address)
    assert (
        str(refused) == f"the relay at {where} refused message {sent}: 486 Relay quota reached: 4000 bytes per session"
    )
    assert budgeted.endpoint.counters["relay-over-quota"] >= 1
    assert caplog.text.count("of its 4000 bytes") == 1
    fourteen_answers.cancel()
    for each in (ten, fourteen):
        await each.endpoint.close()


async def answer_from(side: Peer, channel: Channel) -> None:
    while True:
        message = await side.inbox.get()
        channel.on_request(message, side.client.server)


async def send_until_refused(channel: Channel, clock: Clock) -> tuple[int, PeerError]:
    """Texts one after another, a second apart (the rate stays out of it), until one is refused."""
    for n in range(40):  # 4000 bytes run out after a few (each text and its acknowledgement take about 250)
        clock.now += 1.0
        try:
            await channel.send_text(f"text {n}")
        except PeerError as error:
            return n, error
    raise AssertionError("the relay never refused")


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "general-path"])
async def test_the_relay_forwards_the_same_with_and_without_its_fast_path(server: RendezvousServer, fast: bool) -> None:
    handled: list[bool] = []

    def counted(path: Callable[[bytes, Address], bool]) -> Callable[[bytes, Address], bool]:
        def run(data: bytes, source: Address) -> bool:
            handled.append(path(data, source))
            return handled[-1]

        return run

    for kind in [*REQUEST_TYPES, *ANSWER_TYPES]:
        path = server.endpoint.fast_paths.pop(kind)
        if fast:
            server.endpoint.fast_paths[kind] = counted(path)
    ten, fourteen, session = await introduce(server)
    forged = ten.data(session.session_id, 0, b"forged")
    # Not the session's key: the relay holds none and passes it on; 14 drops it (the first Data 14 takes is real)
    ten.endpoint.send_bytes(encode(forged, integrity_sha256_key=bytes(32)), server.address)

    async def answer() -> None:
        relayed = await fourteen.inbox.get()
        identity = ((AttributeType.PEER_ID, "14"), (AttributeType.SESSION_ID, session.session_id))
        fourteen.endpoint.send(make_success(relayed, identity), server.address)  # signed with the session's key

    answering = asyncio.create_task(answer())
    real = ten.data(session.session_id, 0, b"from 10")
    response, source = await ten.endpoint.request(real, server.address, FAST)  # its answer checked with the key
    await answering
    assert (response.message_class, response.transaction_id, source) == (
        MessageClass.SUCCESS,
        real.transaction_id,
        server.address,
    )
    assert response.text(AttributeType.PEER_ID) == "14"
    assert response.raw(AttributeType.SESSION_ID) == session.session_id
    counters = server.endpoint.counters
    assert (counters["relayed-request"], counters["relayed-response"]) == (2, 1)
    assert fourteen.endpoint.counters["bad-integrity"] == 1
    assert handled == ([True, True, True] if fast else [])  # well formed, all three: read from their bytes
    for each in (ten, fourteen):
        await each.endpoint.close()
