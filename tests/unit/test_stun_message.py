"""The Message API around the codec: accessors, constructors, describe(), integrity rules, 420 support."""

from __future__ import annotations

import hashlib
import hmac
import struct
import zlib
from pathlib import Path

import pytest

from punch.stun import (
    TABLE,
    AttributeType,
    ErrorCode,
    Message,
    MessageClass,
    Method,
    attribute_name,
    decode,
    describe,
    encode,
    is_stun,
    make_error,
    make_success,
    method_name,
    new_transaction_id,
    verify_integrity,
    verify_integrity_sha256,
)

pytestmark = pytest.mark.unit

T = AttributeType
TXID = bytes(range(12))
KEY = b"0123456789abcdef0123456789abcdef"
DATA = Path(__file__).parent.parent / "data" / "stun"


def raw_message(*attributes: tuple[int, bytes], message_type: int = 0x0001) -> bytes:
    """A message with raw attributes (values zero-padded) and the header length right."""
    body = b"".join(struct.pack("!HH", t, len(v)) + v + b"\x00" * (-len(v) % 4) for t, v in attributes)
    return struct.pack("!HHI", message_type, len(body), 0x2112A442) + TXID + body


def with_integrity(data: bytes, kind: int, key: bytes, size: int | None = None) -> bytes:
    """``data`` with an integrity attribute appended, computed by hand (RFC 8489 §14.5, §14.6)."""
    digest = hashlib.sha1 if kind == T.MESSAGE_INTEGRITY else hashlib.sha256
    mac = hmac.new(key, b"", digest)
    length = size or mac.digest_size
    header = data[:2] + struct.pack("!H", len(data) - 20 + 4 + length) + data[4:20]
    mac.update(header + data[20:])
    return header + data[20:] + struct.pack("!HH", kind, length) + mac.digest()[:length]


def append(data: bytes, *attributes: tuple[int, bytes]) -> bytes:
    """``data`` with raw attributes added at the end and the header length fixed up."""
    body = data[20:] + raw_message(*attributes)[20:]
    return data[:2] + struct.pack("!H", len(body)) + data[4:20] + body


def with_fingerprint(data: bytes) -> bytes:
    header = data[:2] + struct.pack("!H", len(data) - 20 + 8) + data[4:20]
    covered = header + data[20:]
    return covered + struct.pack("!HHI", T.FINGERPRINT, 4, zlib.crc32(covered) ^ 0x5354554E)


EVERYTHING = Message(
    Method.INTRODUCE,
    MessageClass.REQUEST,
    TXID,
    (
        (T.PEER_ID, "bob"),
        (T.CANDIDATE, ("192.0.2.7", 5000)),
        (T.CANDIDATE, ("2001:db8::7", 5001)),
        (T.SESSION_ID, bytes(16)),
        (T.ROLE, 2),
        (T.LEASE, 30),
        (T.USE_CANDIDATE, None),
        (T.ERROR_CODE, ErrorCode(438, "Stale Nonce")),
        (T.UNKNOWN_ATTRIBUTES, (0x7F00,)),
        (0xBEEF, b"raw"),
    ),
)


def test_typed_accessors_give_each_value_its_type_or_none() -> None:
    message = decode(encode(EVERYTHING))
    assert message.method is Method.INTRODUCE
    assert message.text(T.PEER_ID) == "bob"
    assert message.address(T.CANDIDATE) == ("192.0.2.7", 5000)
    assert message.addresses(T.CANDIDATE) == [("192.0.2.7", 5000), ("2001:db8::7", 5001)]
    assert message.raw(T.SESSION_ID) == bytes(16)
    assert message.integer(T.ROLE) == 2
    assert message.integer(T.LEASE) == 30
    assert message.has(T.USE_CANDIDATE)
    assert message.get(T.USE_CANDIDATE) is None
    assert message.error_code() == ErrorCode(438, "Stale Nonce")
    assert message.get(T.UNKNOWN_ATTRIBUTES) == (0x7F00,)
    assert message.raw(0xBEEF) == b"raw"
    assert message.get_all(T.CANDIDATE) == [("192.0.2.7", 5000), ("2001:db8::7", 5001)]
    assert isinstance(message.integer(T.FINGERPRINT), int)
    # Asking for the wrong type, or for what is absent, gives None and never raises.
    assert message.text(T.CANDIDATE) is None
    assert message.address(T.PEER_ID) is None
    assert message.integer(T.SESSION_ID) is None
    assert message.raw(T.PEER_ID) is None
    assert message.text(T.SOFTWARE) is None
    assert message.get(T.SOFTWARE) is None
    assert message.get_all(T.SOFTWARE) == []
    assert message.addresses(T.XOR_MAPPED_ADDRESS) == []
    assert not message.has(T.SOFTWARE)
    assert Message(Method.BINDING, MessageClass.SUCCESS, TXID).error_code() is None


def test_the_first_occurrence_counts() -> None:
    """RFC 8489 §14: "only the first occurrence needs to be processed by a receiver"."""
    message = decode(encode(Message(Method.BINDING, MessageClass.REQUEST, TXID, ((T.PEER_ID, "a"), (T.PEER_ID, "b")))))
    assert message.text(T.PEER_ID) == "a"
    assert message.get_all(T.PEER_ID) == ["a", "b"]


def test_constructors_keep_method_and_transaction_id() -> None:
    request = Message.request(Method.CONNECT, [(T.PEER_ID, "alice")])
    assert (request.message_class, len(request.transaction_id), request.attributes) == (
        MessageClass.REQUEST,
        12,
        ((T.PEER_ID, "alice"),),
    )
    assert Message.request(Method.CONNECT).transaction_id != request.transaction_id
    indication = Message.indication(Method.RELAY)
    assert (indication.message_class, len(indication.transaction_id)) == (MessageClass.INDICATION, 12)
    success = make_success(request, [(T.STATUS, "waiting")])
    assert (success.method, success.message_class, success.transaction_id) == (
        Method.CONNECT,
        MessageClass.SUCCESS,
        request.transaction_id,
    )
    assert success.text(T.STATUS) == "waiting"
    error = make_error(request, 420, "Unknown Attribute", [(T.UNKNOWN_ATTRIBUTES, (0x7F00,))])
    assert (error.method, error.message_class, error.transaction_id) == (
        Method.CONNECT,
        MessageClass.ERROR,
        request.transaction_id,
    )
    assert error.attributes == (
        (T.ERROR_CODE, ErrorCode(420, "Unknown Attribute")),
        (T.UNKNOWN_ATTRIBUTES, (0x7F00,)),
    )
    assert decode(encode(error)).error_code() == ErrorCode(420, "Unknown Attribute")


def test_new_transaction_ids_are_12_random_bytes() -> None:
    ids = {new_transaction_id() for _ in range(100)}
    assert len(ids) == 100
    assert {len(i) for i in ids} == {12}


@pytest.mark.parametrize("message_class", list(MessageClass))
@pytest.mark.parametrize("method", [*Method, 0x000, 0x0CA, 0x07F, 0xFFF])
def test_every_method_and_class_survive_the_header(method: int, message_class: MessageClass) -> None:
    """The 12 method bits and 2 class bits interleave in the message type (RFC 8489 §5, figure 3)."""
    data = encode(Message(method, message_class, TXID), fingerprint=False)
    assert data[0] & 0xC0 == 0
    decoded = decode(data)
    assert (decoded.method, decoded.message_class) == (method, message_class)
    assert isinstance(decoded.method, Method) is (method in set(Method))


def test_message_types_are_as_rfc_8489_section_5_lays_them_out() -> None:
    assert encode(Message(Method.BINDING, MessageClass.REQUEST, TXID), fingerprint=False)[:2] == b"\x00\x01"
    assert encode(Message(Method.BINDING, MessageClass.INDICATION, TXID), fingerprint=False)[:2] == b"\x00\x11"
    assert encode(Message(Method.BINDING, MessageClass.SUCCESS, TXID), fingerprint=False)[:2] == b"\x01\x01"
    assert encode(Message(Method.BINDING, MessageClass.ERROR, TXID), fingerprint=False)[:2] == b"\x01\x11"
    assert encode(Message(Method.REGISTER, MessageClass.REQUEST, TXID), fingerprint=False)[:2] == b"\x02\x81"


def test_names_come_from_the_table_and_the_methods() -> None:
    assert [method_name(m) for m in Method] == [
        "Binding",
        "Register",
        "Connect",
        "Introduce",
        "Ready",
        "Go",
        "Relay",
        "Move",
        "Notice",
    ]
    assert method_name(0x0C6) == "method 0x0c6"
    assert attribute_name(T.XOR_MAPPED_ADDRESS) == "XOR-MAPPED-ADDRESS"
    assert attribute_name(T.MESSAGE_INTEGRITY_SHA256) == "MESSAGE-INTEGRITY-SHA256"
    assert attribute_name(0x7F00) == "0x7F00"
    assert {row.name for row in TABLE.values()} == {t.name.replace("_", "-") for t in AttributeType}
    assert all(row.type == t for t, row in TABLE.items())


def test_describe_is_one_readable_line() -> None:
    vector = decode(bytes.fromhex((DATA / "rfc5769_response_ipv4.hex").read_text()))
    assert describe(vector) == (
        "Binding success response txid=b7e7a701bc34d686fa87dfae, SOFTWARE='test vector', "
        "XOR-MAPPED-ADDRESS=192.0.2.1:32853, MESSAGE-INTEGRITY=2b91f599fd9e90c38c7489f92af9ba53f06be7d7, "
        "FINGERPRINT=3229437078"
    )
    assert str(vector) == describe(vector)
    assert describe(EVERYTHING) == (
        "Introduce request txid=000102030405060708090a0b, PEER-ID='bob', CANDIDATE=192.0.2.7:5000, "
        "CANDIDATE=[2001:db8::7]:5001, SESSION-ID=00000000000000000000000000000000, ROLE=2, LEASE=30, "
        "USE-CANDIDATE, ERROR-CODE=438 'Stale Nonce', UNKNOWN-ATTRIBUTES=(32512,), 0xBEEF=726177"
    )
    assert describe(Message(0x0C6, MessageClass.INDICATION, TXID, ((T.DATA_PAYLOAD, bytes(33)),))) == (
        "method 0x0c6 indication txid=000102030405060708090a0b, DATA-PAYLOAD=<33 bytes>"
    )


# -- 420 (RFC 8489 §6.3.1.1, §14) -----------------------------------------------------------------------------


def test_unknown_comprehension_required_attributes_are_listed_optional_ones_not() -> None:
    decoded = decode(raw_message((0x7F00, b"?"), (0xFF00, b"!"), (T.PEER_ID, b"a"), (0x0000, b""), (0x7F00, b"again")))
    assert decoded.unknown_comprehension_required() == (0x7F00, 0x0000)
    assert decoded.get(0xFF00) == b"!"
    assert decoded.get_all(0x7F00) == [b"?", b"again"]


def test_a_message_of_known_attributes_needs_no_420() -> None:
    assert decode(encode(EVERYTHING)).unknown_comprehension_required() == ()


# -- wire details -------------------------------------------------------------------------------------------


def test_padding_is_zero_on_sending_and_ignored_on_receipt() -> None:
    """RFC 8489 §14: "padding bits MUST be set to zero on sending and MUST be ignored by the receiver"."""
    data = encode(Message(Method.BINDING, MessageClass.REQUEST, TXID, ((T.SOFTWARE, "abc"),)), fingerprint=False)
    assert data[20:] == b"\x80\x22\x00\x03abc\x00"
    assert decode(data[:-1] + b" ").text(T.SOFTWARE) == "abc"


def test_the_reserved_first_byte_of_an_address_is_ignored() -> None:
    """RFC 8489 §14.1: the first 8 bits "MUST be set to 0 and MUST be ignored by receivers"."""
    data = raw_message((T.MAPPED_ADDRESS, b"\xff\x01\x0d\x96\xc0\x00\x02\x01"))
    assert decode(data).address(T.MAPPED_ADDRESS) == ("192.0.2.1", 3478)


def test_the_reserved_bytes_of_role_and_error_code_are_ignored() -> None:
    data = raw_message((T.ROLE, b"\x02\xff\xff\xff"), (T.ERROR_CODE, b"\xff\xff\xfc\x14Unknown"))
    decoded = decode(data)
    assert decoded.integer(T.ROLE) == 2
    assert decoded.error_code() == ErrorCode(420, "Unknown")


def test_is_stun_demultiplexes_cheaply() -> None:
    """RFC 7983 §7: first byte 0..3 is STUN; RFC 8489 §5: cookie and length."""
    good = encode(Message(Method.BINDING, MessageClass.REQUEST, TXID))
    assert is_stun(good)
    assert not is_stun(good[:-4])
    assert not is_stun(good + bytes(4))
    assert not is_stun(good[:19])
    assert not is_stun(b"\x80" + good[1:])  # RTP/RTCP
    assert not is_stun(good[:4] + b"\x00\x00\x00\x00" + good[8:])
    assert not is_stun(b"GET / HTTP/1.1\r\n\r\n....")


# -- integrity (RFC 8489 §9, §14.5, §14.6, §14.7) -------------------------------------------------------------


def test_encode_appends_integrity_then_integrity_sha256_then_fingerprint() -> None:
    message = Message(Method.REGISTER, MessageClass.REQUEST, TXID, ((T.LEASE, 1),))
    data = encode(message, integrity_key=b"short", integrity_sha256_key=KEY)
    assert [t for t, _ in decode(data).attributes] == [
        T.LEASE,
        T.MESSAGE_INTEGRITY,
        T.MESSAGE_INTEGRITY_SHA256,
        T.FINGERPRINT,
    ]
    body = encode(message, fingerprint=False)
    expected = with_fingerprint(
        with_integrity(with_integrity(body, T.MESSAGE_INTEGRITY, b"short"), T.MESSAGE_INTEGRITY_SHA256, KEY)
    )
    assert data == expected
    assert verify_integrity(data, b"short")
    assert verify_integrity_sha256(data, KEY)
    assert not verify_integrity(data, KEY)
    assert not verify_integrity_sha256(data, b"short")


def test_verification_is_false_for_absent_tampered_or_garbage() -> None:
    message = Message(Method.REGISTER, MessageClass.REQUEST, TXID, ((T.LEASE, 1),))
    plain = encode(message)
    signed = encode(message, integrity_sha256_key=KEY, fingerprint=False)
    assert not verify_integrity(plain, KEY)
    assert not verify_integrity_sha256(plain, KEY)
    tampered = signed[:27] + b"\x02" + signed[28:]  # LEASE 1 -> 2
    assert decode(tampered).integer(T.LEASE) == 2
    assert not verify_integrity_sha256(tampered, KEY)
    assert not verify_integrity_sha256(signed[:-1], KEY)
    assert not verify_integrity_sha256(b"", KEY)
    assert not verify_integrity_sha256(bytes(64), KEY)


def test_a_truncated_mac_cannot_pass() -> None:
    """MESSAGE-INTEGRITY is exactly 20 bytes (§14.5); MESSAGE-INTEGRITY-SHA256 is 32 unless the usage allows
    truncation to 16..28 (§14.6): a prefix of the right MAC is no proof."""
    body = raw_message((T.LEASE, b"\x00\x00\x00\x01"))
    assert verify_integrity(with_integrity(body, T.MESSAGE_INTEGRITY, KEY), KEY)
    assert not verify_integrity(with_integrity(body, T.MESSAGE_INTEGRITY, KEY, size=4), KEY)
    truncated = with_integrity(body, T.MESSAGE_INTEGRITY_SHA256, KEY, size=16)
    assert not verify_integrity_sha256(truncated, KEY)
    assert verify_integrity_sha256(truncated, KEY, min_length=16)
    assert verify_integrity_sha256(truncated, KEY, min_length=13)  # rounded up to 16
    assert not verify_integrity_sha256(with_integrity(body, T.MESSAGE_INTEGRITY_SHA256, KEY, size=8), KEY, min_length=0)


def test_attributes_after_message_integrity_are_ignored_but_sha256_and_fingerprint() -> None:
    """RFC 8489 §9: after MESSAGE-INTEGRITY only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT are processed."""
    signed = with_integrity(raw_message((T.PEER_ID, b"alice")), T.MESSAGE_INTEGRITY, b"k")
    late = append(signed, (T.PEER_ID, b"mallory"))
    both = with_fingerprint(with_integrity(late, T.MESSAGE_INTEGRITY_SHA256, KEY))
    decoded = decode(both)
    assert [t for t, _ in decoded.attributes] == [
        T.PEER_ID,
        T.MESSAGE_INTEGRITY,
        T.MESSAGE_INTEGRITY_SHA256,
        T.FINGERPRINT,
    ]
    assert decoded.get_all(T.PEER_ID) == ["alice"]
    assert verify_integrity(both, b"k")
    assert verify_integrity_sha256(both, KEY)


def test_attributes_after_message_integrity_sha256_are_ignored_but_fingerprint() -> None:
    """RFC 8489 §9: after MESSAGE-INTEGRITY-SHA256 (and no MESSAGE-INTEGRITY) only FINGERPRINT is processed,
    so a MESSAGE-INTEGRITY there does not count, even a right one."""
    signed = with_integrity(raw_message((T.PEER_ID, b"alice")), T.MESSAGE_INTEGRITY_SHA256, KEY)
    late = append(with_integrity(signed, T.MESSAGE_INTEGRITY, b"k"), (T.XOR_MAPPED_ADDRESS, b"bad"))
    decoded = decode(with_fingerprint(late))
    assert [t for t, _ in decoded.attributes] == [T.PEER_ID, T.MESSAGE_INTEGRITY_SHA256, T.FINGERPRINT]
    assert verify_integrity_sha256(late, KEY)
    assert not verify_integrity(late, b"k")
    # The same MESSAGE-INTEGRITY does count where it is processed: first.
    assert verify_integrity(with_integrity(raw_message((T.PEER_ID, b"alice")), T.MESSAGE_INTEGRITY, b"k"), b"k")


def test_an_ignored_attribute_may_be_malformed() -> None:
    data = raw_message((T.MESSAGE_INTEGRITY, bytes(20)), (T.XOR_MAPPED_ADDRESS, b"\x00\x07"), (T.USERNAME, b"\xff"))
    assert [t for t, _ in decode(data).attributes] == [T.MESSAGE_INTEGRITY]
