"""The relay's fast path: a relayed QUIC packet (a Relay indication) read from its bytes.

The general path decodes each datagram into a Message; the relay needs only the PEER-ID and SESSION-ID of a Relay
indication (and its RELAY-TICKET, and whether it carries a DATA-PAYLOAD: punch.rendezvous.tickets) and that the
datagram is well formed. :func:`parse_packet` reads that straight from the bytes.

Strict by construction, as punch.rendezvous.refresh: anything that is not exactly a well-formed Relay indication
(RFC 8489 §5 header, attributes tiling the body, only PEER-ID, SESSION-ID, RELAY-TICKET and DATA-PAYLOAD before a
MESSAGE-INTEGRITY-SHA256 of 32 bytes and a matching FINGERPRINT last, §14.6-§14.7) gives None, and the caller hands
the datagram to the general path. The relay does not check the integrity: it is the session's key, which only the
two peers hold (punch.identity.agreement); the receiving peer checks it.
"""

from __future__ import annotations

from typing import NamedTuple

from punch.rendezvous.signed import attributes, well_formed
from punch.stun import AttributeType, Message, MessageClass, Method, encode
from punch.stun.wire import MAX_PEER_ID_BYTES, RELAY_TICKET_BYTES, SESSION_ID_BYTES

RELAY_TYPE = encode(Message(Method.RELAY, MessageClass.INDICATION, bytes(12)), fingerprint=False)[:2]
_TYPES = (RELAY_TYPE,)
_ALLOWED = {AttributeType.PEER_ID, AttributeType.SESSION_ID, AttributeType.DATA_PAYLOAD, AttributeType.RELAY_TICKET}


class Relayed(NamedTuple):
    """What the relay needs from a Relay indication."""

    peer_id: str
    session_id: bytes
    ticket: bytes | None = None  # RELAY-TICKET: a relay at another server than the sender's (punch.rendezvous.tickets)
    carries: bool = True  # it has a DATA-PAYLOAD (without: an opening, not forwarded)


def parse_packet(data: bytes) -> Relayed | None:
    """The Relay indication in ``data``, or None when it is anything else (the general path takes it)."""
    if not well_formed(data, _TYPES):
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
    try:
        text = peer_id.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return None
    ticket = values.get(AttributeType.RELAY_TICKET)
    if ticket is not None and len(ticket) != RELAY_TICKET_BYTES:
        return None
    return Relayed(text, bytes(session_id or b""), ticket, AttributeType.DATA_PAYLOAD in values)
