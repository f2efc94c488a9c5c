"""The relay's fast path reads a relayed QUIC packet (a Relay indication) from its bytes (punch.rendezvous.relayed)."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from punch.rendezvous.relayed import Relayed, parse_packet
from punch.stun import MAGIC_COOKIE, AttributeType, Message, MessageClass, Method, encode

pytestmark = pytest.mark.unit

SESSION, KEY = bytes(range(16)), bytes(range(32))
IDENTITY = ((AttributeType.PEER_ID, "10"), (AttributeType.SESSION_ID, SESSION))
PACKET = Message(
    Method.RELAY, MessageClass.INDICATION, b"transaction!", (*IDENTITY, (AttributeType.DATA_PAYLOAD, b"\xc0quic"))
)


def signed(message: Message, key: bytes = KEY) -> bytes:
    return encode(message, integrity_sha256_key=key)


def test_a_signed_relay_indication_is_read() -> None:
    assert parse_packet(signed(PACKET)) == Relayed("10", SESSION)
    assert parse_packet(signed(PACKET, bytes(32))) == Relayed("10", SESSION)  # the relay holds no key to judge it by


def test_a_ticket_and_an_opening_without_a_packet_are_read() -> None:
    ticket = bytes(range(100, 116))
    ticketed = Message(
        Method.RELAY,
        MessageClass.INDICATION,
        b"transaction!",
        (*IDENTITY, (AttributeType.RELAY_TICKET, ticket), (AttributeType.DATA_PAYLOAD, b"\xc0quic")),
    )
    opening = Message(
        Method.RELAY, MessageClass.INDICATION, b"transaction!", (*IDENTITY, (AttributeType.RELAY_TICKET, ticket))
    )
    assert parse_packet(signed(ticketed)) == Relayed("10", SESSION, ticket, carries=True)
    assert parse_packet(signed(opening)) == Relayed("10", SESSION, ticket, carries=False)


def test_a_ticket_of_another_length_goes_to_the_general_path() -> None:
    # The codec writes no such ticket: the datagram is made by hand, a 12-byte RELAY-TICKET where 16 belong
    def tlv(kind: int, value: bytes) -> bytes:
        return kind.to_bytes(2, "big") + len(value).to_bytes(2, "big") + value + bytes(-len(value) % 4)

    body = tlv(AttributeType.PEER_ID, b"10") + tlv(AttributeType.SESSION_ID, SESSION)
    body += tlv(AttributeType.RELAY_TICKET, bytes(12)) + tlv(AttributeType.MESSAGE_INTEGRITY_SHA256, bytes(32))
    type_ = encode(PACKET)[:2]
    head = type_ + (len(body) + 8).to_bytes(2, "big") + MAGIC_COOKIE.to_bytes(4, "big") + b"transaction!"
    crc = zlib.crc32(head + body) ^ 0x5354554E
    data = head + body + tlv(AttributeType.FINGERPRINT, crc.to_bytes(4, "big"))
    assert parse_packet(data) is None
    right = data.replace(tlv(AttributeType.RELAY_TICKET, bytes(12)), tlv(AttributeType.RELAY_TICKET, bytes(16)))
    right = right[:2] + (len(right) - 20).to_bytes(2, "big") + right[4:-4]
    right += (zlib.crc32(right[:-4]) ^ 0x5354554E).to_bytes(4, "big")
    assert parse_packet(right) == Relayed("10", SESSION, bytes(16), carries=False)  # the same, with 16: read


def test_a_changed_byte_fails_the_fingerprint() -> None:
    data = bytearray(signed(PACKET))
    data[40] ^= 1
    assert parse_packet(bytes(data)) is None


@pytest.mark.parametrize(
    ("name", "message", "key"),
    [
        ("no integrity", PACKET, None),
        ("an attribute the general path must see", Message(Method.RELAY, MessageClass.INDICATION, b"transaction!",
         (*IDENTITY, (AttributeType.USE_CANDIDATE, None))), KEY),
        ("PEER-ID twice", Message(Method.RELAY, MessageClass.INDICATION, b"transaction!",
         (*IDENTITY, (AttributeType.PEER_ID, "11"))), KEY),
        ("no SESSION-ID", Message(Method.RELAY, MessageClass.INDICATION, b"transaction!",
         ((AttributeType.PEER_ID, "10"),)), KEY),
        ("a control character in PEER-ID", Message(Method.RELAY, MessageClass.INDICATION, b"transaction!",
         ((AttributeType.PEER_ID, "1\n"), (AttributeType.SESSION_ID, SESSION))), KEY),
        ("a Binding", Message(Method.BINDING, MessageClass.REQUEST, b"transaction!", IDENTITY), KEY),
        ("a request", Message(Method.RELAY, MessageClass.REQUEST, b"transaction!", IDENTITY), KEY),
    ],
)  # fmt: skip
def test_anything_else_goes_to_the_general_path(name: str, message: Message, key: bytes | None) -> None:
    assert parse_packet(encode(message, integrity_sha256_key=key)) is None, name


@given(st.binary(max_size=200), st.integers(0, 199))
def test_any_bytes_are_read_or_refused_without_an_exception(noise: bytes, cut: int) -> None:
    data = signed(PACKET)
    for sample in (noise, data[:cut], data[:cut] + noise):
        found = parse_packet(sample)
        assert found is None or isinstance(found, Relayed)
