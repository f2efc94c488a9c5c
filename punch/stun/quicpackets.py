"""The QUIC packets in a datagram, named from their headers alone: what a trace (punch.stun.trace) says of the QUIC
that shares a STUN endpoint's socket. Nothing is decrypted, and no key is needed: the type of a packet and where
it ends are in the clear.

A datagram holds one packet or several coalesced (RFC 9000 §12.2): long-header packets that say their length
(Initial, 0-RTT, Handshake), then at most one that runs to the end (a short-header 1-RTT packet, a Retry or a
Version Negotiation). Long headers (RFC 9000 §17.2; RFC 8999 §5.1 for what every version keeps): first byte with
the Header Form bit set, version, both connection IDs with their lengths, then per type the token (Initial) and
the Length of the rest of the packet. The packet types' codes are those of QUIC version 1 (RFC 9000 §17.2) and of
version 2 (RFC 9369 §3.2), which numbers them differently; a long header of another version is named by that.
"""

from __future__ import annotations

_LONG_HEADER = 0x80  # RFC 8999 §5.1
_FIXED_BIT = 0x40  # RFC 9000 §17.3.1
VERSION_1 = 0x00000001
VERSION_2 = 0x6B3343CF  # RFC 9369 §3.1
# The two type bits of a long header's first byte, per version
_TYPES = {
    VERSION_1: ("Initial", "0-RTT", "Handshake", "Retry"),  # RFC 9000 §17.2, Table 5
    VERSION_2: ("Retry", "Initial", "0-RTT", "Handshake"),  # RFC 9369 §3.2
}
_LENGTHS = ("Initial", "0-RTT", "Handshake")  # the types whose header has a Length field


def _varint(data: bytes, at: int) -> tuple[int, int] | None:
    """The variable-length integer at ``at`` (RFC 9000 §16) and where it ends, or None if the data ends first."""
    if at >= len(data):
        return None
    size = 1 << (data[at] >> 6)
    if at + size > len(data):
        return None
    value = int.from_bytes(data[at : at + size], "big") & ((1 << (8 * size - 2)) - 1)
    return value, at + size


def _long(data: bytes, at: int) -> tuple[str, int | None]:
    """The long-header packet at ``at``: its type's name, and where the next packet starts (None: it runs to the end
    of the datagram, or its header is cut short)."""
    if at + 6 > len(data):
        return "long header, cut short", None
    version = int.from_bytes(data[at + 1 : at + 5], "big")
    if version == 0:
        return "Version Negotiation", None  # RFC 9000 §17.2.1
    names = _TYPES.get(version)
    if names is None:
        return f"long header of version 0x{version:08x}", None
    kind = names[(data[at] >> 4) & 0b11]
    cursor = at + 5
    for _ in range(2):  # Destination, then Source Connection ID, each after its length byte
        if cursor >= len(data):
            return kind, None
        cursor += 1 + data[cursor]
    if kind not in _LENGTHS:
        return kind, None  # a Retry runs to the end of the datagram (RFC 9000 §17.2.5)
    if kind == "Initial":
        token = _varint(data, cursor)
        if token is None:
            return kind, None
        cursor = token[1] + token[0]
    length = _varint(data, cursor)
    if length is None:
        return kind, None
    return kind, length[1] + length[0]


def packet_types(data: bytes) -> list[str]:
    """The types of the QUIC packets in ``data``, in order ("Initial", "0-RTT", "Handshake", "Retry", "Version
    Negotiation", "1-RTT"); empty if it does not start as QUIC does. What follows the last packet that can be told
    apart (bytes that start no packet: padding) is left out."""
    types: list[str] = []
    at: int | None = 0
    while at is not None and at < len(data):
        first = data[at]
        if first & _LONG_HEADER:
            kind, at = _long(data, at)
        elif first & _FIXED_BIT:
            kind, at = "1-RTT", None  # a short header (RFC 9000 §17.3.1): no length, it ends the datagram
        else:
            break
        types.append(kind)
    return types
