"""Secrecy for texts between peers: ChaCha20-Poly1305 (RFC 8439) from the `cryptography` package.

The key is derived from the session key the server handed both peers (HMAC-SHA256 with a label, so that the
same key is never used for two purposes: the session key itself signs messages). The nonce is the Data
request's transaction ID: 96 random bits, new for every text, the same for its retransmissions (which carry the
same ciphertext). The sender's ID and the sequence number are authenticated as associated data.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

TAG_BYTES = 16
_LABEL = b"punch/1 text encryption"


def warm_up() -> None:
    """Build one cipher and drop it. The first ChaCha20Poly1305 of a process costs about a millisecond (the
    library sets the cipher up once); a peer pays that before it registers instead of between the server's
    introduction and its first check, where every millisecond is punch time."""
    ChaCha20Poly1305(bytes(32)).encrypt(bytes(12), b"", None)


class Sealer:
    """Encrypts and decrypts the texts of one session."""

    def __init__(self, session_key: bytes) -> None:
        self._aead = ChaCha20Poly1305(hmac.new(session_key, _LABEL, hashlib.sha256).digest())

    @staticmethod
    def _associated(sender: str, sequence: int) -> bytes:
        return struct.pack("!I", sequence) + sender.encode("utf-8")

    def seal(self, nonce: bytes, sender: str, sequence: int, plaintext: bytes) -> bytes:
        """Ciphertext and tag for one text (``nonce``: the 12-byte transaction ID)."""
        return self._aead.encrypt(nonce, plaintext, self._associated(sender, sequence))

    def open(self, nonce: bytes, sender: str, sequence: int, ciphertext: bytes) -> bytes | None:
        """The plaintext, or None if the ciphertext was not made with this session's key for this text."""
        try:
            return self._aead.decrypt(nonce, ciphertext, self._associated(sender, sequence))
        except InvalidTag:
            return None
