"""Several servers, one registry in Redis (``punch server --registry``): a peer registered at one server meets a peer
registered at another; an ID is one peer's across servers; a server that joins serves the peers already registered;
Redis down is a 503 and a log line, and the servers recover by themselves.

Each test starts its own redis-server (bench/redis_nodes.py) on a free loopback port; skipped where redis-server is
not installed, failed instead with PUNCH_REQUIRE_REDIS=1 (.ci/run installs it): tests/integration/conftest.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from bench import redis_nodes
from punch.api import Connection, run_peer
from punch.errors import PeerError, RegistryUnavailable
from punch.peer.config import PeerResult
from punch.peer.puncher import PunchTimings
from punch.peer.servers import with_nearest_server
from punch.rendezvous.server import RendezvousServer
from punch.stun import AttributeType, MessageClass, Method
from punch.stun.protocol import open_endpoint
from punch.stun.wire import request
from tests.integration.conftest import FAST, LogLine, need_redis, rendezvous_client, shared_server, texts
from tests.integration.conftest import peer_config as config

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

OWN_NAT = {"a": ("127.0.0.2", 0), "b": ("127.0.0.3", 0)}


async def meet(a: RendezvousServer, b: RendezvousServer, punch: PunchTimings, own_nat: bool) -> list[PeerResult]:
    """Peer a at server ``a`` and peer b at server ``b`` ask for each other and send each other a text."""

    async def peer(me: str, other: str, server: RendezvousServer) -> PeerResult:
        bind = {"bind": OWN_NAT[me]} if own_nat else {}
        return await run_peer(config(server, me, other, punch=punch, **bind), texts(f"to {other}"), lambda _: None)

    return list(await asyncio.gather(peer("a", "b", a), peer("b", "a", b)))


@pytest.mark.parametrize(
    ("punch", "own_nat", "go"),
    [
        (PunchTimings(timeout=3.0, early_floor=0.05), True, True),  # Ready at A, Go to b through B
        (PunchTimings(timeout=3.0, early=True, early_floor=0.0), True, False),  # early checks: no Go
    ],
    ids=["ready-go", "early-checks"],
)
async def test_peers_registered_at_two_servers_meet_and_talk(
    two_servers: tuple[RendezvousServer, RendezvousServer],
    punch: PunchTimings,
    own_nat: bool,
    go: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="punch")
    first, second = two_servers
    results = await asyncio.wait_for(meet(first, second, punch, own_nat), 15)
    assert [r.received for r in results] == [["to a"], ["to b"]]
    assert [r.path for r in results] == ["direct", "direct"]
    # Each peer heard only from its own server: an Introduce from another would have been ignored.
    lines = [record.getMessage() for record in caplog.records]
    assert not [line for line in lines if "not our server" in line]
    assert sum(line.startswith("introduced to") for line in lines) == 2
    assert any("telling" in line and "(Go)" in line for line in lines) == go
    for server in two_servers:
        assert len(server.registry.sessions) == 1


async def test_a_redis_cluster_serves_as_one_registry() -> None:
    need_redis()
    with redis_nodes.cluster() as nodes:
        first, second = await shared_server(nodes[0].url, "A"), await shared_server(nodes[2].url, "B")
        try:
            results = await asyncio.wait_for(meet(first, second, PunchTimings(timeout=3.0), True), 15)
            assert [r.received for r in results] == [["to a"], ["to b"]]
            assert first._federation is not None
            assert first._federation.shared.cluster
        finally:
            await first.close()
            await second.close()


async def test_an_id_is_its_first_registrants_at_every_server(
    two_servers: tuple[RendezvousServer, RendezvousServer],
) -> None:
    first, second = two_servers
    owner = await rendezvous_client(first.address, "10")
    await owner.register()
    thief = await open_endpoint(lambda m, s, d: None, ("127.0.0.1", 0))
    steal = request(Method.REGISTER, (AttributeType.PEER_ID, "10"), (AttributeType.LEASE, 30))
    answer, _ = await thief.request(steal, second.address, FAST)
    error = answer.error_code()
    assert answer.message_class is MessageClass.ERROR
    assert error is not None
    assert (error.code, error.reason) == (401, "ID 10 is taken for 30 s; choose another")
    await thief.close()


async def test_a_server_that_joins_serves_the_peers_registered_elsewhere(
    two_servers: tuple[RendezvousServer, RendezvousServer], redis_url: str
) -> None:
    first, _ = two_servers
    wanderer = await rendezvous_client(first.address, "10")
    mapped = await wanderer.register()
    token = wanderer._credentials.token
    joined = await shared_server(redis_url, "C")
    try:
        # The same peer (same socket, same token) turns to the new server: its refresh is taken, its token kept.
        wanderer.server = joined.address
        assert await wanderer.register() == mapped
        assert wanderer._credentials.token == token
        registration = joined.registry.lookup("10", asyncio.get_running_loop().time())
        assert registration is not None
        assert registration.token == token
        # A peer at the first server asks for it: its Introduce comes from the server it registered at last.
        asker = await rendezvous_client(first.address, "14")
        await asker.register()
        assert await wanderer.connect("14") == "waiting for 14"
        assert await asker.connect("10") == "introducing"
        introduction = await asyncio.wait_for(wanderer.introduction, 5)
        assert introduction.peer_id == "14"
        assert (await asyncio.wait_for(asker.introduction, 5)).peer_id == "10"
    finally:
        await joined.close()


async def test_without_redis_registrations_get_503_binding_still_answers_and_it_recovers(
    redis_node: redis_nodes.RedisNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="punch")
    server = await shared_server(redis_node.url, "A")
    down = LogLine("does not answer")
    back = LogLine("answers again")
    for line in (down, back):
        logging.getLogger("punch.rendezvous.federation").addHandler(line)
    try:
        peer = await rendezvous_client(server.address, "10")
        await peer.register()
        redis_node.stop()
        late = await rendezvous_client(server.address, "14")
        with pytest.raises(PeerError) as refused:
            await late.register()
        assert str(refused.value) == (
            "the server refused our registration: 503 Service Unavailable: the registry does not answer; try again"
        )
        await asyncio.wait_for(down.seen.wait(), 5)
        await late.sample_rtt()  # Binding is answered all the same
        assert late.rtt is not None
        assert server.endpoint.counters["registry-unavailable"] >= 1
        redis_node.start()
        await asyncio.wait_for(late.register(), 5)  # no restart of the server: it reconnects by itself
        await asyncio.wait_for(back.seen.wait(), 5)
        lines = [r.getMessage() for r in caplog.records if r.name == "punch.rendezvous.federation"]
        assert sum("does not answer" in line for line in lines) == 1  # one line, however many refusals
    finally:
        for line in (down, back):
            logging.getLogger("punch.rendezvous.federation").removeHandler(line)
        await server.close()


async def test_a_redis_that_lost_everything_gets_each_registration_back_with_its_keepalive(
    redis_node: redis_nodes.RedisNode,
) -> None:
    server = await shared_server(redis_node.url, "A")
    try:
        peer = await rendezvous_client(server.address, "10")
        await peer.register()
        redis_node.stop()
        redis_node.start()  # nothing saved: empty
        federation = server._federation
        assert federation is not None
        now = asyncio.get_running_loop().time()
        with contextlib.suppress(RegistryUnavailable):
            await federation.shared.ping()  # the connection that Redis closed is found broken here
        assert await federation.shared.lookup("10", now) is None
        federation.written.clear()
        await peer.register()  # a keepalive: answered on the fast path, written behind
        await asyncio.wait_for(federation.written.wait(), 5)
        stored = await federation.shared.lookup("10", now)
        assert stored is not None
        assert stored.server == "A"
        assert stored.registration.token == peer._credentials.token
    finally:
        await server.close()


async def test_a_wish_the_registry_lost_comes_back_with_its_askers_keepalive(
    redis_node: redis_nodes.RedisNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="punch")
    first, second = await shared_server(redis_node.url, "A"), await shared_server(redis_node.url, "B")
    try:
        waiting = await rendezvous_client(first.address, "10")
        await waiting.register()
        assert await waiting.connect("14") == "waiting for 14 to register"
        redis_node.stop()
        redis_node.start()  # nothing saved: the registration and the wish are gone
        federation = first._federation
        assert federation is not None
        with contextlib.suppress(RegistryUnavailable):
            await federation.shared.ping()  # the connection that Redis closed is found broken here
        federation.written.clear()
        await waiting.register()  # its keepalive, written behind: the registration and the wish come back
        await asyncio.wait_for(federation.written.wait(), 5)
        assert "the registry had lost 10 and its wish for 14: written again" in caplog.text
        asker = await rendezvous_client(second.address, "14")
        await asker.register()
        assert await asker.connect("10") == "introducing"
        assert (await asyncio.wait_for(waiting.introduction, 5)).peer_id == "14"
        assert (await asyncio.wait_for(asker.introduction, 5)).peer_id == "10"
    finally:
        await first.close()
        await second.close()


async def test_a_peer_whose_server_dies_keeps_its_direct_session_and_registers_at_the_other(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="punch")
    first, second = await shared_server(redis_url, "A"), await shared_server(redis_url, "B")
    moved = LogLine("registering with")
    logging.getLogger("punch.peer.client").addHandler(moved)
    both_talked = [asyncio.Event(), asyncio.Event()]

    async def talk(me: str, other: str, index: int) -> AsyncIterator[str]:
        yield f"before, to {other}"
        both_talked[index].set()
        await asyncio.wait_for(moved.seen.wait(), 15)
        yield f"after, to {other}"

    sessions: dict[str, Connection] = {}

    async def peer(me: str, other: str, index: int) -> PeerResult:
        cfg = config(first, me, other, bind=OWN_NAT[me], lease=3, servers=(second.address,), timeout=10.0)
        session = sessions[me] = await Connection.open(cfg)
        try:
            return await session.run(talk(me, other, index), lambda _: None)
        finally:
            await session.close()

    try:
        running = asyncio.gather(peer("a", "b", 0), peer("b", "a", 1))
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in both_talked)), 10)
        # a's server (the nearest answering of the two: either on loopback) dies mid-session
        dying, other = (first, second) if sessions["a"].server == first.address else (second, first)
        await dying.close()
        a, b = await asyncio.wait_for(running, 20)
        assert (a.path, b.path) == ("direct", "direct")
        assert a.received == ["before, to a", "after, to a"]
        assert b.received == ["before, to b", "after, to b"]
        # Once its server fell silent, a registered at the other, which took it with its token.
        lines = [r.getMessage() for r in caplog.records]
        turned = [i for i, line in enumerate(lines) if f"registering with 127.0.0.1:{other.address[1]} instead" in line]
        assert turned
        assert any(line.startswith("registered a at") for line in lines[turned[0] :])
        assert not any(line.startswith("401") for line in lines)
    finally:
        logging.getLogger("punch.peer.client").removeHandler(moved)
        await first.close()
        await second.close()


async def test_a_peer_with_several_servers_takes_the_one_that_answers() -> None:
    live, dead = RendezvousServer(), RendezvousServer()
    await live.start(("127.0.0.1", 0))
    await dead.start(("127.0.0.1", 0))
    silent = dead.address
    await dead.close()
    endpoint = await open_endpoint(lambda m, s, d: None, ("127.0.0.1", 0))
    try:
        cfg = config(live, "10", "14")
        chosen = await with_nearest_server(replace(cfg, server=silent, servers=(live.address,)), endpoint)
        assert (chosen.server, chosen.servers) == (live.address, (silent,))
        assert await with_nearest_server(cfg, endpoint) == cfg
        with pytest.raises(PeerError) as none:
            await with_nearest_server(replace(cfg, server=silent, servers=(silent, ("127.0.0.1", 9))), endpoint)
        assert str(none.value) == (
            f"none of the servers answered (127.0.0.1:{silent[1]}, 127.0.0.1:9); "
            "is `punch server` running there and reachable?"
        )
    finally:
        await endpoint.close()
        await live.close()
