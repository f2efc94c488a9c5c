"""The relay's fast path reads Data and Close requests, and their answers, from their bytes (punch.rendezvous.relayed)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from punch.rendezvous.relayed import Relayed, is_answer, parse_request
from punch.rendezvous.signed import signed_with
from punch.stun import AttributeType, Message, MessageClass, Method, encode, make_success

pytestmark = pytest.mark.unit

SESSION, KEY = bytes(range(16)), bytes(range(32))
IDENTITY = ((AttributeType.PEER_ID, "10"), (AttributeType.SESSION_ID, SESSION))
DATA = Message(
    Method.DATA,
    MessageClass.REQUEST,
    b"transaction!",
    (*IDENTITY, (AttributeType.SEQUENCE, 3), (AttributeType.DATA_PAYLOAD, b"sealed text")),
)


def signed(message: Message, key: bytes = KEY) -> bytes:
    return encode(message, integrity_sha256_key=key)


def test_a_signed_data_and_close_are_read_and_their_integrity_checked() -> None:
    data = signed(DATA)
    request = parse_request(data)
    assert request == Relayed(Method.DATA, "10", SESSION)
    assert signed_with(data, KEY)
    assert not signed_with(data, bytes(32))
    close = signed(Message(Method.CLOSE, MessageClass.REQUEST, b"transaction!", IDENTITY))
    assert parse_request(close) == Relayed(Method.CLOSE, "10", SESSION)


def test_a_changed_byte_fails_the_integrity_or_the_fingerprint() -> None:
    data = bytearray(signed(DATA))
    data[40] ^= 1  # inside DATA-PAYLOAD: FINGERPRINT catches it first
    assert parse_request(bytes(data)) is None


@pytest.mark.parametrize(
    ("name", "message", "fingerprint"),
    [
        ("no integrity", DATA, None),
        ("an attribute the general path must see", Message(Method.DATA, MessageClass.REQUEST, b"transaction!",
         (*IDENTITY, (AttributeType.USE_CANDIDATE, None))), KEY),
        ("PEER-ID twice", Message(Method.DATA, MessageClass.REQUEST, b"transaction!",
         (*IDENTITY, (AttributeType.PEER_ID, "11"))), KEY),
        ("no SESSION-ID", Message(Method.DATA, MessageClass.REQUEST, b"transaction!",
         ((AttributeType.PEER_ID, "10"),)), KEY),
        ("a control character in PEER-ID", Message(Method.CLOSE, MessageClass.REQUEST, b"transaction!",
         ((AttributeType.PEER_ID, "1\n"), (AttributeType.SESSION_ID, SESSION))), KEY),
        ("a Binding", Message(Method.BINDING, MessageClass.REQUEST, b"transaction!", IDENTITY), KEY),
        ("an indication", Message(Method.DATA, MessageClass.INDICATION, b"transaction!", IDENTITY), KEY),
    ],
)  # fmt: skip
def test_anything_else_goes_to_the_general_path(name: str, message: Message, fingerprint: bytes | None) -> None:
    data = encode(message, integrity_sha256_key=fingerprint)
    assert parse_request(data) is None, name


def test_an_acknowledgement_is_an_answer_and_a_request_is_not() -> None:
    assert is_answer(signed(make_success(DATA, IDENTITY)))
    assert not is_answer(signed(DATA))
    assert not is_answer(encode(make_success(DATA, IDENTITY)))  # unsigned: the general path decides


@given(st.binary(max_size=200), st.integers(0, 199))
def test_any_bytes_are_read_or_refused_without_an_exception(noise: bytes, cut: int) -> None:
    data = signed(DATA)
    for sample in (noise, data[:cut], data[:cut] + noise):
        request = parse_request(sample)
        assert request is None or signed_with(sample, KEY) in (True, False)
        assert is_answer(sample) in (True, False)
