"""STUN attributes, table-driven: one row per type with its RFC name and its value codec (RFC 8489 §14).

Every value codec checks lengths before it slices and raises StunDecodeError naming the attribute
("attribute/XOR-MAPPED-ADDRESS") with expected vs actual sizes, so the message decoder stays total.
XOR-encoded addresses (XOR-MAPPED-ADDRESS, punch's CANDIDATE) are rows like every other: their codecs get the
transaction ID through :class:`Context`.
"""

from __future__ import annotations

import enum
import ipaddress
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from punch.errors import StunDecodeError, StunEncodeError

Address = tuple[str, int]
MAGIC_COOKIE = 0x2112A442
CHANGE_IP = 0x04  # CHANGE-REQUEST flags (RFC 5780 §7.2)
CHANGE_PORT = 0x02
_COOKIE_BYTES = struct.pack("!I", MAGIC_COOKIE)
# RFC 8489 §14.3, §14.8-§14.10, §14.14: text "fewer than 128 characters (which can be as long as 509 bytes when
# encoding them and as long as 763 bytes when decoding them)"; USERNAME "fewer than 509 bytes", parsed up to 763.
_MAX_CHARACTERS = 127
_MAX_SENT_BYTES = 508
_MAX_PARSED_BYTES = 763


class AttributeType(enum.IntEnum):
    """Attribute types (RFC 8489 §18.3 and the IANA STUN Attributes registry), grouped by defining RFC."""

    # RFC 8489 (and RFC 5389)
    MAPPED_ADDRESS = 0x0001
    USERNAME = 0x0006
    MESSAGE_INTEGRITY = 0x0008
    ERROR_CODE = 0x0009
    UNKNOWN_ATTRIBUTES = 0x000A
    REALM = 0x0014
    NONCE = 0x0015
    MESSAGE_INTEGRITY_SHA256 = 0x001C
    XOR_MAPPED_ADDRESS = 0x0020
    SOFTWARE = 0x8022
    FINGERPRINT = 0x8028
    # RFC 5780 (NAT behaviour discovery)
    CHANGE_REQUEST = 0x0003
    RESPONSE_ORIGIN = 0x802B
    OTHER_ADDRESS = 0x802C
    # RFC 8445 (ICE)
    PRIORITY = 0x0024
    USE_CANDIDATE = 0x0025
    ICE_CONTROLLED = 0x8029
    ICE_CONTROLLING = 0x802A
    # punch's own, comprehension-required, Expert Review range 0x4000-0x7FFF (RFC 8489 §18.3)
    PEER_ID = 0x4C01
    TARGET_ID = 0x4C02
    CANDIDATE = 0x4C03
    SESSION_ID = 0x4C04
    ROLE = 0x4C05
    LEASE = 0x4C06
    # 0x4C07 was SEQUENCE (a text's number, before QUIC streams carried texts): retired, never reused
    DATA_PAYLOAD = 0x4C08
    # 0x4C09 was SESSION-KEY (a key the server minted, sent in clear): retired, never reused
    REGISTRATION_TOKEN = 0x4C0A
    PUBLIC_KEY = 0x4C0B  # a peer's Ed25519 identity key, raw (RFC 8032 §5.1.5): Register; Introduce (the other's)
    KEY_SHARE = 0x4C0C  # an ephemeral X25519 public key (RFC 7748 §6.1): Connect; Introduce (the other's)
    KEY_SIGNATURE = 0x4C0D  # the sender's Ed25519 signature of its KEY-SHARE (punch.identity.agreement)
    # punch's own, comprehension-optional, Expert Review range 0xC000-0xFFFF (RFC 8489 §18.3)
    STATUS = 0xCC01
    OPEN_TTL = 0xCC02
    NAT_MAPPING = 0xCC03  # optional: a peer or server that does not know it simply does not predict ports
    SERVER_RTT = 0xCC04  # optional: a peer's round trip to the server, microseconds (Connect; Introduce: the other's)
    # optional: a relay at another server than the peer's own (punch.rendezvous.tickets): in Introduce its address and
    # the peer's ticket; in the peer's Relay indications the ticket. A peer or server that does not know them relays
    # through the peer's own server, as before
    RELAY_ADDRESS = 0xCC05
    RELAY_TICKET = 0xCC06


@dataclass(frozen=True, slots=True)
class ErrorCode:
    """ERROR-CODE (RFC 8489 §14.8): a code from 300 to 699 (class * 100 + number) and a reason phrase."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Context:
    """What some value codecs need beyond the value: the message's transaction ID (XOR, RFC 8489 §14.2)."""

    transaction_id: bytes


Decoder = Callable[[bytes, Context, str], object]
Encoder = Callable[[object, Context, str], bytes]


@dataclass(frozen=True, slots=True)
class Row:
    """One attribute type of the table (RFC 8489 §14): its RFC name and how its value goes to and from bytes.

    ``decode(value, context, name)`` raises StunDecodeError, ``encode(value, context, name)`` StunEncodeError.
    """

    type: int
    name: str
    decode: Decoder
    encode: Encoder


def _fail(name: str, reason: str) -> StunDecodeError:
    return StunDecodeError(f"attribute/{name}", reason)


def _as_int(value: object) -> int | None:
    """``value`` if it is an int (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _range(low: int, high: int) -> str:
    return f"{low}" if low == high else f"{low} to {high}"


# -- value codecs -------------------------------------------------------------------------------------------


def _decode_address(value: bytes, mask: bytes, name: str) -> Address:
    """MAPPED-ADDRESS layout (RFC 8489 §14.1), XORed with ``mask`` when it is not empty (§14.2).

    The first byte is reserved: it "MUST be ignored by receivers", so it is.
    """
    if len(value) < 4:
        raise _fail(name, f"value is {len(value)} bytes, an address needs at least 4")
    family = value[1]
    if family not in (0x01, 0x02):
        raise _fail(name, f"unknown address family 0x{family:02x} (expected 0x01 IPv4 or 0x02 IPv6)")
    version, expected = (4, 8) if family == 0x01 else (6, 20)
    if len(value) != expected:
        raise _fail(name, f"value is {len(value)} bytes, an IPv{version} address needs {expected}")
    port = int.from_bytes(value[2:4], "big")
    raw = value[4:]
    if mask:
        port ^= MAGIC_COOKIE >> 16
        raw = _xor(raw, mask)
    if version == 4:
        return (socket.inet_ntoa(raw), port)  # the dotted quad, as str(IPv4Address(raw)) gives it
    return (str(ipaddress.IPv6Address(raw)), port)


def _xor(raw: bytes, mask: bytes) -> bytes:
    """``raw`` XOR the first ``len(raw)`` bytes of ``mask``."""
    size = len(raw)
    return (int.from_bytes(raw, "big") ^ int.from_bytes(mask[:size], "big")).to_bytes(size, "big")


def _canonical_ipv4(host: str) -> bytes | None:
    """The packed form of ``host`` if it is an IPv4 address written as ipaddress accepts it (four decimal octets,
    no leading zeros): it is then exactly what inet_ntoa writes back. None for anything else."""
    try:
        packed = socket.inet_aton(host)
    except (OSError, ValueError):  # not an address; a NUL or a character that is not ASCII
        return None
    return packed if socket.inet_ntoa(packed) == host else None


def _encode_address(value: object, mask: bytes, name: str) -> bytes:
    host, port = value if isinstance(value, tuple) and len(value) == 2 else (None, None)
    port = _as_int(port)
    if not isinstance(host, str) or port is None:
        raise StunEncodeError(f"{name}: {value!r} is not an (IP, port) address")
    raw = _canonical_ipv4(host)  # the common case, without ipaddress' parsing
    family = 0x01
    if raw is None:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError as error:
            raise StunEncodeError(f"{name}: {value!r} is not an (IP, port) address: {error}") from None
        raw, family = ip.packed, 0x01 if ip.version == 4 else 0x02
    if not 0 <= port <= 0xFFFF:
        raise StunEncodeError(f"{name}: port {port} is out of range")
    if mask:
        port ^= MAGIC_COOKIE >> 16
        raw = _xor(raw, mask)
    return struct.pack("!BBH", 0, family, port) + raw


def plain_address() -> tuple[Decoder, Encoder]:
    """MAPPED-ADDRESS (RFC 8489 §14.1), also RESPONSE-ORIGIN and OTHER-ADDRESS (RFC 5780 §7.3, §7.4)."""
    return (lambda v, c, n: _decode_address(v, b"", n), lambda v, c, n: _encode_address(v, b"", n))


def xor_address() -> tuple[Decoder, Encoder]:
    """XOR-MAPPED-ADDRESS (RFC 8489 §14.2): port XOR the cookie's top 16 bits, address XOR cookie + txid."""

    def mask(context: Context) -> bytes:
        return _COOKIE_BYTES + context.transaction_id

    return (
        lambda v, c, n: _decode_address(v, mask(c), n),
        lambda v, c, n: _encode_address(v, mask(c), n),
    )


def text(
    max_bytes: int, *, min_bytes: int = 0, max_chars: int | None = None, send_bytes: int | None = None
) -> tuple[Decoder, Encoder]:
    """UTF-8 text (RFC 8489 §14.3 USERNAME, §14.9 REALM, §14.10 NONCE, §14.14 SOFTWARE; punch's IDs and STATUS).

    Decoding accepts ``min_bytes`` to ``max_bytes`` bytes; encoding at most ``send_bytes`` (default the same).
    ``max_chars`` limits characters both ways ("fewer than 128 characters").
    """
    sent = max_bytes if send_bytes is None else send_bytes

    def decode(value: bytes, context: Context, name: str) -> str:
        if not min_bytes <= len(value) <= max_bytes:
            raise _fail(name, f"value is {len(value)} bytes, expected {_range(min_bytes, max_bytes)}")
        try:
            decoded = value.decode("utf-8")
        except UnicodeDecodeError as error:
            raise _fail(name, f"invalid UTF-8 at byte {error.start}") from None
        if max_chars is not None and len(decoded) > max_chars:
            raise _fail(name, f"value is {len(decoded)} characters, at most {max_chars}")
        return decoded

    def encode(value: object, context: Context, name: str) -> bytes:
        if not isinstance(value, str):
            raise StunEncodeError(f"{name}: expected text, got {type(value).__name__}")
        try:
            data = value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise StunEncodeError(f"{name}: not encodable as UTF-8 at character {error.start}") from None
        if not min_bytes <= len(data) <= sent:
            raise StunEncodeError(f"{name}: {len(data)} bytes of UTF-8, expected {_range(min_bytes, sent)}")
        if max_chars is not None and len(value) > max_chars:
            raise StunEncodeError(f"{name}: {len(value)} characters, at most {max_chars}")
        return data

    return decode, encode


def opaque(min_bytes: int, max_bytes: int, multiple: int = 1) -> tuple[Decoder, Encoder]:
    """Raw bytes with a length range (MESSAGE-INTEGRITY RFC 8489 §14.5: 20; -SHA256 §14.6: 16..32 by 4)."""

    def problem(size: int) -> str | None:
        if min_bytes <= size <= max_bytes and size % multiple == 0:
            return None
        steps = f" in steps of {multiple}" if multiple > 1 else ""
        return f"{size} bytes, expected {_range(min_bytes, max_bytes)}{steps}"

    def decode(value: bytes, context: Context, name: str) -> bytes:
        wrong = problem(len(value))
        if wrong:
            raise _fail(name, f"value is {wrong}")
        return bytes(value)

    def encode(value: object, context: Context, name: str) -> bytes:
        if not isinstance(value, bytes | bytearray):
            raise StunEncodeError(f"{name}: expected bytes, got {type(value).__name__}")
        wrong = problem(len(value))
        if wrong:
            raise StunEncodeError(f"{name}: {wrong}")
        return bytes(value)

    return decode, encode


def unsigned(size: int) -> tuple[Decoder, Encoder]:
    """A big-endian unsigned integer of ``size`` bytes (PRIORITY, RFC 8445 §7.1.1: 4; ICE-CONTROLLED §7.1.3: 8)."""

    def decode(value: bytes, context: Context, name: str) -> int:
        if len(value) != size:
            raise _fail(name, f"value is {len(value)} bytes, expected {size}")
        return int.from_bytes(value, "big")

    def encode(value: object, context: Context, name: str) -> bytes:
        number = _as_int(value)
        if number is None or not 0 <= number < 1 << (8 * size):
            raise StunEncodeError(f"{name}: {value!r} is not an unsigned {8 * size}-bit integer")
        return number.to_bytes(size, "big")

    return decode, encode


def octet() -> tuple[Decoder, Encoder]:
    """One byte and three reserved bytes, zero on sending and ignored on receipt (punch's ROLE, OPEN-TTL and
    NAT-MAPPING, laid out like RFC 8489 §14's reserved fields)."""

    def decode(value: bytes, context: Context, name: str) -> int:
        if len(value) != 4:
            raise _fail(name, f"value is {len(value)} bytes, expected 4")
        return value[0]

    def encode(value: object, context: Context, name: str) -> bytes:
        number = _as_int(value)
        if number is None or not 0 <= number <= 255:
            raise StunEncodeError(f"{name}: {value!r} is not an integer from 0 to 255")
        return bytes((number, 0, 0, 0))

    return decode, encode


def flag() -> tuple[Decoder, Encoder]:
    """An attribute with an empty value (USE-CANDIDATE, RFC 8445 §7.1.2); its value is None."""

    def decode(value: bytes, context: Context, name: str) -> None:
        if value:
            raise _fail(name, f"value is {len(value)} bytes, expected 0")

    def encode(value: object, context: Context, name: str) -> bytes:
        if value is not None and value != b"":
            raise StunEncodeError(f"{name}: takes no value, got {value!r}")
        return b""

    return decode, encode


def error_code() -> tuple[Decoder, Encoder]:
    """ERROR-CODE (RFC 8489 §14.8): 21 reserved bits (ignored), class 3..6, number 0..99, reason < 128 chars."""

    def decode(value: bytes, context: Context, name: str) -> ErrorCode:
        if not 4 <= len(value) <= 4 + _MAX_PARSED_BYTES:
            raise _fail(name, f"value is {len(value)} bytes, expected 4 to {4 + _MAX_PARSED_BYTES}")
        klass, number = value[2] & 0x07, value[3]
        if not 3 <= klass <= 6 or number > 99:
            raise _fail(name, f"class {klass} number {number} is not a code from 300 to 699")
        try:
            reason = value[4:].decode("utf-8")
        except UnicodeDecodeError as error:
            raise _fail(name, f"invalid UTF-8 in the reason at byte {error.start + 4}") from None
        if len(reason) > _MAX_CHARACTERS:
            raise _fail(name, f"reason is {len(reason)} characters, at most {_MAX_CHARACTERS}")
        return ErrorCode(klass * 100 + number, reason)

    def encode(value: object, context: Context, name: str) -> bytes:
        if (
            not isinstance(value, ErrorCode)
            or _as_int(value.code) is None
            or not 300 <= value.code <= 699
            or not isinstance(value.reason, str)
            or len(value.reason) > _MAX_CHARACTERS
        ):
            raise StunEncodeError(f"{name}: {value!r} is not an ErrorCode 300..699 with a reason < 128 characters")
        try:
            reason = value.reason.encode("utf-8")
        except UnicodeEncodeError as error:
            raise StunEncodeError(f"{name}: reason not encodable as UTF-8 at character {error.start}") from None
        return struct.pack("!HBB", 0, value.code // 100, value.code % 100) + reason

    return decode, encode


def unknown_attributes() -> tuple[Decoder, Encoder]:
    """UNKNOWN-ATTRIBUTES (RFC 8489 §14.13): a list of 16-bit types, padded like any attribute."""

    def decode(value: bytes, context: Context, name: str) -> tuple[int, ...]:
        if len(value) % 2:
            raise _fail(name, f"value is {len(value)} bytes, expected a multiple of 2")
        return tuple(int.from_bytes(value[i : i + 2], "big") for i in range(0, len(value), 2))

    def encode(value: object, context: Context, name: str) -> bytes:
        if not isinstance(value, tuple | list) or not all(_as_int(t) is not None and 0 <= t <= 0xFFFF for t in value):
            raise StunEncodeError(f"{name}: {value!r} is not a list of 16-bit attribute types")
        return b"".join(int(t).to_bytes(2, "big") for t in value)

    return decode, encode


def _row(attribute: AttributeType, codec: tuple[Decoder, Encoder]) -> Row:
    return Row(int(attribute), attribute.name.replace("_", "-"), codec[0], codec[1])


_short_text = text(_MAX_PARSED_BYTES, max_chars=_MAX_CHARACTERS)
T = AttributeType
TABLE: dict[int, Row] = {
    row.type: row
    for row in (
        # RFC 8489 §14
        _row(T.MAPPED_ADDRESS, plain_address()),
        _row(T.USERNAME, text(_MAX_PARSED_BYTES, send_bytes=_MAX_SENT_BYTES)),
        _row(T.MESSAGE_INTEGRITY, opaque(20, 20)),
        _row(T.ERROR_CODE, error_code()),
        _row(T.UNKNOWN_ATTRIBUTES, unknown_attributes()),
        _row(T.REALM, _short_text),
        _row(T.NONCE, _short_text),
        _row(T.MESSAGE_INTEGRITY_SHA256, opaque(16, 32, multiple=4)),
        _row(T.XOR_MAPPED_ADDRESS, xor_address()),
        _row(T.SOFTWARE, _short_text),
        _row(T.FINGERPRINT, unsigned(4)),
        # RFC 5780 §7
        _row(T.CHANGE_REQUEST, unsigned(4)),
        _row(T.RESPONSE_ORIGIN, plain_address()),
        _row(T.OTHER_ADDRESS, plain_address()),
        # RFC 8445 §7.1
        _row(T.PRIORITY, unsigned(4)),
        _row(T.USE_CANDIDATE, flag()),
        _row(T.ICE_CONTROLLED, unsigned(8)),
        _row(T.ICE_CONTROLLING, unsigned(8)),
        # punch
        _row(T.PEER_ID, text(128, min_bytes=1)),
        _row(T.TARGET_ID, text(128, min_bytes=1)),
        _row(T.CANDIDATE, xor_address()),
        _row(T.SESSION_ID, opaque(16, 16)),
        _row(T.ROLE, octet()),
        _row(T.LEASE, unsigned(4)),
        _row(T.DATA_PAYLOAD, opaque(0, 1200)),
        _row(T.REGISTRATION_TOKEN, opaque(16, 16)),
        _row(T.PUBLIC_KEY, opaque(32, 32)),
        _row(T.KEY_SHARE, opaque(32, 32)),
        _row(T.KEY_SIGNATURE, opaque(64, 64)),
        _row(T.STATUS, text(128)),
        _row(T.OPEN_TTL, octet()),
        _row(T.NAT_MAPPING, octet()),
        _row(T.SERVER_RTT, unsigned(4)),
        _row(T.RELAY_ADDRESS, xor_address()),
        _row(T.RELAY_TICKET, opaque(16, 16)),
    )
}


def attribute_name(attribute_type: int) -> str:
    """The RFC name of a type ("XOR-MAPPED-ADDRESS", RFC 8489 §18.3), or "0x7F00" for types not in the table."""
    row = TABLE.get(attribute_type)
    return row.name if row else f"0x{attribute_type:04X}"


def is_comprehension_required(attribute_type: int) -> bool:
    """Types 0x0000-0x7FFF must be understood by the receiver (RFC 8489 §14)."""
    return attribute_type < 0x8000
