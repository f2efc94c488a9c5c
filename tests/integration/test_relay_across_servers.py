"""The relay between peers registered at different servers sharing a registry (punch.rendezvous.tickets): the server
that made the session relays it; the peer registered elsewhere is told so in its Introduce, with a ticket, and the
relay sends to where that peer's ticketed indications come from; a stranger without the ticket moves nothing; a
relayed session whose relay dies moves to the other server.

Loopback has no NAT: a peer's source toward the relay is the one its own server sees. The test of where the relay
sends plays the NAT with a second socket of the peer's (its mapping toward the relay, on another port).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from punch.api import Connection, run_peer
from punch.peer.config import PeerConfig, PeerResult
from punch.peer.predict import PredictConfig
from punch.rendezvous.server import RendezvousServer
from punch.stun import Address, AttributeType, Message, MessageClass
from punch.stun.protocol import format_address, open_endpoint
from punch.stun.wire import Mapping
from tests.integration.conftest import LogLine, keyed, shared_server, texts
from tests.integration.conftest import peer_config as config
from tests.integration.relay_peers import peer

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

HARD = PredictConfig(assume=Mapping.ENDPOINT_DEPENDENT)  # both NATs symmetric, as far as the peers know: the relay
OWN_NAT = {"10": ("127.0.0.2", 0), "14": ("127.0.0.3", 0)}
PAIR = (("10", "14"), ("14", "10"))


async def asked(server: RendezvousServer, line: str) -> None:
    """Wait until ``server`` logs ``line`` (a peer's wish is there)."""
    seen = LogLine(line)
    logger = logging.getLogger("punch.rendezvous.server")
    logger.addHandler(seen)
    try:
        await asyncio.wait_for(seen.seen.wait(), 10)
    finally:
        logger.removeHandler(seen)


async def test_two_peers_at_two_servers_talk_through_the_relay_of_the_server_that_introduced_them(
    two_servers: tuple[RendezvousServer, RendezvousServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="punch")
    east, west = two_servers
    ten = asyncio.create_task(
        run_peer(config(west, "10", "14", predict=HARD, bind=OWN_NAT["10"]), texts("to 14"), lambda _: None)
    )
    await asked(west, "10 asks for 14: waiting")
    fourteen = run_peer(config(east, "14", "10", predict=HARD, bind=OWN_NAT["14"]), texts("to 10"), lambda _: None)
    results: list[PeerResult] = list(await asyncio.wait_for(asyncio.gather(ten, fourteen), 20))
    assert [r.received for r in results] == [["to 10"], ["to 14"]]
    assert [r.path for r in results] == ["relay", "relay"]
    # 14's Connect completed the pair at east: east relays, and 10 (registered at west) was told so
    assert [r.remote for r in results] == [format_address(east.address)] * 2
    assert east.endpoint.counters["relayed"] >= 4
    assert west.endpoint.counters["relayed"] == 0
    assert "relay: 10 (registered at server 'B') reaches us at 127.0.0.2:" in caplog.text
    assert east.endpoint.counters["relay-refused"] == 0


async def test_the_relay_sends_where_the_ticketed_peer_opened_its_way_and_a_stranger_moves_nothing(
    two_servers: tuple[RendezvousServer, RendezvousServer],
) -> None:
    east, west = two_servers
    ten, fourteen, stranger = (
        await peer(west.address, "10"),
        await peer(east.address, "14"),
        await peer(east.address, "66"),
    )
    await ten.client.connect("14")
    to_fourteen = await fourteen.introduced("10")
    to_ten = await asyncio.wait_for(asyncio.shield(ten.client.introduction), 5)
    keyed(fourteen.keys, fourteen.client, to_fourteen)
    keyed(ten.keys, ten.client, to_ten)
    session = to_ten.session_id
    assert (to_ten.relay, len(to_ten.relay_ticket)) == (east.address, 16)  # signed by west with 10's request key
    assert (to_fourteen.relay, to_fourteen.relay_ticket) == (None, b"")  # east is 14's own server
    ticket = to_ten.relay_ticket
    # 10's NAT toward east: a mapping of its own (another socket here), signing as 10 does
    mapped: asyncio.Queue[Message] = asyncio.Queue()

    def via_nat(message: Message, source: Address, data: bytes) -> None:
        if message.message_class is MessageClass.INDICATION:
            mapped.put_nowait(message)

    nat = await open_endpoint(via_nat, ("127.0.0.1", 0), keys=ten.keys)
    try:
        fourteen.endpoint.send(fourteen.packet(session, b"\xc0too early"), east.address)  # 10 has not opened yet
        await fourteen.synced(east.address)
        assert east.endpoint.counters["relay-unopened"] == 1
        nat.send(ten.packet(session, None, ticket=ticket), east.address)  # the opening
        await asyncio.wait_for(fourteen.synced(east.address), 5)
        # Someone who learnt the session's ID, in 10's name, without the ticket or with another: refused
        for forged in (None, bytes(16)):
            stranger.endpoint.send(stranger.packet(session, None, me="10", ticket=forged), east.address)
            stranger.endpoint.send(stranger.packet(session, b"\xc0x", me="10", ticket=forged), east.address)
        await stranger.synced(east.address)
        assert east.endpoint.counters["relay-refused"] == 4
        real = fourteen.packet(session, b"\xc0to 10")
        fourteen.endpoint.send(real, east.address)
        relayed = await asyncio.wait_for(mapped.get(), 5)  # to where 10's opening came from, not where it registered
        assert (relayed.transaction_id, relayed.raw(AttributeType.DATA_PAYLOAD)) == (real.transaction_id, b"\xc0to 10")
        back = ten.packet(session, b"\xc0to 14", ticket=ticket)
        nat.send(back, east.address)
        answer = await asyncio.wait_for(fourteen.inbox.get(), 5)
        assert answer.transaction_id == back.transaction_id
        assert answer.raw(AttributeType.RELAY_TICKET) == ticket  # byte for byte
        assert ten.inbox.empty()
        assert stranger.inbox.empty()
        assert east.endpoint.counters["relayed"] == 2
        assert fourteen.endpoint.counters["bad-integrity"] == 0
    finally:
        await nat.close()
        for each in (ten, fourteen, stranger):
            await each.endpoint.close()


async def test_a_relayed_session_whose_relay_dies_moves_to_the_other_server(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """14 knows west alone and asks first; 10 knows east, then west, and completes the pair at east, which relays.
    East dies mid-session: 10 registers at west, both ask again there, and west relays the same QUIC connection."""
    caplog.set_level(logging.INFO, logger="punch")

    async def first_named(cfg: PeerConfig, endpoint: object) -> PeerConfig:
        return cfg  # on loopback both servers are as near: 10 starts at east, as named first

    monkeypatch.setattr("punch.peer.session.with_nearest_server", first_named)
    east, west = await shared_server(redis_url, "east"), await shared_server(redis_url, "west")
    quick = {"predict": HARD, "keepalive": 1.0, "lease": 3, "timeout": 20.0}
    connections = {
        "14": await Connection.open(config(west, "14", "10", bind=OWN_NAT["14"], **quick)),
        "10": await Connection.open(config(east, "10", "14", bind=OWN_NAT["10"], servers=(west.address,), **quick)),
    }
    talked = {me: asyncio.Event() for me in connections}
    moved = {me: LogLine(f"back on the relay to {other} via {format_address(west.address)}") for me, other in PAIR}
    for line in moved.values():
        logging.getLogger("punch.peer.session").addHandler(line)

    async def talk(me: str, other: str) -> AsyncIterator[str]:
        yield f"before, to {other}"
        talked[me].set()
        await asyncio.wait_for(asyncio.gather(*(line.seen.wait() for line in moved.values())), 40)
        yield f"after, to {other}"

    try:
        fourteen = asyncio.create_task(connections["14"].run(talk("14", "10"), lambda _: None))
        await asked(west, "14 asks for 10: waiting")
        ten = asyncio.create_task(connections["10"].run(talk("10", "14"), lambda _: None))
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in talked.values())), 15)
        assert connections["14"].path.remote == format_address(east.address)  # east relays, for 14 too
        await east.close()
        result10, result14 = await asyncio.wait_for(asyncio.gather(ten, fourteen), 60)
        assert (result10.received, result14.received) == (["before, to 10", "after, to 10"],
                                                          ["before, to 14", "after, to 14"])  # fmt: skip
        assert (result10.path, result14.path) == ("relay", "relay")
        assert result10.remote == result14.remote == format_address(west.address)
        assert (result10.rejoins, result14.rejoins) == (1, 1)
        assert f"registering with {format_address(west.address)} instead" in caplog.text
        assert caplog.text.count("back on the relay to") == 2
    finally:
        for line in moved.values():
            logging.getLogger("punch.peer.session").removeHandler(line)
        for connection in connections.values():
            await connection.close()
        await west.close()
        await east.close()
