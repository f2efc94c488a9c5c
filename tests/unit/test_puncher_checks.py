"""How a peer answers connectivity checks: only the other peer of its own session (fake endpoint, no sockets)."""

from __future__ import annotations

import asyncio

import pytest

from punch.peer.puncher import Puncher, PunchTimings, early_delay
from punch.rendezvous.wire import Introduction, Role, request
from punch.stun import Address, AttributeType, Message, MessageClass, Method, make_success

pytestmark = pytest.mark.unit

SESSION = b"\x07" * 16
THEM = ("192.0.2.14", 5000)


class FakeEndpoint:
    def __init__(self) -> None:
        self.sent: list[tuple[Message, Address]] = []

    def send(self, message: Message, remote: Address) -> None:
        self.sent.append((message, remote))

    async def request(self, message: Message, remote: Address, policy: object) -> tuple[Message, Address]:
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
        introduction = Introduction("14", (THEM, ("10.0.0.2", 5000)), SESSION, role, bytes(32))
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


def test_the_opener_takes_the_nominated_path() -> None:
    async def scenario() -> None:
        endpoint = FakeEndpoint()
        introduction = Introduction("14", (THEM, ("10.0.14.2", 5000)), SESSION, Role.OPENER, bytes(32))
        puncher = Puncher(endpoint, "10", introduction, PunchTimings(timeout=1))  # type: ignore[arg-type]
        puncher.on_request(check("14", nominate=True), ("10.0.14.2", 5000))
        path = await puncher.run()
        assert (path.remote, path.kind) == (("10.0.14.2", 5000), "direct-lan")

    asyncio.run(scenario())


class AnsweringEndpoint(FakeEndpoint):
    """Records every check sent; the other peer answers those to THEM once ``answer`` is set, the rest never."""

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


def test_the_prober_nominates_the_public_endpoint_in_its_checks_and_takes_it_when_answered() -> None:
    async def scenario() -> None:
        endpoint = AnsweringEndpoint()
        introduction = Introduction("14", (THEM, ("10.0.14.2", 5000)), SESSION, Role.PROBER, bytes(32))
        puncher = Puncher(endpoint, "10", introduction, PunchTimings(timeout=1))  # type: ignore[arg-type]
        running = asyncio.create_task(puncher.run())
        await endpoint.two_checks.wait()
        nominating = {remote: message.has(AttributeType.USE_CANDIDATE) for message, remote in endpoint.checks}
        assert nominating == {THEM: True, ("10.0.14.2", 5000): False}
        endpoint.answer.set()
        path = await running
        assert (path.remote, path.kind) == (THEM, "direct")
        assert len(endpoint.checks) == 2  # no separate nominating check after the answer

    asyncio.run(scenario())


def test_the_opener_takes_an_aggressively_nominated_path_once_its_own_check_is_answered() -> None:
    async def scenario() -> None:
        endpoint = AnsweringEndpoint()
        introduction = Introduction("14", (THEM, ("10.0.14.2", 5000)), SESSION, Role.OPENER, bytes(32))
        puncher = Puncher(endpoint, "10", introduction, PunchTimings(timeout=1))  # type: ignore[arg-type]
        puncher.on_request(check("14", nominate=True), THEM)  # answered, and a triggered check goes back
        await asyncio.sleep(0)
        assert puncher.chosen is None  # our own check there is not answered yet
        assert [remote for _, remote in endpoint.checks] == [THEM]
        endpoint.answer.set()
        path = await puncher.run()
        assert (path.remote, path.kind) == (THEM, "direct")

    asyncio.run(scenario())


def test_behind_one_nat_the_prober_nominates_in_a_check_of_its_own() -> None:
    async def scenario() -> None:
        endpoint = AnsweringEndpoint()
        introduction = Introduction("14", (THEM,), SESSION, Role.PROBER, bytes(32))
        puncher = Puncher(endpoint, "10", introduction, PunchTimings(timeout=1), same_nat=True)  # type: ignore[arg-type]
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
