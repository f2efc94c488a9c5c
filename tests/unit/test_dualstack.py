"""Candidates of both families: which is each family's public one, IPv6 nominated first, IPv4 when IPv6 stays
silent, and a port a router maps beside them (punch.peer.dualstack, punch.peer.puncher, punch.peer.strategy; a fake
endpoint, no sockets)."""

from __future__ import annotations

import asyncio

import pytest

from punch.peer.dualstack import preferred_candidate, public_candidates
from punch.peer.puncher import PLAIN, Path, Puncher, PunchTimings
from punch.peer.strategy import Plan, Strategy, mapped_candidates
from punch.stun import Address, AttributeType, Message, make_success
from punch.stun.wire import Introduction, KeyShare, Role

pytestmark = pytest.mark.unit

SESSION = b"\x07" * 16
V4 = ("192.0.2.14", 5000)  # the other peer's NAT
V4_HOST = ("10.0.14.2", 5000)
V6 = ("2001:db8:14::2", 5000)  # the other peer itself, behind its IPv6 firewall
V4_MAPPED = ("192.0.2.14", 40166)  # a port the other peer's router maps for it (punch.peer.portmapping)


@pytest.mark.parametrize(
    ("candidates", "publics", "preferred"),
    [
        ((V4, V4_HOST), (V4,), V4),  # one family: as before
        ((V6, V4, V4_HOST), (V6, V4), V6),  # registered over IPv6, IPv4 offered
        ((V4, V4_HOST, V6), (V4, V6), V6),  # registered over IPv4, IPv6 offered: still IPv6 first
        ((("2001:db8:f16::16", 1), ("2001:db8:16::2", 1)), (("2001:db8:f16::16", 1),), ("2001:db8:f16::16", 1)),
    ],
    ids=["IPv4 only", "IPv6 first", "IPv4 first", "IPv6 only (NAT66)"],
)
def test_the_first_of_each_family_is_public_and_ipv6_is_preferred(
    candidates: tuple[Address, ...], publics: tuple[Address, ...], preferred: Address
) -> None:
    assert public_candidates(candidates) == publics
    assert preferred_candidate(candidates) == preferred


class AnsweringEndpoint:
    """Answers our checks as the other peer would, but only those to ``reachable``; the rest stay unanswered."""

    def __init__(self, reachable: set[Address]) -> None:
        self.reachable = reachable
        self.nominated: list[Address] = []

    def send(self, message: Message, remote: Address) -> None:
        pass

    def send_with_ttl(self, message: Message, remote: Address, ttl: int) -> None:
        pass

    async def request(self, message: Message, remote: Address, policy: object) -> tuple[Message, Address]:
        if remote not in self.reachable:
            await asyncio.Future()  # silently dropped (a firewall): never answered
        if message.has(AttributeType.USE_CANDIDATE):
            self.nominated.append(remote)
        await asyncio.sleep(0.001)
        answer = make_success(message, ((AttributeType.PEER_ID, "14"), (AttributeType.SESSION_ID, SESSION)))
        return answer, remote


def punch_as_prober(
    candidates: tuple[Address, ...], reachable: set[Address], strategy: Strategy = PLAIN
) -> tuple[Path, list[Address]]:
    async def scenario() -> tuple[Path, list[Address]]:
        endpoint = AnsweringEndpoint(reachable)
        no_share = KeyShare(bytes(32), bytes(64))
        introduction = Introduction("14", candidates, SESSION, Role.PROBER, bytes(32), no_share)
        timings = PunchTimings(timeout=2.0, opener_fallback=0.05)
        puncher = Puncher(endpoint, "10", introduction, timings, strategy=strategy)  # type: ignore[arg-type]
        try:
            return await puncher.run(), endpoint.nominated
        finally:
            await puncher.close()

    return asyncio.run(scenario())


@pytest.mark.parametrize("candidates", [(V6, V4, V4_HOST), (V4, V4_HOST, V6)], ids=["IPv6 first", "IPv4 first"])
def test_where_both_families_work_the_ipv6_path_is_chosen(candidates: tuple[Address, ...]) -> None:
    path, nominated = punch_as_prober(candidates, {V4, V6})
    assert (path.remote, path.kind) == (V6, "direct")
    assert V4 not in nominated


@pytest.mark.parametrize("candidates", [(V6, V4, V4_HOST), (V4, V4_HOST, V6)], ids=["IPv6 first", "IPv4 first"])
def test_where_ipv6_stays_silent_ipv4_is_nominated_at_once(candidates: tuple[Address, ...]) -> None:
    # (a path at all: the IPv6 check is never answered, and without the fallback the punch times out)
    path, nominated = punch_as_prober(candidates, {V4})
    assert (path.remote, path.kind) == (V4, "direct")  # a public candidate: not "direct-lan"
    assert nominated[-1] == V4


def test_a_single_family_punch_nominates_its_public_candidate_as_before() -> None:
    path, nominated = punch_as_prober((V4, V4_HOST), {V4, V4_HOST})
    assert (path.remote, path.kind) == (V4, "direct")
    assert nominated[0] == V4


def test_a_mapped_port_comes_first_in_its_family_and_leaves_each_family_its_public_candidate() -> None:
    # As the other peer's Introduce lists them: what the server saw, the mapped port, host candidates, the other family
    candidates = (V4, V4_MAPPED, V4_HOST, V6)
    assert mapped_candidates(candidates) == (V4_MAPPED,)
    assert public_candidates(candidates) == (V4, V6)
    assert preferred_candidate(candidates) == V6


def test_a_path_through_the_other_peer_s_mapped_port_is_mapped() -> None:
    path, _ = punch_as_prober((V4, V4_MAPPED, V4_HOST, V6), {V4_MAPPED}, Strategy(plan=Plan.MAPPED, early_delay=0.0))
    assert (path.remote, path.kind) == (V4_MAPPED, "mapped")


def test_waiting_at_our_mapped_port_an_ipv6_path_is_not_through_it() -> None:
    # Our router maps an IPv4 port for us (Strategy.waits): no check came, we checked ourselves and IPv6 answered
    waiting = Strategy(plan=Plan.MAPPED, early_delay=0.0, waits=True)
    path, _ = punch_as_prober((V4, V4_HOST, V6), {V6}, waiting)
    assert (path.remote, path.kind) == (V6, "direct")
    path, _ = punch_as_prober((V4, V4_HOST, V6), {V4}, waiting)
    assert (path.remote, path.kind) == (V4, "mapped")
