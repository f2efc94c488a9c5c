"""Property tests (hypothesis): encode -> decode is the identity; decode is total on any bytes.

"Total" means decode() gives a Message or raises StunDecodeError and nothing else, whatever it is fed: random
bytes, well-framed messages whose attribute values are random, and mutations of the vectors in
tests/data/stun (the RFC 5769/8489 vectors and punch's pinned samples, which reach every row of the table).
"""

from __future__ import annotations

import contextlib
import ipaddress
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from punch.errors import StunDecodeError, StunEncodeError
from punch.stun import (
    TABLE,
    AttributeType,
    ErrorCode,
    Message,
    MessageClass,
    Method,
    decode,
    describe,
    encode,
    is_stun,
    verify_integrity,
    verify_integrity_sha256,
)

pytestmark = pytest.mark.unit

T = AttributeType
SEEDS = [bytes.fromhex(p.read_text().strip()) for p in sorted((Path(__file__).parent.parent / "data" / "stun").glob("*.hex"))]  # fmt: skip
TRAILERS = {T.MESSAGE_INTEGRITY, T.MESSAGE_INTEGRITY_SHA256, T.FINGERPRINT}
FUZZ = settings(max_examples=2000, deadline=None)  # cheap examples; the others run 1000, each on every seed
ROUND_TRIP = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ports = st.integers(0, 0xFFFF)
addresses = st.one_of(
    st.tuples(st.ip_addresses(v=4).map(str), ports),
    st.tuples(st.ip_addresses(v=6).map(lambda a: str(ipaddress.IPv6Address(a))), ports),
)


def text(max_bytes: int, min_bytes: int = 0, max_chars: int | None = None) -> st.SearchStrategy[str]:
    """Any text that fits (up to 4 bytes a character), and ASCII right up to the byte or character limit."""
    chars = max_bytes if max_chars is None else min(max_chars, max_bytes)
    return st.one_of(
        st.text(min_size=min_bytes, max_size=max_bytes // 4),
        st.text(st.characters(max_codepoint=0x7E, min_codepoint=0x20), min_size=min_bytes, max_size=chars),
    ).filter(lambda s: min_bytes <= len(s.encode()) <= max_bytes)


def u(bits: int) -> st.SearchStrategy[int]:
    return st.integers(0, 2**bits - 1)


VALUES: dict[int, st.SearchStrategy[object]] = {
    T.MAPPED_ADDRESS: addresses,
    T.XOR_MAPPED_ADDRESS: addresses,
    T.CANDIDATE: addresses,
    T.RESPONSE_ORIGIN: addresses,
    T.OTHER_ADDRESS: addresses,
    T.USERNAME: text(508),
    T.REALM: text(508, max_chars=127),
    T.NONCE: text(508, max_chars=127),
    T.SOFTWARE: text(508, max_chars=127),
    T.STATUS: text(128),
    T.PEER_ID: text(128, 1),
    T.TARGET_ID: text(128, 1),
    T.ERROR_CODE: st.builds(ErrorCode, st.integers(300, 699), st.text(max_size=127)),
    T.UNKNOWN_ATTRIBUTES: st.lists(u(16), max_size=8).map(tuple),
    T.PRIORITY: u(32),
    T.CHANGE_REQUEST: u(32),
    T.LEASE: u(32),
    T.ICE_CONTROLLED: u(64),
    T.ICE_CONTROLLING: u(64),
    T.USE_CANDIDATE: st.none(),
    T.SESSION_ID: st.binary(min_size=16, max_size=16),
    T.DATA_PAYLOAD: st.binary(max_size=1200),
    T.PUBLIC_KEY: st.binary(min_size=32, max_size=32),
    T.KEY_SHARE: st.binary(min_size=32, max_size=32),
    T.KEY_SIGNATURE: st.binary(min_size=64, max_size=64),
    T.REGISTRATION_TOKEN: st.binary(min_size=16, max_size=16),
    T.ROLE: u(8),
    T.OPEN_TTL: u(8),
    T.NAT_MAPPING: u(8),
    T.SERVER_RTT: u(32),
    T.RELAY_ADDRESS: addresses,
    T.RELAY_TICKET: st.binary(min_size=16, max_size=16),
}
assert set(VALUES) | TRAILERS == set(TABLE), "every row of the table has a strategy"

known = st.sampled_from(sorted(VALUES)).flatmap(lambda t: st.tuples(st.just(t), VALUES[t]))
unknown = st.tuples(u(16).filter(lambda t: t not in TABLE), st.binary(max_size=40))
methods = st.one_of(st.sampled_from(Method), u(12))
messages = st.builds(
    Message,
    methods,
    st.sampled_from(MessageClass),
    st.binary(min_size=12, max_size=12),
    st.lists(st.one_of(known, unknown), max_size=6).map(tuple),
)


@given(messages, st.sampled_from([None, b"", b"key", bytes(64)]), st.booleans(), st.booleans())
@ROUND_TRIP
def test_encode_then_decode_is_the_identity(
    message: Message, key: bytes | None, sha256: bool, fingerprint: bool
) -> None:
    data = encode(message, integrity_key=key, integrity_sha256_key=key if sha256 else None, fingerprint=fingerprint)
    assert is_stun(data)
    assert len(data) % 4 == 0
    decoded = decode(data)
    assert tuple(a for a in decoded.attributes if a[0] not in TRAILERS) == message.attributes
    assert (decoded.method, decoded.message_class, decoded.transaction_id) == (
        message.method,
        message.message_class,
        message.transaction_id,
    )
    assert [t for t, _ in decoded.attributes if t in TRAILERS] == [
        t
        for t, wanted in (
            (T.MESSAGE_INTEGRITY, key is not None),
            (T.MESSAGE_INTEGRITY_SHA256, key is not None and sha256),
            (T.FINGERPRINT, fingerprint),
        )
        if wanted
    ]
    assert verify_integrity(data, b"-" if key is None else key) is (key is not None)
    assert verify_integrity_sha256(data, b"-" if key is None else key) is (key is not None and sha256)
    assert isinstance(describe(decoded), str)


def decodes_or_refuses(data: bytes) -> None:
    """The property: a Message, or StunDecodeError; and verification never raises either."""
    with contextlib.suppress(StunDecodeError):
        decode(data)
    assert verify_integrity(data, b"key") in (True, False)
    assert verify_integrity_sha256(data, b"key") in (True, False)


@given(st.binary(max_size=200))
@FUZZ
def test_random_bytes_give_a_message_or_a_decode_error(data: bytes) -> None:
    decodes_or_refuses(data)


attribute_type = st.one_of(st.sampled_from(sorted(TABLE)), u(16))
raw_attribute = st.tuples(attribute_type, st.binary(max_size=40), st.binary(min_size=3, max_size=3))


@given(u(14), st.binary(min_size=12, max_size=12), st.lists(raw_attribute, max_size=6))
@settings(max_examples=1000, deadline=None)
def test_well_framed_messages_with_random_values_give_a_message_or_a_decode_error(
    message_type: int, txid: bytes, attributes: list[tuple[int, bytes, bytes]]
) -> None:
    """The header and framing are right, so every value reaches its row's codec, with random padding too."""
    body = b"".join(struct.pack("!HH", t, len(v)) + v + pad[: -len(v) % 4] for t, v, pad in attributes)
    decodes_or_refuses(struct.pack("!HHI", message_type, len(body), 0x2112A442) + txid + body)


@given(st.lists(st.tuples(st.integers(0, 300), u(8)), min_size=1, max_size=4))
@settings(max_examples=1000, deadline=None)
def test_mutated_vectors_give_a_message_or_a_decode_error(flips: list[tuple[int, int]]) -> None:
    """The same bytes overwritten in every seed (one seed per example would spend the time in hypothesis)."""
    for seed in SEEDS:
        data = bytearray(seed)
        for position, value in flips:
            data[position % len(data)] = value
        decodes_or_refuses(bytes(data))


@given(st.integers(20, 300), st.integers(0, 12), st.binary(max_size=12))
@settings(max_examples=1000, deadline=None)
def test_spliced_vectors_with_a_fixed_up_length_give_a_message_or_a_decode_error(
    at: int, cut: int, insert: bytes
) -> None:
    """Bytes cut out of or put into the attributes, the header length made to match: framing errors deep in."""
    for seed in SEEDS:
        where = min(at, len(seed))
        data = seed[:where] + insert + seed[where + cut :]
        decodes_or_refuses(data[:2] + struct.pack("!H", (len(data) - 20) & 0xFFFF) + data[4:])


@given(messages, st.data())
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_truncated_or_extended_messages_never_raise_anything_else(message: Message, data: st.DataObject) -> None:
    wire = encode(message)
    cut = data.draw(st.integers(0, len(wire)))
    tail = data.draw(st.binary(max_size=12))
    for candidate in (wire[:cut], wire + tail, wire[:cut] + tail):
        decodes_or_refuses(candidate)


NEAR_IPV4 = ["1.2.3.4", "01.2.3.4", "1.2.3.04", "1.2.3", "1", "0x1.2.3.4", "1.2.3.4 ", " 1.2.3.4", "1.2.3.4\x00",
             "256.1.1.1", "1.2.3.4.5", "\u0661.2.3.4", "0.0.0.0", "255.255.255.255", "::ffff:1.2.3.4", "1.2.3.-4", ""]  # fmt: skip


@FUZZ
@given(
    st.one_of(
        st.ip_addresses().map(str), st.sampled_from(NEAR_IPV4), st.text(alphabet="0123456789.x:abcdef ", max_size=20)
    ),
    st.integers(0, 0xFFFF),
    st.sampled_from([T.XOR_MAPPED_ADDRESS, T.MAPPED_ADDRESS, T.CANDIDATE]),
)
def test_an_address_is_taken_and_written_exactly_as_ipaddress_reads_it(host: str, port: int, kind: T) -> None:
    """The codec writes IPv4 without the ipaddress module (punch.stun.attributes._canonical_ipv4): it must accept
    the very strings ipaddress accepts, and write and read back the same bytes and text."""
    message = Message(Method.BINDING, MessageClass.SUCCESS, bytes(range(12)), ((kind, (host, port)),))
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        with pytest.raises(StunEncodeError, match="is not an \\(IP, port\\) address"):
            encode(message)
        return
    data = encode(message, fingerprint=False)
    value = data[24:]
    mask = struct.pack("!I", 0x2112A442) + bytes(range(12)) if kind != T.MAPPED_ADDRESS else bytes(16)
    raw = bytes(a ^ b for a, b in zip(ip.packed, mask, strict=False))
    wire_port = port ^ 0x2112 if kind != T.MAPPED_ADDRESS else port
    assert value == struct.pack("!BBH", 0, 1 if ip.version == 4 else 2, wire_port) + raw
    assert decode(data).attributes == ((kind, (str(ip), port)),)
