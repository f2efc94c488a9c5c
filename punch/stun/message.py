"""STUN messages: the header, the attribute list, integrity and fingerprint (RFC 8489 §5, §9, §14.5-§14.7).

:func:`decode` is total: any bytes give a :class:`Message` or a :class:`StunDecodeError` that names the place
and the reason; no other exception escapes.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeGuard

from punch.errors import StunDecodeError, StunEncodeError
from punch.stun.attributes import (
    MAGIC_COOKIE,
    TABLE,
    Address,
    AttributeType,
    Context,
    ErrorCode,
    attribute_name,
    is_comprehension_required,
)

HEADER_LENGTH = 20
FINGERPRINT_XOR = 0x5354554E
_COOKIE_BYTES = struct.pack("!I", MAGIC_COOKIE)
_MI = AttributeType.MESSAGE_INTEGRITY
_MI_SHA256 = AttributeType.MESSAGE_INTEGRITY_SHA256
_FINGERPRINT = AttributeType.FINGERPRINT
_TRAILERS = (_MI, _MI_SHA256, _FINGERPRINT)


class MessageClass(enum.IntEnum):
    """The two class bits C1 C0 of the message type (RFC 8489 §5)."""

    REQUEST = 0b00
    INDICATION = 0b01
    SUCCESS = 0b10
    ERROR = 0b11


class Method(enum.IntEnum):
    """Binding (RFC 8489 §18.2) and punch's own methods, in the Expert Review range 0x080-0x0FF.

    0x080 is GOOG-PING and 0x100-0xFFF are reserved by RFC 7983, so punch stays in 0x0C1-0x0CA.
    """

    BINDING = 0x001
    REGISTER = 0x0C1
    CONNECT = 0x0C2
    INTRODUCE = 0x0C3
    READY = 0x0C4
    GO = 0x0C5
    # 0x0C6 was Data and 0x0C7 Close (texts, before QUIC streams carried them): retired, never reused
    RELAY = 0x0C8
    MOVE = 0x0C9
    NOTICE = 0x0CA


_CLASS_NAMES = {
    MessageClass.REQUEST: "request",
    MessageClass.INDICATION: "indication",
    MessageClass.SUCCESS: "success response",
    MessageClass.ERROR: "error response",
}

Attributes = tuple[tuple[int, object], ...]


def method_name(method: int) -> str:
    """ "Binding" (RFC 8489 §18.2), "Register", ... or "method 0x0ca" for methods punch does not know."""
    return Method(method).name.title() if method in Method._value2member_map_ else f"method 0x{method:03x}"


def _is_address(value: object) -> TypeGuard[Address]:
    return isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded or to-be-encoded STUN message (RFC 8489 §5); ``attributes`` are (type, value) in wire order.

    Values are typed by the attribute table (Address, str, int, bytes, ErrorCode, tuple of types, None);
    attributes whose type is not in the table keep their raw bytes. Decoded methods punch knows are
    :class:`Method` members, others plain ints.
    """

    method: Method | int
    message_class: MessageClass
    transaction_id: bytes
    attributes: Attributes = ()

    @classmethod
    def request(cls, method: Method | int, attributes: Iterable[tuple[int, object]] = ()) -> Message:
        """A request with a fresh transaction ID (RFC 8489 §6.1)."""
        return cls(method, MessageClass.REQUEST, new_transaction_id(), tuple(attributes))

    @classmethod
    def indication(cls, method: Method | int, attributes: Iterable[tuple[int, object]] = ()) -> Message:
        """An indication with a fresh transaction ID (RFC 8489 §6.1)."""
        return cls(method, MessageClass.INDICATION, new_transaction_id(), tuple(attributes))

    def get(self, attribute: int) -> object | None:
        """The value of the first attribute of this type, or None (RFC 8489 §14: the first occurrence counts)."""
        for kind, value in self.attributes:
            if kind == attribute:
                return value
        return None

    def get_all(self, attribute: int) -> list[object]:
        """Every value of this type in wire order (RFC 8489 §14: any type MAY appear more than once)."""
        return [value for kind, value in self.attributes if kind == attribute]

    def has(self, attribute: int) -> bool:
        """Whether an attribute of this type is present (for flags like USE-CANDIDATE, RFC 8445 §7.1.2)."""
        return any(kind == attribute for kind, _ in self.attributes)

    def address(self, attribute: int) -> Address | None:
        """The first address-valued attribute of this type (RFC 8489 §14.1, §14.2), or None."""
        value = self.get(attribute)
        return value if _is_address(value) else None

    def addresses(self, attribute: int) -> list[Address]:
        """Every address of this type in wire order (punch's CANDIDATE repeats)."""
        return [v for v in self.get_all(attribute) if _is_address(v)]

    def text(self, attribute: int) -> str | None:
        """The first text value of this type (USERNAME, SOFTWARE, ... RFC 8489 §14.3, §14.14), or None."""
        value = self.get(attribute)
        return value if isinstance(value, str) else None

    def integer(self, attribute: int) -> int | None:
        """The first integer value of this type (PRIORITY, LEASE, ROLE, FINGERPRINT ...), or None."""
        value = self.get(attribute)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def raw(self, attribute: int) -> bytes | None:
        """The first bytes value of this type (SESSION-ID, DATA-PAYLOAD, or an unknown type's value), or None."""
        value = self.get(attribute)
        return value if isinstance(value, bytes) else None

    def error_code(self) -> ErrorCode | None:
        """ERROR-CODE (RFC 8489 §14.8), or None."""
        value = self.get(AttributeType.ERROR_CODE)
        return value if isinstance(value, ErrorCode) else None

    def unknown_comprehension_required(self) -> tuple[int, ...]:
        """Types 0x0000-0x7FFF not in the table, once each in wire order: a server answers 420 with them in
        UNKNOWN-ATTRIBUTES (RFC 8489 §6.3.1.1, §14.13)."""
        return tuple(dict.fromkeys(k for k, _ in self.attributes if k not in TABLE and is_comprehension_required(k)))

    def __str__(self) -> str:
        return describe(self)


def new_transaction_id() -> bytes:
    """A fresh, uniformly random 96-bit transaction ID (RFC 8489 §5)."""
    return os.urandom(12)


def make_success(request: Message, attributes: Iterable[tuple[int, object]] = ()) -> Message:
    """A success response to ``request``: same method and transaction ID (RFC 8489 §6.3.1.1)."""
    return Message(request.method, MessageClass.SUCCESS, request.transaction_id, tuple(attributes))


def make_error(
    request: Message, code: int, reason: str, extra_attributes: Iterable[tuple[int, object]] = ()
) -> Message:
    """An error response to ``request`` with ERROR-CODE first (RFC 8489 §6.3.1.1, §14.8)."""
    return Message(
        request.method,
        MessageClass.ERROR,
        request.transaction_id,
        ((AttributeType.ERROR_CODE, ErrorCode(code, reason)), *extra_attributes),
    )


def _show(value: object) -> str:
    if _is_address(value):
        host, port = value
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(value, bytes):
        return value.hex() if len(value) <= 32 else f"<{len(value)} bytes>"
    if isinstance(value, ErrorCode):
        return f"{value.code} {value.reason!r}"
    return repr(value)


def describe(message: Message) -> str:
    """One line for logs, names from RFC 8489 §18: "Binding success response txid=b7e7a701bc34d686fa87dfae,
    XOR-MAPPED-ADDRESS=192.0.2.1:32853, SOFTWARE='test vector'"."""
    parts = [
        f"{method_name(message.method)} {_CLASS_NAMES.get(message.message_class, 'class ?')}"
        f" txid={message.transaction_id.hex()}"
    ]
    for kind, value in message.attributes:
        name = attribute_name(kind)
        parts.append(name if value is None else f"{name}={_show(value)}")
    return ", ".join(parts)


# -- header -------------------------------------------------------------------------------------------------


def _message_type(method: int, message_class: int) -> int:
    """Interleave the 12 method bits with the 2 class bits (RFC 8489 §5, figure 3)."""
    return (
        (method & 0x000F)
        | ((method & 0x0070) << 1)
        | ((method & 0x0F80) << 2)
        | ((message_class & 0b01) << 4)
        | ((message_class & 0b10) << 7)
    )


def _split_type(message_type: int) -> tuple[Method | int, MessageClass]:
    method = (message_type & 0x000F) | ((message_type & 0x00E0) >> 1) | ((message_type & 0x3E00) >> 2)
    message_class = MessageClass(((message_type >> 4) & 0b01) | ((message_type >> 7) & 0b10))
    return (Method(method) if method in Method._value2member_map_ else method), message_class


def is_stun(data: bytes) -> bool:
    """Cheap demultiplexing test (RFC 7983 §7, RFC 8489 §5): at least a header, top two bits zero, the magic
    cookie, and a length field that is a multiple of 4 and matches the datagram."""
    return (
        len(data) >= HEADER_LENGTH
        and data[0] < 0x40
        and data[4:8] == _COOKIE_BYTES
        and int.from_bytes(data[2:4], "big") == len(data) - HEADER_LENGTH
        and len(data) % 4 == 0
    )


# -- encode -------------------------------------------------------------------------------------------------


def _tlv(kind: int, value: bytes) -> bytes:
    """One attribute, padded with zeros to a multiple of 4 bytes (RFC 8489 §14)."""
    return struct.pack("!HH", kind, len(value)) + value + b"\x00" * (-len(value) % 4)


def _header(message: Message, body_length: int) -> bytes:
    """The 20-byte header (RFC 8489 §5) with the given length field."""
    method = message.method
    if not isinstance(method, int) or isinstance(method, bool) or not 0 <= method <= 0xFFF:
        raise StunEncodeError(f"method {method!r} does not fit in 12 bits")
    if not isinstance(message.message_class, int) or message.message_class not in MessageClass._value2member_map_:
        raise StunEncodeError(f"message class {message.message_class!r} is not one of 0..3")
    if not isinstance(message.transaction_id, bytes | bytearray) or len(message.transaction_id) != 12:
        raise StunEncodeError(f"transaction ID {message.transaction_id!r} is not 12 bytes")
    message_type = _message_type(method, message.message_class)
    return struct.pack("!HHI", message_type, body_length, MAGIC_COOKIE) + bytes(message.transaction_id)


def encode(
    message: Message,
    *,
    integrity_key: bytes | None = None,
    integrity_sha256_key: bytes | None = None,
    fingerprint: bool = True,
) -> bytes:
    """The wire bytes of ``message`` (RFC 8489 §5, §14), with MESSAGE-INTEGRITY (§14.5, HMAC-SHA1),
    MESSAGE-INTEGRITY-SHA256 (§14.6, the full 32 bytes) and FINGERPRINT (§14.7) computed and appended in that
    order when asked for, each over the message so far with the header length pointing past itself.

    StunEncodeError names the attribute whose value is out of range; those three must not be in ``attributes``.
    """
    start = _header(message, 0)  # checks method, class and transaction ID before any attribute
    message_type, transaction_id = start[0:2], start[8:20]

    def header(body_length: int) -> bytes:
        return message_type + body_length.to_bytes(2, "big") + _COOKIE_BYTES + transaction_id

    context = Context(bytes(message.transaction_id))
    body = bytearray()
    for kind, value in message.attributes:
        if kind in _TRAILERS:
            raise StunEncodeError(f"{attribute_name(kind)} is computed by encode(); do not pass it as an attribute")
        if not isinstance(kind, int) or not 0 <= kind <= 0xFFFF:
            raise StunEncodeError(f"attribute type {kind!r} does not fit in 16 bits")
        row = TABLE.get(kind)
        if row is not None:
            data = row.encode(value, context, row.name)
        elif isinstance(value, bytes | bytearray):
            data = bytes(value)
        else:
            raise StunEncodeError(f"attribute 0x{kind:04X} is not in the table; give its value as bytes")
        if len(data) > 0xFFFF:
            raise StunEncodeError(f"{attribute_name(kind)}: value is {len(data)} bytes, at most 65535")
        body += _tlv(kind, data)
    total = len(body) + 24 * (integrity_key is not None) + 36 * (integrity_sha256_key is not None) + 8 * fingerprint
    if total > 0xFFFF:
        raise StunEncodeError(f"message body is {total} bytes, at most 65535")
    for kind, key, digest in ((_MI, integrity_key, "sha1"), (_MI_SHA256, integrity_sha256_key, "sha256")):
        if key is not None:
            size = hashlib.new(digest).digest_size
            covered = header(len(body) + 4 + size) + bytes(body)
            body += _tlv(kind, hmac.new(key, covered, digest).digest())
    if fingerprint:
        covered = header(len(body) + 8) + bytes(body)
        body += _tlv(_FINGERPRINT, struct.pack("!I", zlib.crc32(covered) ^ FINGERPRINT_XOR))
    return header(len(body)) + bytes(body)


# -- decode -------------------------------------------------------------------------------------------------


def _check_header(data: bytes) -> None:
    """The fixed header (RFC 8489 §5, §6.3): size, leading zero bits, cookie, length."""
    if len(data) < HEADER_LENGTH:
        raise StunDecodeError("header", f"message is {len(data)} bytes, a STUN header needs {HEADER_LENGTH}")
    if data[0] & 0xC0:
        raise StunDecodeError("header/type", "the two most significant bits must be zero")
    cookie = int.from_bytes(data[4:8], "big")
    if cookie != MAGIC_COOKIE:
        raise StunDecodeError("header/cookie", f"magic cookie is 0x{cookie:08x}, expected 0x{MAGIC_COOKIE:08x}")
    length = int.from_bytes(data[2:4], "big")
    if length % 4:
        raise StunDecodeError("header/length", f"length {length} is not a multiple of 4")
    if length != len(data) - HEADER_LENGTH:
        raise StunDecodeError(
            "header/length",
            f"length field says {length} bytes, {len(data) - HEADER_LENGTH} follow the header",
        )


def _walk(data: bytes) -> list[tuple[int, int, int]]:
    """(type, value offset, value length) of each attribute; StunDecodeError if they do not tile the body."""
    found = []
    offset = HEADER_LENGTH
    while offset < len(data):
        if len(data) - offset < 4:
            raise StunDecodeError(
                "attributes",
                f"{len(data) - offset} bytes left at offset {offset}, an attribute header needs 4",
            )
        kind, length = struct.unpack_from("!HH", data, offset)
        padded = length + (-length % 4)
        if offset + 4 + padded > len(data):
            raise StunDecodeError(
                f"attribute/{attribute_name(kind)}",
                f"value of {length} bytes (padded {padded}) at offset {offset + 4} overruns the message "
                f"of {len(data)} bytes",
            )
        found.append((kind, offset + 4, length))
        offset += 4 + padded
    return found


def _scan(data: bytes) -> list[tuple[int, int, int]]:
    """The attributes a receiver processes, after the header and framing checks.

    RFC 8489 §9: attributes after MESSAGE-INTEGRITY are ignored but MESSAGE-INTEGRITY-SHA256 and FINGERPRINT;
    after MESSAGE-INTEGRITY-SHA256 all but FINGERPRINT. §14.7: FINGERPRINT must be last and must match.
    """
    _check_header(data)
    walked = _walk(data)
    kept: list[tuple[int, int, int]] = []
    allowed: tuple[int, ...] | None = None  # None: no integrity attribute seen yet, everything is processed
    for index, (kind, start, size) in enumerate(walked):
        if kind == _FINGERPRINT:
            if index != len(walked) - 1:
                raise StunDecodeError("attribute/FINGERPRINT", "must be the last attribute")
            if size != 4:
                raise StunDecodeError("attribute/FINGERPRINT", f"value is {size} bytes, expected 4")
            expected = zlib.crc32(data[: start - 4]) ^ FINGERPRINT_XOR
            actual = int.from_bytes(data[start : start + 4], "big")
            if actual != expected:
                raise StunDecodeError("attribute/FINGERPRINT", f"is 0x{actual:08x}, the message gives 0x{expected:08x}")
        elif allowed is not None and kind not in allowed:
            continue
        kept.append((kind, start, size))
        if kind == _MI:
            allowed = (_MI_SHA256,)
        elif kind == _MI_SHA256:
            allowed = ()
    return kept


def decode(data: bytes) -> Message:
    """Parse one STUN message (RFC 8489 §5, §6.3, §14): a Message, or StunDecodeError saying where and why.

    Known attributes are decoded by their table row; unknown ones keep their raw bytes (answering 420 for the
    comprehension-required ones is the server's job, see :meth:`Message.unknown_comprehension_required`).
    """
    data = bytes(data)
    kept = _scan(data)
    method, message_class = _split_type(int.from_bytes(data[0:2], "big"))
    transaction_id = data[8:20]
    context = Context(transaction_id)
    attributes: list[tuple[int, object]] = []
    for kind, start, size in kept:
        value = data[start : start + size]
        row = TABLE.get(kind)
        attributes.append((kind, row.decode(value, context, row.name) if row else value))
    return Message(method, message_class, transaction_id, tuple(attributes))


def _verify(data: bytes, key: bytes, kind: AttributeType, digest: str, sizes: range) -> bool:
    """Recompute an integrity attribute over the bytes before it, the length pointing past it (§14.5, §14.6)."""
    data = bytes(data)
    try:
        kept = _scan(data)
    except StunDecodeError:
        return False
    for found, start, size in kept:
        if found == kind:
            if size not in sizes:
                return False
            adjusted = (start + size - HEADER_LENGTH).to_bytes(2, "big")
            covered = data[:2] + adjusted + data[4 : start - 4]
            expected = hmac.new(key, covered, digest).digest()[:size]
            return hmac.compare_digest(expected, data[start : start + size])
    return False


def verify_integrity(data: bytes, key: bytes) -> bool:
    """Whether ``data`` carries a MESSAGE-INTEGRITY (HMAC-SHA1, RFC 8489 §14.5) that is right for ``key``.

    False when it is absent, ignored (after MESSAGE-INTEGRITY-SHA256, §9), malformed or wrong; the comparison
    is constant-time. The key is the password (§9.1.1) or :func:`long_term_key` (§9.2.2).
    """
    return _verify(data, key, _MI, "sha1", range(20, 21))


def verify_integrity_sha256(data: bytes, key: bytes, *, min_length: int = 32) -> bool:
    """Whether ``data`` carries a MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6) that is right for ``key``.

    The value "must be the full 32 bytes unless the STUN Usage explicitly specifies that truncation is
    allowed": pass ``min_length`` (16..32, a multiple of 4) for such a usage. False when absent, malformed,
    shorter than that, or wrong; the comparison is constant-time.
    """
    shortest = max(16, -(-min_length // 4) * 4)  # rounded up to a multiple of 4
    return _verify(data, key, _MI_SHA256, "sha256", range(shortest, 33, 4))


def long_term_key(username: str, realm: str, password: str) -> bytes:
    """MD5(username ":" realm ":" password), the long-term credential key (RFC 8489 §9.2.2, algorithm MD5).

    The strings are used as given: OpaqueString/SASLprep processing, if any, is the caller's.
    """
    return hashlib.md5(f"{username}:{realm}:{password}".encode(), usedforsecurity=False).digest()
