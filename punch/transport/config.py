"""The settings of a QUIC link, with the defaults punch uses and a check that names a wrong field and its fix."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, fields
from pathlib import Path

from punch.errors import UsageError

ALPN = "punch/1"
KIB = 1024
MIB = 1024 * KIB
SMALLEST_MAX_DATAGRAM_SIZE = 1200  # RFC 9000 §14: every path must carry a 1200-byte QUIC packet


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """How a QUIC link behaves; every timing is in seconds.

    ``keepalive``: a PING this often (RFC 9000 §10.1.2), which keeps NAT bindings open and measures the path.
    ``dead_after``: the path counts as dead when no PING was acknowledged for this long (``on_path(False)``).
    ``idle_timeout``: QUIC ends the connection after this long without a packet from the peer (RFC 9000 §10.1).
    ``max_datagram_size``: the UDP payload of one QUIC packet; 1200 fits every path, the relay's wrapping included.
    ``stream_window``: how much of one stream the peer may send beyond what the application has taken.
    ``connection_window``: the first limit on all streams together (aioquic raises it as streams are used).
    ``reader_limit``: a stream's StreamReader pauses the stream above twice this (asyncio's ``limit``).
    ``write_buffer``: ``drain()`` waits while more than this of a stream's written bytes wait to be sent.
    ``datagram_queue``: datagrams kept for ``receive_datagram()`` (the oldest dropped), and queued to send.
    ``congestion_control``: aioquic's algorithm, "reno" or "cubic" (RFC 9002 §7, RFC 9438).
    ``keylog``: append the TLS secrets here (NSS key log format), for Wireshark to decrypt a capture.
    ``qlog``: write each connection's qlog here when it ends (a directory; aioquic's JSON qlog, for qvis).
    """

    alpn: str = ALPN
    keepalive: float = 2.0
    dead_after: float = 6.0
    idle_timeout: float = 30.0
    max_datagram_size: int = SMALLEST_MAX_DATAGRAM_SIZE
    stream_window: int = 1 * MIB
    connection_window: int = 16 * MIB
    reader_limit: int = 64 * KIB
    write_buffer: int = 256 * KIB
    datagram_queue: int = 256
    congestion_control: str = "reno"
    certificate_lifetime: datetime.timedelta = datetime.timedelta(days=1)
    keylog: Path | None = None
    qlog: Path | None = None

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value <= 0:
                raise UsageError(f"LinkConfig.{field.name}: {value} must be greater than 0")
        if self.dead_after <= self.keepalive:
            raise UsageError(
                f"LinkConfig.dead_after: {self.dead_after} s must be longer than keepalive ({self.keepalive} s), "
                "or a live path would count as dead between two PINGs"
            )
        if self.idle_timeout <= self.dead_after:
            raise UsageError(
                f"LinkConfig.idle_timeout: {self.idle_timeout} s must be longer than dead_after "
                f"({self.dead_after} s), so the session hears of a dead path before QUIC gives up"
            )
        if self.max_datagram_size < SMALLEST_MAX_DATAGRAM_SIZE:
            raise UsageError(
                f"LinkConfig.max_datagram_size: {self.max_datagram_size} is below QUIC's smallest, "
                f"{SMALLEST_MAX_DATAGRAM_SIZE} (RFC 9000 §14)"
            )
        if self.congestion_control not in ("reno", "cubic"):
            raise UsageError(f'LinkConfig.congestion_control: {self.congestion_control!r}; use "reno" or "cubic"')
