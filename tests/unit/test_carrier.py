"""The carrier hands QUIC only what came from the path's other end: direct packets from an address a route sent to,
relayed ones from our server in one of our sessions; the rest is dropped and counted."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from punch.peer.carrier import EARLY_PACKETS, Carrier, Direct, Relayed
from punch.stun import Address, AttributeType, Message, MessageClass, Method
from punch.stun.protocol import StunEndpoint

SERVER: Address = ("203.0.113.1", 3478)
PEER: Address = ("198.51.100.14", 40000)
STRANGER: Address = ("203.0.113.166", 5555)
SESSION = bytes(range(16))
QUIC = b"\x40" + bytes(30)  # a short-header packet's first byte: fixed bit set (RFC 9000 §17.3)
RELAY: Address = ("203.0.113.65", 3478)  # another server than ours: the session's relay (punch.rendezvous.tickets)
TICKET = bytes(range(100, 116))

pytestmark = pytest.mark.unit


class Endpoint:
    """What the carrier sends, and where."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, Address]] = []
        self.more = asyncio.Event()  # set at each send (for the tests that run a loop)

    def send_bytes(self, data: bytes, to: Address) -> None:
        self.sent.append((data, to))

    def send(self, message: Message, to: Address) -> None:
        self.sent.append((message, to))
        self.more.set()


def as_endpoint(fake: Endpoint) -> StunEndpoint:
    return cast(StunEndpoint, fake)


def relay(packet: bytes, session: bytes = SESSION) -> Message:
    attributes = (
        (AttributeType.PEER_ID, "14"),
        (AttributeType.SESSION_ID, session),
        (AttributeType.DATA_PAYLOAD, packet),
    )
    return Message(Method.RELAY, MessageClass.INDICATION, bytes(12), attributes)


def carrier_with_link() -> tuple[Carrier, list[bytes]]:
    carrier, delivered = Carrier("10", (SERVER,)), list[bytes]()
    carrier.deliver_to(delivered.append)
    return carrier, delivered


def test_a_direct_route_sends_bare_packets_and_takes_them_from_its_other_end_only() -> None:
    carrier, delivered = carrier_with_link()
    sock = Endpoint()
    carrier.use(Direct(as_endpoint(sock), PEER))
    carrier.send(QUIC)
    assert sock.sent == [(QUIC, PEER)]
    carrier.datagram_received(QUIC, PEER)
    carrier.datagram_received(QUIC, STRANGER)
    carrier.datagram_received(b"\x00 not QUIC", PEER)
    assert delivered == [QUIC]
    assert carrier.counters == {"stranger": 1, "not-quic": 1}


def test_a_relayed_route_wraps_packets_and_takes_our_sessions_from_our_server_only() -> None:
    carrier, delivered = carrier_with_link()
    sock = Endpoint()
    carrier.use(Relayed(as_endpoint(sock), SERVER, SESSION))
    carrier.send(QUIC)
    [(wrapped, to)] = sock.sent
    assert to == SERVER
    assert (wrapped.method, wrapped.message_class) == (Method.RELAY, MessageClass.INDICATION)
    assert (wrapped.text(AttributeType.PEER_ID), wrapped.raw(AttributeType.SESSION_ID)) == ("10", SESSION)
    assert wrapped.raw(AttributeType.DATA_PAYLOAD) == QUIC
    assert carrier.on_indication(relay(QUIC), SERVER) is False  # not a session we were given yet
    carrier.take(SESSION)
    assert carrier.on_indication(relay(QUIC), SERVER) is True
    assert carrier.on_indication(relay(QUIC), STRANGER) is True  # ours, and dropped
    assert carrier.on_indication(relay(b"\x00 not QUIC"), SERVER) is True
    assert carrier.on_indication(relay(QUIC, bytes(16)), SERVER) is False
    assert delivered == [QUIC]
    assert carrier.counters == {"stranger": 1, "not-quic": 1}


def test_packets_before_the_path_wait_for_it_and_those_from_elsewhere_are_dropped_then() -> None:
    carrier = Carrier("10", (SERVER,))
    carrier.datagram_received(QUIC + b"peer", PEER)
    carrier.datagram_received(QUIC + b"stranger", STRANGER)
    delivered: list[bytes] = []
    carrier.deliver_to(delivered.append)
    assert delivered == []  # no path names their source yet
    carrier.use(Direct(as_endpoint(Endpoint()), PEER))
    assert delivered == [QUIC + b"peer"]
    assert carrier.counters == {"stranger": 1}


def test_packets_before_the_link_wait_for_it() -> None:
    carrier = Carrier("10", (SERVER,))
    carrier.use(Direct(as_endpoint(Endpoint()), PEER))
    carrier.datagram_received(QUIC, PEER)
    delivered: list[bytes] = []
    carrier.deliver_to(delivered.append)
    assert delivered == [QUIC]


def test_what_waits_is_bounded() -> None:
    carrier = Carrier("10", (SERVER,))
    for _ in range(EARLY_PACKETS + 3):
        carrier.datagram_received(QUIC, PEER)
    assert carrier.counters == {"overflow": 3}


def test_sending_without_a_route_is_counted() -> None:
    carrier = Carrier("10", (SERVER,))
    carrier.send(QUIC)
    assert carrier.counters == {"no-path": 1}


def test_on_the_relay_the_packets_of_an_address_the_other_peers_checks_came_from_are_taken() -> None:
    """We fell back to the relay; the other peer chose a direct path (our answers to its checks proved it): its QUIC
    comes direct, from where its checks came, and is taken once a check came from there; a stranger's is not."""
    carrier, delivered = carrier_with_link()
    carrier.use(Relayed(as_endpoint(Endpoint()), SERVER, SESSION))
    carrier.datagram_received(QUIC, PEER)
    assert delivered == []
    carrier.heard(PEER)
    carrier.datagram_received(QUIC + b"2", PEER)
    carrier.datagram_received(QUIC, STRANGER)
    assert delivered == [QUIC + b"2"]
    assert carrier.counters == {"stranger": 2}


def test_the_old_direct_end_stays_trusted_after_a_move_to_the_relay() -> None:
    """A path that changes leaves packets in flight on the old one: QUIC takes them (its packet numbers decide)."""
    carrier, delivered = carrier_with_link()
    carrier.use(Direct(as_endpoint(Endpoint()), PEER))
    carrier.use(Relayed(as_endpoint(Endpoint()), SERVER, SESSION))
    carrier.datagram_received(QUIC, PEER)
    assert delivered == [QUIC]


@pytest.mark.asyncio
async def test_a_relay_at_another_server_is_opened_until_it_forwards_us_something_and_gets_our_ticket() -> None:
    carrier, delivered = Carrier("10", (SERVER,), openings=(0.0, 0.0, 0.0)), list[bytes]()
    carrier.deliver_to(delivered.append)
    carrier.take(SESSION)
    assert carrier.on_indication(relay(QUIC), RELAY) is True  # not one of our servers yet: a stranger's
    carrier.take_relay(RELAY)  # named by the Introduce our server signed
    sock = Endpoint()
    carrier.use(Relayed(as_endpoint(sock), RELAY, SESSION, TICKET))
    while len(sock.sent) < 3:  # the first at once, then again and again while the relay forwards nothing
        sock.more.clear()
        await asyncio.wait_for(sock.more.wait(), 5)
    for opening, to in sock.sent:
        assert to == RELAY
        assert [t for t, _ in opening.attributes] == [AttributeType.PEER_ID, AttributeType.SESSION_ID,
                                                      AttributeType.RELAY_TICKET]  # fmt: skip
        assert opening.raw(AttributeType.RELAY_TICKET) == TICKET
    assert carrier.on_indication(relay(QUIC), RELAY) is True  # it knows where we are: no more openings
    opened = len(sock.sent)
    carrier.send(QUIC)
    [(wrapped, to)] = sock.sent[opened:]
    assert (to, wrapped.raw(AttributeType.RELAY_TICKET), wrapped.raw(AttributeType.DATA_PAYLOAD)) == (
        RELAY,
        TICKET,
        QUIC,
    )
    for _ in range(3):  # (an opening not cancelled would run meanwhile)
        await asyncio.sleep(0)
    assert len(sock.sent) == opened + 1
    assert delivered == [QUIC]
    assert carrier.counters == {"stranger": 1}


@pytest.mark.asyncio
async def test_openings_stop_when_another_route_is_taken() -> None:
    carrier = Carrier("10", (SERVER,), openings=(0.0,) * 10)
    sock = Endpoint()
    carrier.use(Relayed(as_endpoint(sock), RELAY, SESSION, TICKET))
    carrier.use(Direct(as_endpoint(sock), PEER))
    for _ in range(3):
        await asyncio.sleep(0)
    assert len(sock.sent) == 1  # the first only
    carrier.use(Relayed(as_endpoint(sock), SERVER, SESSION))  # our own server: no ticket, nothing to open
    assert len(sock.sent) == 1
