"""The keys a peer's sockets sign and check with (punch.stun.protocol.StunEndpoint asks :class:`PeerKeys`).

- What concerns the server (punch.stun.wire.SERVER_METHODS: Introduce, Ready, Go, Move) is signed with our request
  key (:class:`RequestKey`: our registration's token, bound to a closed group's secret if any), which only we and
  the server know.
- What goes to the other peer (checks, Data, Close) is signed with the session's key, which only the two peers know
  (punch.identity.agreement), added here when the session begins. After a rejoin the texts stay in their first
  session, so a key is never dropped while the peer runs.

Every socket the peer opens for its sessions (the session's own, a move's fresh one, port prediction's many) asks
the same :class:`PeerKeys`, so a key added once serves them all.
"""

from __future__ import annotations

from punch.stun.credentials import request_key
from punch.stun.wire import SERVER_METHODS


class RequestKey:
    """Our request key: the token the server gave our registration (first come, first served), bound to a closed
    group's key where there is one (punch.stun.credentials). The rendezvous client holds the token."""

    def __init__(self, group: bytes | None = None) -> None:
        self._group = group
        self._token: bytes | None = None

    @property
    def token(self) -> bytes | None:
        return self._token

    def hold(self, token: bytes | None) -> None:
        """The server gave us ``token`` (or we said goodbye: None)."""
        self._token = token

    @property
    def key(self) -> bytes | None:
        """The key that signs our requests; None for a new registration on an open server."""
        return request_key(self._group, self._token)


class PeerKeys:
    """(SESSION-ID, method) -> the key (module docstring); a punch.stun.protocol.KeyLookup."""

    def __init__(self, request: RequestKey) -> None:
        self._request = request
        self._sessions: dict[bytes, bytes] = {}

    @property
    def request(self) -> RequestKey:
        return self._request

    def add(self, session_id: bytes, key: bytes) -> None:
        """Sign and check what this session's peers send each other with ``key`` from now on."""
        self._sessions[session_id] = key

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._sessions

    def __call__(self, session_id: bytes, method: int) -> bytes | None:
        if method in SERVER_METHODS:
            return self._request.key
        return self._sessions.get(session_id)
