"""Port prediction on loopback: discovery against a server with and without an alternate address, and the whole
technique (many sockets, the spray, the switch to the chosen socket, the relay when both are hard) with the
mappings assumed, since loopback has no NAT; peer-reflexive first, which loopback lets through as an easy NAT that
filters by address at most would (and, with a silent other side, its fallback to prediction). The real thing,
through kernel NAT: tests/e2e/test_punch_predict.py and tests/e2e/test_punch_reflexive.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import re
from pathlib import Path

import pytest

from punch.api import Connection, run_peer
from punch.errors import PeerError
from punch.peer.config import PeerConfig, PeerResult
from punch.peer.predict import PortOpener, PredictConfig, Sprayer
from punch.peer.puncher import Puncher, PunchTimings
from punch.peer.reflexive import ReflexiveFirst
from punch.peer.strategy import Plan, Strategy
from punch.rendezvous.server import RendezvousServer
from punch.stun import Address, AttributeType, Message, MessageClass, Method
from punch.stun.protocol import Handler, SocketMaker, StunEndpoint, open_endpoint
from punch.stun.wire import Introduction, KeyShare, Mapping, Role, request
from tests.integration.conftest import FAST, LogLine, free_port, peer_config, texts

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

HARD, EASY = Mapping.ENDPOINT_DEPENDENT, Mapping.ENDPOINT_INDEPENDENT

NO_SHARE = KeyShare(bytes(32), bytes(64))  # these tests never derive a session key


def ephemeral_ports() -> tuple[int, int]:
    """Where the kernel binds port-0 sockets: the hard side's sockets are there, so the spray aims there."""
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(low), int(high)


def config(server: RendezvousServer, me: str, other: str, **overrides: object) -> PeerConfig:
    slow = {"timeout": 8.0, "punch": PunchTimings(timeout=6.0), "relay": False}
    return peer_config(server, me, other, **{**slow, **overrides})


def assumed(mapping: Mapping, sockets: int = 32, reflexive: bool = True) -> PredictConfig:
    # The whole ephemeral range at 5000/s: a hit is all but certain, the test stays short. Few sockets: on loopback
    # every opening check arrives (no TTL runs out) and gets answered, and one event loop runs both peers.
    return PredictConfig(
        sockets=sockets, probes=30000, rate=5000.0, ports=ephemeral_ports(), assume=mapping, reflexive=reflexive
    )


PAIR = (("10", "14"), ("14", "10"))


async def pair(first: PeerConfig, second: PeerConfig, *, in_order: bool = False) -> tuple[PeerResult, PeerResult]:
    """Run two peers to the end; with ``in_order``, the second starts once the first asked for it."""
    one = asyncio.create_task(run_peer(first, texts(f"hello from {first.peer_id}"), lambda t: None))
    if in_order:
        waiting = LogLine(f"{first.peer_id} asks for {second.peer_id}: waiting")
        logging.getLogger("punch.rendezvous.server").addHandler(waiting)
        try:
            await asyncio.wait_for(waiting.seen.wait(), 5)
        finally:
            logging.getLogger("punch.rendezvous.server").removeHandler(waiting)
    return await asyncio.gather(one, run_peer(second, texts(f"hello from {second.peer_id}"), lambda t: None))


async def hard_and_easy(hard: PeerConfig, easy: PeerConfig, *, hard_first: bool) -> tuple[PeerResult, PeerResult]:
    """:func:`pair` of the hard side (10) and the easy side (14), one asking first; their results, 10's first, each
    with the other's text and the hard side the opener, whoever asked first."""
    if hard_first:
        result10, result14 = await pair(hard, easy, in_order=True)
    else:
        result14, result10 = await pair(easy, hard, in_order=True)
    assert (result10.role, result14.role) == ("opener", "prober")
    assert (result10.received, result14.received) == (["hello from 14"], ["hello from 10"])
    return result10, result14


async def test_without_an_alternate_address_the_mapping_is_unknown_and_nothing_is_predicted(
    server: RendezvousServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="punch")
    result10, result14 = await pair(config(server, "10", "14"), config(server, "14", "10"))
    assert result10.path == result14.path == "direct"
    assert "the server gives no OTHER-ADDRESS (started without --alternate)" in caplog.text
    assert "port prediction:" not in caplog.text
    assert "spraying" not in caplog.text


async def test_with_an_alternate_address_loopback_is_found_endpoint_independent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="punch")
    async with RendezvousServer(push_policy=FAST) as server:
        await server.start(("127.0.0.1", free_port("127.0.0.1")), ("127.0.0.2", free_port("127.0.0.2")))
        result10, result14 = await pair(config(server, "10", "14"), config(server, "14", "10"))
        assert server.registry.registrations == {}  # both said goodbye
    assert result10.path == result14.path == "direct"
    assert caplog.text.count("NAT mapping is endpoint-independent (server saw 127.0.0.1:") == 2
    assert "registered 10 at 127.0.0.1:" in caplog.text
    assert "NAT mapping endpoint-independent)" in caplog.text  # the server's log of the re-registration


@pytest.mark.parametrize("hard_first", [True, False], ids=["hard-side-asks-first", "easy-side-asks-first"])
async def test_the_hard_side_opens_many_sockets_and_switches_to_the_one_the_easy_side_reached(
    server: RendezvousServer, caplog: pytest.LogCaptureFixture, hard_first: bool
) -> None:
    """Loopback has no TTL to run out: the hard side's opening checks arrive, and the easy side may answer one of
    them before its spray hits. Either way the path runs to one of the hard side's extra sockets. Without
    peer-reflexive first: loopback lets every check in, so the main socket's would find the path at once (below)."""
    caplog.set_level(logging.INFO, logger="punch")
    # The hard side on a loopback address of its own, so that the spray goes to its ports and nobody else's.
    hard_ip = f"127.0.{random.randint(1, 254)}.{random.randint(2, 254)}"
    hard = config(server, "10", "14", bind=(hard_ip, 0), predict=assumed(HARD, reflexive=False))
    easy = config(server, "14", "10", predict=assumed(EASY, reflexive=False))
    result10, result14 = await hard_and_easy(hard, easy, hard_first=hard_first)
    assert result10.path == result14.path == "predicted"
    # The easy side talks to one of the hard side's extra sockets, which the hard side switched to.
    assert result14.remote is not None
    assert result14.remote.startswith(hard_ip + ":")
    assert result10.local == result14.remote
    assert result10.remote == result14.mapped
    assert "port prediction: our NAT maps endpoint-dependently, 14's does not; we open 32 mappings" in caplog.text
    assert "no port prediction" not in caplog.text  # the line of plans without prediction
    assert "opened 32 sockets toward 127.0.0.1:" in caplog.text
    assert "closed the other 31" in caplog.text
    # The extra sockets' checks come from ports that are none of the candidates, but are predicted ones.
    assert "peer-reflexive candidate" not in caplog.text


async def test_two_hard_sides_go_straight_to_the_relay(
    server: RendezvousServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="punch")
    both = {"predict": assumed(HARD), "relay": True}
    result10, result14 = await pair(config(server, "10", "14", **both), config(server, "14", "10", **both))
    assert result10.path == result14.path == "relay"
    assert (result10.received, result14.received) == (["hello from 14"], ["hello from 10"])
    assert "both NATs map endpoint-dependently (ours and 14's): no port can be predicted" in caplog.text
    assert "spraying" not in caplog.text
    assert result10.punch_ms is not None
    assert result10.punch_ms < 1000


async def test_two_hard_sides_without_the_relay_fail_at_once(server: RendezvousServer) -> None:
    hard = assumed(HARD)
    sessions = [await Connection.open(config(server, me, other, predict=hard)) for me, other in PAIR]
    outcomes = await asyncio.gather(
        *(session.run(texts(), lambda _: None) for session in sessions), return_exceptions=True
    )
    for session in sessions:
        await session.close()
    for outcome in outcomes:
        assert isinstance(outcome, PeerError)
    assert sessions[0].result.error == (
        "no direct path to 14: both NATs map endpoint-dependently, no port to predict; the relay is off (--no-relay)"
    )


async def test_the_spray_finds_one_of_many_sockets_among_the_ports() -> None:
    """The two halves without a session: 64 sockets that answer checks on a loopback address of their own (no
    opening checks sent), and a spray over the ephemeral port range of that address until one answers."""
    session, key = bytes(range(16)), bytes(32)
    hard_ip = f"127.0.{random.randint(1, 254)}.{random.randint(2, 254)}"

    def answer(message: Message, source: Address, data: bytes) -> None:
        if message.message_class is MessageClass.REQUEST:
            easy.on_request(message, source)  # the hard side's triggered check

    def keys(session_id: bytes, method: int) -> bytes | None:
        return key if session_id == session else None

    easy_endpoint = await open_endpoint(answer, ("127.0.0.1", 0), keys=keys)
    to_hard = Introduction("10", ((hard_ip, 9),), session, Role.PROBER, bytes(32), NO_SHARE, HARD)
    to_easy = Introduction("14", (easy_endpoint.local_address,), session, Role.OPENER, bytes(32), NO_SHARE, EASY)
    timings = PunchTimings(timeout=10.0)
    easy = Puncher(easy_endpoint, "14", to_hard, timings, strategy=Strategy(plan=Plan.SPRAY))
    hard = Puncher(
        easy_endpoint, "10", to_easy, timings, strategy=Strategy(plan=Plan.OPEN)
    )  # answers only on its own sockets
    config = PredictConfig(sockets=64, probes=30000, rate=20000.0, ports=ephemeral_ports())
    opening = functools.partial(open_endpoint, keys=keys)
    async with PortOpener(hard, opening, lambda m, s, d: None) as opener:
        await opener.open(hard_ip, config.sockets)
        ports = {sock.local_address[1] for sock in opener.sockets}
        async with Sprayer(easy, easy_endpoint, hard_ip, config) as sprayer:
            sprayer.start()
            easy_path, hard_path = await asyncio.gather(easy.run(), hard.run())
        assert sprayer.hit is not None
        assert sprayer.hit[1] in ports
        assert 1 <= sprayer.sent < 30000
        assert (easy_path.kind, easy_path.remote) == ("predicted", sprayer.hit)
        assert hard_path.kind == "predicted"
        assert hard_path.local is not None
        assert hard_path.local.local_address == sprayer.hit
    await easy_endpoint.close()


@pytest.mark.parametrize("hard_first", [True, False], ids=["hard-side-asks-first", "easy-side-asks-first"])
async def test_the_hard_side_checks_from_its_main_socket_first_and_needs_no_prediction(
    server: RendezvousServer, caplog: pytest.LogCaptureFixture, hard_first: bool
) -> None:
    """Loopback lets every check in, as an easy NAT that filters by address at most lets in the hard side's checks
    from its main socket: the easy side answers them, the path is direct, and no port is predicted."""
    caplog.set_level(logging.INFO, logger="punch")
    hard = config(server, "10", "14", predict=assumed(HARD))
    easy = config(server, "14", "10", predict=assumed(EASY))
    result10, result14 = await hard_and_easy(hard, easy, hard_first=hard_first)
    assert result10.path == result14.path == "direct"
    assert result14.remote == result10.local  # the hard side's session socket: it opened no other
    assert "10's NAT maps endpoint-dependently, ours does not: 10 checks from its main socket first" in caplog.text
    assert "our NAT maps endpoint-dependently, 14's does not: our checks from our main socket" in caplog.text
    assert "checking from our main socket: 127.0.0.1:" in caplog.text
    assert re.search(
        r"14 reached our main socket in \d+\.\d ms(, while we opened 32 sockets to predict ports)?: .*; no port prediction",
        caplog.text,
    )
    assert "opened 32 sockets" not in caplog.text
    assert "spraying" not in caplog.text
    assert "(Go)" not in caplog.text


class ServerStandIn:
    """What peer-reflexive first asks of the rendezvous client: when the Introduce came, Go, and Ready."""

    def __init__(self) -> None:
        self.introduced_at: float | None = asyncio.get_running_loop().time()
        self.go = asyncio.Event()
        self.readied: list[bytes] = []

    async def ready(self, session_id: bytes) -> None:
        self.readied.append(session_id)


def reflexive_first(
    puncher: Puncher,
    introduction: Introduction,
    strategy: Strategy,
    client: ServerStandIn,
    config: PredictConfig,
    endpoint: StunEndpoint,
    open_socket: SocketMaker,
    sockets: contextlib.AsyncExitStack,
) -> ReflexiveFirst:
    """The part of a punch under test, ``endpoint`` the session's socket (no session handler: nothing is chosen
    over an extra socket here); 2 s for Go."""
    return ReflexiveFirst(
        puncher,
        introduction,
        strategy,
        client,
        config,
        endpoint=endpoint,
        open_socket=open_socket,
        session=lambda m, s, d: None,
        sockets=sockets,
        open_ttl=2,
        go_within=2.0,
    )


async def test_without_an_answer_on_its_main_socket_the_hard_side_gives_it_up_and_opens_many(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The other side is a socket that never answers (an easy NAT that lets in only the port it sent to): after the
    window the hard side opens many mappings and says Ready; a check that reaches its main socket later is not
    answered (no path there after the cut)."""
    caplog.set_level(logging.INFO, logger="punch")
    session, key = bytes(range(16)), bytes(32)

    def keys(session_id: bytes, method: int) -> bytes | None:
        return key if session_id == session else None

    def on_main(message: Message, source: Address, data: bytes) -> None:
        if message.message_class is MessageClass.REQUEST:
            hard.on_request(message, source)

    silent = await open_endpoint(lambda m, s, d: None, ("127.0.0.1", 0), keys=keys)
    main = await open_endpoint(on_main, ("127.0.0.1", 0), keys=keys)
    to_hard = Introduction("14", (silent.local_address,), session, Role.OPENER, bytes(32), NO_SHARE, EASY)
    timings = PunchTimings(timeout=2.0)
    window = 0.05
    strategy = Strategy(plan=Plan.OPEN, reflexive_first=True, reflexive_delay=0.001, reflexive_window=window)
    hard = Puncher(main, "10", to_hard, timings, strategy=strategy)
    client = ServerStandIn()
    sockets = contextlib.AsyncExitStack()
    first = reflexive_first(
        hard,
        to_hard,
        strategy,
        client,
        PredictConfig(sockets=8),
        main,
        functools.partial(open_endpoint, keys=keys),
        sockets,
    )
    async with sockets:
        started = asyncio.get_running_loop().time()
        await first.start()
        assert asyncio.get_running_loop().time() - started >= window
        assert client.readied == [session]
        assert first.opener is not None
        assert len(first.opener.sockets) == 8
        assert "checking from our main socket: 127.0.0.1:" in caplog.text
        # The window, and the time it took to bind the 8 sockets (the main socket still listening).
        assert re.search(r"nothing from 14 reached our main socket within \d+ ms: its NAT lets in only", caplog.text)
        # A check from the other side reaching the main socket now (its NAT let it through after all) is ignored.
        ignored = LogLine("on our main socket: we gave it up for port prediction")
        logging.getLogger("punch.peer.puncher").addHandler(ignored)
        try:
            check = request(Method.BINDING, (AttributeType.PEER_ID, "14"), (AttributeType.SESSION_ID, session))
            silent.send(check, main.local_address)
            await asyncio.wait_for(ignored.seen.wait(), 5)
        finally:
            logging.getLogger("punch.peer.puncher").removeHandler(ignored)
        await first.settle(None)
        assert first.failure() is not None
    await hard.close()
    await main.close()
    await silent.close()


async def test_an_answer_after_the_window_while_the_hard_side_binds_its_sockets_still_makes_the_path_direct(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A busy machine: the other side's answer to the main socket's checks comes after the window, while the hard
    side binds its many sockets. The main socket still listens then: no port is predicted, nobody says Ready, and
    the sockets are closed unused. The other side here holds the checks until the first socket is bound."""
    caplog.set_level(logging.INFO, logger="punch")
    session, key = bytes(range(16)), bytes(32)

    def keys(session_id: bytes, method: int) -> bytes | None:
        return key if session_id == session else None

    held: list[tuple[Message, Address]] = []

    def on_easy(message: Message, source: Address, data: bytes) -> None:
        if message.message_class is MessageClass.REQUEST:
            held.append((message, source))

    def on_main(message: Message, source: Address, data: bytes) -> None:
        if message.message_class is MessageClass.REQUEST:
            hard.on_request(message, source)

    easy_endpoint = await open_endpoint(on_easy, ("127.0.0.1", 0), keys=keys)
    main = await open_endpoint(on_main, ("127.0.0.1", 0), keys=keys)
    to_hard = Introduction("14", (easy_endpoint.local_address,), session, Role.OPENER, bytes(32), NO_SHARE, EASY)
    to_easy = Introduction("10", (main.local_address,), session, Role.PROBER, bytes(32), NO_SHARE, HARD)
    timings = PunchTimings(timeout=2.0)
    window = 0.02
    strategy = Strategy(plan=Plan.OPEN, reflexive_first=True, reflexive_delay=0.001, reflexive_window=window)
    hard = Puncher(main, "10", to_hard, timings, strategy=strategy)
    easy = Puncher(easy_endpoint, "14", to_easy, timings, strategy=Strategy(plan=Plan.SPRAY, reflexive_first=True))
    bound: list[StunEndpoint] = []

    async def late_answers(handler: Handler, local: Address) -> StunEndpoint:
        if not bound:  # the window has passed: the other side answers the checks it held
            for message, source in held:
                easy.on_request(message, source)
            await asyncio.wait_for(hard.contact.wait(), 5)
        bound.append(await open_endpoint(handler, local, keys=keys))
        return bound[-1]

    client = ServerStandIn()
    sockets = contextlib.AsyncExitStack()
    first = reflexive_first(hard, to_hard, strategy, client, PredictConfig(sockets=8), main, late_answers, sockets)
    async with sockets:
        await first.start()
        assert held  # the checks came, and were answered only after the window
        assert client.readied == []
        assert first.opener is None
        assert len(bound) == 8
        assert all(sock.closed.done() for sock in bound)
        assert re.search(
            r"14 reached our main socket in \d+\.\d ms, while we opened 8 sockets to predict ports: .*; no port "
            "prediction",
            caplog.text,
        )
        assert "nothing from 14 reached our main socket" not in caplog.text
        assert "gave it up for port prediction" not in caplog.text
        await first.settle(None)
    await hard.close()
    await easy.close()
    await main.close()
    await easy_endpoint.close()


async def test_the_easy_side_sprays_only_once_told_go(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="punch")
    session, key = bytes(range(16)), bytes(32)

    def keys(session_id: bytes, method: int) -> bytes | None:
        return key if session_id == session else None

    endpoint = await open_endpoint(lambda m, s, d: None, ("127.0.0.1", 0), keys=keys)
    hard_ip = f"127.0.{random.randint(1, 254)}.{random.randint(2, 254)}"
    to_easy = Introduction("10", ((hard_ip, 9),), session, Role.PROBER, bytes(32), NO_SHARE, HARD)
    timings = PunchTimings(timeout=2.0)
    strategy = Strategy(plan=Plan.SPRAY, reflexive_first=True)
    easy = Puncher(endpoint, "14", to_easy, timings, strategy=strategy)
    client = ServerStandIn()
    first = reflexive_first(
        easy,
        to_easy,
        strategy,
        client,
        PredictConfig(probes=10, rate=1000.0),
        endpoint,
        functools.partial(open_endpoint, keys=keys),
        contextlib.AsyncExitStack(),
    )
    starting = asyncio.create_task(first.start())
    done, _ = await asyncio.wait({starting}, timeout=0.05)  # without Go (nor a path) it waits, and sprays nothing
    assert not done
    assert first.sprayer is None
    client.go.set()
    await asyncio.wait_for(starting, 5)
    assert first.sprayer is not None
    assert "10 got no answer on its main socket and opened many mappings (Go): spraying" in caplog.text
    await first.settle(None)
    await easy.close()
    await endpoint.close()
