"""Finding the opener's TTL: ICMP Time Exceeded from the socket's error queue, and the first public router."""

from __future__ import annotations

import socket
import struct

import pytest

from punch.peer.hops import Hop, _Probe, open_ttl, past_private, time_exceeded_from
from punch.stun.errqueue import (
    ICMP6_TIME_EXCEEDED,
    ICMP_TIME_EXCEEDED,
    IP_RECVERR,
    IPV6_RECVERR,
    SO_EE_ORIGIN_ICMP,
    SO_EE_ORIGIN_ICMP6,
    icmp_error_from,
)

pytestmark = pytest.mark.unit


def extended_err(origin: int, icmp_type: int, offender: str) -> tuple[int, int, bytes]:
    err = struct.pack("=IBBBBII", 113, origin, icmp_type, 0, 0, 0, 0)  # EHOSTUNREACH, as the kernel reports it
    sockaddr = struct.pack("=H", socket.AF_INET) + b"\x00\x00" + socket.inet_aton(offender) + bytes(8)
    return (socket.IPPROTO_IP, IP_RECVERR, err + sockaddr)


def extended_err6(icmp_type: int, code: int, offender: str, origin: int = SO_EE_ORIGIN_ICMP6) -> tuple[int, int, bytes]:
    """As the kernel reports an ICMPv6 error on an ``IPV6_RECVERR`` socket (``origin`` ICMP: an ICMP error of IPv4 on
    a dual-stack one): the offender a ``sockaddr_in6``."""
    err = struct.pack("=IBBBBII", 113, origin, icmp_type, code, 0, 0, 0)
    sockaddr = struct.pack("=HHI", socket.AF_INET6, 0, 0) + socket.inet_pton(socket.AF_INET6, offender) + bytes(4)
    return (socket.IPPROTO_IPV6, IPV6_RECVERR, err + sockaddr)


def test_the_offender_of_a_time_exceeded_is_the_router() -> None:
    assert time_exceeded_from([extended_err(SO_EE_ORIGIN_ICMP, ICMP_TIME_EXCEEDED, "100.64.0.1")]) == "100.64.0.1"


def test_an_icmpv6_time_exceeded_names_the_router_too() -> None:
    assert time_exceeded_from([extended_err6(ICMP6_TIME_EXCEEDED, 0, "2001:db8:f10::1")]) == "2001:db8:f10::1"
    # ICMPv6 type 11 is nothing (RFC 4443 numbers its errors 1-4): not a time exceeded
    assert time_exceeded_from([extended_err6(ICMP_TIME_EXCEEDED, 0, "2001:db8:f10::1")]) is None


def test_an_ipv4_refusal_on_a_dual_stack_socket_names_the_ipv4_host() -> None:
    error = icmp_error_from([extended_err6(3, 3, "::ffff:192.0.2.14", origin=SO_EE_ORIGIN_ICMP)])
    assert error is not None
    assert (error.port_unreachable, error.offender) == (True, "192.0.2.14")


def test_an_icmpv6_port_unreachable_is_a_refusal() -> None:
    error = icmp_error_from([extended_err6(1, 4, "2001:db8:11::2")])  # destination unreachable, port (§3.1)
    assert error is not None
    assert (error.port_unreachable, error.time_exceeded, error.offender) == (True, False, "2001:db8:11::2")


@pytest.mark.parametrize(
    "ancillary",
    [
        [],
        [extended_err(SO_EE_ORIGIN_ICMP, 3, "192.0.2.1")],  # destination unreachable, not time exceeded
        [extended_err(1, ICMP_TIME_EXCEEDED, "192.0.2.1")],  # SO_EE_ORIGIN_LOCAL
        [(socket.IPPROTO_IP, IP_RECVERR, b"\x00" * 10)],  # truncated
        [(socket.SOL_SOCKET, 1, b"\x00" * 32)],
    ],
)
def test_anything_else_is_not_a_hop(ancillary: list[tuple[int, int, bytes]]) -> None:
    assert time_exceeded_from(ancillary) is None


@pytest.mark.parametrize(
    ("hops", "ttl"),
    [
        ([Hop(1, "10.0.10.1"), Hop(2, "198.51.100.1"), Hop(3, "203.0.113.254")], 2),  # one home NAT
        ([Hop(1, "10.0.10.1"), Hop(2, "100.64.0.1"), Hop(3, "198.51.100.1")], 3),  # home NAT behind a CGNAT
        ([Hop(2, "198.51.100.1"), Hop(1, "192.168.1.1")], 2),  # in any order
        ([Hop(1, "10.0.10.1"), Hop(3, "198.51.100.1")], None),  # a gap: TTL 2 may have been the public one
        ([Hop(1, "10.0.10.1"), Hop(2, reached=True)], None),  # the server is on our side of the internet
        ([Hop(1, "fd00::1"), Hop(2, "2001:db8:f10::1")], 2),  # IPv6: a home router numbered from a ULA prefix
        ([Hop(1, "2001:db8:10::1"), Hop(2, "2001:db8:f10::1")], 1),  # a home router on a global prefix is public
        ([], None),  # ICMP filtered
    ],
)
def test_open_ttl_is_the_first_public_router(hops: list[Hop], ttl: int | None) -> None:
    assert open_ttl(hops) == ttl


@pytest.mark.parametrize(
    ("hops", "ttl"),
    [
        ([Hop(1, "10.0.10.1"), Hop(2, "100.64.0.1"), Hop(4, reached=True)], 3),  # the CGN's next router was silent
        ([Hop(1, "10.0.10.1"), Hop(3, "198.51.100.1")], 2),  # TTL 2 silent, a router after it answered
        ([Hop(1, "10.0.10.1"), Hop(2, "100.64.0.1")], None),  # nothing answered past the silence: no evidence
        ([Hop(1, "10.0.10.1"), Hop(2, reached=True)], None),  # no silent hop: the server is on our side
        (
            [Hop(2, "100.64.0.1"), Hop(4, reached=True)],
            3,
        ),  # TTL 1 silent (rate-limited): routers before a private one are ours
        ([Hop(2, "100.64.0.1"), Hop(3, "198.51.100.1"), Hop(4, reached=True)], 3),  # the same, the next router answered
        ([Hop(2, "198.51.100.1"), Hop(3, reached=True)], None),  # TTL 1 silent and no private router answered
        ([Hop(1, "10.0.10.1"), Hop(2, "198.51.100.1")], 2),  # nothing silent: open_ttl's answer
        ([], None),
    ],
)
def test_past_private_is_the_silent_hop_after_the_private_routers(hops: list[Hop], ttl: int | None) -> None:
    assert past_private(hops) == ttl


def test_hops_describe_themselves_for_the_log() -> None:
    assert Hop(2, "100.64.0.1").describe() == "TTL 2 died at 100.64.0.1 (private)"
    assert Hop(3, "198.51.100.1").describe() == "TTL 3 died at 198.51.100.1 (public)"
    assert Hop(4, reached=True).describe() == "TTL 4 reached the server"


def test_a_pause_during_the_send_lengthens_the_round_trip_never_shortens_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe's clock is read before the datagram leaves: time lost inside sendto counts toward the round trip."""
    clock = [100.0]
    monkeypatch.setattr("punch.peer.hops.time.monotonic", lambda: clock[0])

    class PausingSocket:
        def sendto(self, data: bytes, address: tuple[str, int]) -> int:
            clock[0] += 0.003  # the process is held for 3 ms inside the send
            return len(data)

    probe = _Probe(3, ("127.0.0.1", 9), "127.0.0.1")
    probe.sock.close()
    probe.sock = PausingSocket()  # type: ignore[assignment]
    probe.send()
    assert probe.sent_at == 100.0
