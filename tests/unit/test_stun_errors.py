"""Every way decode() refuses bytes, with the exact words it uses (RFC 8489 §5, §14)."""

from __future__ import annotations

import struct
import zlib

import pytest

from punch.errors import StunDecodeError, StunEncodeError
from punch.stun import AttributeType, ErrorCode, Message, MessageClass, Method, decode, encode, is_stun

pytestmark = pytest.mark.unit

TXID = bytes(range(12))
HEADER = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + TXID


def message(*attributes: tuple[int, bytes]) -> bytes:
    """A Binding request with raw attributes (value padded), header length set right, no FINGERPRINT."""
    body = b"".join(struct.pack("!HH", t, len(v)) + v + b"\x00" * (-len(v) % 4) for t, v in attributes)
    return struct.pack("!HHI", 0x0001, len(body), 0x2112A442) + TXID + body


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", "header: message is 0 bytes, a STUN header needs 20"),
        (HEADER[:19], "header: message is 19 bytes, a STUN header needs 20"),
        (b"\x40" + HEADER[1:], "header/type: the two most significant bits must be zero"),
        (HEADER[:4] + b"\x21\x12\xa4\x43" + TXID, "header/cookie: magic cookie is 0x2112a443, expected 0x2112a442"),
        (HEADER[:2] + b"\x00\x02" + HEADER[4:] + b"\x00\x00", "header/length: length 2 is not a multiple of 4"),
        (HEADER[:2] + b"\x00\x08" + HEADER[4:], "header/length: length field says 8 bytes, 0 follow the header"),
        (
            message((AttributeType.SOFTWARE, b"abcd"))[:-4][:2] + b"\x00\x04" + message()[4:] + b"\x80\x22\x00\x08",
            "attribute/SOFTWARE: value of 8 bytes (padded 8) at offset 24 overruns the message of 24 bytes",
        ),
        (
            message((AttributeType.XOR_MAPPED_ADDRESS, b"\x00\x03\x00\x01\x01\x02\x03\x04")),
            "attribute/XOR-MAPPED-ADDRESS: unknown address family 0x03 (expected 0x01 IPv4 or 0x02 IPv6)",
        ),
        (
            message((AttributeType.XOR_MAPPED_ADDRESS, b"\x00\x01\x00\x01\x01\x02\x03")),
            "attribute/XOR-MAPPED-ADDRESS: value is 7 bytes, an IPv4 address needs 8",
        ),
        (
            message((AttributeType.MAPPED_ADDRESS, b"\x00\x02\x00\x01" + bytes(4))),
            "attribute/MAPPED-ADDRESS: value is 8 bytes, an IPv6 address needs 20",
        ),
        (message((AttributeType.USERNAME, b"ab\xffcd")), "attribute/USERNAME: invalid UTF-8 at byte 2"),
        (message((AttributeType.PEER_ID, b"")), "attribute/PEER-ID: value is 0 bytes, expected 1 to 128"),
        (message((AttributeType.MESSAGE_INTEGRITY, bytes(19))), "attribute/MESSAGE-INTEGRITY: value is 19 bytes, expected 20"),
        (
            message((AttributeType.MESSAGE_INTEGRITY_SHA256, bytes(18))),
            "attribute/MESSAGE-INTEGRITY-SHA256: value is 18 bytes, expected 16 to 32 in steps of 4",
        ),
        (
            message((AttributeType.ERROR_CODE, b"\x00\x00\x02\x00Bad")),
            "attribute/ERROR-CODE: class 2 number 0 is not a code from 300 to 699",
        ),
        (message((AttributeType.UNKNOWN_ATTRIBUTES, b"\x00")), "attribute/UNKNOWN-ATTRIBUTES: value is 1 bytes, expected a multiple of 2"),
        (message((AttributeType.USE_CANDIDATE, b"x")), "attribute/USE-CANDIDATE: value is 1 bytes, expected 0"),
        (message((AttributeType.FINGERPRINT, bytes(4)), (AttributeType.SOFTWARE, b"x")), "attribute/FINGERPRINT: must be the last attribute"),
        (message((AttributeType.FINGERPRINT, bytes(2))), "attribute/FINGERPRINT: value is 2 bytes, expected 4"),
    ],
)  # fmt: skip
def test_decode_errors_say_where_and_why(data: bytes, error: str) -> None:
    with pytest.raises(StunDecodeError) as caught:
        decode(data)
    assert str(caught.value) == error


def test_a_wrong_fingerprint_gives_both_values() -> None:
    good = encode(Message(Method.BINDING, MessageClass.REQUEST, TXID))
    bad = good[:-1] + bytes([good[-1] ^ 1])
    expected = zlib.crc32(good[:-8]) ^ 0x5354554E
    with pytest.raises(StunDecodeError) as caught:
        decode(bad)
    assert str(caught.value) == f"attribute/FINGERPRINT: is 0x{expected ^ 1:08x}, the message gives 0x{expected:08x}"


def test_attributes_after_message_integrity_are_ignored() -> None:
    """RFC 8489 §14.5: only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT may follow; others are ignored."""
    data = message((AttributeType.MESSAGE_INTEGRITY, bytes(20)), (AttributeType.SOFTWARE, b"late"))
    assert [t for t, _ in decode(data).attributes] == [AttributeType.MESSAGE_INTEGRITY]


def test_unknown_comprehension_required_attributes_are_listed_optional_ones_not() -> None:
    decoded = decode(message((0x7F00, b"?"), (0xFF00, b"!"), (0x7F00, b"again")))
    assert decoded.unknown_comprehension_required() == (0x7F00,)
    assert decoded.get(0xFF00) == b"!"


def test_is_stun_demultiplexes_cheaply() -> None:
    good = encode(Message(Method.BINDING, MessageClass.REQUEST, TXID))
    assert is_stun(good)
    assert not is_stun(good[:-4])
    assert not is_stun(b"\x80" + good[1:])  # RTP/DTLS-like first byte (RFC 7983)
    assert not is_stun(b"GET / HTTP/1.1\r\n\r\n....")


@pytest.mark.parametrize(
    ("attribute", "value", "error"),
    [
        (AttributeType.XOR_MAPPED_ADDRESS, ("not an ip", 1), "XOR-MAPPED-ADDRESS: ('not an ip', 1) is not an (IP, port) address"),
        (AttributeType.XOR_MAPPED_ADDRESS, ("192.0.2.1", 70000), "XOR-MAPPED-ADDRESS: port 70000 is out of range"),
        (AttributeType.PEER_ID, "x" * 129, "PEER-ID: 129 bytes of UTF-8, expected 1 to 128"),
        (AttributeType.SESSION_ID, b"short", "SESSION-ID: 5 bytes, expected 16"),
        (AttributeType.ERROR_CODE, ErrorCode(200, "OK"), "ERROR-CODE: ErrorCode(code=200, reason='OK') is not an ErrorCode"),
        (AttributeType.LEASE, -1, "LEASE: -1 is not an unsigned 32-bit integer"),
        (AttributeType.FINGERPRINT, 0, "FINGERPRINT is computed by encode(); do not pass it as an attribute"),
        (0x7F00, "text", "attribute 0x7F00 is not in the table; give its value as bytes"),
    ],
)  # fmt: skip
def test_encode_refuses_values_out_of_range(attribute: int, value: object, error: str) -> None:
    with pytest.raises(StunEncodeError) as caught:
        encode(Message(Method.BINDING, MessageClass.REQUEST, TXID, ((attribute, value),)))
    assert str(caught.value).startswith(error)
