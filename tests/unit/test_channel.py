"""The message channel's receive rules, with a fake endpoint (no sockets)."""

from __future__ import annotations

import asyncio

import pytest

from punch.peer.channel import Channel
from punch.peer.sealing import Sealer
from punch.stun import Address, AttributeType, Message, MessageClass, Method, new_transaction_id
from punch.stun.wire import request

pytestmark = pytest.mark.unit

SESSION = bytes(16)
KEY = b"s" * 32
SOURCE = ("198.51.100.10", 40000)


class FakeEndpoint:
    def __init__(self) -> None:
        self.sent: list[tuple[Message, Address]] = []

    def send(self, message: Message, remote: Address) -> None:
        self.sent.append((message, remote))


def data(sequence: int, text: str, *, sender: str = "14", session: bytes = SESSION, key: bytes = KEY) -> Message:
    transaction_id = new_transaction_id()
    sealed = Sealer(key).seal(transaction_id, sender, sequence, text.encode())
    return Message(
        Method.DATA,
        MessageClass.REQUEST,
        transaction_id,
        (
            (AttributeType.PEER_ID, sender),
            (AttributeType.SESSION_ID, session),
            (AttributeType.SEQUENCE, sequence),
            (AttributeType.DATA_PAYLOAD, sealed),
        ),
    )


def make_channel() -> tuple[Channel, FakeEndpoint, list[str]]:
    endpoint = FakeEndpoint()
    shown: list[str] = []
    channel = Channel(endpoint, "10", "14", SESSION, KEY, shown.append)  # type: ignore[arg-type]
    return channel, endpoint, shown


def test_texts_are_delivered_once_and_in_order_and_duplicates_acknowledged_again() -> None:
    async def scenario() -> None:
        channel, endpoint, shown = make_channel()
        first, again, second = data(0, "a"), data(0, "a"), data(1, "b")
        for message in (first, again, data(2, "too early"), second):
            assert channel.on_request(message, SOURCE)
        assert shown == channel.received == ["a", "b"]
        acknowledged = [m.transaction_id for m, _ in endpoint.sent]
        assert acknowledged == [first.transaction_id, again.transaction_id, second.transaction_id]
        assert all(m.message_class is MessageClass.SUCCESS for m, _ in endpoint.sent)

    asyncio.run(scenario())


def test_messages_of_another_session_or_sender_are_ignored() -> None:
    async def scenario() -> None:
        channel, endpoint, shown = make_channel()
        assert channel.on_request(data(0, "x", session=b"\x01" * 16), SOURCE)
        assert channel.on_request(data(0, "x", sender="66"), SOURCE)
        assert channel.on_request(data(0, "x", key=b"w" * 32), SOURCE)  # sealed with another key
        assert not channel.on_request(request(Method.BINDING), SOURCE)  # not a channel message
        assert (shown, endpoint.sent) == ([], [])

    asyncio.run(scenario())


def test_close_is_acknowledged_every_time_and_recorded_once() -> None:
    async def scenario() -> None:
        channel, endpoint, _ = make_channel()
        close = request(Method.CLOSE, (AttributeType.PEER_ID, "14"), (AttributeType.SESSION_ID, SESSION))
        assert channel.on_request(close, SOURCE)
        assert channel.on_request(close, SOURCE)
        assert channel.remote_closed.is_set()
        assert len(endpoint.sent) == 2

    asyncio.run(scenario())


def test_a_sealed_text_opens_only_with_its_key_nonce_sender_and_sequence() -> None:
    sealer, nonce = Sealer(KEY), bytes(range(12))
    sealed = sealer.seal(nonce, "14", 3, b"secret")
    assert b"secret" not in sealed
    assert sealer.open(nonce, "14", 3, sealed) == b"secret"
    assert sealer.open(nonce, "14", 4, sealed) is None
    assert sealer.open(nonce, "66", 3, sealed) is None
    assert sealer.open(bytes(12), "14", 3, sealed) is None
    assert Sealer(b"w" * 32).open(nonce, "14", 3, sealed) is None


class RoutedEndpoint(FakeEndpoint):
    """Requests to ``answering`` are acknowledged; to anywhere else they go unanswered (a path that broke)."""

    def __init__(self, answering: Address) -> None:
        super().__init__()
        self.answering = answering
        self.requested: list[tuple[bytes, Address]] = []
        self.stuck = asyncio.Event()  # a request is waiting on a path that does not answer

    async def request(
        self, message: Message, remote: Address, policy: object, answer_keys: tuple[bytes, ...] = ()
    ) -> tuple[Message, Address]:
        self.requested.append((message.transaction_id, remote))
        if remote != self.answering:
            self.stuck.set()
            await asyncio.Future()
        return Message(Method.DATA, MessageClass.SUCCESS, message.transaction_id, ()), remote


def test_a_text_in_flight_when_the_path_moves_is_sent_again_over_the_new_one() -> None:
    old, new = ("192.0.2.14", 5000), ("192.0.2.15", 5000)

    async def scenario() -> list[tuple[bytes, Address]]:
        endpoint = RoutedEndpoint(new)
        channel = Channel(endpoint, "10", "14", SESSION, KEY, lambda text: None)  # type: ignore[arg-type]
        channel.point_at(old)
        sending = asyncio.create_task(channel.send_text("around the change"))
        await endpoint.stuck.wait()  # the first attempt is under way, toward the old path
        assert not sending.done()
        channel.move(new)
        await asyncio.wait_for(sending, 5)
        assert channel.sent == ["around the change"]
        return endpoint.requested

    [(first, to_old), (again, to_new)] = asyncio.run(scenario())
    assert (to_old, to_new) == (old, new)
    assert first == again  # the same request: the other side delivers it once, whichever copy arrives
