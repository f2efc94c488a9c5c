"""The mapper (punch.portmap.mapper) against a fake router on loopback (tests/fake_router.py) that answers PCP and
NAT-PMP as told: a mapping made, renewed and deleted; the fallbacks from a router's errors, garbage, another nonce
and silence, each dropped datagram counted; a UPnP IGD that answers too slowly; a router that lost the mapping. Then
two peers on loopback, one of whose "routers" maps (and forwards) a port: the other checks it, also where ports
would be predicted (peer-reflexive first then does not run), and when the peers take both families (the mapped port
first, in the family it registered by)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from punch.api import run_peer
from punch.peer.config import PeerResult
from punch.peer.portmapping import OFFER_WAIT
from punch.peer.predict import PredictConfig
from punch.portmap.mapper import ROUTER_POLICY, Mapper, PortmapConfig, PortMapping
from punch.rendezvous.server import RendezvousServer
from punch.stun.transaction import RetransmitPolicy
from punch.stun.wire import Mapping
from tests.fake_router import Behaviour, FakeRouter, SlowHttp, SsdpResponder
from tests.integration.conftest import FAST, LogLine, free_port, texts
from tests.integration.conftest import peer_config as config

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

QUICK = RetransmitPolicy(rto=0.05, backoff=2.0, max_sends=3, last_wait=2.0)  # 0.25 s to give up on silence
INTERNAL = 40000  # the port we map (nothing needs to listen there: the mapper only asks)


@pytest_asyncio.fixture
async def router() -> AsyncIterator[FakeRouter]:
    fake = await FakeRouter.start()
    yield fake
    fake.close()


def portmap(router: FakeRouter, **changes: object) -> PortmapConfig:
    """Ask ``router`` quickly; UPnP's search goes to a port where nothing listens (refused at once) unless changed."""
    base = PortmapConfig(
        router="127.0.0.1", port=router.address[1], ssdp_port=free_port("127.0.0.1"), policy=QUICK, upnp_timeout=0.5
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def logged(text: str) -> LogLine:
    line = LogLine(text)
    logging.getLogger("punch.portmap").addHandler(line)
    return line


@pytest.fixture(autouse=True)
def _portmap_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.INFO, logger="punch")
    yield
    logger = logging.getLogger("punch.portmap")
    for handler in [h for h in logger.handlers if isinstance(h, LogLine)]:
        logger.removeHandler(handler)


async def test_pcp_maps_the_port_renews_it_and_deletes_it(router: FakeRouter, caplog: pytest.LogCaptureFixture) -> None:
    router.behaviour.max_lifetime = 2  # granted 2 s: renewed after 1 s
    renewed = logged("renewed")
    mapper = Mapper("127.0.0.1", INTERNAL, portmap(router))
    mapping = await mapper.start()
    assert mapping is not None
    assert (mapping.protocol, mapping.external_ip, mapping.lifetime) == ("PCP", "127.0.0.1", 2)
    assert mapping.external_port == router.mappings[INTERNAL].external
    assert (
        f"router 127.0.0.1 mapped UDP 127.0.0.1:{mapping.external_port} -> us (port {INTERNAL}) for 2 s (PCP)"
        in caplog.text
    )
    await asyncio.wait_for(renewed.seen.wait(), 5)
    assert f"router 127.0.0.1 renewed UDP 127.0.0.1:{mapping.external_port} -> us for 2 s (PCP)" in caplog.text
    assert mapper.renewals >= 1
    await mapper.close()
    assert router.mappings == {}  # deleted: a MAP with lifetime 0 and our nonce
    assert f"router 127.0.0.1 deleted our mapping UDP 127.0.0.1:{mapping.external_port} (PCP)" in caplog.text
    assert mapper.counters == {}
    await mapper.close()  # idempotent


@pytest.mark.parametrize(
    ("pcp", "why", "dropped"),
    [
        ("error 2", "PCP: PCP result 2 NOT_AUTHORIZED", {}),
        ("natpmp-only", "PCP: the router speaks NAT-PMP, not PCP (it answered: unsupported version)", {}),
        ("garbage", "PCP: no answer from 127.0.0.1:{port} to 3 requests in 0.25 s", {"portmap-malformed": 3}),
        ("other-nonce", "PCP: no answer from 127.0.0.1:{port} to 3 requests in 0.25 s", {"portmap-mismatch": 3}),
        ("silent", "PCP: no answer from 127.0.0.1:{port} to 3 requests in 0.25 s", {}),
    ],
    ids=["error", "natpmp-only", "garbage", "other-nonce", "silent"],
)
async def test_a_router_whose_pcp_fails_is_asked_in_nat_pmp(
    router: FakeRouter, caplog: pytest.LogCaptureFixture, pcp: str, why: str, dropped: dict[str, int]
) -> None:
    router.behaviour.pcp = pcp
    mapper = Mapper("127.0.0.1", INTERNAL, portmap(router))
    mapping = await asyncio.wait_for(mapper.start(), 10)
    assert mapping is not None
    assert mapping.protocol == "NAT-PMP"
    assert f"for 7200 s (NAT-PMP; {why.format(port=router.address[1])})" in caplog.text  # why PCP was given up
    assert mapper.counters == dropped
    if dropped:
        assert "dropped a datagram from router 127.0.0.1" in caplog.text
    await mapper.close()
    assert router.mappings == {}
    # where no protocol works, one line says why each did not
    router.behaviour.natpmp = "error 4"
    failed = Mapper("127.0.0.1", INTERNAL, portmap(router))
    assert await asyncio.wait_for(failed.start(), 10) is None
    await failed.close()
    assert why.format(port=router.address[1]) in caplog.text
    assert "NAT-PMP: NAT-PMP result 4 Out of resources" in caplog.text
    assert "UPnP IGD: nothing answers on 127.0.0.1:" in caplog.text


@pytest.mark.parametrize(
    ("natpmp", "why", "dropped"),
    [
        ("error 2", "NAT-PMP: NAT-PMP result 2 Not Authorized/Refused", {}),
        ("garbage", "NAT-PMP: no answer from 127.0.0.1:{port} to 3 requests in 0.25 s", {"portmap-malformed": 3}),
        ("other-nonce", "NAT-PMP: no answer from 127.0.0.1:{port} to 3 requests in 0.25 s", {"portmap-mismatch": 3}),
        ("silent", "NAT-PMP: no answer from 127.0.0.1:{port} to 3 requests in 0.25 s", {}),
    ],
    ids=["error", "garbage", "another-internal-port", "silent"],
)
async def test_a_router_whose_pcp_and_nat_pmp_fail_maps_nothing_and_says_why(
    router: FakeRouter, caplog: pytest.LogCaptureFixture, natpmp: str, why: str, dropped: dict[str, int]
) -> None:
    """PCP refused, NAT-PMP answering as told, no UPnP IGD: no mapping, one line with each protocol's reason, each
    datagram that answered no request of ours dropped and counted, and nothing left at the router."""
    router.behaviour.pcp, router.behaviour.natpmp = "error 2", natpmp
    mapper = Mapper("127.0.0.1", INTERNAL, portmap(router))
    assert await asyncio.wait_for(mapper.start(), 10) is None
    await mapper.close()
    assert mapper.counters == dropped
    reasons = f"PCP: PCP result 2 NOT_AUTHORIZED; {why.format(port=router.address[1])}; UPnP IGD: nothing answers on"
    assert f"router 127.0.0.1 maps no port for us ({reasons}" in caplog.text
    assert router.mappings == {}


async def test_a_upnp_igd_that_answers_slowly_is_given_up_and_nothing_hangs(
    router: FakeRouter, caplog: pytest.LogCaptureFixture
) -> None:
    """PCP and NAT-PMP refused, the SSDP search answered with a LOCATION whose HTTP server never answers: the mapper
    gives up after its timeout, with a line saying so; its thread ends on its own."""
    router.behaviour.pcp = router.behaviour.natpmp = "error 2"
    slow = await SlowHttp().start()
    answer = f"HTTP/1.1 200 OK\r\nLOCATION: http://127.0.0.1:{slow.port}/rootDesc.xml\r\n\r\n".encode()
    ssdp = await SsdpResponder.start(answer)
    try:
        mapper = Mapper("127.0.0.1", INTERNAL, portmap(router, ssdp_port=ssdp.port, upnp_timeout=0.5))
        loop = asyncio.get_running_loop()
        began = loop.time()
        assert await asyncio.wait_for(mapper.start(), 5) is None
        assert loop.time() - began < 2.0  # the 0.5 s timeout, not miniupnpc's own
        assert "UPnP IGD: its IGD did not answer its description within 0.5 s" in caplog.text
        await mapper.close()
    finally:
        ssdp.close()
        await slow.close()


async def test_an_ssdp_answer_pointing_elsewhere_is_dropped_and_counted(
    router: FakeRouter, caplog: pytest.LogCaptureFixture
) -> None:
    router.behaviour.pcp = router.behaviour.natpmp = "error 2"
    ssdp = await SsdpResponder.start(b"HTTP/1.1 200 OK\r\nLOCATION: http://192.0.2.99:80/evil.xml\r\n\r\n")
    try:
        mapper = Mapper("127.0.0.1", INTERNAL, portmap(router, ssdp_port=ssdp.port))
        assert await asyncio.wait_for(mapper.start(), 5) is None
        await mapper.close()
    finally:
        ssdp.close()
    assert mapper.counters == {"portmap-mismatch": 3}
    assert "SSDP LOCATION 'http://192.0.2.99:80/evil.xml' is not an http URL on router 127.0.0.1" in caplog.text


async def test_a_router_that_restarted_and_lost_the_mapping_maps_it_again_and_the_owner_is_told(
    router: FakeRouter, caplog: pytest.LogCaptureFixture
) -> None:
    router.behaviour.max_lifetime = 2
    changes: list[PortMapping | None] = []
    told = asyncio.Event()

    def on_change(mapping: PortMapping | None) -> None:
        changes.append(mapping)
        told.set()

    mapper = Mapper("127.0.0.1", INTERNAL, portmap(router), on_change=on_change)
    first = await mapper.start()
    assert first is not None
    router.restart()  # its mappings gone, its epoch back to about 1; its next port differs (another free one)
    await asyncio.wait_for(told.wait(), 5)
    again = changes[0]
    assert again is not None
    assert again.external_port == router.mappings[INTERNAL].external != first.external_port
    assert (
        f"router 127.0.0.1 lost our mapping UDP 127.0.0.1:{first.external_port}; it maps UDP 127.0.0.1:{again.external_port} -> us now (PCP)"
        in caplog.text
    )
    await mapper.close()


async def test_a_mapping_the_router_stops_renewing_runs_out_and_the_owner_is_told(
    router: FakeRouter, caplog: pytest.LogCaptureFixture
) -> None:
    router.behaviour.max_lifetime = 3
    told = asyncio.Event()
    changes: list[PortMapping | None] = []

    def on_change(mapping: PortMapping | None) -> None:
        changes.append(mapping)
        told.set()

    mapper = Mapper("127.0.0.1", INTERNAL, portmap(router), on_change=on_change)
    assert await mapper.start() is not None
    router.behaviour.pcp = "silent"
    await asyncio.wait_for(told.wait(), 10)
    assert changes == [None]
    assert "did not renew our mapping" in caplog.text
    assert "ran out; asking for a new one" in caplog.text
    await mapper.close()


async def two_peers(server: RendezvousServer, mapped_a: PortmapConfig) -> tuple[PeerResult, PeerResult]:
    """Peers a (127.0.0.2, whose "router" maps a port) and b (127.0.0.3, none) at once, each sending one text."""
    a = config(server, "a", "b", bind=("127.0.0.2", 0), portmap=mapped_a)
    b = config(server, "b", "a", bind=("127.0.0.3", 0), portmap=PortmapConfig(enabled=False))
    return await asyncio.gather(run_peer(a, texts("to b"), lambda _: None), run_peer(b, texts("to a"), lambda _: None))


async def test_a_peer_offers_its_mapped_port_and_the_other_checks_it(
    server: RendezvousServer, caplog: pytest.LogCaptureFixture
) -> None:
    fake = await FakeRouter.start(Behaviour(external_ip="127.0.0.2", inside="127.0.0.2"))
    try:
        result_a, result_b = await two_peers(server, portmap(fake))
    finally:
        fake.close()
    assert (result_a.error, result_b.error) == (None, None)
    assert (result_a.received, result_b.received) == (["to a"], ["to b"])
    assert result_a.portmap is not None
    assert result_a.portmap["protocol"] == "PCP"
    external = result_a.portmap["external"]
    assert f"candidates {result_a.mapped}, {external}; we are the" in caplog.text  # b's introduction to a
    assert f"a's router maps {external} for it: we check it now" in caplog.text
    assert f"our router maps {external} for us: b checks it now" in caplog.text
    assert result_b.path in ("mapped", "direct")  # on loopback a's own endpoint answers too; either is proven first
    assert fake.mappings == {}  # deleted as a closed


@pytest.mark.parametrize("hard_maps", [True, False], ids=["the-hard-side-maps", "the-easy-side-maps"])
async def test_a_mapped_port_beats_peer_reflexive_first_and_port_prediction(
    server: RendezvousServer, caplog: pytest.LogCaptureFixture, hard_maps: bool
) -> None:
    """10's NAT maps endpoint-dependently and 14's does not (assumed: loopback has no NAT), where ports would be
    predicted after a check from 10's main socket; one router maps a port: the plan is MAPPED, the side facing that
    port checks it at once, and nobody checks from a main socket first, opens many sockets or sprays."""
    sides = {"10": ("127.0.0.2", Mapping.ENDPOINT_DEPENDENT), "14": ("127.0.0.3", Mapping.ENDPOINT_INDEPENDENT)}
    mapping_id = "10" if hard_maps else "14"
    mapping_ip = sides[mapping_id][0]
    fake = await FakeRouter.start(Behaviour(external_ip=mapping_ip, inside=mapping_ip))

    async def run(me: str, other: str) -> PeerResult:
        ip, mapping = sides[me]
        mapper = portmap(fake) if me == mapping_id else PortmapConfig(enabled=False)
        peer = config(server, me, other, bind=(ip, 0), predict=PredictConfig(assume=mapping), portmap=mapper)
        return await run_peer(peer, texts(f"to {other}"), lambda _: None)

    try:
        result10, result14 = await asyncio.gather(run("10", "14"), run("14", "10"))
    finally:
        fake.close()
    assert (result10.error, result14.error) == (None, None)
    assert (result10.received, result14.received) == (["to 10"], ["to 14"])
    assert (result10.role, result14.role) == ("opener", "prober")  # the hard side opens, as for prediction
    mapper, checker_id = (result10, "14") if hard_maps else (result14, "10")
    assert mapper.portmap is not None
    external = mapper.portmap["external"]
    assert f"{mapping_id}'s router maps {external} for it: we check it now" in caplog.text
    assert f"our router maps {external} for us: {checker_id} checks it now" in caplog.text
    peers = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("punch.peer."))
    for predicting in ("checking from our main socket", "checks from its main socket first", "port prediction",
                       "sockets toward", "spraying", "(Go)"):  # fmt: skip
        assert predicting not in peers  # (the server, which knows nothing of mapped ports, still names the plan)
    assert result10.path in ("mapped", "direct")  # on loopback the mapper's own endpoint answers too
    assert result14.path in ("mapped", "direct")
    assert fake.mappings == {}


async def test_a_silent_router_does_not_hold_the_session_back(
    server: RendezvousServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A router that drops PCP and NAT-PMP without a word: its requests' whole schedule (1.75 s each) would pass before
    the Connect; the peer waits OFFER_WAIT for it, then asks for the other peer without a mapped port."""
    fake = await FakeRouter.start(Behaviour(pcp="silent", natpmp="silent"))
    try:
        result_a, result_b = await two_peers(server, portmap(fake, policy=ROUTER_POLICY))
    finally:
        fake.close()
    assert (result_a.error, result_b.error) == (None, None)
    assert (result_a.received, result_b.received) == (["to a"], ["to b"])
    assert f"router 127.0.0.1 has not answered within {OFFER_WAIT:g} s: we go on without a mapped port" in caplog.text
    assert result_a.portmap is None


async def test_without_a_router_or_with_portmap_off_nothing_is_asked(server: RendezvousServer) -> None:
    fake = await FakeRouter.start()
    try:
        result_a, _ = await two_peers(server, portmap(fake, enabled=False))
    finally:
        fake.close()
    assert result_a.error is None
    assert (fake.requests, result_a.portmap) == ([], None)


async def test_a_dual_stack_peer_offers_its_mapped_port_first_in_the_family_it_registered_by(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Peers on [::] given a dual-stack server's two addresses, IPv4 first: a's router maps an IPv4 port, which a
    offers right after the endpoint the server sees, its IPv6 candidates after (punch.peer.dualstack); b checks it."""
    async with RendezvousServer(push_policy=FAST) as dual:
        await dual.start(("::", 0))
        port = dual.address[1]
        both = {"server": ("127.0.0.1", port), "servers": (("::1", port),), "bind": None}  # no bind: [::]
        fake = await FakeRouter.start(Behaviour(external_ip="127.0.0.1"))
        try:
            a = dataclasses.replace(config(dual, "a", "b", portmap=portmap(fake)), **both)  # type: ignore[arg-type]
            b = dataclasses.replace(config(dual, "b", "a", portmap=PortmapConfig(enabled=False)), **both)  # type: ignore[arg-type]
            result_a, result_b = await asyncio.gather(
                run_peer(a, texts("to b"), lambda _: None), run_peer(b, texts("to a"), lambda _: None)
            )
        finally:
            fake.close()
    assert (result_a.error, result_b.error) == (None, None)
    assert (result_a.received, result_b.received) == (["to a"], ["to b"])
    assert result_a.portmap is not None
    external = result_a.portmap["external"]
    ours = str(result_a.local).rsplit(":", 1)[1]
    # b's introduction to a: the endpoint the server saw, the mapped port, then the IPv6 one [::1] saw
    assert f"candidates {result_a.mapped}, {external}, [::1]:{ours}; we are the" in caplog.text
    assert f"a's router maps {external} for it: we check it now" in caplog.text
    assert result_b.path in ("mapped", "direct")  # on loopback every candidate answers; either is proven first
    assert fake.mappings == {}  # deleted as a closed
