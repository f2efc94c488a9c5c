"""Property tests: encode -> decode is the identity; decode is total on any bytes (hypothesis)."""

from __future__ import annotations

import contextlib
import ipaddress
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from punch.errors import StunDecodeError
from punch.stun import (
    AttributeType,
    ErrorCode,
    Message,
    MessageClass,
    decode,
    encode,
    verify_integrity,
    verify_integrity_sha256,
)

pytestmark = pytest.mark.unit

T = AttributeType
SEEDS = [
    bytes.fromhex(p.read_text().strip()) for p in sorted((Path(__file__).parent.parent / "data" / "stun").glob("*.hex"))
]

ports = st.integers(0, 0xFFFF)
addresses = st.one_of(
    st.tuples(st.ip_addresses(v=4).map(str), ports),
    st.tuples(st.ip_addresses(v=6).map(lambda a: str(ipaddress.IPv6Address(a))), ports),
)


def text(max_bytes: int, min_bytes: int = 0) -> st.SearchStrategy[str]:
    return st.text(max_size=max_bytes // 4).filter(lambda s: min_bytes <= len(s.encode()) <= max_bytes)


VALUES: dict[int, st.SearchStrategy[object]] = {
    T.MAPPED_ADDRESS: addresses,
    T.XOR_MAPPED_ADDRESS: addresses,
    T.CANDIDATE: addresses,
    T.RESPONSE_ORIGIN: addresses,
    T.OTHER_ADDRESS: addresses,
    T.USERNAME: text(512),
    T.REALM: text(127),
    T.NONCE: text(127),
    T.SOFTWARE: text(127),
    T.STATUS: text(128),
    T.PEER_ID: text(128, 1),
    T.TARGET_ID: text(128, 1),
    T.ERROR_CODE: st.builds(ErrorCode, st.integers(300, 699), st.text(max_size=127)),
    T.UNKNOWN_ATTRIBUTES: st.lists(st.integers(0, 0xFFFF), max_size=8).map(tuple),
    T.PRIORITY: st.integers(0, 2**32 - 1),
    T.CHANGE_REQUEST: st.integers(0, 2**32 - 1),
    T.LEASE: st.integers(0, 2**32 - 1),
    T.SEQUENCE: st.integers(0, 2**32 - 1),
    T.ICE_CONTROLLED: st.integers(0, 2**64 - 1),
    T.ICE_CONTROLLING: st.integers(0, 2**64 - 1),
    T.USE_CANDIDATE: st.none(),
    T.SESSION_ID: st.binary(min_size=16, max_size=16),
    T.DATA_PAYLOAD: st.binary(max_size=1200),
    T.SESSION_KEY: st.binary(min_size=32, max_size=32),
    T.REGISTRATION_TOKEN: st.binary(min_size=16, max_size=16),
    T.ROLE: st.integers(0, 255),
    T.OPEN_TTL: st.integers(0, 255),
}
TRAILERS = {T.MESSAGE_INTEGRITY, T.MESSAGE_INTEGRITY_SHA256, T.FINGERPRINT}
assert set(VALUES) | TRAILERS == set(AttributeType), "every row of the table has a strategy"

attribute = st.sampled_from(sorted(VALUES)).flatmap(lambda t: st.tuples(st.just(t), VALUES[t]))
unknown = st.tuples(st.integers(0, 0xFFFF).filter(lambda t: t not in set(AttributeType)), st.binary(max_size=40))
messages = st.builds(
    Message,
    st.integers(0, 0xFFF),
    st.sampled_from(MessageClass),
    st.binary(min_size=12, max_size=12),
    st.lists(st.one_of(attribute, unknown), max_size=6).map(tuple),
)


@given(messages, st.booleans(), st.booleans())
@settings(max_examples=500, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
def test_encode_then_decode_is_the_identity(message: Message, integrity: bool, fingerprint: bool) -> None:
    key = b"key" if integrity else None
    data = encode(message, integrity_key=key, integrity_sha256_key=key, fingerprint=fingerprint)
    decoded = decode(data)
    trailers = {T.MESSAGE_INTEGRITY, T.MESSAGE_INTEGRITY_SHA256, T.FINGERPRINT}
    assert tuple(a for a in decoded.attributes if a[0] not in trailers) == message.attributes
    assert (decoded.method, decoded.message_class, decoded.transaction_id) == (
        message.method,
        message.message_class,
        message.transaction_id,
    )
    assert verify_integrity(data, b"key") is integrity
    assert verify_integrity_sha256(data, b"key") is integrity


@given(st.binary(max_size=200))
@settings(max_examples=2000)
def test_random_bytes_give_a_message_or_a_decode_error(data: bytes) -> None:
    with contextlib.suppress(StunDecodeError):
        decode(data)


@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=4))
@settings(max_examples=2000)
def test_mutated_vectors_give_a_message_or_a_decode_error(seed: bytes, flips: list[tuple[int, int]]) -> None:
    data = bytearray(seed)
    for position, value in flips:
        data[position % len(data)] = value
    with contextlib.suppress(StunDecodeError):
        decode(bytes(data))


@given(messages, st.data())
@settings(max_examples=500, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
def test_truncated_or_extended_messages_never_raise_anything_else(message: Message, data: st.DataObject) -> None:
    wire = encode(message)
    cut = data.draw(st.integers(0, len(wire)))
    tail = data.draw(st.binary(max_size=12))
    for candidate in (wire[:cut], wire + tail, wire[:cut] + tail):
        with contextlib.suppress(StunDecodeError):
            decode(candidate)
