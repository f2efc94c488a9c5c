"""Published test vectors, byte for byte: RFC 5769 §2.1-§2.4 and RFC 8489 Appendix B.1 (tests/data/stun/*.hex).

Each vector carries a FINGERPRINT or a MESSAGE-INTEGRITY computed by its authors over every byte before it,
so a vector that decodes and verifies here was transcribed exactly. RFC 5769 pads SOFTWARE and USERNAME with
spaces where RFC 8489 §14 says to send zeros: our re-encoding matches everywhere but those padding bytes, and
with the vector's padding bytes put back the integrity and fingerprint come out as published.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import zlib
from pathlib import Path

import pytest

from punch.stun import (
    AttributeType,
    ErrorCode,
    Message,
    MessageClass,
    Method,
    decode,
    encode,
    is_stun,
    long_term_key,
    verify_integrity,
    verify_integrity_sha256,
)

pytestmark = pytest.mark.unit

T = AttributeType
DATA = Path(__file__).parent.parent / "data" / "stun"
SHORT_TERM_PASSWORD = b"VOkJxbRl1RmTxUk/WvJxBt"  # RFC 5769 §2.1-§2.3, the key as is (RFC 8489 §9.1.1)
TXID = bytes.fromhex("b7e7a701bc34d686fa87dfae")
LONG_TERM_TXID = bytes.fromhex("78ad3433c6ad72c029da412e")
USERNAME = "\u30de\u30c8\u30ea\u30c3\u30af\u30b9"  # RFC 5769 §2.4, unchanged by SASLprep
# The password "The<U+00AD>M<U+00AA>tr<U+2168>" is "TheMatrIX" after SASLprep (RFC 5769 §2.4) and after
# OpaqueString (RFC 8489 B.1); the RFCs give both forms, and the key is made from the processed one.
PASSWORD = "TheMatrIX"
REALM = "example.org"


def vector(name: str) -> bytes:
    return bytes.fromhex((DATA / f"{name}.hex").read_text().strip())


def without_trailers(message: Message) -> Message:
    """What a sender hands to encode(): the attributes but MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT."""
    trailers = {T.MESSAGE_INTEGRITY, T.MESSAGE_INTEGRITY_SHA256, T.FINGERPRINT}
    kept = tuple(a for a in message.attributes if a[0] not in trailers)
    return Message(message.method, message.message_class, message.transaction_id, kept)


def padding_positions(data: bytes) -> set[int]:
    """Offsets of the padding bytes after each attribute value (RFC 8489 §14)."""
    positions: set[int] = set()
    offset = 20
    while offset < len(data):
        length = struct.unpack_from("!H", data, offset + 2)[0]
        start = offset + 4 + length
        positions.update(range(start, start + (-length % 4)))
        offset = start + (-length % 4)
    return positions


def seal(before_integrity: bytes, key: bytes, *, fingerprint: bool) -> bytes:
    """MESSAGE-INTEGRITY and FINGERPRINT appended by hand, straight from RFC 8489 §14.5 and §14.7."""
    body = before_integrity[20:]
    header = before_integrity[:2] + struct.pack("!H", len(body) + 24) + before_integrity[4:20]
    data = header + body + struct.pack("!HH", 0x0008, 20) + hmac.new(key, header + body, hashlib.sha1).digest()
    if fingerprint:
        data = data[:2] + struct.pack("!H", len(data) - 20 + 8) + data[4:]
        data += struct.pack("!HHI", 0x8028, 4, zlib.crc32(data) ^ 0x5354554E)
    return data


def with_their_padding(ours: bytes, theirs: bytes) -> bytes:
    """``ours`` with the padding bytes of ``theirs``; StunDecodeError-free inputs of the same layout."""
    assert padding_positions(ours) == padding_positions(theirs[: len(ours)])
    return bytes(theirs[i] if i in padding_positions(ours) else b for i, b in enumerate(ours))


def assert_fingerprint(data: bytes) -> None:
    """The last 8 bytes are FINGERPRINT: CRC-32 of everything before, XOR 0x5354554E (RFC 8489 §14.7)."""
    assert data[-8:-4] == b"\x80\x28\x00\x04"
    assert struct.unpack("!I", data[-4:])[0] == zlib.crc32(data[:-8]) ^ 0x5354554E


def test_sample_request_2_1() -> None:
    data = vector("rfc5769_request")
    message = decode(data)
    assert (message.method, message.message_class, message.transaction_id) == (
        Method.BINDING,
        MessageClass.REQUEST,
        TXID,
    )
    assert [t for t, _ in message.attributes] == [
        T.SOFTWARE,
        T.PRIORITY,
        T.ICE_CONTROLLED,
        T.USERNAME,
        T.MESSAGE_INTEGRITY,
        T.FINGERPRINT,
    ]
    assert message.text(T.SOFTWARE) == "STUN test client"
    assert message.integer(T.PRIORITY) == 0x6E0001FF
    assert message.integer(T.ICE_CONTROLLED) == 0x932FF9B151263B36
    assert message.text(T.USERNAME) == "evtj:h6vY"
    assert message.raw(T.MESSAGE_INTEGRITY) == bytes.fromhex("9aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2")
    assert message.integer(T.FINGERPRINT) == 0xE57A3BCF
    assert message.unknown_comprehension_required() == ()
    assert is_stun(data)
    assert_fingerprint(data)
    assert verify_integrity(data, SHORT_TERM_PASSWORD)
    assert not verify_integrity(data, b"VOkJxbRl1RmTxUk/WvJxBu")

    ours = encode(without_trailers(message), integrity_key=SHORT_TERM_PASSWORD)
    before = encode(without_trailers(message), fingerprint=False)
    # USERNAME "evtj:h6vY" is 9 bytes: the vector pads it with 3 spaces (offsets 73-75), we with zeros.
    assert padding_positions(before) == {73, 74, 75}
    assert data[73:76] == b"   "
    assert ours[:73] + ours[76:80] == data[:73] + data[76:80]
    assert ours == seal(before, SHORT_TERM_PASSWORD, fingerprint=True)
    assert verify_integrity(ours, SHORT_TERM_PASSWORD)
    # With the vector's spaces put back, MESSAGE-INTEGRITY and FINGERPRINT come out as published.
    assert seal(with_their_padding(before, data), SHORT_TERM_PASSWORD, fingerprint=True) == data


@pytest.mark.parametrize(
    ("name", "address", "padding"),
    [
        ("rfc5769_response_ipv4", ("192.0.2.1", 32853), {35}),
        ("rfc5769_response_ipv6", ("2001:db8:1234:5678:11:2233:4455:6677", 32853), {35}),
    ],
)
def test_sample_responses_2_2_and_2_3(name: str, address: tuple[str, int], padding: set[int]) -> None:
    data = vector(name)
    message = decode(data)
    assert (message.method, message.message_class, message.transaction_id) == (
        Method.BINDING,
        MessageClass.SUCCESS,
        TXID,
    )
    assert [t for t, _ in message.attributes] == [
        T.SOFTWARE,
        T.XOR_MAPPED_ADDRESS,
        T.MESSAGE_INTEGRITY,
        T.FINGERPRINT,
    ]
    assert message.text(T.SOFTWARE) == "test vector"
    assert message.address(T.XOR_MAPPED_ADDRESS) == address
    assert_fingerprint(data)
    assert verify_integrity(data, SHORT_TERM_PASSWORD)

    before = encode(without_trailers(message), fingerprint=False)
    # SOFTWARE "test vector" is 11 bytes: the vector pads it with one space (offset 35), we with a zero.
    assert padding_positions(before) == padding
    assert data[35] == 0x20
    assert before[35] == 0
    ours = encode(without_trailers(message), integrity_key=SHORT_TERM_PASSWORD)
    assert ours[:35] + ours[36 : len(before)] == data[:35] + data[36 : len(before)]
    assert ours == seal(before, SHORT_TERM_PASSWORD, fingerprint=True)
    assert seal(with_their_padding(before, data), SHORT_TERM_PASSWORD, fingerprint=True) == data


def test_sample_request_with_long_term_credentials_2_4() -> None:
    data = vector("rfc5769_request_long_term")
    message = decode(data)
    assert (message.method, message.message_class, message.transaction_id) == (
        Method.BINDING,
        MessageClass.REQUEST,
        LONG_TERM_TXID,
    )
    assert [t for t, _ in message.attributes] == [T.USERNAME, T.NONCE, T.REALM, T.MESSAGE_INTEGRITY]
    assert message.text(T.USERNAME) == USERNAME
    assert message.text(T.NONCE) == "f//499k954d6OL34oL9FSTvy64sA"
    assert message.text(T.REALM) == REALM
    assert not message.has(T.FINGERPRINT)
    key = long_term_key(USERNAME, REALM, PASSWORD)  # MD5(username ":" realm ":" password), RFC 8489 §9.2.2
    assert key == hashlib.md5(f"{USERNAME}:{REALM}:{PASSWORD}".encode()).digest()
    assert verify_integrity(data, key)
    assert not verify_integrity(data, long_term_key(USERNAME, REALM, "The\u00adM\u00aatr\u2168"))
    assert not verify_integrity(data, SHORT_TERM_PASSWORD)
    # This vector pads with zeros, so our encoding is the vector, byte for byte.
    assert encode(without_trailers(message), integrity_key=key, fingerprint=False) == data


def test_rfc8489_b1_request_with_message_integrity_sha256() -> None:
    """RFC 8489 Appendix B.1 (in its corrected form, RFC Errata ID 6268): USERHASH, PASSWORD-ALGORITHM SHA-256,
    MESSAGE-INTEGRITY-SHA256 under the key SHA-256(username ":" realm ":" password) (§9.2.2)."""
    data = vector("rfc8489_b1_request_long_term_sha256")
    message = decode(data)
    assert (message.method, message.message_class, message.transaction_id) == (
        Method.BINDING,
        MessageClass.REQUEST,
        LONG_TERM_TXID,
    )
    userhash, password_algorithm = 0x001E, 0x001D  # RFC 8489 §14.4, §14.12: not in punch's table
    assert [t for t, _ in message.attributes] == [
        userhash,
        T.NONCE,
        T.REALM,
        password_algorithm,
        T.MESSAGE_INTEGRITY_SHA256,
    ]
    assert message.raw(userhash) == hashlib.sha256(f"{USERNAME}:{REALM}".encode()).digest()
    assert message.raw(password_algorithm) == b"\x00\x02\x00\x00"  # SHA-256, no parameters
    assert message.text(T.NONCE) == "obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA"
    assert message.text(T.REALM) == REALM
    assert message.unknown_comprehension_required() == (userhash, password_algorithm)
    key = hashlib.sha256(f"{USERNAME}:{REALM}:{PASSWORD}".encode()).digest()
    assert verify_integrity_sha256(data, key)
    assert not verify_integrity_sha256(data, long_term_key(USERNAME, REALM, PASSWORD))
    assert not verify_integrity(data, key)  # there is no MESSAGE-INTEGRITY
    assert encode(without_trailers(message), integrity_sha256_key=key, fingerprint=False) == data


# -- punch's own wire format, pinned ------------------------------------------------------------------------
# No RFC has vectors for punch's methods and attributes; these files pin their layout so that a change to the
# wire format shows up as a failing test, and they seed the fuzz tests with every row of the table.

PUNCH_TXID = bytes.fromhex("0123456789abcdef01234567")
KEY = bytes(range(32))  # a session's key between peers; the peer's request key for what concerns the server
PUBLIC_KEY = bytes(range(64, 96))
KEY_SHARE = bytes(range(96, 128))
KEY_SIGNATURE = bytes(range(128, 192))
PUNCH_SAMPLES: dict[str, tuple[Message, bytes | None]] = {
    "punch_register_request": (
        Message(
            Method.REGISTER,
            MessageClass.REQUEST,
            PUNCH_TXID,
            (
                (T.PEER_ID, "alice"),
                (T.CANDIDATE, ("192.0.2.10", 40000)),
                (T.CANDIDATE, ("2001:db8::10", 40001)),
                (T.LEASE, 60),
                (T.PUBLIC_KEY, PUBLIC_KEY),
                (T.REGISTRATION_TOKEN, bytes(range(16, 32))),
                (T.SOFTWARE, "punch/0.1.0"),
            ),
        ),
        None,
    ),
    "punch_register_request_nat_mapping": (
        Message(
            Method.REGISTER,
            MessageClass.REQUEST,
            PUNCH_TXID,
            (
                (T.PEER_ID, "carol"),
                (T.CANDIDATE, ("10.0.10.2", 40211)),
                (T.LEASE, 30),
                (T.NAT_MAPPING, 2),
            ),
        ),
        None,
    ),
    "punch_connect_request_server_rtt": (
        Message(
            Method.CONNECT,
            MessageClass.REQUEST,
            PUNCH_TXID,
            (
                (T.PEER_ID, "carol"),
                (T.TARGET_ID, "dave"),
                (T.SERVER_RTT, 40_250),
                (T.KEY_SHARE, KEY_SHARE),
                (T.KEY_SIGNATURE, KEY_SIGNATURE),
            ),
        ),
        None,
    ),
    "punch_introduce_request": (
        Message(
            Method.INTRODUCE,
            MessageClass.REQUEST,
            PUNCH_TXID,
            (
                (T.PEER_ID, "bob"),
                (T.CANDIDATE, ("198.51.100.7", 50000)),
                (T.SESSION_ID, bytes(range(16))),
                (T.ROLE, 1),
                (T.PUBLIC_KEY, PUBLIC_KEY),
                (T.KEY_SHARE, KEY_SHARE),
                (T.KEY_SIGNATURE, KEY_SIGNATURE),
                (T.OPEN_TTL, 3),
            ),
        ),
        KEY,
    ),
    "punch_introduce_request_relay": (
        Message(
            Method.INTRODUCE,
            MessageClass.REQUEST,
            PUNCH_TXID,
            (
                (T.PEER_ID, "dave"),
                (T.CANDIDATE, ("192.0.2.14", 40014)),
                (T.SESSION_ID, bytes(range(16))),
                (T.ROLE, 1),
                (T.PUBLIC_KEY, PUBLIC_KEY),
                (T.KEY_SHARE, KEY_SHARE),
                (T.KEY_SIGNATURE, KEY_SIGNATURE),
                (T.RELAY_ADDRESS, ("203.0.113.65", 3478)),
                (T.RELAY_TICKET, bytes(range(200, 216))),
            ),
        ),
        KEY,
    ),
    "punch_relay_opening": (
        Message(
            Method.RELAY,
            MessageClass.INDICATION,
            PUNCH_TXID,
            ((T.PEER_ID, "carol"), (T.SESSION_ID, bytes(range(16))), (T.RELAY_TICKET, bytes(range(200, 216)))),
        ),
        KEY,
    ),
    "punch_relay_indication": (
        Message(
            Method.RELAY,
            MessageClass.INDICATION,
            PUNCH_TXID,
            (
                (T.PEER_ID, "alice"),
                (T.SESSION_ID, bytes(range(16))),
                (T.DATA_PAYLOAD, bytes.fromhex("40") + b"a QUIC short-header packet"),
                (T.PRIORITY, 0x6E0001FF),
                (T.ICE_CONTROLLING, 0x932FF9B151263B36),
                (T.USE_CANDIDATE, None),
            ),
        ),
        KEY,
    ),
    "punch_connect_error_420": (
        Message(
            Method.CONNECT,
            MessageClass.ERROR,
            PUNCH_TXID,
            (
                (T.ERROR_CODE, ErrorCode(420, "Unknown Attribute")),
                (T.UNKNOWN_ATTRIBUTES, (0x7F00, 0x4CFF)),
                (T.TARGET_ID, "carol"),
                (T.STATUS, "waiting for carol"),
                (T.SOFTWARE, "punch/0.1.0"),
            ),
        ),
        None,
    ),
    "punch_binding_response_rfc5780": (
        Message(
            Method.BINDING,
            MessageClass.SUCCESS,
            PUNCH_TXID,
            (
                (T.XOR_MAPPED_ADDRESS, ("2001:db8::1", 3478)),
                (T.MAPPED_ADDRESS, ("203.0.113.1", 3478)),
                (T.RESPONSE_ORIGIN, ("192.0.2.1", 3478)),
                (T.OTHER_ADDRESS, ("192.0.2.2", 3479)),
                (T.USERNAME, "evtj:h6vY"),
                (T.REALM, "example.org"),
                (T.NONCE, "f//499k954d6OL34oL9FSTvy64sA"),
            ),
        ),
        None,
    ),
    "punch_binding_request_change": (
        Message(Method.BINDING, MessageClass.REQUEST, PUNCH_TXID, ((T.CHANGE_REQUEST, 0x06), (T.ICE_CONTROLLED, 1))),
        None,
    ),
}


@pytest.mark.parametrize("name", sorted(PUNCH_SAMPLES))
def test_punch_samples_are_pinned(name: str) -> None:
    message, key = PUNCH_SAMPLES[name]
    data = vector(name)
    assert encode(message, integrity_sha256_key=key) == data
    decoded = decode(data)
    assert without_trailers(decoded) == message
    assert verify_integrity_sha256(data, key) if key else not decoded.has(T.MESSAGE_INTEGRITY_SHA256)


def test_every_row_of_the_table_has_a_pinned_sample() -> None:
    seen = {t for message, _ in PUNCH_SAMPLES.values() for t, _ in message.attributes}
    computed = {T.MESSAGE_INTEGRITY, T.MESSAGE_INTEGRITY_SHA256, T.FINGERPRINT}
    assert set(AttributeType) - computed <= seen
