"""Which protocol a datagram on the punched socket belongs to, told by its first byte alone (RFC 7983 §7, as
updated for QUIC by RFC 9443 §3).

The socket that punched the hole carries STUN (the checks, keepalives and the rendezvous' messages) and QUIC (the
peers' session). Their first bytes never overlap:

- STUN: 0-3. The top two bits of every STUN message are zero (RFC 8489 §5), and IANA keeps STUN methods below
  0x100 (RFC 7983 reserves 0x100-0xFFF), which leaves 0-3; punch's own methods (0x0C1-0x0C9) are among them.
- QUIC, long header: 128-255. The Header Form bit is set (RFC 8999 §5.1, version-independent: a Version
  Negotiation packet may have any other bit, RFC 9000 §17.2.1).
- QUIC, short header: 64-127. Header Form clear, the Fixed Bit set (RFC 9000 §17.3.1). punch never sends the
  grease_quic_bit transport parameter (RFC 9287), so no peer may clear it.

Every other first byte (4-63, an empty datagram) is neither; the owner drops and counts it. The other protocols
of RFC 9443's table (ZRTP 16-19, DTLS 20-63, TURN channels 64-79, RTP 128-191) never run on this socket, so the
QUIC ranges take the whole of theirs.
"""

from __future__ import annotations

import enum


class Carried(enum.Enum):
    """What a datagram on the punched socket carries."""

    STUN = "stun"
    QUIC = "quic"
    NEITHER = "neither"


_STUN_LAST = 3
_LONG_HEADER = 0x80  # RFC 8999 §5.1
_FIXED_BIT = 0x40  # RFC 9000 §17.3.1


def classify(datagram: bytes) -> Carried:
    """The protocol of ``datagram`` by its first byte; total: any bytes give exactly one answer, never an error."""
    if not datagram:
        return Carried.NEITHER
    first = datagram[0]
    if first <= _STUN_LAST:
        return Carried.STUN
    if first & (_LONG_HEADER | _FIXED_BIT):
        return Carried.QUIC
    return Carried.NEITHER
