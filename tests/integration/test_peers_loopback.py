"""Two peers find each other through an in-process server on loopback and exchange texts."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Coroutine
from typing import Any

import pytest

from punch.api import Connection, run_peer
from punch.errors import PeerError
from punch.peer.client import RendezvousClient
from punch.peer.config import PeerConfig, PeerResult
from punch.peer.puncher import PunchTimings
from punch.peer.reach import Reach
from punch.rendezvous.server import RendezvousServer
from punch.stun import Address, Message, MessageClass, Method, decode
from punch.stun.protocol import StunEndpoint
from tests.integration.conftest import FAST, LogLine, texts
from tests.integration.conftest import peer_config as config

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

# Peers on loopback addresses of their own: to the server they are behind different NATs. On one address (the rest
# of these tests) they are behind the same NAT, where they take Ready/Go (punch.peer.session._early).
OWN_NAT = {"a": ("127.0.0.2", 0), "b": ("127.0.0.3", 0)}


async def pair(server: RendezvousServer, punch: PunchTimings, *, own_nat: bool) -> list[PeerResult]:
    """Peers a and b at once, each sending the other one text, with ``punch``; on addresses of their own or one."""

    def peer(me: str, other: str) -> Coroutine[Any, Any, PeerResult]:
        bind = {"bind": OWN_NAT[me]} if own_nat else {}
        cfg = config(server, me, other, punch=punch, **bind)
        return run_peer(cfg, texts(f"to {other}"), lambda _: None)

    return list(await asyncio.gather(peer("a", "b"), peer("b", "a")))


async def test_ten_asks_before_fourteen_exists_then_both_talk(
    server: RendezvousServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="punch")
    shown10: list[str] = []
    shown14: list[str] = []
    waiting = LogLine("10 asks for 14: waiting for 14 to register")
    logging.getLogger("punch.rendezvous.server").addHandler(waiting)
    first = asyncio.create_task(
        run_peer(
            config(server, "10", "14"),
            texts("hello from 10", "second"),
            shown10.append,
        )
    )
    try:
        await asyncio.wait_for(waiting.seen.wait(), 5)
    finally:
        logging.getLogger("punch.rendezvous.server").removeHandler(waiting)
    assert server.registry.lookup("14", 0) is None
    result14 = await run_peer(config(server, "14", "10"), texts("hi from 14"), shown14.append)
    result10 = await first
    assert result10.received == shown10 == ["hi from 14"]
    assert result14.received == shown14 == ["hello from 10", "second"]
    assert {result10.role, result14.role} == {"opener", "prober"}
    assert result10.role == "opener"  # the one that waited opens its mapping
    assert result10.path == result14.path == "direct"
    assert result10.remote == result14.local
    assert result14.remote == result10.local
    assert result10.session == result14.session
    assert result10.punch_ms is not None
    assert result10.punch_ms >= 0


async def test_silent_peers_close_together(server: RendezvousServer) -> None:
    results = await asyncio.gather(
        run_peer(config(server, "a", "b"), texts(), lambda _: None),
        run_peer(config(server, "b", "a"), texts(), lambda _: None),
    )
    assert [r.received for r in results] == [[], []]
    assert all(r.path == "direct" for r in results)


async def test_a_peer_that_never_comes_times_out_with_a_reason(server: RendezvousServer) -> None:
    session = await Connection.open(config(server, "10", "99", timeout=0.5))
    with pytest.raises(PeerError, match=r"^99 did not ask for us within 0\.5 s; start it with "):
        await session.run(texts(), lambda _: None)
    await session.close()
    result = session.result
    assert result.error is not None
    assert result.error.startswith("99 did not ask for us")
    assert result.mapped is not None
    assert result.path is None


async def test_no_server_is_a_clear_error() -> None:
    dead = RendezvousServer()
    await dead.start(("127.0.0.1", 0))
    address = dead.address
    await dead.close()
    reach = Reach(trial=FAST)  # UDP, then TCP at the same port: nothing there either
    cfg = PeerConfig(server=address, peer_id="10", target="14", bind=("127.0.0.1", 0), rendezvous=FAST, reach=reach)
    with pytest.raises(PeerError, match=r"cannot be reached: no answer over UDP .*; is `punch server` running there"):
        await run_peer(cfg, texts(), lambda _: None)


async def test_with_early_checks_neither_peer_waits_for_go(
    server: RendezvousServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="punch")
    early = PunchTimings(timeout=3.0, early=True, early_floor=0.0)  # else Ready/Go is as fast on loopback
    results = await pair(server, early, own_nat=True)
    assert [r.received for r in results] == [["to a"], ["to b"]]
    assert [r.path for r in results] == ["direct", "direct"]
    lines = [record.getMessage() for record in caplog.records]
    assert sum(line.startswith("checking without waiting for Go:") for line in lines) == 2
    assert not any("telling" in line and "(Go)" in line for line in lines)  # the server never sent Go


async def test_early_probes_leave_from_the_introduces_own_handler(
    server: RendezvousServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The other peer checks a margin of about a millisecond after its own Introduce, counting on our low-TTL probe
    # having left by then: so it leaves while our Introduce is handled, not at the session's next turn.
    handling = [False]
    probes: list[bool] = []  # for each probe: sent while an Introduce was being handled
    on_introduce, send_with_ttl = RendezvousClient._on_introduce, StunEndpoint.send_with_ttl

    def handled(client: RendezvousClient, message: Message) -> None:
        handling[0] = True
        try:
            on_introduce(client, message)
        finally:
            handling[0] = False

    def noted(endpoint: StunEndpoint, message: Message, remote: Address, ttl: int) -> None:
        probes.append(handling[0])
        send_with_ttl(endpoint, message, remote, ttl)

    monkeypatch.setattr(RendezvousClient, "_on_introduce", handled)
    monkeypatch.setattr(StunEndpoint, "send_with_ttl", noted)
    early = PunchTimings(timeout=3.0, early=True, early_floor=0.0)
    results = await pair(server, early, own_nat=True)
    assert [(r.path, r.early) for r in results] == [("direct", True), ("direct", True)]
    assert len(probes) >= 2  # both peers', each toward its candidates
    assert all(probes)


async def test_next_to_the_server_the_peers_take_ready_and_go(
    server: RendezvousServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Early checks would wait at least 50 ms here, far more than the loopback round trips through this one event loop
    # (about 1 ms, near the default floor): Ready/Go proves the path sooner.
    caplog.set_level(logging.INFO, logger="punch")
    near = PunchTimings(timeout=3.0, early_floor=0.05)
    results = await pair(server, near, own_nat=True)
    assert [r.path for r in results] == ["direct", "direct"]
    lines = [record.getMessage() for record in caplog.records]
    assert sum("Ready/Go is as fast as early checks here" in line for line in lines) == 2
    assert not any(line.startswith("checking without waiting for Go:") for line in lines)
    assert any("telling" in line and "(Go)" in line for line in lines)


async def test_a_peer_runs_on_a_socket_its_caller_made_and_closes_it(server: RendezvousServer) -> None:
    made = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    made.bind(("127.0.0.1", 0))
    port = made.getsockname()[1]
    given, other = await asyncio.gather(
        run_peer(config(server, "a", "b", bind=("127.0.0.1", 9)), texts("to b"), lambda _: None,
                 sock=made),
        run_peer(config(server, "b", "a"), texts("to a"), lambda _: None),
    )  # fmt: skip
    assert given.local == f"127.0.0.1:{port}"  # the socket's own address, not config.bind
    assert other.remote == given.local
    assert [given.received, other.received] == [["to a"], ["to b"]]
    assert made.fileno() == -1  # closed with the peer


async def test_a_socket_that_is_not_udp_is_refused_before_anything_is_sent(server: RendezvousServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as stream, pytest.raises(ValueError, match="UDP socket"):
        await run_peer(config(server, "a", "b"), texts(), lambda _: None, sock=stream)
    assert server.registry.lookup("a", 0) is None


async def test_an_introduce_is_as_good_as_the_lost_answer_to_our_request(
    server: RendezvousServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="punch")
    send = server.endpoint.send_bytes

    def losing_connect_answers(data: bytes, remote: tuple[str, int]) -> None:
        message = decode(data)
        if message.method == Method.CONNECT and message.message_class is MessageClass.SUCCESS:
            return  # every answer to every Connect is lost on the way; the Introduce pushes get through
        send(data, remote)

    server.endpoint.send_bytes = losing_connect_answers  # type: ignore[method-assign]
    results = await asyncio.gather(
        run_peer(config(server, "a", "b"), texts("to b"), lambda _: None),
        run_peer(config(server, "b", "a"), texts("to a"), lambda _: None),
    )
    assert [r.received for r in results] == [["to a"], ["to b"]]
    assert [r.path for r in results] == ["direct", "direct"]
    waited = [r.getMessage() for r in caplog.records if "introduced before the server's answer" in r.getMessage()]
    assert len(waited) == 2
    assert not any("asked the server for" in r.getMessage() for r in caplog.records)  # no answer ever came


async def test_behind_one_nat_the_peers_check_early_too(
    server: RendezvousServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Both on 127.0.0.1: to the server, behind one NAT, and with no LAN candidate (the host one is the public one).
    # Early checks go there as between NATs (a lost race behind one NAT is refused through its hairpin, and the late
    # peer moves: tests/e2e/test_punch_cgnat.py), so nobody waits for Ready and Go.
    caplog.set_level(logging.INFO, logger="punch")
    early = PunchTimings(timeout=3.0, early=True, early_floor=0.0)
    results = await pair(server, early, own_nat=False)
    assert [(r.path, r.early) for r in results] == [("direct", True), ("direct", True)]
    lines = [record.getMessage() for record in caplog.records]
    assert sum("we are behind the same NAT" in line for line in lines) == 2
    assert sum("checking without waiting for Go" in line for line in lines) == 2
    assert not any("telling" in line and "(Go)" in line for line in lines)
