"""What the QUIC link raises: a peer that is not the one pinned, a link that has ended, a datagram too large."""

from __future__ import annotations

from punch.errors import PunchError
from punch.identity.fingerprint import fingerprint


class LinkError(PunchError):
    """The QUIC link to the peer cannot do what was asked; the message says why."""


class LinkClosed(LinkError):
    """The link has ended (closed by us, by the peer, or by QUIC's idle timeout); the message says how."""


class PeerKeyMismatch(LinkClosed):
    """The peer proved a key in the TLS handshake that is not the one pinned for it: the link is refused.

    Raised on the side that checked; the other side gets :class:`KeyRefused` with the same words."""

    def __init__(self, role: str, expected: bytes, actual: bytes | None) -> None:
        self.role = role
        self.expected = expected
        self.actual = actual
        shown = fingerprint(actual) if actual is not None else "no Ed25519 key"
        super().__init__(f"the {role}'s key is {shown}, not the pinned {fingerprint(expected)}: link refused")


class KeyRefused(LinkClosed):
    """The peer refused the key we proved (it pinned another one); the message is the peer's reason."""


class DatagramTooLarge(LinkError):
    """A datagram longer than the link can send in one QUIC packet (``link.max_datagram_payload``)."""
