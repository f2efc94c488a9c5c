"""bench/turn: the few TURN messages the relay benchmark sends coturn, and reading its answers."""

from __future__ import annotations

import socket
from typing import cast

import pytest

from bench.turn import (
    ALLOCATE,
    CHANNEL_BIND,
    CHANNEL_NUMBER,
    ERROR_CODE,
    NONCE,
    REALM,
    REQUESTED_TRANSPORT,
    USERNAME,
    XOR_PEER_ADDRESS,
    XOR_RELAYED_ADDRESS,
    Credentials,
    TurnError,
    allocate,
    bind_channel,
    channel_data,
    parse_answer,
    parse_xor_address,
    xor_address,
)
from punch.stun import Address, Message, MessageClass, encode, new_transaction_id, verify_integrity
from punch.stun.attributes import ErrorCode
from punch.stun.message import long_term_key

pytestmark = pytest.mark.unit

SERVER = ("127.0.0.1", 3481)


def test_xor_address_matches_rfc_5769s_xor_mapped_address() -> None:
    # RFC 5769 section 2.2: 192.0.2.1 port 32853 is 0001 A147 E112A643
    assert xor_address(("192.0.2.1", 32853)) == bytes.fromhex("0001a147e112a643")
    assert parse_xor_address(bytes.fromhex("0001a147e112a643")) == ("192.0.2.1", 32853)


def test_an_xor_address_that_is_not_ipv4_is_refused_with_its_size_and_family() -> None:
    with pytest.raises(TurnError, match=r"^XOR address: 20 bytes, family 02; expected 8, IPv4 \(01\)$"):
        parse_xor_address(bytes(1) + b"\x02" + bytes(18))


def test_channel_data_is_the_channel_the_length_and_the_payload_unpadded() -> None:
    assert channel_data(0x4000, b"abcde") == bytes.fromhex("40000005") + b"abcde"


def answer(request: bytes, message_class: MessageClass, attributes: list[tuple[int, object]]) -> bytes:
    return encode(Message(int.from_bytes(request[:2], "big") & 0x00F, message_class, request[8:20], tuple(attributes)))


def test_an_error_answer_gives_its_code_and_attributes() -> None:
    transaction = new_transaction_id()
    data = encode(Message(ALLOCATE, MessageClass.ERROR, transaction, ((ERROR_CODE, ErrorCode(401, "Unauthorized")),)))
    found = parse_answer(data, transaction)
    assert (found.success, found.error, found.attributes[ERROR_CODE][4:]) == (False, 401, b"Unauthorized")


def test_an_answer_to_another_request_or_not_stun_is_refused() -> None:
    data = encode(Message(ALLOCATE, MessageClass.SUCCESS, new_transaction_id(), ()))
    with pytest.raises(TurnError, match=r"^answer: transaction ID is not the request's$"):
        parse_answer(data, new_transaction_id())
    with pytest.raises(TurnError, match=r"^answer: 5 bytes that are not a STUN message$"):
        parse_answer(b"hello", new_transaction_id())


class FakeServer:
    """Stands for a socket to coturn: answers each request it is sent with the next of ``replies``, built from the
    request; keeps what was sent."""

    def __init__(self, *replies: tuple[MessageClass, list[tuple[int, object]]]) -> None:
        self.replies = list(replies)
        self.sent: list[bytes] = []
        self.pending: list[bytes] = []

    def settimeout(self, value: float | None) -> None:
        pass

    def sendto(self, data: bytes, address: Address) -> int:
        assert address == SERVER
        self.sent.append(data)
        message_class, attributes = self.replies.pop(0)
        self.pending.append(answer(data, message_class, attributes))
        return len(data)

    def recvfrom(self, size: int) -> tuple[bytes, Address]:
        return self.pending.pop(0), SERVER


def attributes_of(data: bytes) -> dict[int, bytes]:
    return parse_answer(data, data[8:20]).attributes  # a request reads the same way as an answer


def test_allocate_answers_the_401_challenge_with_long_term_credentials() -> None:
    key = long_term_key("bench", "punch.bench", "secret")
    relayed = xor_address(("127.0.0.1", 49152))
    fake = FakeServer(
        (MessageClass.ERROR, [(ERROR_CODE, ErrorCode(401, "Unauthorized")), (REALM, "punch.bench"), (NONCE, "n0nce")]),
        (MessageClass.SUCCESS, [(XOR_RELAYED_ADDRESS, relayed)]),
    )
    address, credentials = allocate(cast(socket.socket, fake), SERVER, "bench", "secret")
    assert (address, credentials) == (("127.0.0.1", 49152), Credentials("bench", "punch.bench", "n0nce", key))
    first, second = fake.sent
    assert attributes_of(first) == {REQUESTED_TRANSPORT: bytes([17, 0, 0, 0]), 0x8028: first[-4:]}
    signed = attributes_of(second)
    assert (signed[USERNAME], signed[REALM], signed[NONCE]) == (b"bench", b"punch.bench", b"n0nce")
    assert verify_integrity(second, key)


def test_allocate_without_a_challenge_says_what_it_got() -> None:
    fake = FakeServer((MessageClass.ERROR, [(ERROR_CODE, ErrorCode(437, "Allocation Mismatch"))]))
    with pytest.raises(TurnError, match=r"^Allocate: expected 401 with REALM and NONCE, got error 437$"):
        allocate(cast(socket.socket, fake), SERVER, "bench", "secret")


def test_bind_channel_signs_the_channel_and_the_peer_and_reports_a_refusal() -> None:
    credentials = Credentials("bench", "punch.bench", "n0nce", long_term_key("bench", "punch.bench", "secret"))
    fake = FakeServer((MessageClass.SUCCESS, []), (MessageClass.ERROR, [(ERROR_CODE, ErrorCode(403, "Forbidden"))]))
    bind_channel(cast(socket.socket, fake), SERVER, credentials, 0x4000, ("127.0.0.1", 3490))
    sent = attributes_of(fake.sent[0])
    assert int.from_bytes(fake.sent[0][:2], "big") == CHANNEL_BIND  # a request: class bits zero
    assert (sent[CHANNEL_NUMBER], sent[XOR_PEER_ADDRESS]) == (
        bytes.fromhex("40000000"),
        xor_address(("127.0.0.1", 3490)),
    )
    assert verify_integrity(fake.sent[0], credentials.key)
    with pytest.raises(TurnError, match=r"^ChannelBind 0x4000 to 127\.0\.0\.1:3490: error 403$"):
        bind_channel(cast(socket.socket, fake), SERVER, credentials, 0x4000, ("127.0.0.1", 3490))
