"""The relay across servers: a session whose two peers are registered at different servers (a shared registry,
punch.rendezvous.federation), relayed by one server that both are told to use. No sockets: the rules and the
relay's record of where each such peer is.

Which server. The one that made the session: the server of the peer whose Connect completed the pair. It holds the
session the moment it exists, builds both Introduces, and knows its own address; no directory of other servers'
addresses is needed, and the per-packet path never asks Redis. Its own peer is relayed as without a shared registry.

How both are told. The other peer's Introduce (pushed by that peer's own server, signed like the rest of it with the
peer's request key, so nobody else can name it a relay) carries RELAY-ADDRESS, the relay's address as peers reach it
(its ``--listen`` address, or ``--advertise``), and RELAY-TICKET, 16 random bytes the relay drew for that peer and
that session (:func:`relayed_here`). A peer registered at the relay gets neither, and relays through its own server.

How the relay learns where to send to a peer registered elsewhere. That peer's NAT lets in only what answers its own
flows, and a symmetric NAT (the case that needs the relay) maps it toward each server on a port of its own: the
endpoint its own server sees is useless to the relay. So the peer opens its own way: it sends its Relay indications
to the relay from the session's socket with its ticket, and the first, without DATA-PAYLOAD, as soon as it takes the
relay path (an opening, sent again until the relay forwards it something; punch.peer.carrier). The relay checks the
ticket in constant time and sends what is for that peer to the source of its latest indication whose ticket checked
(:class:`RelayEnds`): the mapping that indication opened, through which the NAT lets the relay's packets in. An
opening is not forwarded; what comes for a peer that has not opened yet is dropped and counted (QUIC resends).

What a peer's keepalives must be. The mapping toward the relay lives while packets cross it: QUIC's PINGs (every
``--keepalive`` seconds, 5 by default) travel as Relay indications to the relay, so that interval must stay below
the NAT's UDP timeout (RFC 4787 REQ-5 asks at least 2 minutes; Linux forgets an unanswered flow after 30 s). A NAT
that maps the peer anew anyway (it restarted, it changed address) is followed: the next indication comes from the new
mapping with the ticket, and the relay sends there from then on.

What the ticket protects against. Without it, anyone who learns a session's ID (it travels in clear in every check
and Relay indication, and the logs name its first bytes) could send one indication in a peer's name from an address
of its choosing and have the relay send that peer's share of the session there: a redirection, and a reflector
aimed at a third party at the session's rate. With it, an off-path stranger must guess 128 random bits. What it does
not protect against: an on-path observer between the peer and the relay reads the ticket in clear and can redirect
the peer's traffic; but it could drop that traffic anyway, and what it gets is QUIC ciphertext it cannot read or
forge (the session's key and QUIC's keys are the peers' alone). The ticket does not stop a spoofed source from
reaching the other peer either: the relay forwards, and the other peer drops what the session's key did not sign.
The relay keeps the ticket in memory only; the other servers and Redis never see it.

How a relayed session moves when its relay dies (punch.peer.session): the peers' QUIC keepalives go unanswered; each
peer registers again (with another of its servers if its own is the one that died: punch.peer.servers) and asks for
the other again; the new session's relay is the server that makes it, and the carrier sends the same QUIC connection
there. The connection and its streams go on, as over any other change of path.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import os
from collections.abc import Container

from punch.rendezvous.registry import Match, Registration
from punch.stun import Address
from punch.stun.protocol import format_address
from punch.stun.wire import RELAY_TICKET_BYTES

log = logging.getLogger(__name__)


def relayed_here(match: Match, here: str, relay: Address | None) -> Match:
    """``match``, made at the server named ``here`` and reached at ``relay``, with a fresh ticket for each of its peers
    registered at another server: this server relays it. ``match`` as it is when both are registered here, or when
    the server has no address to name (it listens on a wildcard address, without ``--advertise``)."""
    if relay is None or all(server in ("", here) for server in match.servers):
        return match
    tickets = tuple(b"" if server in ("", here) else os.urandom(RELAY_TICKET_BYTES) for server in match.servers)
    return dataclasses.replace(match, relay=relay, tickets=tickets)


class RelayEnds:
    """Where the relay reaches each peer of its sessions that holds a ticket (module docstring): the source of its
    latest Relay indication whose ticket checked."""

    def __init__(self) -> None:
        self._ends: dict[tuple[bytes, str], Address] = {}

    def __len__(self) -> int:
        return len(self._ends)

    def admit(self, match: Match, sender: Registration, ticket: bytes | None, source: Address) -> str | None:
        """Why a Relay indication of ``sender`` (one of ``match``'s two) carrying ``ticket`` from ``source`` is not
        relayed, or None: it is, and a ticketed sender is reached at ``source`` from now on. A sender without a
        ticket in the session is relayed from its registered endpoint only, as without a shared registry."""
        expected = match.ticket_of(sender.peer_id)
        if not expected:
            return None if sender.observed == source else "is not its registered endpoint"
        if ticket is None:
            return "sent no relay ticket"
        if not hmac.compare_digest(ticket, expected):
            return "sent a wrong relay ticket"
        key = (match.session_id, sender.peer_id)
        if self._ends.get(key) != source:
            log.info(
                "relay: %s (registered at server %r) reaches us at %s for session %s",
                sender.peer_id,
                match.server_of(sender.peer_id),
                format_address(source),
                match.session_id.hex()[:8],
            )
            self._ends[key] = source
        return None

    def end(self, match: Match, peer: Registration) -> Address | None:
        """Where to send ``peer``'s packets of ``match``, if it holds a ticket there: None until it opened its way."""
        return self._ends.get((match.session_id, peer.peer_id))

    def keep(self, live: Container[bytes]) -> None:
        """Forget the ends of the sessions that are not ``live`` any more."""
        for key in [k for k in self._ends if k[0] not in live]:
            del self._ends[key]
