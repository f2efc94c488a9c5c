"""STUN messages: the header, the attribute list, integrity and fingerprint (RFC 8489 §5, §14.5-§14.7).

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
from dataclasses import dataclass

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
_TRAILERS = (
    AttributeType.MESSAGE_INTEGRITY,
    AttributeType.MESSAGE_INTEGRITY_SHA256,
    AttributeType.FINGERPRINT,
)


class MessageClass(enum.IntEnum):
    """The two class bits C1 C0 (RFC 8489 §5)."""

    REQUEST = 0b00
    INDICATION = 0b01
    SUCCESS = 0b10
    ERROR = 0b11


class Method(enum.IntEnum):
    """Methods: Binding (RFC 8489 §18.2) and punch's own, in the Expert Review range 0x080-0x0FF."""

    BINDING = 0x001
    REGISTER = 0x0C1
    CONNECT = 0x0C2
    INTRODUCE = 0x0C3
    READY = 0x0C4
    GO = 0x0C5
    DATA = 0x0C6
    CLOSE = 0x0C7
    RELAY = 0x0C8


_CLASS_NAMES = {
    MessageClass.REQUEST: "request",
    MessageClass.INDICATION: "indication",
    MessageClass.SUCCESS: "success response",
    MessageClass.ERROR: "error response",
}


def method_name(method: int) -> str:
    """ "Binding", "Register", ... or "method 0x0c9" for methods punch does not know."""
    return Method(method).name.title() if method in Method._value2member_map_ else f"method 0x{method:03x}"


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded or to-be-encoded STUN message; ``attributes`` are (type, value) pairs in wire order.

    Values are typed by the attribute table (Address, str, int, bytes, ErrorCode, tuple of types, None);
    attributes whose type is not in the table keep their raw bytes.
    """

    method: int
    message_class: MessageClass
    transaction_id: bytes
    attributes: tuple[tuple[int, object], ...] = ()

    def get(self, attribute: int) -> object | None:
        """The value of the first attribute of this type, or None."""
        for kind, value in self.attributes:
            if kind == attribute:
                return value
        return None

    def get_all(self, attribute: int) -> list[object]:
        """Every value of this type, in wire order."""
        return [value for kind, value in self.attributes if kind == attribute]

    def has(self, attribute: int) -> bool:
        """Whether an attribute of this type is present."""
        return any(kind == attribute for kind, _ in self.attributes)

    def address(self, attribute: int) -> Address | None:
        value = self.get(attribute)
        return value if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) else None

    def addresses(self, attribute: int) -> list[Address]:
        return [v for v in self.get_all(attribute) if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str)]

    def text(self, attribute: int) -> str | None:
        value = self.get(attribute)
        return value if isinstance(value, str) else None

    def integer(self, attribute: int) -> int | None:
        value = self.get(attribute)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def raw(self, attribute: int) -> bytes | None:
        value = self.get(attribute)
        return value if isinstance(value, bytes) else None

    def error_code(self) -> ErrorCode | None:
        value = self.get(AttributeType.ERROR_CODE)
        return value if isinstance(value, ErrorCode) else None

    def unknown_comprehension_required(self) -> tuple[int, ...]:
        """Types 0x0000-0x7FFF that are not in the table: a server answers 420 (RFC 8489 §6.3.1.1)."""
        return tuple(dict.fromkeys(k for k, _ in self.attributes if k not in TABLE and is_comprehension_required(k)))

    def __str__(self) -> str:
        return describe(self)


def new_transaction_id() -> bytes:
    """A fresh, uniformly random 96-bit transaction ID (RFC 8489 §5)."""
    return os.urandom(12)


def make_success(request: Message, attributes: tuple[tuple[int, object], ...] = ()) -> Message:
    """A success response to ``request``: same method and transaction ID."""
    return Message(request.method, MessageClass.SUCCESS, request.transaction_id, tuple(attributes))


def make_error(
    request: Message, code: int, reason: str, extra_attributes: tuple[tuple[int, object], ...] = ()
) -> Message:
    """An error response to ``request`` with ERROR-CODE first (RFC 8489 §14.8)."""
    return Message(
        request.method,
        MessageClass.ERROR,
        request.transaction_id,
        ((AttributeType.ERROR_CODE, ErrorCode(code, reason)), *extra_attributes),
    )


def describe(message: Message) -> str:
    """One readable line: "Binding success response txid=... XOR-MAPPED-ADDRESS=192.0.2.1:32853"."""
    parts = [
        f"{method_name(message.method)} {_CLASS_NAMES[message.message_class]}",
        f"txid={message.transaction_id.hex()}",
    ]
    for kind, value in message.attributes:
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
            shown = f"{value[0]}:{value[1]}"
        elif isinstance(value, bytes):
            shown = value.hex() if len(value) <= 32 else f"{len(value)} bytes"
        elif isinstance(value, ErrorCode):
            shown = f"{value.code} {value.reason!r}"
        else:
            shown = repr(value)
        parts.append(f"{attribute_name(kind)}={shown}")
    return " ".join(parts)


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


def _split_type(message_type: int) -> tuple[int, MessageClass]:
    method = (message_type & 0x000F) | ((message_type & 0x00E0) >> 1) | ((message_type & 0x3E00) >> 2)
    message_class = ((message_type >> 4) & 0b01) | ((message_type >> 7) & 0b10)
    return method, MessageClass(message_class)


def is_stun(data: bytes) -> bool:
    """Cheap demultiplexing test (RFC 7983, RFC 8489 §5): top bits zero, cookie, consistent length."""
    return (
        len(data) >= HEADER_LENGTH
        and data[0] < 0x40
        and data[4:8] == struct.pack("!I", MAGIC_COOKIE)
        and struct.unpack("!H", data[2:4])[0] == len(data) - HEADER_LENGTH
        and len(data) % 4 == 0
    )


# -- encode -------------------------------------------------------------------------------------------------


def _tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!HH", kind, len(value)) + value + b"\x00" * (-len(value) % 4)


def _header(message: Message, body_length: int) -> bytes:
    if not 0 <= message.method <= 0xFFF:
        raise StunEncodeError(f"method 0x{message.method:x} does not fit in 12 bits")
    if len(message.transaction_id) != 12:
        raise StunEncodeError(f"transaction ID is {len(message.transaction_id)} bytes, expected 12")
    message_type = _message_type(message.method, message.message_class)
    return struct.pack("!HHI", message_type, body_length, MAGIC_COOKIE) + message.transaction_id


def encode(
    message: Message,
    *,
    integrity_key: bytes | None = None,
    integrity_sha256_key: bytes | None = None,
    fingerprint: bool = True,
) -> bytes:
    """The wire bytes of ``message``, with MESSAGE-INTEGRITY (§14.5), MESSAGE-INTEGRITY-SHA256 (§14.6) and
    FINGERPRINT (§14.7) computed and appended in that order when asked for. StunEncodeError on bad values."""
    context = Context(message.transaction_id)
    body = bytearray()
    for kind, value in message.attributes:
        if kind in _TRAILERS:
            raise StunEncodeError(f"{attribute_name(kind)} is computed by encode(); do not pass it as an attribute")
        if not 0 <= kind <= 0xFFFF:
            raise StunEncodeError(f"attribute type {kind} does not fit in 16 bits")
        row = TABLE.get(kind)
        if row is not None:
            data = row.encode(value, context, row.name)
        elif isinstance(value, bytes | bytearray):
            data = bytes(value)
        else:
            raise StunEncodeError(f"attribute 0x{kind:04X} is not in the table; give its value as bytes")
        if len(data) > 0xFFFF:
            raise StunEncodeError(f"{attribute_name(kind)} value is {len(data)} bytes, at most 65535")
        body += _tlv(kind, data)
    for kind, key, digest in (
        (AttributeType.MESSAGE_INTEGRITY, integrity_key, hashlib.sha1),
        (AttributeType.MESSAGE_INTEGRITY_SHA256, integrity_sha256_key, hashlib.sha256),
    ):
        if key is not None:
            size = digest().digest_size
            # The length in the header covers the integrity attribute itself, not what follows it.
            covered = _header(message, len(body) + 4 + size) + bytes(body)
            body += _tlv(kind, hmac.new(key, covered, digest).digest())
    if fingerprint:
        covered = _header(message, len(body) + 8) + bytes(body)
        body += _tlv(AttributeType.FINGERPRINT, struct.pack("!I", zlib.crc32(covered) ^ FINGERPRINT_XOR))
    if len(body) > 0xFFFF:
        raise StunEncodeError(f"message body is {len(body)} bytes, at most 65535")
    return _header(message, len(body)) + bytes(body)


# -- decode -------------------------------------------------------------------------------------------------


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
        kind, length = struct.unpack("!HH", data[offset : offset + 4])
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


def decode(data: bytes) -> Message:
    """Parse one STUN message (RFC 8489 §5, §6.3): a Message, or StunDecodeError saying where and why."""
    data = bytes(data)
    if len(data) < HEADER_LENGTH:
        raise StunDecodeError("header", f"message is {len(data)} bytes, a STUN header needs {HEADER_LENGTH}")
    message_type, length, cookie = struct.unpack("!HHI", data[:8])
    if message_type & 0xC000:
        raise StunDecodeError("header/type", "the two most significant bits must be zero")
    if cookie != MAGIC_COOKIE:
        raise StunDecodeError("header/cookie", f"magic cookie is 0x{cookie:08x}, expected 0x{MAGIC_COOKIE:08x}")
    if length % 4:
        raise StunDecodeError("header/length", f"length {length} is not a multiple of 4")
    if length != len(data) - HEADER_LENGTH:
        raise StunDecodeError(
            "header/length",
            f"length field says {length} bytes, {len(data) - HEADER_LENGTH} follow the header",
        )
    method, message_class = _split_type(message_type)
    transaction_id = data[8:20]
    context = Context(transaction_id)
    attributes: list[tuple[int, object]] = []
    seen_integrity = False
    walked = _walk(data)
    for index, (kind, start, size) in enumerate(walked):
        value = data[start : start + size]
        if kind == AttributeType.FINGERPRINT:
            if index != len(walked) - 1:
                raise StunDecodeError("attribute/FINGERPRINT", "must be the last attribute")
            if size != 4:
                raise StunDecodeError("attribute/FINGERPRINT", f"value is {size} bytes, expected 4")
            expected = zlib.crc32(data[: start - 4]) ^ FINGERPRINT_XOR
            actual = struct.unpack("!I", value)[0]
            if actual != expected:
                raise StunDecodeError("attribute/FINGERPRINT", f"is 0x{actual:08x}, the message gives 0x{expected:08x}")
        elif seen_integrity and kind != AttributeType.MESSAGE_INTEGRITY_SHA256:
            continue  # RFC 8489 §14.5: attributes after MESSAGE-INTEGRITY (but these two) are ignored
        row = TABLE.get(kind)
        attributes.append((kind, row.decode(value, context, row.name) if row else value))
        if kind in (AttributeType.MESSAGE_INTEGRITY, AttributeType.MESSAGE_INTEGRITY_SHA256):
            seen_integrity = True
    return Message(method, message_class, transaction_id, tuple(attributes))


def _verify(data: bytes, key: bytes, kind: AttributeType, digest: str) -> bool:
    """Recompute an integrity attribute over the bytes before it, with the length adjusted (§14.5, §14.6)."""
    try:
        walked = _walk(data) if len(data) >= HEADER_LENGTH else []
    except StunDecodeError:
        return False
    for found, start, size in walked:
        if found == kind:
            adjusted = struct.pack("!H", start + size + (-size % 4) - HEADER_LENGTH)
            covered = data[:2] + adjusted + data[4 : start - 4]
            expected = hmac.new(key, covered, digest).digest()
            return len(expected) >= size > 0 and hmac.compare_digest(expected[:size], data[start : start + size])
    return False


def verify_integrity(data: bytes, key: bytes) -> bool:
    """Whether MESSAGE-INTEGRITY (HMAC-SHA1, RFC 8489 §14.5) is present and right for ``key``."""
    return _verify(bytes(data), key, AttributeType.MESSAGE_INTEGRITY, "sha1")


def verify_integrity_sha256(data: bytes, key: bytes) -> bool:
    """Whether MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6) is present and right for ``key``."""
    return _verify(bytes(data), key, AttributeType.MESSAGE_INTEGRITY_SHA256, "sha256")


def long_term_key(username: str, realm: str, password: str) -> bytes:
    """MD5(username ":" realm ":" password), the long-term credential key (RFC 8489 §9.2.2)."""
    return hashlib.md5(f"{username}:{realm}:{password}".encode(), usedforsecurity=False).digest()
