"""The rendezvous server's state, with no sockets: who is registered where, who wants whom.

Pure and synchronous so that every rule is unit-tested with an explicit clock.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

from punch.errors import PunchError
from punch.rendezvous.leases import LeaseWheel
from punch.stun import Address
from punch.stun.wire import (
    ANYONE,
    REGISTRATION_TOKEN_BYTES,
    SESSION_ID_BYTES,
    Introduction,
    KeyShare,
    Mapping,
    Role,
)


class TableFull(PunchError):
    """No room for another registration."""


def pack_addresses(addresses: Iterable[Address]) -> bytes:
    """Addresses as one compact bytes object: per address a tag (4: IPv4, 16: IPv6, 0x80 + n: n bytes of text
    for what has no packed form, e.g. a scoped IPv6 address), the port (2 bytes), then the packed IP: the
    order of a STUN address value (RFC 8489 §14.1), so that a keepalive compares its CANDIDATEs cheaply."""
    parts = []
    for host, port in addresses:
        try:
            ip = socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
            parts.append(bytes((len(ip),)) + port.to_bytes(2, "big") + ip)
        except OSError:
            text = host.encode()[:127]
            parts.append(bytes((0x80 | len(text),)) + port.to_bytes(2, "big") + text)
    return b"".join(parts)


def unpack_addresses(packed: bytes) -> tuple[Address, ...]:
    """The addresses :func:`pack_addresses` packed, in order."""
    found = []
    offset = 0
    while offset < len(packed):
        tag = packed[offset]
        size = tag & 0x7F
        port = int.from_bytes(packed[offset + 1 : offset + 3], "big")
        raw = packed[offset + 3 : offset + 3 + size]
        family = socket.AF_INET6 if size == 16 else socket.AF_INET
        host = raw.decode() if tag & 0x80 else socket.inet_ntop(family, raw)
        found.append((host, port))
        offset += 3 + size
    return tuple(found)


@dataclass(frozen=True, slots=True)
class Registration:
    """A peer's registration: the endpoint the server observed and the host endpoints the peer reported.

    Stored compactly (a million of them live in one server): the endpoints packed into one bytes object, the
    token, the public key and the creating transaction's ID into another; the properties give them back.
    """

    peer_id: str
    endpoints: bytes  # pack_addresses(): the observed endpoint, then the host candidates
    expires: float
    credentials: bytes  # the token (given to the first registrant; later requests for the ID are signed with
    # it), the length of the peer's public key and the key (PUBLIC-KEY; 0 and nothing without one), then the
    # transaction ID of the Register that created the registration (its retransmissions get it)
    mapping: Mapping = Mapping.UNKNOWN  # how the peer's NAT maps, as the peer measured it (NAT-MAPPING)

    @property
    def observed(self) -> Address:
        """Where the server saw the registration come from."""
        return unpack_addresses(self.endpoints)[0]

    @property
    def host_candidates(self) -> tuple[Address, ...]:
        """The peer's own endpoints, as it reported them (same-LAN paths)."""
        return unpack_addresses(self.endpoints)[1:]

    @property
    def token(self) -> bytes:
        return self.credentials[:REGISTRATION_TOKEN_BYTES]

    @property
    def public_key(self) -> bytes:
        """The peer's identity key as it registered it (empty: none; such a peer cannot be introduced)."""
        size = self.credentials[REGISTRATION_TOKEN_BYTES]
        return self.credentials[REGISTRATION_TOKEN_BYTES + 1 : REGISTRATION_TOKEN_BYTES + 1 + size]

    @property
    def created_by(self) -> bytes:
        return self.credentials[REGISTRATION_TOKEN_BYTES + 1 + self.credentials[REGISTRATION_TOKEN_BYTES] :]

    def candidates(self) -> tuple[Address, ...]:
        """Server-reflexive first (what works across NATs), then the host candidates (same-LAN paths)."""
        observed, *hosts = unpack_addresses(self.endpoints)
        return (observed, *(c for c in hosts if c != observed))


@dataclass(frozen=True, slots=True)
class Match:
    """Two peers that want each other: what to tell each of them."""

    opener: Registration
    prober: Registration
    session_id: bytes
    opener_share: KeyShare  # each one's half of the session's key, as its Connect carried it
    prober_share: KeyShare
    opener_rtt_us: int | None = None  # each one's round trip to the server, as it said in Connect (SERVER-RTT)
    prober_rtt_us: int | None = None
    # (peer ID, transaction ID) of the two Connects that made the match: their retransmissions (our answer was
    # lost, RFC 8489 §6.3.1) are answered again instead of matching the two peers a second time
    connects: frozenset[tuple[str, bytes]] = frozenset()
    mover: str | None = None  # the peer told to move to a fresh socket (punch.peer.moving): one per session
    # With a shared registry (punch.rendezvous.shared): the names of the servers the opener and the prober are
    # registered at, which alone can reach them through their NATs. Empty: this server, the only one (the in-process
    # registry).
    servers: tuple[str, str] = ("", "")
    # The relay across servers (punch.rendezvous.tickets), held only by the server that made the session and relays
    # it: its address as peers reach it, and the opener's and the prober's tickets (b"" for a peer registered there,
    # relayed from its registered endpoint). () when each peer's own server relays: one server, or both peers at it.
    relay: Address | None = None
    tickets: tuple[bytes, ...] = ()

    def server_of(self, peer_id: str) -> str:
        """The name of the server ``peer_id`` (one of the two) is registered at ("" for this one)."""
        return self.servers[0] if peer_id == self.opener.peer_id else self.servers[1]

    def ticket_of(self, peer_id: str) -> bytes:
        """The relay ticket of ``peer_id`` (one of the two); b"" if it has none (its own server relays it)."""
        if not self.tickets:
            return b""
        return self.tickets[0] if peer_id == self.opener.peer_id else self.tickets[1]

    def pair(self, peer_id: str) -> tuple[Registration, Registration] | None:
        """(``peer_id``'s registration, the other peer's); None if ``peer_id`` is not one of this session's two."""
        if peer_id == self.opener.peer_id:
            return self.opener, self.prober
        return (self.prober, self.opener) if peer_id == self.prober.peer_id else None

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
                    self.prober.public_key,
                    self.prober_share,
                    self.prober.mapping,
                    self.prober_rtt_us,
                    *self._relay_for(self.opener.peer_id),
                ),
            ),
            (
                self.prober,
                Introduction(
                    self.opener.peer_id,
                    self.opener.candidates(),
                    self.session_id,
                    Role.PROBER,
                    self.opener.public_key,
                    self.opener_share,
                    self.opener.mapping,
                    self.opener_rtt_us,
                    *self._relay_for(self.prober.peer_id),
                ),
            ),
        )

    def _relay_for(self, peer_id: str) -> tuple[Address | None, bytes]:
        """The relay and ticket ``peer_id``'s Introduce names: (None, b"") when its own server relays it."""
        ticket = self.ticket_of(peer_id)
        return (self.relay, ticket) if ticket and self.relay is not None else (None, b"")


@dataclass(slots=True)
class TokenSource:
    """Fresh registration tokens from the system's random source (os.urandom), read 256 at a time: a storm of new
    registrations then makes one getrandom call per 256 of them, not one each."""

    _pool: bytes = b""
    _taken: int = 0

    def take(self) -> bytes:
        if self._taken >= len(self._pool):
            self._pool, self._taken = os.urandom(256 * REGISTRATION_TOKEN_BYTES), 0
        start = self._taken
        self._taken = start + REGISTRATION_TOKEN_BYTES
        return self._pool[start : self._taken]


@dataclass(frozen=True, slots=True)
class Wish:
    """What a peer's Connect asking for another carried: its half of the session's key, its round trip to the server
    (SERVER-RTT, if it said) and the Connect's transaction ID."""

    share: KeyShare
    rtt_us: int | None
    transaction: bytes


def pair_up(
    first: Registration, first_wish: Wish, second: Registration, second_wish: Wish, servers: tuple[str, str] = ("", "")
) -> Match:
    """The session of two peers that want each other, ``first`` the one that asked first (``servers``: where each is
    registered, as :attr:`Match.servers` but in this order).

    The peer that asked first is the opener: it has been waiting, and the one that completes the match probes once
    the opener's NAT mapping is open. Port prediction (punch.peer.predict) needs the peer behind the
    endpoint-dependent mapping to open: when exactly one of the two said so, it is the opener.
    """
    connects = frozenset(((first.peer_id, first_wish.transaction), (second.peer_id, second_wish.transaction)))
    if (second.mapping, first.mapping) == (Mapping.ENDPOINT_DEPENDENT, Mapping.ENDPOINT_INDEPENDENT):
        first, first_wish, second, second_wish = second, second_wish, first, first_wish
        servers = (servers[1], servers[0])
    return Match(
        first,
        second,
        os.urandom(SESSION_ID_BYTES),
        first_wish.share,
        second_wish.share,
        first_wish.rtt_us,
        second_wish.rtt_us,
        connects,
        servers=servers,
    )


@dataclass(slots=True)
class Registry:
    """Registrations under leases, pending wishes, and introduced sessions.

    Leases end by the clock the caller passes; :meth:`expire` forgets them, sweeping only the seconds that
    passed since it last ran (a :class:`LeaseWheel`), so it is cheap enough to call on every request. A lease is
    forgotten within a second after it ends; :meth:`lookup` treats it as gone at once.
    """

    max_lease: float = 60.0
    max_registrations: int = 1_000_000
    registrations: dict[str, Registration] = field(default_factory=dict)
    wants: dict[str, str] = field(default_factory=dict)  # asker -> target (ANYONE: whoever asks for the asker)
    rtts: dict[str, int] = field(default_factory=dict)  # asker -> its round trip to the server (microseconds)
    transactions: dict[str, bytes] = field(default_factory=dict)  # asker -> the transaction ID of its Connect
    shares: dict[str, KeyShare] = field(default_factory=dict)  # asker -> its half of the session's key
    sessions: dict[bytes, Match] = field(default_factory=dict)
    _wheel: LeaseWheel = field(default_factory=LeaseWheel)
    _tokens: TokenSource = field(default_factory=lambda: TokenSource())
    _sessions_of: dict[str, list[bytes]] = field(default_factory=dict)  # peer ID -> its sessions' IDs
    _departed: list[str] = field(default_factory=list)  # unregistered with sessions since the last expire()
    _askers: dict[str, list[str]] = field(default_factory=dict)  # target -> who asked for it (maybe since changed)

    def register(
        self,
        peer_id: str,
        observed: Address,
        host_candidates: tuple[Address, ...],
        lease: float,
        now: float,
        mapping: Mapping = Mapping.UNKNOWN,
        transaction: bytes = b"",
        public_key: bytes = b"",
    ) -> Registration:
        """Add or refresh a registration; returns it (its lease capped to ``max_lease``). TableFull when a new ID
        finds ``max_registrations`` live registrations.

        A new registration gets a fresh token; a refresh keeps the token (the caller checked the refresh was
        signed with it) and takes ``public_key`` (the token's holder may change its key).
        """
        endpoints = pack_addresses((observed, *host_candidates))
        return self.register_packed(peer_id, endpoints, lease, now, mapping, transaction, public_key)

    def register_packed(
        self,
        peer_id: str,
        endpoints: bytes,
        lease: float,
        now: float,
        mapping: Mapping = Mapping.UNKNOWN,
        transaction: bytes = b"",
        public_key: bytes = b"",
    ) -> Registration:
        """:meth:`register` with the endpoints packed already (:func:`pack_addresses`: the observed one first)."""
        known = self.lookup(peer_id, now)
        if known is None and len(self.registrations) >= self.max_registrations:
            self.expire(now)
            if len(self.registrations) >= self.max_registrations:
                raise TableFull(f"the table holds its maximum of {self.max_registrations} registrations")
        if known is not None and (known.endpoints, known.mapping, known.public_key) == (endpoints, mapping, public_key):
            return self.renew(known, lease, now)
        token, created_by = (known.token, known.created_by) if known else (self._tokens.take(), transaction)
        credentials = token + bytes((len(public_key),)) + public_key + created_by
        expires = now + self.granted(lease)
        registration = Registration(peer_id, endpoints, expires, credentials, mapping)
        previous = self.registrations.get(peer_id)
        self.registrations[peer_id] = registration
        self._wheel.add(peer_id, expires, previous.expires if previous is not None else None)
        return registration

    def renew(self, known: Registration, lease: float, now: float) -> Registration:
        """Extend the lease of a live registration that did not change (a keepalive): the cheap path."""
        expires = now + self.granted(lease)
        registration = Registration(known.peer_id, known.endpoints, expires, known.credentials, known.mapping)
        self.registrations[known.peer_id] = registration
        self._wheel.add(known.peer_id, expires, known.expires)
        return registration

    def adopt(self, registration: Registration, now: float) -> None:
        """Hold ``registration`` as another holder of the ID's state has it (a shared registry,
        punch.rendezvous.shared): the next keepalive or request finds it here. Counts against ``max_registrations``
        as any (TableFull)."""
        previous = self.registrations.get(registration.peer_id)
        if previous is None and len(self.registrations) >= self.max_registrations:
            self.expire(now)
            if len(self.registrations) >= self.max_registrations:
                raise TableFull(f"the table holds its maximum of {self.max_registrations} registrations")
        self.registrations[registration.peer_id] = registration
        self._wheel.add(registration.peer_id, registration.expires, previous.expires if previous is not None else None)

    def adopt_session(self, match: Match) -> None:
        """Hold a session another server (or a shared registry's atomic match) made, as if :meth:`want` had."""
        self.sessions[match.session_id] = match
        for peer_id in (match.opener.peer_id, match.prober.peer_id):
            known = [sid for sid in self._sessions_of.get(peer_id, ()) if sid in self.sessions]
            if match.session_id not in known:
                self._sessions_of[peer_id] = [*known, match.session_id]

    def granted(self, lease: float) -> float:
        """The lease a request for ``lease`` seconds gets: at least 1 s, at most ``max_lease``."""
        return max(1.0, min(lease, self.max_lease))

    def unregister(self, peer_id: str) -> None:
        """Forget a registration at once (its owner said goodbye) with its wish; its sessions go at the next
        :meth:`expire`, so that the other peer's last relayed messages still get through."""
        if self.registrations.pop(peer_id, None) is not None and peer_id in self._sessions_of:
            self._departed.append(peer_id)  # only peers with sessions: a flood of goodbyes leaves nothing here
        self._forget_wish(peer_id)

    def _forget_wish(self, peer_id: str) -> None:
        target = self.wants.pop(peer_id, None)
        if target is not None:
            self._forget_asker(target, peer_id)
        self.rtts.pop(peer_id, None)
        self.transactions.pop(peer_id, None)
        self.shares.pop(peer_id, None)

    def _forget_asker(self, target: str, asker: str) -> None:
        askers = self._askers.get(target)
        if askers is not None and asker in askers:
            askers.remove(asker)
            if not askers:
                del self._askers[target]

    def lookup(self, peer_id: str, now: float) -> Registration | None:
        """The live registration of ``peer_id``, if any."""
        registration = self.registrations.get(peer_id)
        if registration is None or registration.expires <= now:
            return None
        return registration

    def want(
        self,
        asker: str,
        target: str,
        now: float,
        share: KeyShare,
        rtt_us: int | None = None,
        transaction: bytes = b"",
    ) -> Match | None:
        """Record that ``asker`` wants ``target`` (``share``: its half of the session's key; ``rtt_us``: its round
        trip to us, if it said; ``transaction``: the ID of its Connect); a Match when ``target`` already wants
        ``asker``.

        Either order works: asking for a peer that does not exist yet simply waits for it; who opens and who probes
        is :func:`pair_up`'s to say.
        """
        previous = self.wants.get(asker)
        if previous is not None and previous != target:
            self._forget_asker(previous, asker)
        self.wants[asker] = target
        self.transactions[asker] = transaction
        self.shares[asker] = share
        self.rtts.pop(asker, None)
        if rtt_us is not None:
            self.rtts[asker] = rtt_us
        if target == ANYONE:  # whoever asked for us first, and waits still
            target = next((a for a in self._askers.get(asker, ()) if self.wants.get(a) == asker), ANYONE)
            if target == ANYONE:
                return None
        elif previous != target:
            self._askers.setdefault(target, []).append(asker)
        if self.wants.get(target) not in (asker, ANYONE):
            return None
        opener, prober = self.lookup(target, now), self.lookup(asker, now)
        if opener is None or prober is None:
            return None
        self._forget_asker(self.wants.pop(asker), asker)
        self._forget_asker(self.wants.pop(target), target)
        wishes = {
            peer_id: Wish(self.shares.pop(peer_id), self.rtts.pop(peer_id, None), self.transactions.pop(peer_id, b""))
            for peer_id in (asker, target)
        }
        match = pair_up(opener, wishes[target], prober, wishes[asker])
        self.adopt_session(match)
        return match

    def introduced_by(self, asker: str, transaction: bytes) -> Match | None:
        """The live session that ``asker``'s Connect with this transaction ID helped make, if any: a
        retransmission of that Connect is answered again rather than matching the peers anew."""
        for session_id in self._sessions_of.get(asker, ()):
            match = self.sessions.get(session_id)
            if match is not None and (asker, transaction) in match.connects:
                return match
        return None

    def session(self, session_id: bytes) -> Match | None:
        """The match introduced under ``session_id``."""
        return self.sessions.get(session_id)

    def move(self, session_id: bytes, mover: str) -> bool:
        """Record that ``mover`` moves to a fresh socket in this session; False if one was told to already."""
        match = self.sessions.get(session_id)
        if match is None or match.mover is not None:
            return False
        self.sessions[session_id] = dataclasses.replace(match, mover=mover)
        return True

    def expire(self, now: float) -> list[str]:
        """Forget registrations whose lease ran out, with their wishes, and the sessions of every peer no longer
        registered; returns the IDs whose lease ran out. Costs the leases due since the last call, not the table."""
        gone = []
        for peer_id in self._wheel.due(now):
            registration = self.registrations.get(peer_id)
            if registration is not None and registration.expires <= now:
                del self.registrations[peer_id]
                self._forget_wish(peer_id)
                gone.append(peer_id)
        departed, self._departed = [*self._departed, *gone], []
        for peer_id in departed:
            if peer_id in self.registrations:
                continue  # registered again since
            for sid in self._sessions_of.pop(peer_id, ()):
                match = self.sessions.pop(sid, None)
                if match is not None:
                    self._drop_session_of(match.prober if match.opener.peer_id == peer_id else match.opener, sid)
        return gone

    def _drop_session_of(self, other: Registration, session_id: bytes) -> None:
        """The other peer of a session that ended no longer has it; with no session left it is forgotten here (else
        a peer registered at another server, punch.rendezvous.shared, would stay for good)."""
        left = [sid for sid in self._sessions_of.get(other.peer_id, ()) if sid != session_id]
        if left:
            self._sessions_of[other.peer_id] = left
        else:
            self._sessions_of.pop(other.peer_id, None)
