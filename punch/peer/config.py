"""What a peer is asked to do (:class:`PeerConfig`, from ``punch peer``'s flags) and what it reports
(:class:`PeerResult`, ``--json``), with the timing policies both use."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from punch.identity.keyfile import Identity
from punch.identity.known_peers import KnownPeers
from punch.peer.predict import PredictConfig
from punch.peer.puncher import PunchTimings
from punch.peer.reach import Reach
from punch.portmap.exchange import MALFORMED, MISMATCH
from punch.portmap.mapper import PortmapConfig
from punch.stun import Address
from punch.stun.families import wildcard_for
from punch.stun.wire import ANYONE

__all__ = ["ANYONE", "DROP_REASONS", "PeerConfig", "PeerResult"]
from punch.stun.transaction import RetransmitPolicy

# RFC 8489 §6.2.1 timing with the RTO capped at 2 s and 12 sends (not 7): a peer gives up on a silent server after
# 21.75 s, not 39.5 s. With 20% loss each way one exchange fails 36% of the time, so 9 sends still lost one request
# in 10,000, about one 20-trial run in 30 of tests/e2e/test_faults.py (a peer makes ~7 requests); 12 sends: 1 in
# 200,000.
SERVER_POLICY = RetransmitPolicy(rto=0.25, max_rto=2.0, max_sends=12)
# A keepalive that gets no answer for 7.5 s means the other peer is gone (or the path broke).
KEEPALIVE_POLICY = RetransmitPolicy(rto=0.5, max_rto=2.0, max_sends=5, last_wait=4.0)

# What our sockets drop before any handler sees it (punch.stun.protocol.StunEndpoint's counters), then what the
# carrier keeps from QUIC (punch.peer.carrier: neither STUN nor QUIC, from a stranger, too many before the path), then
# what the router sent us that answers no request of ours (punch.portmap.exchange: not valid, or another's).
DROP_REASONS = (
    "not-stun",
    "malformed",
    "bad-integrity",
    "handler-error",
    "not-quic",
    "stranger",
    "overflow",
    MALFORMED,
    MISMATCH,
)


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """What ``punch peer`` was asked to do."""

    server: Address
    peer_id: str
    target: str
    bind: Address | None = None  # our socket's address; None: any port on :: with an IPv6 server, else 0.0.0.0
    timeout: float = 30.0  # to find the other peer and punch
    lease: int = 30
    punch: PunchTimings = field(default_factory=PunchTimings)
    linger: float = 5.0  # on closing, wait up to this long for the other to acknowledge what we sent (QUIC)
    rendezvous: RetransmitPolicy = SERVER_POLICY  # requests to the server
    relay: bool = True  # fall back to the server's relay when no direct path can be punched
    keepalive: float = 5.0  # seconds between checks of a direct path while talking
    group: bytes | None = None  # a closed group's key (--secret-file)
    predict: PredictConfig = field(default_factory=PredictConfig)  # port prediction (punch.peer.predict)
    upgrade_interval: float = 15.0  # on the relay, first retry a direct path after this long (seconds; 0 = never)
    # How long a NAT on the way may remember a UDP flow nobody answered, until the entry is gone: Linux's 30 s timeout
    # plus up to 60 s before its garbage collector removes the expired entry (until then new flows from the same
    # source still take its port).
    nat_udp_timeout: float = 90.0
    discover_ttl: bool = True  # find punch.open_ttl from the route to the server (punch.peer.hops), else keep it
    rejoin: float = 15.0  # after a direct path broke, wait this long for the other peer to find us again (0 = never)
    identity: Identity | None = None  # our key pair (--identity); None: a fresh one for this run
    known_peers: KnownPeers | None = None  # the keys we met peers with (--known-peers); None: remembered in memory
    pin: str | None = None  # the fingerprint the other peer's key must have (--to-key, or --to FINGERPRINT)
    # With ``target`` ANYONE (punch.api.accept): the fingerprints of the keys of the peers that may come
    allow: frozenset[str] | None = None
    keylog: Path | None = None  # append each session's key here (--keylog; NSS key log format, for Wireshark)
    qlog: Path | None = None  # a directory for each QUIC connection's qlog (--qlog), written when it ends
    servers: tuple[Address, ...] = ()  # other servers sharing the registry (--server again): punch.peer.servers
    reach: Reach = field(default_factory=Reach)  # the server over UDP, else TCP or TLS (punch.peer.reach)
    portmap: PortmapConfig = field(default_factory=PortmapConfig)  # ask our router for a port (punch.portmap)

    @property
    def local(self) -> Address:
        """Where our socket binds: ``bind``, else any port on ``::`` (IPv6 and IPv4) when any of our servers is IPv6,
        0.0.0.0 when all are IPv4."""
        if self.bind is not None:
            return self.bind
        return wildcard_for(next((s for s in (self.server, *self.servers) if ":" in s[0]), self.server))


@dataclass(frozen=True, slots=True)
class PeerResult:
    """The outcome, as printed by ``--json`` (a snapshot: punch.peer.session.Session.result)."""

    id: str
    peer: str
    path: str | None = None
    remote: str | None = None
    family: str | None = None  # "ipv4" or "ipv6": the IP family the chosen path runs over (punch.stun.families)
    punch_ms: float | None = None
    path_at: float | None = None  # wall-clock time (time.time()) when the path was chosen, for benchmarks
    server_rtt_ms: float | None = None  # our shortest round trip to the server before the introduction
    received: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    role: str | None = None
    session: str | None = None
    local: str | None = None
    mapped: str | None = None
    upgraded: bool = False  # started on the relay, moved to a direct path later
    # "moved": our NAT refused the other's check, and we punched again from a fresh socket; "followed": the other
    # peer did, and we checked it there (punch.peer.moving)
    move: str | None = None
    early: bool | None = None  # a plain punch: True if we checked without waiting for Go, False under Ready/Go
    rejoins: int = 0  # how often the direct path broke and a new one was punched
    peer_key: str | None = None  # the fingerprint of the other peer's key, as we accepted (or refused) it
    error: str | None = None
    dropped: dict[str, int] = field(default_factory=dict)  # datagrams our socket dropped, by reason (DROP_REASONS)
    server_via: str = "udp"  # how we reach the server: udp, tcp or tls (punch.peer.reach)
    # the port our router maps for us (punch.peer.portmapping): protocol, router, external, lifetime, renewals
    portmap: dict[str, object] | None = None
