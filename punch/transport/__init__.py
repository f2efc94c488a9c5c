"""The peers' own traffic through the hole: QUIC (RFC 9000, aioquic) on the socket that punched it, authenticated
by the peers' identity keys.

- demux: which protocol a datagram on the punched socket carries, STUN or QUIC, by its first byte (RFC 9443).
- certs: a self-signed certificate of an identity's Ed25519 key, and the key TLS signs with.
- connection: aioquic's QuicConnection with mutual TLS, the peer's certificate, an application-paced receive window.
- streams: a QUIC stream as asyncio's StreamReader and StreamWriter, with their flow control.
- liveness: keepalive PINGs, and whether the path has carried an acknowledgement lately.
- inbox, config, errors: the queue of what the application has not taken, the settings, what the link raises.
- quic: QuicLink, one connection to one pinned peer over whatever path the owner sends on.
"""

from punch.transport.config import LinkConfig
from punch.transport.demux import Carried, classify
from punch.transport.errors import DatagramTooLarge, KeyRefused, LinkClosed, LinkError, PeerKeyMismatch
from punch.transport.quic import QuicLink
from punch.transport.streams import StreamReset

__all__ = [
    "Carried",
    "DatagramTooLarge",
    "KeyRefused",
    "LinkClosed",
    "LinkConfig",
    "LinkError",
    "PeerKeyMismatch",
    "QuicLink",
    "StreamReset",
    "classify",
]
