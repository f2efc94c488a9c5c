"""What carries the session's QUIC packets: the path punch found, under a QUIC connection that never sees it.

QUIC (punch.transport.QuicLink) talks to one fixed virtual address and hands its packets to :meth:`Carrier.send`;
the carrier sends each one where the session's path is now: to the other peer's endpoint from the socket the path
runs over (direct, direct-lan, predicted, or after a move), or wrapped in a Relay indication to the server, which
forwards it byte for byte to the other peer (the relay). Packets come back the same two ways: as datagrams that are
not STUN on any of the session's sockets (told apart by their first byte, punch.transport.demux), or unwrapped from
a Relay indication of one of our sessions. So when the path changes (relay -> direct, a rejoin after a NAT's new
address, a move) QUIC notices nothing but a packet or two lost, which it sends again.

Relay indications carry the session's ID and our ID for the server, and are signed with the session's key (the
endpoint does that, punch.peer.keys), so that the other peer takes only what we sent, and the relay can forge nothing.
A relay at another server than ours (punch.rendezvous.tickets) gets our ticket in each, and an opening (the ticket, no
packet) the moment we take it, again after each of OPENING_WAITS until it forwards us something: our NAT lets it in only
through the mapping our own packets to it opened, and it learns there where we are.

What reaches QUIC is only what came from the path's other end: direct packets from an address the session sent to,
or one the other peer's checks came from (signed with the session's key: :meth:`Carrier.heard`; a stranger's are
dropped and counted; before there is a path they wait, EARLY_PACKETS at most, for the path to name their source),
and Relay indications of our sessions from our server. QUIC's own protection (AEAD, packet numbers) stops what a
stranger forges or replays from the right address. Taking the packets of an address the checks came from lets the
peers' QUIC come up when they disagree on the path: the other chose a direct path (our answers proved it to it)
while our own checks found none in time and we fell back to the relay; its packets come direct, ours go relayed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass

from punch.stun import Address, AttributeType, Message, MessageClass, Method, new_transaction_id
from punch.stun.protocol import StunEndpoint, format_address
from punch.transport.demux import Carried, classify

log = logging.getLogger(__name__)

EARLY_PACKETS = 32  # packets kept for a link or a path not made yet; beyond, dropped and counted (QUIC resends)
OPENING_WAITS = (0.25, 0.5, 1.0, 2.0, 4.0)  # seconds before each opening of a relay again, until it forwards us one


@dataclass(frozen=True, slots=True)
class Direct:
    """Packets go to ``remote`` from ``endpoint``."""

    endpoint: StunEndpoint
    remote: Address


@dataclass(frozen=True, slots=True)
class Relayed:
    """Packets go to the server from ``endpoint``, in Relay indications of ``session_id``."""

    endpoint: StunEndpoint
    server: Address
    session_id: bytes
    ticket: bytes = b""  # our RELAY-TICKET when the relay is another server than ours (punch.rendezvous.tickets)


Route = Direct | Relayed


class Carrier:
    """The route the session's QUIC packets take now (:meth:`use`), and where those that arrive go (``deliver``:
    the QUIC link's datagram_received, once there is one). ``counters`` counts what it dropped, by reason."""

    def __init__(self, me: str, servers: Collection[Address], *, openings: tuple[float, ...] = OPENING_WAITS) -> None:
        self._me = me
        self._openings = openings  # the waits between the openings of a relay at another server
        self._servers = set(servers)  # relayed packets come from there only: our servers, and our sessions' relays
        self._opening: asyncio.TimerHandle | None = None  # the next opening of a relay at another server
        self._route: Route | None = None
        self._deliver: Callable[[bytes], None] | None = None
        self._sessions: set[bytes] = set()  # sessions whose relayed packets we take
        self._remotes: set[Address] = set()  # the other ends of every direct route used: their packets are taken
        self._early: list[tuple[bytes, Address]] = []  # came before the path or the link (the QUIC client's first)
        self.counters: Counter[str] = Counter()

    @property
    def route(self) -> Route | None:
        return self._route

    def use(self, route: Route) -> None:
        """Send every packet this way from now on."""
        changed = route != self._route
        if changed:
            where = format_address(route.remote) if isinstance(route, Direct) else "the relay"
            log.debug("QUIC packets go via %s from now on", where)
            if self._opening is not None:
                self._opening.cancel()
                self._opening = None
        self._route = route
        if isinstance(route, Direct):
            self._remotes.add(route.remote)
            self._release()
        elif route.ticket and changed:
            self._open(route, 0)

    def heard(self, remote: Address) -> None:
        """A check of the other peer's (signed with the session's key) came from ``remote``: its QUIC packets from
        there are taken too, whatever our route (module docstring)."""
        if remote not in self._remotes:
            self._remotes.add(remote)
            self._release()

    def take(self, session_id: bytes) -> None:
        """Take the relayed packets of ``session_id`` (a session we were introduced to, and hold the key of)."""
        self._sessions.add(session_id)

    def take_relay(self, relay: Address) -> None:
        """Take relayed packets from ``relay`` too: our session's relay, another server than ours (named in the
        Introduce our server signed)."""
        self._servers.add(relay)

    def _open(self, route: Relayed, sent: int) -> None:
        """Open our way to a relay at another server (module docstring), again after each of the waits until it
        forwards us a packet of the route's session or we take another route."""
        self._opening = None
        if route != self._route:
            return
        route.endpoint.send(self._indication(route, None), route.server)
        if sent < len(self._openings):
            self._opening = asyncio.get_running_loop().call_later(self._openings[sent], self._open, route, sent + 1)

    def _opened(self, session_id: bytes) -> None:
        """The relay forwarded us a packet of ``session_id``: if it is the one we are opening, it knows where we are."""
        route = self._route
        if self._opening is not None and isinstance(route, Relayed) and route.session_id == session_id:
            self._opening.cancel()
            self._opening = None

    def deliver_to(self, deliver: Callable[[bytes], None]) -> None:
        """Hand the packets that arrive to ``deliver`` (the QUIC link) from now on, those that came before it first
        (the other peer may choose the path and start its QUIC a moment sooner than we do)."""
        self._deliver = deliver
        self._release()

    def send(self, packet: bytes) -> None:
        route = self._route
        if route is None:
            self.counters["no-path"] += 1
            return
        if isinstance(route, Direct):
            route.endpoint.send_bytes(packet, route.remote)
            return
        route.endpoint.send(self._indication(route, packet), route.server)

    def _indication(self, route: Relayed, packet: bytes | None) -> Message:
        """The Relay indication carrying ``packet`` over ``route``; with our ticket when the relay is another server
        than ours (punch.rendezvous.tickets); without ``packet``, an opening."""
        attributes: list[tuple[int, object]] = [
            (AttributeType.PEER_ID, self._me),
            (AttributeType.SESSION_ID, route.session_id),
        ]
        if route.ticket:
            attributes.append((AttributeType.RELAY_TICKET, route.ticket))
        if packet is not None:
            attributes.append((AttributeType.DATA_PAYLOAD, packet))
        return Message(Method.RELAY, MessageClass.INDICATION, new_transaction_id(), tuple(attributes))

    def datagram_received(self, data: bytes, source: Address) -> None:
        """A datagram that is not STUN, on one of the session's sockets (punch.stun.protocol's ``others``)."""
        if classify(data) is not Carried.QUIC:
            self._drop("not-quic", "a %d-byte datagram from %s: neither STUN nor QUIC", len(data), source)
        elif source in self._remotes:
            self._hand_over(data, source)
        elif self._route is None:
            self._hold(data, source)
        else:
            self._drop("stranger", "a QUIC packet from %s: the path's other end is elsewhere", source)

    def on_indication(self, message: Message, source: Address) -> bool:
        """A Relay indication (its integrity checked by the endpoint under the session's key): its packet to QUIC;
        False if it is not one of ours."""
        if message.method != Method.RELAY or message.raw(AttributeType.SESSION_ID) not in self._sessions:
            return False
        packet = message.raw(AttributeType.DATA_PAYLOAD)
        if source not in self._servers:
            self._drop("stranger", "a Relay indication from %s: relayed packets come from the server", source)
        elif packet is None or classify(packet) is not Carried.QUIC:
            self._drop("not-quic", "a Relay indication from %s: its payload is not QUIC", source)
        else:
            self._opened(message.raw(AttributeType.SESSION_ID) or b"")
            self._hand_over(packet, source)
        return True

    def _hand_over(self, packet: bytes, source: Address) -> None:
        if self._deliver is not None:
            self._deliver(packet)
        else:
            self._hold(packet, source)

    def _hold(self, packet: bytes, source: Address) -> None:
        if len(self._early) < EARLY_PACKETS:
            self._early.append((packet, source))
        else:
            self._drop("overflow", "a QUIC packet from %s: %d wait already", source, EARLY_PACKETS)

    def _release(self) -> None:
        """Hand QUIC what waited and may go now (the link is there and the path names its source); drop what came
        from elsewhere once there is a path."""
        early, self._early = self._early, []
        for packet, source in early:
            if source in self._remotes or source in self._servers:
                self._hand_over(packet, source)
            elif self._route is None:
                self._hold(packet, source)
            else:
                self._drop("stranger", "a QUIC packet from %s: the path's other end is elsewhere", source)

    def _drop(self, reason: str, why: str, *args: object) -> None:
        self.counters[reason] += 1
        log.info("dropped " + why, *(format_address(a) if isinstance(a, tuple) else a for a in args))
