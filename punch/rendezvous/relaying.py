"""The server's relay: the QUIC packets of an introduced session, forwarded between its two peers.

The relay fallback, for peers that cannot punch a direct path. Each packet travels in a Relay indication (PEER-ID,
SESSION-ID, DATA-PAYLOAD: the QUIC packet) signed with the session's key, which only the two peers hold; one sent
to the server by one of the session's two peers from its registered endpoint is forwarded, byte for byte, to the
other peer's registered endpoint. The relay can neither read nor forge what it forwards, and answers nothing: QUIC
recovers what is lost. Each session has a budget (punch.rendezvous.relay): what exceeds its rate is dropped and
counted; once its total is used, nothing more is relayed for it and the server tells both peers so, once, in a
Notice (486, signed with each one's request key), which they report instead of waiting for a dead path.
Well-formed indications are read from their bytes (punch.rendezvous.relayed), with the same checks, counters and log
lines as the general path.

Across servers (a shared registry), a peer registered at another server than the relay is reached where its own
ticketed indications come from, not at its registered endpoint (punch.rendezvous.tickets): a session with tickets
takes that way, one test on the path of every other session.

:class:`Relayer` is the part of punch.rendezvous.server that does this; it sends on the server's primary endpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from punch.rendezvous.registry import Match, Registration, Registry
from punch.rendezvous.relay import Refusal, RelayBudget, RelayLedger
from punch.rendezvous.relayed import RELAY_TYPE, parse_packet
from punch.rendezvous.tickets import RelayEnds
from punch.stun import Address, AttributeType, Message
from punch.stun.protocol import StunEndpoint, format_address
from punch.stun.wire import ProtocolError, required_peer_id, required_session

log = logging.getLogger(__name__)

# Tells the sender of a session the relay refuses from now on: (the sender's registration, the session, the error
# code, the reason).
Notify = Callable[[Registration, bytes, int, str], None]


class Relayer:
    """Forwards a session's packets between its two peers, within the session's budget.

    ``now`` is the server's clock; ``notify`` pushes the server's Notice. :meth:`start` puts the fast path on the
    endpoint the relay sends from. A session's packets are held to its budget only, not to the server's per-source
    rate limit of requests (at its default 200 a second, a relayed session would get about 250 kB/s, and its packets
    would use up the tokens of its peers' own requests to the server).
    """

    def __init__(
        self,
        registry: Registry,
        budget: RelayBudget | None,
        *,
        now: Callable[[], float],
        notify: Notify,
    ) -> None:
        self._registry = registry
        self._now = now
        self._notify = notify
        self._ledger = RelayLedger(budget or RelayBudget())
        self._relaying: set[bytes] = set()  # sessions seen relaying (one log line each)
        self._ends = RelayEnds()  # where the peers registered at other servers reach us (punch.rendezvous.tickets)
        self._endpoint: StunEndpoint | None = None

    @property
    def endpoint(self) -> StunEndpoint:
        if self._endpoint is None:
            raise RuntimeError("relay is not started")
        return self._endpoint

    def start(self, endpoint: StunEndpoint) -> None:
        """Relay through ``endpoint``, with the fast path for well-formed Relay indications on it."""
        self._endpoint = endpoint
        endpoint.fast_paths[RELAY_TYPE] = self.on_relayed_packet

    def on_relay(self, message: Message, source: Address, data: bytes) -> None:
        """Forward a Relay indication of an introduced session to the other peer (the relay fallback).

        Only a session exists for two peers that both asked for each other (Connect), and only its two peers, from
        their registered endpoints, are relayed, within the session's budget (punch.rendezvous.relay). An indication
        gets no answer (RFC 8489 §6.3.2): one that is not relayed is counted and logged, ProtocolError says why.
        """
        sender = required_peer_id(message)
        session_id = required_session(message)
        match = self._registry.session(session_id)
        pair = match.pair(sender) if match else None
        if match is not None and pair is not None and match.tickets:
            refused = self._ends.admit(match, pair[0], message.raw(AttributeType.RELAY_TICKET), source)
            if refused is not None:
                raise ProtocolError(f"{sender} at {format_address(source)}: {refused}")
            self._across(match, pair, message.raw(AttributeType.DATA_PAYLOAD) is not None, data)
            return
        if pair is None or pair[0].observed != source:
            raise ProtocolError(f"{sender} at {format_address(source)} is not in this session")
        self._forward(sender, pair[0], pair[1], session_id, data)

    def on_relayed_packet(self, data: bytes, source: Address) -> bool:
        """The fast path of :meth:`on_relay` (punch.rendezvous.relayed): a well-formed Relay indication of one of a
        session's two peers from its registered endpoint, read from its bytes, with the same checks, budget and
        counters. False hands anything else to the general path, which counts it there."""
        packet = parse_packet(data)
        match = self._registry.session(packet.session_id) if packet else None
        pair = match.pair(packet.peer_id) if match and packet else None
        if packet is None or match is None or pair is None:
            return False
        if match.tickets:  # across servers: the general path refuses what this does not admit, and says why
            if self._ends.admit(match, pair[0], packet.ticket, source) is not None:
                return False
        elif pair[0].observed != source:
            return False
        self.endpoint.counters["indication"] += 1
        if match.tickets:
            self._across(match, pair, packet.carries, data)
        else:
            self._forward(packet.peer_id, pair[0], pair[1], packet.session_id, data)
        return True

    def _across(self, match: Match, pair: tuple[Registration, Registration], carries: bool, data: bytes) -> None:
        """Forward an admitted indication of a session relayed across servers (punch.rendezvous.tickets): to the
        other peer's end if it holds a ticket (dropped and counted until it opened its way), else to its registered
        endpoint. An opening (no DATA-PAYLOAD) only told us where its sender is."""
        sessions = self._registry.sessions
        if len(self._ends) > 2 * len(sessions) + 64:
            self._ends.keep(sessions)
        if not carries:
            return
        mine, other = pair
        target = None
        if match.ticket_of(other.peer_id):
            target = self._ends.end(match, other)
            if target is None:
                self.endpoint.counters["relay-unopened"] += 1
                log.debug("not relayed to %s: it has not opened its way to us yet", other.peer_id)
                return
        self._forward(mine.peer_id, mine, other, match.session_id, data, target)

    def _forward(
        self,
        sender: str,
        mine: Registration,
        other: Registration,
        session_id: bytes,
        data: bytes,
        target: Address | None = None,
    ) -> None:
        """Charge a checked packet to its session and send it on to ``other`` (at ``target``, or where it is
        registered now), or tell the sender the session is over its total."""
        refusal, first = self._over_budget(session_id, len(data), f"{sender} -> {other.peer_id}")
        if refusal is Refusal.QUOTA and first:
            total = self._ledger.budget.total
            for peer in (mine, other):  # the session is over for both
                self._notify(peer, session_id, 486, f"Relay quota reached: {total} bytes per session")
        if refusal is not None:
            return
        if target is None:
            destination = self._registry.lookup(other.peer_id, self._now())
            target = destination.observed if destination else other.observed
        if session_id not in self._relaying:
            if len(self._relaying) > 2 * len(self._registry.sessions) + 64:
                self._relaying &= set(self._registry.sessions)
            self._relaying.add(session_id)
            log.info("relaying session %s between %s and %s", session_id.hex()[:8], sender, other.peer_id)
        self.endpoint.counters["relayed"] += 1
        self.endpoint.send_bytes(data, target)

    def _over_budget(self, session_id: bytes, size: int, what: str) -> tuple[Refusal | None, bool]:
        """Charge a relayed datagram to its session: the refusal if it does not fit, and whether this is the session's
        first of its kind (it is then logged: once per session). Over budget it is counted."""
        ledger = self._ledger
        refusal = ledger.charge(session_id, size, self._now())
        if len(ledger) > 2 * len(self._registry.sessions) + 64:
            ledger.keep(self._registry.sessions)  # sessions end with their peers' registrations
        if refusal is None:
            return None, False
        self.endpoint.counters[refusal.value] += 1
        first = ledger.first(session_id, refusal)
        if first and refusal is Refusal.RATE:
            log.warning(
                "relay: session %s is over its rate of %g bytes/s (%s, %d bytes); what exceeds it is dropped "
                "(logged once per session)",
                session_id.hex()[:8],
                ledger.budget.rate,
                what,
                size,
            )
        elif first:
            log.warning(
                "relay: session %s has used %d of its %d bytes (%s, %d bytes, does not fit); nothing more is relayed "
                "for it, and its sender is told (logged once per session)",
                session_id.hex()[:8],
                ledger.used(session_id),
                ledger.budget.total,
                what,
                size,
            )
        return refusal, first
