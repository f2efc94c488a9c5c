"""The session keys a peer holds: one per session it was introduced to, looked up by SESSION-ID.

Every socket the peer opens for its sessions (the session's own, a move's fresh one, port prediction's many) looks
its keys up here (punch.stun.protocol.StunEndpoint signs and checks with them), so a key added once serves them all.
After a rejoin the texts stay in their first session, so a key is never dropped while the peer runs.
"""

from __future__ import annotations


class SessionKeys:
    """SESSION-ID -> key, of every session we were introduced to."""

    def __init__(self) -> None:
        self._keys: dict[bytes, bytes] = {}

    def add(self, session_id: bytes, key: bytes) -> None:
        self._keys[session_id] = key

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._keys

    def get(self, session_id: bytes) -> bytes | None:
        """The key of ``session_id``, or None (a punch.stun.protocol.KeyLookup)."""
        return self._keys.get(session_id)
