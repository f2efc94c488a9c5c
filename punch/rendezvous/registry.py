"""The rendezvous server's state, with no sockets: who is registered where, who wants whom.

Pure and synchronous so that every rule is unit-tested with an explicit clock.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from punch.errors import PunchError
from punch.rendezvous.wire import (
    REGISTRATION_TOKEN_BYTES,
    SESSION_ID_BYTES,
    SESSION_KEY_BYTES,
    Introduction,
    Mapping,
    Role,
)
from punch.stun import Address


class TableFull(PunchError):
    """No room for another registration."""


@dataclass(frozen=True, slots=True)
class Registration:
    """A peer's registration: the endpoint the server observed and the host endpoints the peer reported."""

    peer_id: str
    observed: Address
    host_candidates: tuple[Address, ...]
    expires: float
    token: bytes  # given to the first registrant; later requests for this ID must be signed with it
    mapping: Mapping = Mapping.UNKNOWN  # how the peer's NAT maps, as the peer measured it (NAT-MAPPING)
    created_by: bytes = b""  # transaction ID of the Register that created it (its retransmissions get the token)

    def candidates(self) -> tuple[Address, ...]:
        """Server-reflexive first (what works across NATs), then the host candidates (same-LAN paths)."""
        return (self.observed, *(c for c in self.host_candidates if c != self.observed))


@dataclass(frozen=True, slots=True)
class Match:
    """Two peers that want each other: what to tell each of them."""

    opener: Registration
    prober: Registration
    session_id: bytes
    key: bytes
    opener_rtt_us: int | None = None  # each one's round trip to the server, as it said in Connect (SERVER-RTT)
    prober_rtt_us: int | None = None

    def introductions(self) -> tuple[tuple[Registration, Introduction], tuple[Registration, Introduction]]:
        """(recipient, introduction) for the opener and for the prober, in that order."""
        return (
            (
                self.opener,
                Introduction(
                    self.prober.peer_id,
                    self.prober.candidates(),
                    self.session_id,
                    Role.OPENER,
                    self.key,
                    self.prober.mapping,
                    self.prober_rtt_us,
                ),
            ),
            (
                self.prober,
                Introduction(
                    self.opener.peer_id,
                    self.opener.candidates(),
                    self.session_id,
                    Role.PROBER,
                    self.key,
                    self.opener.mapping,
                    self.opener_rtt_us,
                ),
            ),
        )


@dataclass(slots=True)
class Registry:
    """Registrations under leases, pending wishes, and introduced sessions."""

    max_lease: float = 60.0
    max_registrations: int = 100_000
    registrations: dict[str, Registration] = field(default_factory=dict)
    wants: dict[str, str] = field(default_factory=dict)  # asker -> target
    rtts: dict[str, int] = field(default_factory=dict)  # asker -> its round trip to the server (microseconds)
    sessions: dict[bytes, Match] = field(default_factory=dict)

    def register(
        self,
        peer_id: str,
        observed: Address,
        host_candidates: tuple[Address, ...],
        lease: float,
        now: float,
        mapping: Mapping = Mapping.UNKNOWN,
        transaction: bytes = b"",
    ) -> Registration:
        """Add or refresh a registration; returns it (its lease capped to ``max_lease``). TableFull when a new ID
        finds ``max_registrations`` live registrations.

        A new registration gets a fresh token; a refresh keeps the token (the caller checked the refresh was
        signed with it).
        """
        granted = max(1.0, min(lease, self.max_lease))
        known = self.lookup(peer_id, now)
        if known is None and len(self.registrations) >= self.max_registrations:
            self.expire(now)
            if len(self.registrations) >= self.max_registrations:
                raise TableFull(f"the table holds its maximum of {self.max_registrations} registrations")
        token = known.token if known else os.urandom(REGISTRATION_TOKEN_BYTES)
        created_by = known.created_by if known else transaction
        registration = Registration(peer_id, observed, host_candidates, now + granted, token, mapping, created_by)
        self.registrations[peer_id] = registration
        return registration

    def unregister(self, peer_id: str) -> None:
        """Forget a registration at once (its owner said goodbye) with its wish; its sessions go at the next
        :meth:`expire`, so that the other peer's last relayed messages still get through."""
        self.registrations.pop(peer_id, None)
        self.wants.pop(peer_id, None)
        self.rtts.pop(peer_id, None)

    def lookup(self, peer_id: str, now: float) -> Registration | None:
        """The live registration of ``peer_id``, if any."""
        registration = self.registrations.get(peer_id)
        if registration is None or registration.expires <= now:
            return None
        return registration

    def want(self, asker: str, target: str, now: float, rtt_us: int | None = None) -> Match | None:
        """Record that ``asker`` wants ``target`` (``rtt_us``: its round trip to us, if it said); a Match when
        ``target`` already wants ``asker``.

        The peer that asked first is the opener: it has been waiting, and the one that completes the match
        probes once the opener's NAT mapping is open. Either order works: asking for a peer that does not
        exist yet simply waits for it. Port prediction (punch.peer.predict) needs the peer behind the
        endpoint-dependent mapping to open: when exactly one of the two said so, it is the opener.
        """
        self.wants[asker] = target
        self.rtts.pop(asker, None)
        if rtt_us is not None:
            self.rtts[asker] = rtt_us
        if self.wants.get(target) != asker:
            return None
        opener, prober = self.lookup(target, now), self.lookup(asker, now)
        if opener is None or prober is None:
            return None
        del self.wants[asker], self.wants[target]
        rtts = {peer_id: self.rtts.pop(peer_id, None) for peer_id in (asker, target)}
        if (prober.mapping, opener.mapping) == (Mapping.ENDPOINT_DEPENDENT, Mapping.ENDPOINT_INDEPENDENT):
            opener, prober = prober, opener
        match = Match(
            opener,
            prober,
            os.urandom(SESSION_ID_BYTES),
            os.urandom(SESSION_KEY_BYTES),
            rtts[opener.peer_id],
            rtts[prober.peer_id],
        )
        self.sessions[match.session_id] = match
        return match

    def session(self, session_id: bytes) -> Match | None:
        """The match introduced under ``session_id``."""
        return self.sessions.get(session_id)

    def key_for(self, session_id: bytes) -> bytes | None:
        """The key of an introduced session (the server signs Go and checks what it relays with it)."""
        match = self.sessions.get(session_id)
        return match.key if match else None

    def expire(self, now: float) -> list[str]:
        """Forget registrations whose lease ran out, with their wishes and sessions; returns their IDs."""
        gone = [peer_id for peer_id, r in self.registrations.items() if r.expires <= now]
        for peer_id in gone:
            self.unregister(peer_id)
        live = self.registrations
        stale = [
            sid for sid, m in self.sessions.items() if m.opener.peer_id not in live or m.prober.peer_id not in live
        ]
        for sid in stale:
            del self.sessions[sid]
        return gone
