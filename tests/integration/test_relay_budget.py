"""The relay forwards the QUIC packets of a session (Relay indications) only between the two peers it introduced,
within the session's budget, and tells a peer when the session is over its total (punch.rendezvous.relaying)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from punch.api import Connection, run_peer
from punch.errors import PeerError
from punch.peer.predict import PredictConfig
from punch.rendezvous.relay import RelayBudget
from punch.rendezvous.relayed import RELAY_TYPE
from punch.rendezvous.server import RendezvousServer
from punch.stun import Address, AttributeType
from punch.stun.wire import Introduction, Mapping
from tests.integration.conftest import FAST, keyed, peer_config, texts
from tests.integration.relay_peers import Peer, peer

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def introduce(server: RendezvousServer) -> tuple[Peer, Peer, Introduction]:
    ten, fourteen = await peer(server.address, "10"), await peer(server.address, "14")
    await ten.client.connect("14")
    session = await fourteen.introduced("10")
    keyed(fourteen.keys, fourteen.client, session)
    keyed(ten.keys, ten.client, await asyncio.wait_for(asyncio.shield(ten.client.introduction), 5))
    return ten, fourteen, session


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


async def test_only_the_two_peers_introduced_are_relayed_from_their_registered_endpoints(
    server: RendezvousServer,
) -> None:
    ten, fourteen, stranger = [await peer(server.address, name) for name in ("10", "14", "66")]
    await ten.client.connect("14")  # 14 has not asked for 10: no session, nothing to relay through
    ten.endpoint.send(ten.packet(bytes(16), b"\xc0hello?"), server.address)
    session = await fourteen.introduced("10")
    keyed(fourteen.keys, fourteen.client, session)
    keyed(ten.keys, ten.client, await asyncio.wait_for(asyncio.shield(ten.client.introduction), 5))
    # A third registered peer that learnt the session ID: not in the session, in its own name or in 10's
    stranger.endpoint.send(stranger.packet(session.session_id, b"\xc0injected"), server.address)
    stranger.endpoint.send(stranger.packet(session.session_id, b"\xc0injected", me="10"), server.address)
    for each in (ten, stranger):
        await each.synced(server.address)
    assert server.endpoint.counters["relay-refused"] == 3
    assert server.endpoint.counters["relayed"] == 0
    # 10 itself is relayed, byte for byte: the first indication 14 sees is 10's, signed with the session's key
    real = ten.packet(session.session_id, b"\xc0from 10")
    ten.endpoint.send(real, server.address)
    relayed = await asyncio.wait_for(fourteen.inbox.get(), 5)
    assert (relayed.transaction_id, relayed.raw(AttributeType.DATA_PAYLOAD)) == (real.transaction_id, b"\xc0from 10")
    assert server.endpoint.counters["relayed"] == 1
    assert fourteen.endpoint.counters["bad-integrity"] == 0
    for each in (ten, fourteen, stranger):
        await each.endpoint.close()


async def test_over_its_rate_a_session_is_dropped_counted_and_logged_once_until_the_bucket_refills(
    budgeted: RendezvousServer, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="punch.rendezvous")
    ten, fourteen, session = await introduce(budgeted)
    first, second, third = (ten.packet(session.session_id, bytes([0xC0]) * 150) for _ in range(3))  # 236 bytes
    for message in (first, second, third):  # the bucket holds 300 bytes: the first fits, then it is empty
        ten.endpoint.send(message, budgeted.address)
    await ten.synced(budgeted.address)
    assert budgeted.endpoint.counters["relayed"] == 1
    assert budgeted.endpoint.counters["relay-over-rate"] == 2
    assert caplog.text.count("is over its rate of 1500 bytes/s") == 1
    clock.now += 1.0  # 1500 bytes later: the next gets through
    ten.endpoint.send(second, budgeted.address)
    relayed = [await asyncio.wait_for(fourteen.inbox.get(), 5) for _ in range(2)]
    assert [m.transaction_id for m in relayed] == [first.transaction_id, second.transaction_id]
    assert fourteen.inbox.empty()
    assert "relay-over-rate=2" in budgeted.stats()
    for each in (ten, fourteen):
        await each.endpoint.close()


async def test_over_its_total_the_relay_tells_both_peers_once(
    budgeted: RendezvousServer, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="punch.rendezvous")
    ten, fourteen, session = await introduce(budgeted)
    sent = 0
    while not ten.client.notice.done():
        clock.now += 1.0  # the rate stays out of it
        ten.endpoint.send(ten.packet(session.session_id, bytes([0xC0]) * 150), budgeted.address)
        sent += 1
        await ten.synced(budgeted.address)
    assert 10 <= sent <= 20  # 4000 bytes of 236-byte packets
    assert await asyncio.wait_for(ten.client.notice, 5) == "486 Relay quota reached: 4000 bytes per session"
    assert caplog.text.count("of its 4000 bytes") == 1
    assert await asyncio.wait_for(fourteen.client.notice, 5) == "486 Relay quota reached: 4000 bytes per session"
    for each in (ten, fourteen):
        await each.endpoint.close()


async def test_peers_on_the_relay_say_it_refused_them_when_their_session_is_over_its_total(
    server: RendezvousServer,
) -> None:
    """Two real peers on the relay (both NATs hard) with a small total: QUIC's handshake and a few texts fit, then
    the relay refuses the session, and both peers say so instead of waiting for a dead path."""
    budget = RelayBudget(rate=0, total=20_000)
    async with RendezvousServer(push_policy=FAST, rate_limit=0, relay_budget=budget) as small:
        await small.start(("127.0.0.1", 0))
        hard = PredictConfig(assume=Mapping.ENDPOINT_DEPENDENT)
        many = [f"text {n} " + "x" * 1000 for n in range(40)]
        sessions = [await Connection.open(peer_config(small, me, other, predict=hard)) for me, other in PAIR]
        outcomes = await asyncio.gather(
            *(s.run(texts(*many), lambda _: None) for s in sessions), return_exceptions=True
        )
    where = f"{small.address[0]}:{small.address[1]}"
    errors = [str(o) for o in outcomes if isinstance(o, PeerError)]
    assert len(errors) == 2
    assert all(e == f"the relay at {where} refused our session: 486 Relay quota reached: 20000 bytes per session"
               for e in errors)  # fmt: skip
    assert all(s.result.path == "relay" for s in sessions)


PAIR = (("10", "14"), ("14", "10"))


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "general-path"])
async def test_the_relay_forwards_the_same_with_and_without_its_fast_path(server: RendezvousServer, fast: bool) -> None:
    handled: list[bool] = []

    def counted(path: Callable[[bytes, Address], bool]) -> Callable[[bytes, Address], bool]:
        def run(data: bytes, source: Address) -> bool:
            handled.append(path(data, source))
            return handled[-1]

        return run

    path = server.endpoint.fast_paths.pop(RELAY_TYPE)
    if fast:
        server.endpoint.fast_paths[RELAY_TYPE] = counted(path)
    results = await asyncio.gather(
        *(run_peer(peer_config(server, me, other, predict=PredictConfig(assume=Mapping.ENDPOINT_DEPENDENT)),
                   texts(f"to {other}"), lambda _: None) for me, other in PAIR)
    )  # fmt: skip
    assert [r.received for r in results] == [["to 10"], ["to 14"]]
    assert [r.path for r in results] == ["relay", "relay"]
    assert server.endpoint.counters["relayed"] >= 4
    assert (handled and all(handled)) if fast else not handled


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "general-path"])
async def test_a_relayed_session_is_held_to_its_budget_not_to_the_rate_limit_of_requests(
    clock: Clock, fast: bool
) -> None:
    """The server's per-source rate limit counts requests: a session's packets, many more a second, go by its budget
    (here none), and leave its peers' tokens for their requests (the clock stands still: no token comes back)."""
    async with RendezvousServer(push_policy=FAST, clock=clock, rate_limit=5) as limited:  # bursts of 10
        await limited.start(("127.0.0.1", 0))
        if not fast:
            limited.endpoint.fast_paths.pop(RELAY_TYPE)
        ten, fourteen, session = await introduce(limited)
        packets = [ten.packet(session.session_id, bytes([0xC0, n])) for n in range(30)]
        for packet in packets:
            ten.endpoint.send(packet, limited.address)
        relayed = [await asyncio.wait_for(fourteen.inbox.get(), 5) for _ in packets]
        assert [m.transaction_id for m in relayed] == [p.transaction_id for p in packets]
        await ten.synced(limited.address)  # a request of 10's is still answered
        assert limited.endpoint.counters["rate-limited"] == 0
        for each in (ten, fourteen):
            await each.endpoint.close()
