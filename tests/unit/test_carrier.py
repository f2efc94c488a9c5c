"""The carrier hands QUIC only what came from the path's other end: direct packets from an address a route sent to,
relayed ones from our server in one of our sessions; the rest is dropped and counted."""

from __future__ import annotations

from typing import Any, cast

from punch.peer.carrier import EARLY_PACKETS, Carrier, Direct, Relayed
from punch.stun import Address, AttributeType, Message, MessageClass, Method
from punch.stun.protocol import StunEndpoint

SERVER: Address = ("203.0.113.1", 3478)
PEER: Address = ("198.51.100.14", 40000)
STRANGER: Address = ("203.0.113.166", 5555)
SESSION = bytes(range(16))
QUIC = b"\x40" + bytes(30)  # a short-header packet's first byte: fixed bit set (RFC 9000 §17.3)


class Endpoint:
    """What the carrier sends, and where."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, Address]] = []

    def send_bytes(self, data: bytes, to: Address) -> None:
        self.sent.append((data, to))

    def send(self, message: Message, to: Address) -> None:
        self.sent.append((message, to))


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


def test_the_old_direct_end_stays_trusted_after_a_move_to_the_relay() -> None:
    """A path that changes leaves packets in flight on the old one: QUIC takes them (its packet numbers decide)."""
    carrier, delivered = carrier_with_link()
    carrier.use(Direct(as_endpoint(Endpoint()), PEER))
    carrier.use(Relayed(as_endpoint(Endpoint()), SERVER, SESSION))
    carrier.datagram_received(QUIC, PEER)
    assert delivered == [QUIC]
