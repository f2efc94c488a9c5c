"""The relay's fast path: Data and Close requests, and their answers, read from their bytes.

The general path decodes each relayed datagram into a Message and walks it again to check its
MESSAGE-INTEGRITY-SHA256; the relay needs only the PEER-ID and SESSION-ID of a request, where its integrity
attribute starts, and that the datagram is well formed. :func:`parse_request` and :func:`is_answer` read that
straight from the bytes.

Strict by construction, as punch.rendezvous.refresh: anything that is not exactly a well-formed Data or Close
request (RFC 8489 §5 header, attributes tiling the body, only PEER-ID, SESSION-ID, SEQUENCE and DATA-PAYLOAD
before a MESSAGE-INTEGRITY-SHA256 of 32 bytes and a matching FINGERPRINT last, §14.6-§14.7), or a well-formed
success answer to one, gives None or False, and the caller hands the datagram to the general path.
"""

from __future__ import annotations

import hmac
import struct
import zlib
from typing import NamedTuple

from punch.rendezvous.wire import MAX_PEER_ID_BYTES, SESSION_ID_BYTES
from punch.stun import MAGIC_COOKIE, AttributeType, Message, MessageClass, Method, encode


def _type(method: Method, message_class: MessageClass) -> bytes:
    return encode(Message(method, message_class, bytes(12)), fingerprint=False)[:2]


REQUEST_TYPES = {_type(m, MessageClass.REQUEST): m for m in (Method.DATA, Method.CLOSE)}
ANSWER_TYPES = {_type(m, MessageClass.SUCCESS): m for m in (Method.DATA, Method.CLOSE)}
_HEADER = struct.Struct("!2sHI")  # type, length, cookie
_TLV = struct.Struct("!HH")
_TRAILER = struct.Struct(
    "!HH32xHHI"
)  # MESSAGE-INTEGRITY-SHA256 (type, length, 32 bytes), FINGERPRINT (type, length, value)
_TRAILER_SIZE = 44
_FINGERPRINT_XOR = 0x5354554E
_MI, _FP = AttributeType.MESSAGE_INTEGRITY_SHA256, AttributeType.FINGERPRINT
_ALLOWED = {AttributeType.PEER_ID, AttributeType.SESSION_ID, AttributeType.SEQUENCE, AttributeType.DATA_PAYLOAD}


class Relayed(NamedTuple):
    """What the relay needs from a Data or Close request."""

    method: Method
    peer_id: str
    session_id: bytes
    integrity_at: int  # where MESSAGE-INTEGRITY-SHA256 starts


def _well_formed(data: bytes, types: dict[bytes, Method]) -> bool:
    """Header, length, cookie, and a MESSAGE-INTEGRITY-SHA256 then a right FINGERPRINT at the end."""
    size = len(data)
    if size < 20 + _TRAILER_SIZE or size % 4:
        return False
    kind, length, cookie = _HEADER.unpack_from(data)
    if kind not in types or length != size - 20 or cookie != MAGIC_COOKIE:
        return False
    mi, mi_length, fp, fp_length, crc = _TRAILER.unpack_from(data, size - _TRAILER_SIZE)
    return (mi, mi_length, fp, fp_length) == (_MI, 32, _FP, 4) and crc == zlib.crc32(data[:-8]) ^ _FINGERPRINT_XOR


def _attributes(data: bytes) -> list[tuple[int, bytes]] | None:
    """The attributes before the trailer, if they tile the body exactly."""
    end = len(data) - _TRAILER_SIZE
    found = []
    offset = 20
    while offset < end:
        kind, length = _TLV.unpack_from(data, offset)
        start = offset + 4
        offset = start + length + (-length % 4)
        if offset > end:
            return None
        found.append((kind, data[start : start + length]))
    return found


def parse_request(data: bytes) -> Relayed | None:
    """The Data or Close request in ``data``, or None when it is anything else (the general path takes it)."""
    if not _well_formed(data, REQUEST_TYPES):
        return None
    attributes = _attributes(data)
    if attributes is None:
        return None
    values = dict(attributes)
    if len(values) != len(attributes) or not values.keys() <= _ALLOWED:
        return None  # an attribute twice, or one the general path must look at
    peer_id, session_id = values.get(AttributeType.PEER_ID), values.get(AttributeType.SESSION_ID)
    if peer_id is None or not 1 <= len(peer_id) <= MAX_PEER_ID_BYTES or len(session_id or b"") != SESSION_ID_BYTES:
        return None
    if len(values.get(AttributeType.SEQUENCE, bytes(4))) != 4:
        return None
    try:
        text = peer_id.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return None
    return Relayed(REQUEST_TYPES[data[:2]], text, bytes(session_id or b""), len(data) - _TRAILER_SIZE)


def authentic(data: bytes, request: Relayed, key: bytes) -> bool:
    """Whether the request's MESSAGE-INTEGRITY-SHA256 is right for ``key`` (RFC 8489 §14.6); constant-time."""
    at = request.integrity_at
    covered = data[:2] + (at + 36 - 20).to_bytes(2, "big") + data[4:at]
    return hmac.compare_digest(hmac.digest(key, covered, "sha256"), data[at + 4 : at + 36])


def is_answer(data: bytes) -> bool:
    """Whether ``data`` is a well-formed success answer to a Data or Close request (the relay passes it on as it is;
    the requester checks its integrity with the session's key)."""
    return _well_formed(data, ANSWER_TYPES) and _attributes(data) is not None
