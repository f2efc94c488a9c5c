"""How a peer answers connectivity checks: only the other peer of its own session (fake endpoint, no sockets)."""

from __future__ import annotations

import asyncio

import pytest

from punch.peer.puncher import Puncher, PunchTimings
from punch.rendezvous.wire import Introduction, Role, request
from punch.stun import Address, AttributeType, Message, MessageClass, Method

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
