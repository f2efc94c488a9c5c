"""Every way decode() refuses bytes and encode() refuses values, with the exact words used (RFC 8489 §5, §14)."""

from __future__ import annotations

import struct
import zlib

import pytest

from punch.errors import StunDecodeError, StunEncodeError
from punch.stun import AttributeType, ErrorCode, Message, MessageClass, Method, decode, encode

pytestmark = pytest.mark.unit

T = AttributeType
TXID = bytes(range(12))
HEADER = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + TXID


def message(*attributes: tuple[int, bytes]) -> bytes:
    """A Binding request with raw attributes (values padded), the header length right, no FINGERPRINT."""
    body = b"".join(struct.pack("!HH", t, len(v)) + v + b"\x00" * (-len(v) % 4) for t, v in attributes)
    return struct.pack("!HHI", 0x0001, len(body), 0x2112A442) + TXID + body


def fingerprinted(*attributes: tuple[int, bytes]) -> bytes:
    """Like message(), with a correct FINGERPRINT appended (RFC 8489 §14.7)."""
    data = message(*attributes, (T.FINGERPRINT, bytes(4)))
    return data[:-4] + struct.pack("!I", zlib.crc32(data[:-8]) ^ 0x5354554E)


IPV4 = b"\x00\x01\x00\x01\xc0\x00\x02\x01"

DECODE_ERRORS = [
    # the header (RFC 8489 §5)
    (b"", "header: message is 0 bytes, a STUN header needs 20"),
    (HEADER[:7], "header: message is 7 bytes, a STUN header needs 20"),
    (HEADER[:19], "header: message is 19 bytes, a STUN header needs 20"),
    (b"\x40" + HEADER[1:], "header/type: the two most significant bits must be zero"),
    (b"\x80" + HEADER[1:], "header/type: the two most significant bits must be zero"),
    (HEADER[:4] + b"\x21\x12\xa4\x43" + TXID, "header/cookie: magic cookie is 0x2112a443, expected 0x2112a442"),
    (HEADER[:4] + bytes(4) + TXID, "header/cookie: magic cookie is 0x00000000, expected 0x2112a442"),
    (HEADER[:2] + b"\x00\x02" + HEADER[4:] + b"\x00\x00", "header/length: length 2 is not a multiple of 4"),
    (HEADER[:2] + b"\x00\x08" + HEADER[4:], "header/length: length field says 8 bytes, 0 follow the header"),
    (HEADER + bytes(4), "header/length: length field says 0 bytes, 4 follow the header"),
    # framing of the attributes (RFC 8489 §14)
    (HEADER[:2] + b"\x00\x04" + HEADER[4:] + b"\x80\x22\x00\x08", "attribute/SOFTWARE: value of 8 bytes (padded 8) at offset 24 overruns the message of 24 bytes"),
    (HEADER[:2] + b"\x00\x08" + HEADER[4:] + b"\x7f\x00\x00\x05abcd", "attribute/0x7F00: value of 5 bytes (padded 8) at offset 24 overruns the message of 28 bytes"),
    # addresses (RFC 8489 §14.1, §14.2)
    (message((T.XOR_MAPPED_ADDRESS, b"\x00\x03\x00\x01\x01\x02\x03\x04")), "attribute/XOR-MAPPED-ADDRESS: unknown address family 0x03 (expected 0x01 IPv4 or 0x02 IPv6)"),
    (message((T.XOR_MAPPED_ADDRESS, b"\x00\x00\x00\x01\x01\x02\x03\x04")), "attribute/XOR-MAPPED-ADDRESS: unknown address family 0x00 (expected 0x01 IPv4 or 0x02 IPv6)"),
    (message((T.XOR_MAPPED_ADDRESS, b"\x00\x01\x00\x01\x01\x02\x03")), "attribute/XOR-MAPPED-ADDRESS: value is 7 bytes, an IPv4 address needs 8"),
    (message((T.XOR_MAPPED_ADDRESS, b"\x00\x01\x00")), "attribute/XOR-MAPPED-ADDRESS: value is 3 bytes, an address needs at least 4"),
    (message((T.XOR_MAPPED_ADDRESS, b"\x00\x02\x00\x01" + bytes(17))), "attribute/XOR-MAPPED-ADDRESS: value is 21 bytes, an IPv6 address needs 20"),
    (message((T.MAPPED_ADDRESS, b"\x00\x02\x00\x01" + bytes(4))), "attribute/MAPPED-ADDRESS: value is 8 bytes, an IPv6 address needs 20"),
    (message((T.CANDIDATE, b"\x00\x01\x00\x01" + bytes(16))), "attribute/CANDIDATE: value is 20 bytes, an IPv4 address needs 8"),
    (message((T.OTHER_ADDRESS, b"")), "attribute/OTHER-ADDRESS: value is 0 bytes, an address needs at least 4"),
    # text (RFC 8489 §14.3, §14.9, §14.10, §14.14; punch's IDs)
    (message((T.USERNAME, b"ab\xffcd")), "attribute/USERNAME: invalid UTF-8 at byte 2"),
    (message((T.USERNAME, b"\xe3\x83")), "attribute/USERNAME: invalid UTF-8 at byte 0"),
    (message((T.USERNAME, b"u" * 764)), "attribute/USERNAME: value is 764 bytes, expected 0 to 763"),
    (message((T.SOFTWARE, b"s" * 128)), "attribute/SOFTWARE: value is 128 characters, at most 127"),
    (message((T.REALM, "\u00e9".encode() * 128)), "attribute/REALM: value is 128 characters, at most 127"),
    (message((T.NONCE, b"n" * 764)), "attribute/NONCE: value is 764 bytes, expected 0 to 763"),
    (message((T.PEER_ID, b"")), "attribute/PEER-ID: value is 0 bytes, expected 1 to 128"),
    (message((T.TARGET_ID, b"t" * 129)), "attribute/TARGET-ID: value is 129 bytes, expected 1 to 128"),
    (message((T.STATUS, b"s" * 129)), "attribute/STATUS: value is 129 bytes, expected 0 to 128"),
    (message((T.STATUS, b"\xc0\x80")), "attribute/STATUS: invalid UTF-8 at byte 0"),
    # opaque values (RFC 8489 §14.5, §14.6; punch's)
    (message((T.MESSAGE_INTEGRITY, bytes(19))), "attribute/MESSAGE-INTEGRITY: value is 19 bytes, expected 20"),
    (message((T.MESSAGE_INTEGRITY_SHA256, bytes(18))), "attribute/MESSAGE-INTEGRITY-SHA256: value is 18 bytes, expected 16 to 32 in steps of 4"),
    (message((T.MESSAGE_INTEGRITY_SHA256, bytes(12))), "attribute/MESSAGE-INTEGRITY-SHA256: value is 12 bytes, expected 16 to 32 in steps of 4"),
    (message((T.MESSAGE_INTEGRITY_SHA256, bytes(36))), "attribute/MESSAGE-INTEGRITY-SHA256: value is 36 bytes, expected 16 to 32 in steps of 4"),
    (message((T.SESSION_ID, bytes(15))), "attribute/SESSION-ID: value is 15 bytes, expected 16"),
    (message((T.PUBLIC_KEY, bytes(16))), "attribute/PUBLIC-KEY: value is 16 bytes, expected 32"),
    (message((T.KEY_SIGNATURE, bytes(32))), "attribute/KEY-SIGNATURE: value is 32 bytes, expected 64"),
    (message((T.DATA_PAYLOAD, bytes(1201))), "attribute/DATA-PAYLOAD: value is 1201 bytes, expected 0 to 1200"),
    # numbers (RFC 8445 §7.1, RFC 5780 §7.2, punch's)
    (message((T.PRIORITY, bytes(3))), "attribute/PRIORITY: value is 3 bytes, expected 4"),
    (message((T.ICE_CONTROLLED, bytes(4))), "attribute/ICE-CONTROLLED: value is 4 bytes, expected 8"),
    (message((T.CHANGE_REQUEST, bytes(8))), "attribute/CHANGE-REQUEST: value is 8 bytes, expected 4"),
    (message((T.LEASE, b"")), "attribute/LEASE: value is 0 bytes, expected 4"),
    (message((T.ROLE, b"\x01")), "attribute/ROLE: value is 1 bytes, expected 4"),
    (message((T.OPEN_TTL, bytes(8))), "attribute/OPEN-TTL: value is 8 bytes, expected 4"),
    (message((T.USE_CANDIDATE, b"x")), "attribute/USE-CANDIDATE: value is 1 bytes, expected 0"),
    # ERROR-CODE and UNKNOWN-ATTRIBUTES (RFC 8489 §14.8, §14.13)
    (message((T.ERROR_CODE, b"\x00\x00\x02\x00Bad")), "attribute/ERROR-CODE: class 2 number 0 is not a code from 300 to 699"),
    (message((T.ERROR_CODE, b"\x00\x00\x07\x00Bad")), "attribute/ERROR-CODE: class 7 number 0 is not a code from 300 to 699"),
    (message((T.ERROR_CODE, b"\x00\x00\x04\x64Bad")), "attribute/ERROR-CODE: class 4 number 100 is not a code from 300 to 699"),
    (message((T.ERROR_CODE, b"\x00\x00\x04")), "attribute/ERROR-CODE: value is 3 bytes, expected 4 to 767"),
    (message((T.ERROR_CODE, b"\x00\x00\x04\x14Bad \xff")), "attribute/ERROR-CODE: invalid UTF-8 in the reason at byte 8"),
    (message((T.ERROR_CODE, b"\x00\x00\x04\x14" + b"r" * 128)), "attribute/ERROR-CODE: reason is 128 characters, at most 127"),
    (message((T.UNKNOWN_ATTRIBUTES, b"\x00")), "attribute/UNKNOWN-ATTRIBUTES: value is 1 bytes, expected a multiple of 2"),
    # FINGERPRINT (RFC 8489 §14.7)
    (message((T.FINGERPRINT, bytes(4)), (T.SOFTWARE, b"x")), "attribute/FINGERPRINT: must be the last attribute"),
    (message((T.FINGERPRINT, bytes(4)), (T.FINGERPRINT, bytes(4))), "attribute/FINGERPRINT: must be the last attribute"),
    (message((T.MESSAGE_INTEGRITY, bytes(20)), (T.FINGERPRINT, bytes(4)), (T.SOFTWARE, b"x")), "attribute/FINGERPRINT: must be the last attribute"),
    (message((T.FINGERPRINT, bytes(2))), "attribute/FINGERPRINT: value is 2 bytes, expected 4"),
    # a malformed known value before any integrity attribute is an error, even with a good FINGERPRINT
    (fingerprinted((T.SOFTWARE, b"ok"), (T.XOR_MAPPED_ADDRESS, IPV4[:6])), "attribute/XOR-MAPPED-ADDRESS: value is 6 bytes, an IPv4 address needs 8"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "error"), DECODE_ERRORS)
def test_decode_errors_say_where_and_why(data: bytes, error: str) -> None:
    with pytest.raises(StunDecodeError) as caught:
        decode(data)
    assert str(caught.value) == error
    assert caught.value.where == error.split(": ", 1)[0]
    assert caught.value.reason == error.split(": ", 1)[1]


def test_a_wrong_fingerprint_gives_both_values() -> None:
    good = encode(Message(Method.BINDING, MessageClass.REQUEST, TXID))
    bad = good[:-1] + bytes([good[-1] ^ 1])
    expected = zlib.crc32(good[:-8]) ^ 0x5354554E
    with pytest.raises(StunDecodeError) as caught:
        decode(bad)
    assert str(caught.value) == f"attribute/FINGERPRINT: is 0x{expected ^ 1:08x}, the message gives 0x{expected:08x}"


def test_a_changed_byte_before_the_fingerprint_is_caught() -> None:
    good = encode(Message(Method.BINDING, MessageClass.REQUEST, TXID, ((T.SOFTWARE, "abcd"),)))
    bad = good[:24] + b"X" + good[25:]
    with pytest.raises(StunDecodeError) as caught:
        decode(bad)
    assert caught.value.where == "attribute/FINGERPRINT"


ENCODE_ERRORS: list[tuple[int, object, str]] = [
    (T.XOR_MAPPED_ADDRESS, ("not an ip", 1), "XOR-MAPPED-ADDRESS: ('not an ip', 1) is not an (IP, port) address: 'not an ip' does not appear to be an IPv4 or IPv6 address"),
    (T.XOR_MAPPED_ADDRESS, ("192.0.2.1", 70000), "XOR-MAPPED-ADDRESS: port 70000 is out of range"),
    (T.MAPPED_ADDRESS, ("192.0.2.1", -1), "MAPPED-ADDRESS: port -1 is out of range"),
    (T.CANDIDATE, (b"\x7f\x00\x00\x01", 1), "CANDIDATE: (b'\\x7f\\x00\\x00\\x01', 1) is not an (IP, port) address"),
    (T.CANDIDATE, ("192.0.2.1", True), "CANDIDATE: ('192.0.2.1', True) is not an (IP, port) address"),
    (T.CANDIDATE, "192.0.2.1:80", "CANDIDATE: '192.0.2.1:80' is not an (IP, port) address"),
    (T.PEER_ID, "x" * 129, "PEER-ID: 129 bytes of UTF-8, expected 1 to 128"),
    (T.PEER_ID, "", "PEER-ID: 0 bytes of UTF-8, expected 1 to 128"),
    (T.USERNAME, "u" * 509, "USERNAME: 509 bytes of UTF-8, expected 0 to 508"),
    (T.SOFTWARE, "s" * 128, "SOFTWARE: 128 characters, at most 127"),
    (T.SOFTWARE, "\ud800", "SOFTWARE: not encodable as UTF-8 at character 0"),
    (T.SOFTWARE, b"punch", "SOFTWARE: expected text, got bytes"),
    (T.STATUS, "s" * 129, "STATUS: 129 bytes of UTF-8, expected 0 to 128"),
    (T.SESSION_ID, b"short", "SESSION-ID: 5 bytes, expected 16"),
    (T.SESSION_ID, "0123456789abcdef", "SESSION-ID: expected bytes, got str"),
    (T.DATA_PAYLOAD, bytes(1201), "DATA-PAYLOAD: 1201 bytes, expected 0 to 1200"),
    (T.ERROR_CODE, ErrorCode(200, "OK"), "ERROR-CODE: ErrorCode(code=200, reason='OK') is not an ErrorCode 300..699 with a reason < 128 characters"),
    (T.ERROR_CODE, ErrorCode(400, "r" * 128), "ERROR-CODE: ErrorCode(code=400, reason='" + "r" * 128 + "') is not an ErrorCode 300..699 with a reason < 128 characters"),
    (T.ERROR_CODE, ErrorCode(400, None), "ERROR-CODE: ErrorCode(code=400, reason=None) is not an ErrorCode 300..699 with a reason < 128 characters"),  # type: ignore[arg-type]
    (T.ERROR_CODE, 400, "ERROR-CODE: 400 is not an ErrorCode 300..699 with a reason < 128 characters"),
    (T.LEASE, -1, "LEASE: -1 is not an unsigned 32-bit integer"),
    (T.LEASE, 2**32, "LEASE: 4294967296 is not an unsigned 32-bit integer"),
    (T.LEASE, True, "LEASE: True is not an unsigned 32-bit integer"),
    (T.ICE_CONTROLLING, 2**64, "ICE-CONTROLLING: 18446744073709551616 is not an unsigned 64-bit integer"),
    (T.ROLE, 256, "ROLE: 256 is not an integer from 0 to 255"),
    (T.OPEN_TTL, "3", "OPEN-TTL: '3' is not an integer from 0 to 255"),
    (T.USE_CANDIDATE, 1, "USE-CANDIDATE: takes no value, got 1"),
    (T.UNKNOWN_ATTRIBUTES, (0x10000,), "UNKNOWN-ATTRIBUTES: (65536,) is not a list of 16-bit attribute types"),
    (T.MESSAGE_INTEGRITY, bytes(20), "MESSAGE-INTEGRITY is computed by encode(); do not pass it as an attribute"),
    (T.MESSAGE_INTEGRITY_SHA256, bytes(32), "MESSAGE-INTEGRITY-SHA256 is computed by encode(); do not pass it as an attribute"),
    (T.FINGERPRINT, 0, "FINGERPRINT is computed by encode(); do not pass it as an attribute"),
    (0x7F00, "text", "attribute 0x7F00 is not in the table; give its value as bytes"),
    (0x7F00, bytes(65536), "0x7F00: value is 65536 bytes, at most 65535"),
    (0x10000, b"", "attribute type 65536 does not fit in 16 bits"),
]  # fmt: skip


@pytest.mark.parametrize(("attribute", "value", "error"), ENCODE_ERRORS)
def test_encode_refuses_values_out_of_range(attribute: int, value: object, error: str) -> None:
    with pytest.raises(StunEncodeError) as caught:
        encode(Message(Method.BINDING, MessageClass.REQUEST, TXID, ((attribute, value),)))
    assert str(caught.value) == error


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (Message(0x1000, MessageClass.REQUEST, TXID), "method 4096 does not fit in 12 bits"),
        (Message(-1, MessageClass.REQUEST, TXID), "method -1 does not fit in 12 bits"),
        (Message(Method.BINDING, 4, TXID), "message class 4 is not one of 0..3"),  # type: ignore[arg-type]
        (Message(Method.BINDING, MessageClass.REQUEST, TXID[:11]), "transaction ID b'\\x00\\x01\\x02\\x03\\x04\\x05\\x06\\x07\\x08\\t\\n' is not 12 bytes"),
        (Message(Method.BINDING, MessageClass.REQUEST, "x" * 12), "transaction ID 'xxxxxxxxxxxx' is not 12 bytes"),  # type: ignore[arg-type]
        (Message(Method.BINDING, MessageClass.REQUEST, TXID, tuple((0x7F00, bytes(1200)) for _ in range(55))), "message body is 66228 bytes, at most 65535"),
    ],
)  # fmt: skip
def test_encode_refuses_headers_that_do_not_fit(bad: Message, error: str) -> None:
    with pytest.raises(StunEncodeError) as caught:
        encode(bad)
    assert str(caught.value) == error
