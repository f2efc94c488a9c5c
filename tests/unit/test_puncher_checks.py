"""How a peer answers connectivity checks: only the other peer of its own session (fake endpoint, no sockets)."""

from __future__ import annotations

import asyncio

import pytest

from punch.errors import PeerError
from punch.peer.puncher import Puncher, PunchTimings, lan_wait
from punch.peer.strategy import Strategy, early_delay, early_pays
from punch.stun import Address, AttributeType, Message, MessageClass, Method, make_success
from punch.stun.wire import Introduction, KeyShare, Role, request

pytestmark = pytest.mark.unit

SESSION = b"\x07" * 16
THEM = ("192.0.2.14", 5000)

NO_SHARE = KeyShare(bytes(32), bytes(64))  # these tests never derive a session key


class FakeEndpoint:
    def __init__(self) -> None:
        self.sent: list[tuple[Message, Address]] = []
        self.steps: list[tuple[str, Address]] = []  # low-TTL probes and checks, in order

    def send(self, message: Message, remote: Address) -> None:
        self.sent.append((message, remote))

    def send_with_ttl(self, message: Message, remote: Address, ttl: int) -> None:
        self.steps.append((f"probe with TTL {ttl}", remote))

    async def request(self, message: Message, remote: Address, policy: object) -> tuple[Message, Address]:
        self.steps.append(("check", remote))
        await asyncio.Future()  # never answered in these tests
        raise AssertionError


def check(sender: str, session: bytes = SESSION, *, nominate: bool = False) -> Message:
    attributes: list[tuple[int, object]] = [(AttributeType.PEER_ID, sender), (AttributeType.SESSION_ID, session)]
    if nominate:
        attributes.append((AttributeType.USE_CANDIDATE, None))
    return request(Method.BINDING, *attributes)


def run(role: Role, *messages: tuple[Message, Address]) -> tuple[FakeEndpoint, Puncher]:
    async def scenario() -> tuple[FakeEndpoint, Puncher]:
        endpoint = FakeEndpoint()
        introduction = Introduction("14", (THEM, ("10.0.0.2", 5000)), SESSION, role, bytes(32), NO_SHARE)
        puncher = Puncher(endpoint, "10", introduction, PunchTimings())  # type: ignore[arg-type]
        for message, source in messages:
            assert puncher.on_request(message, source)
        await puncher.close()
        return endpoint, puncher

    return asyncio.run(scenario())


def test_our_own_probe_another_session_or_a_stranger_get_no_answer() -> None:
    endpoint, _ = run(
        Role.OPENER,
        (check("10"), ("10.0.0.2", 5000)),  # our own probe, come back through a look-alike LAN candidate
        (check("14", b"\x08" * 16), THEM),  # another session
        (check("66"), THEM),  # someone claiming another ID
    )
    assert endpoint.sent == []


def test_a_check_from_the_peer_is_answered_with_where_it_came_from() -> None:
    probe = check("14")
    endpoint, _ = run(Role.PROBER, (probe, THEM))
    [(answer, destination)] = endpoint.sent
    assert destination == THEM
    assert (answer.message_class, answer.transaction_id) == (MessageClass.SUCCESS, probe.transaction_id)
    assert answer.address(AttributeType.XOR_MAPPED_ADDRESS) == THEM
    assert answer.text(AttributeType.PEER_ID) == "10"
    assert answer.raw(AttributeType.SESSION_ID) == SESSION


class AnsweringEndpoint(FakeEndpoint):
    """The other peer answers our checks, at the addresses in ``answering`` only."""

    def __init__(self, *answering: Address) -> None:
        super().__init__()
        self.answering = answering
        self.checked: list[Address] = []

    async def request(self, message: Message, remote: Address, policy: object) -> tuple[Message, Address]:
        self.checked.append(remote)
        if remote not in self.answering:
            await asyncio.Future()
        identity = ((AttributeType.PEER_ID, "14"), (AttributeType.SESSION_ID, SESSION))
        return make_success(message, identity), remote


def test_the_opener_takes_the_nominated_path_once_its_own_check_proved_it() -> None:
    async def scenario() -> None:
        lan = ("10.0.14.2", 5000)
        endpoint = AnsweringEndpoint(lan)
        introduction = Introduction("14", (THEM, lan), SESSION, Role.OPENER, bytes(32), NO_SHARE)
        puncher = Puncher(endpoint, "10", introduction, PunchTimings(timeout=1))  # type: ignore[arg-type]
        puncher.on_request(check("14", nominate=True), lan)
        path = await puncher.run()
        assert (path.remote, path.kind) == (("10.0.14.2", 5000), "direct-lan")
        assert endpoint.checked == [lan]  # the triggered check that proved it

    asyncio.run(scenario())


def test_a_nomination_replayed_from_an_address_that_never_answers_does_not_steer_the_path() -> None:
    """An authentic nominating check (a replay, captured on the way) from a third host's address: the opener
    answers and checks that address, but no answer comes from the other peer there, so no path is chosen."""

    async def scenario() -> str:
        attacker = ("203.0.113.166", 4000)
        endpoint = AnsweringEndpoint(THEM)
        introduction = Introduction("14", (THEM,), SESSION, Role.OPENER, bytes(32), NO_SHARE)
        timings = PunchTimings(timeout=0.2, opener_fallback=60)
        puncher = Puncher(endpoint, "10", introduction, timings)  # type: ignore[arg-type]
        puncher.on_request(check("14", nominate=True), attacker)
        with pytest.raises(PeerError) as failure:
            await puncher.run()
        assert puncher.chosen is None
        assert endpoint.checked == [attacker]
        return str(failure.value)

    assert asyncio.run(scenario()) == (
        "no direct path to 14 within 0.2 s (tried 192.0.2.14:5000); both NATs may be symmetric, or a firewall drops UDP"
    )


def test_a_check_from_the_peer_counts_as_heard_and_a_silenced_puncher_neither_answers_nor_chooses() -> None:
    """punch.peer.moving: a peer that hears the other stays when told to move; one that moves answers nothing more
    on its old socket and takes no path there, even one its own check proves."""

    async def scenario() -> None:
        endpoint = AnsweringEndpoint(THEM)
        introduction = Introduction("14", (THEM,), SESSION, Role.OPENER, bytes(32), NO_SHARE)
        puncher = Puncher(endpoint, "10", introduction, PunchTimings(timeout=0.2, opener_fallback=60))  # type: ignore[arg-type]
        assert not puncher.heard
        puncher.on_request(check("66"), THEM)  # a stranger is not the other peer
        assert not puncher.heard
        puncher.silence()
        assert puncher.on_request(check("14", nominate=True), THEM)  # taken, but not answered
        assert (puncher.heard, endpoint.sent) == (False, [])
        with pytest.raises(PeerError):
            await puncher.run()
        assert puncher.chosen is None

    async def prober_proves_but_takes_nothing() -> None:
        endpoint = AnsweringEndpoint(THEM)
        introduction = Introduction("14", (THEM,), SESSION, Role.PROBER, bytes(32), NO_SHARE)
        puncher = Puncher(endpoint, "10", introduction, PunchTimings(timeout=0.2))  # type: ignore[arg-type]
        puncher.silence()
        with pytest.raises(PeerError):
            await puncher.run()
        assert THEM in endpoint.checked  # its check was answered
        assert puncher.chosen is None

    asyncio.run(scenario())
    asyncio.run(prober_proves_but_takes_nothing())
    endpoint, puncher = run(Role.OPENER, (check("14"), THEM))
    assert puncher.heard
    assert len(endpoint.sent) == 1


class GatedEndpoint(FakeEndpoint):
    """Records every check with its message; the other peer answers those to THEM once ``answer`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.checks: list[tuple[Message, Address]] = []
        self.answer = asyncio.Event()
        self.two_checks = asyncio.Event()

    async def request(self, message: Message, remote: Address, policy: object) -> tuple[Message, Address]:
        self.checks.append((message, remote))
        if len(self.checks) == 2:
            self.two_checks.set()
        if remote != THEM:
            await asyncio.Future()
        await self.answer.wait()
        return make_success(message, ((AttributeType.PEER_ID, "14"), (AttributeType.SESSION_ID, SESSION))), THEM


@pytest.mark.parametrize("same_nat", [False, True], ids=["two-nats", "one-nat"])
def test_the_prober_nominates_the_public_endpoint_in_its_checks_and_takes_it_when_answered(same_nat: bool) -> None:
    """Only the public endpoint's checks nominate: behind different NATs, and behind one NAT where no LAN candidate
    of the other is on our links (two homes behind one carrier NAT): the hairpin's answer is the path at once."""

    async def scenario() -> None:
        endpoint = GatedEndpoint()
        introduction = Introduction("14", (THEM, ("10.0.14.2", 5000)), SESSION, Role.PROBER, bytes(32), NO_SHARE)
        timings = PunchTimings(timeout=1)
        puncher = Puncher(endpoint, "10", introduction, timings, strategy=Strategy(same_nat=same_nat))  # type: ignore[arg-type]
        assert not puncher.lan_first
        running = asyncio.create_task(puncher.run())
        await endpoint.two_checks.wait()
        nominating = {remote: message.has(AttributeType.USE_CANDIDATE) for message, remote in endpoint.checks}
        assert nominating == {THEM: True, ("10.0.14.2", 5000): False}
        endpoint.answer.set()
        path = await running
        assert (path.remote, path.kind) == (THEM, "direct")
        assert len(endpoint.checks) == 2  # no separate nominating check after the answer, no LAN wait

    asyncio.run(scenario())


class RoutedLan(FakeEndpoint):
    """Behind one NAT that does not hairpin: checks to the public endpoint THEM go unanswered, the LAN candidate
    LAN (off our links: a routed LAN) answers every check."""

    def __init__(self) -> None:
        super().__init__()
        self.checks: list[tuple[Message, Address]] = []

    async def request(self, message: Message, remote: Address, policy: object) -> tuple[Message, Address]:
        self.checks.append((message, remote))
        if remote != LAN:
            await asyncio.Future()
        return make_success(message, ((AttributeType.PEER_ID, "14"), (AttributeType.SESSION_ID, SESSION))), LAN


LAN = ("10.0.14.2", 5000)


def test_behind_one_nat_a_routed_lan_gets_its_own_nomination_once_the_hairpin_stays_silent() -> None:
    """The LAN pair answers first; the prober gives the hairpin the LAN wait, then nominates the LAN pair in a
    check of its own (one nominated pair at a time: the opener cannot take the other)."""

    async def scenario() -> None:
        endpoint = RoutedLan()
        introduction = Introduction("14", (THEM, LAN), SESSION, Role.PROBER, bytes(32), NO_SHARE)
        timings = PunchTimings(timeout=1, lan_margin=0.01)
        puncher = Puncher(endpoint, "10", introduction, timings, strategy=Strategy(same_nat=True))  # type: ignore[arg-type]
        path = await puncher.run()
        assert (path.remote, path.kind) == (LAN, "direct-lan")
        to_lan = [message.has(AttributeType.USE_CANDIDATE) for message, remote in endpoint.checks if remote == LAN]
        assert to_lan == [False, True]  # checked, then nominated in a check of its own
        to_them = [message.has(AttributeType.USE_CANDIDATE) for message, remote in endpoint.checks if remote == THEM]
        assert to_them  # the hairpin was checked, and nominated all along
        assert all(to_them)

    asyncio.run(scenario())


def test_behind_one_nat_with_a_lan_candidate_on_our_link_the_prober_nominates_in_a_check_of_its_own() -> None:
    async def scenario() -> None:
        endpoint = GatedEndpoint()
        introduction = Introduction("14", (THEM,), SESSION, Role.PROBER, bytes(32), NO_SHARE)
        timings = PunchTimings(timeout=1)
        puncher = Puncher(endpoint, "10", introduction, timings, strategy=Strategy(same_nat=True, lan_on_link=True))  # type: ignore[arg-type]
        endpoint.answer.set()
        await puncher.run()
        uses = [message.has(AttributeType.USE_CANDIDATE) for message, _ in endpoint.checks]
        assert uses == [False, True]

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("ours", "theirs", "delay"),
    [
        (0.040, 0.040, 0.001),  # equally far: 5% of 20 ms is 1 ms
        (0.040, 0.100, 0.030 + 0.0025),  # their Introduce arrives 30 ms after ours; 5% of 50 ms
        (0.100, 0.040, 0.0025),  # theirs arrives first: only the margin
        (0.0002, 0.0002, 0.001),  # at least 1 ms
    ],
)
def test_early_checks_wait_for_the_other_introduction_and_a_margin(ours: float, theirs: float, delay: float) -> None:
    assert early_delay(ours, theirs, 0.05) == pytest.approx(delay)


@pytest.mark.parametrize(
    ("opener", "prober", "pays"),
    [
        (0.040, 0.040, True),  # early at 20 + 1 ms, Go at 60 ms
        (0.010, 0.0004, True),  # early at 5 + 1 ms, Go at 10.2 ms
        (0.0004, 0.010, False),  # early at 5 + 1 ms, Go at 5.4 ms: the opener is next to the server
        (0.004, 0.004, True),  # early at 2 + 1 ms, Go at 6 ms: 3 ms saved, more than the margin again
        (0.002, 0.002, False),  # early at 1 + 1 ms, Go at 3 ms: 1 ms saved, no more than the margin
        (0.0002, 0.0002, False),  # a LAN: early at 0.1 + 1 ms, Go at 0.3 ms
    ],
)
def test_early_checks_are_used_where_they_beat_ready_and_go(opener: float, prober: float, pays: bool) -> None:
    assert early_pays(opener, prober, 0.05) is pays


def test_a_try_that_ended_without_a_path_does_not_answer_a_nomination() -> None:
    async def scenario() -> list[tuple[Message, Address]]:
        endpoint = FakeEndpoint()
        introduction = Introduction("14", (THEM,), SESSION, Role.OPENER, bytes(32), NO_SHARE)
        puncher = Puncher(endpoint, "10", introduction, PunchTimings(timeout=0.05))  # type: ignore[arg-type]
        with pytest.raises(PeerError):
            await puncher.retry(0.0)
        puncher.on_request(check("14", nominate=True), THEM)
        puncher.on_request(check("14"), THEM)  # a plain check is still answered
        return endpoint.sent

    [(answer, _)] = asyncio.run(scenario())
    assert not answer.has(AttributeType.USE_CANDIDATE)


def test_a_retry_from_the_relay_opens_our_mapping_before_it_checks() -> None:
    """Both peers retry on their own clocks: each opens its NAT with low-TTL probes first, and the prober checks a
    lead later, so its check finds the opener's mapping open instead of being recorded as a connection of its own."""

    async def scenario(role: Role) -> list[tuple[str, Address]]:
        endpoint = FakeEndpoint()
        lan = ("10.0.0.2", 5000)
        introduction = Introduction("14", (THEM, lan), SESSION, role, bytes(32), NO_SHARE)
        first = Puncher(endpoint, "10", introduction, PunchTimings(open_ttl=2))  # type: ignore[arg-type]
        with pytest.raises(PeerError, match=r"no direct path to 14 within 0\.05 s"):
            await first.again(0.04, 3).retry(0.01)
        return endpoint.steps

    steps = asyncio.run(scenario(Role.PROBER))
    lan = ("10.0.0.2", 5000)
    assert steps == [("probe with TTL 3", THEM), ("probe with TTL 3", lan), ("check", THEM), ("check", lan)]
    # the opener only answers (and would check itself opener_fallback seconds after the lead)
    assert asyncio.run(scenario(Role.OPENER)) == [("probe with TTL 3", THEM), ("probe with TTL 3", lan)]


@pytest.mark.parametrize(
    ("same_nat", "open_ttl", "public_ttl"),
    [
        (False, 3, 3),  # behind a home NAT and a CGN, the other peer elsewhere: past both
        (True, 3, 2),  # the other peer behind the same CGN: die at the CGN, which would hairpin it to them
        (True, 2, 1),  # both behind one home NAT: die at it
        (True, 1, 1),  # no NAT of ours on the way: nothing to lower
    ],
)
def test_behind_the_same_outermost_nat_the_probe_to_their_public_endpoint_dies_there(
    same_nat: bool, open_ttl: int, public_ttl: int
) -> None:
    async def scenario() -> list[tuple[str, Address]]:
        endpoint = FakeEndpoint()
        lan = ("10.0.11.2", 5000)
        introduction = Introduction("14", (THEM, lan), SESSION, Role.OPENER, bytes(32), NO_SHARE)
        timings = PunchTimings(open_ttl=open_ttl)
        Puncher(endpoint, "10", introduction, timings, strategy=Strategy(same_nat=same_nat)).open_mappings()  # type: ignore[arg-type]
        return endpoint.steps

    steps = asyncio.run(scenario())
    assert steps == [(f"probe with TTL {public_ttl}", THEM), (f"probe with TTL {open_ttl}", ("10.0.11.2", 5000))]


@pytest.mark.parametrize(
    ("public_took", "wait"),
    [
        (0.001, 0.02),  # a hairpin next door: the margin (a first ARP, the scheduler)
        (0.03, 0.03),  # a carrier NAT 15 ms away: as long again as its hairpin took
        (0.4, 0.25),  # a public check that needed a retransmission: no more than the cap
    ],
)
def test_a_public_path_behind_our_nat_waits_for_a_lan_one_as_long_again_as_it_took(
    public_took: float, wait: float
) -> None:
    assert lan_wait(public_took, margin=0.02, cap=0.25) == pytest.approx(wait)
