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

from typing import NamedTuple

from punch.rendezvous.signed import attributes, well_formed
from punch.stun import AttributeType, Message, MessageClass, Method, encode
from punch.stun.wire import MAX_PEER_ID_BYTES, SESSION_ID_BYTES


def _type(method: Method, message_class: MessageClass) -> bytes:
    return encode(Message(method, message_class, bytes(12)), fingerprint=False)[:2]


REQUEST_TYPES = {_type(m, MessageClass.REQUEST): m for m in (Method.DATA, Method.CLOSE)}
ANSWER_TYPES = {_type(m, MessageClass.SUCCESS): m for m in (Method.DATA, Method.CLOSE)}
_ALLOWED = {AttributeType.PEER_ID, AttributeType.SESSION_ID, AttributeType.SEQUENCE, AttributeType.DATA_PAYLOAD}


class Relayed(NamedTuple):
    """What the relay needs from a Data or Close request."""

    method: Method
    peer_id: str
    session_id: bytes


def parse_request(data: bytes) -> Relayed | None:
    """The Data or Close request in ``data``, or None when it is anything else (the general path takes it)."""
    if not well_formed(data, REQUEST_TYPES):
        return None
    found = attributes(data)
    if found is None:
        return None
    values = dict(found)
    if len(values) != len(found) or not values.keys() <= _ALLOWED:
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
    return Relayed(REQUEST_TYPES[data[:2]], text, bytes(session_id or b""))


def is_answer(data: bytes) -> bool:
    """Whether ``data`` is a well-formed success answer to a Data or Close request (the relay passes it on as it is;
    the requester checks its integrity with the session's key)."""
    return well_formed(data, ANSWER_TYPES) and attributes(data) is not None
