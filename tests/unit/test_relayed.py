"""The relay's fast path reads a relayed QUIC packet (a Relay indication) from its bytes (punch.rendezvous.relayed)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from punch.rendezvous.relayed import Relayed, parse_packet
from punch.stun import AttributeType, Message, MessageClass, Method, encode

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
