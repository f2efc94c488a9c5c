"""Answering from the address a datagram arrived at, on a socket bound to the wildcard ``::``.

A host with several addresses of one family (a server with an RFC 5780 alternate address, a router-advertised
prefix and a static one) sends from a wildcard socket with whatever source address the kernel selects for the
destination (RFC 6724 §5), not necessarily the one the client sent to. The client's stateful firewall (RFC 6092
§3.2) or NAT then sees a datagram that answers nothing and drops it, and a STUN client would drop it anyway. So a
server on ``::`` asks for each datagram's destination (``IPV6_RECVPKTINFO``, RFC 3542 §6; IPv4 on the same socket
comes as an IPv4-mapped address), remembers it per source, and sends to that source from it (``IPV6_PKTINFO`` on
``sendmsg``, RFC 3542 §6.1; Linux takes an IPv4-mapped one for IPv4).
"""

from __future__ import annotations

import socket
from collections import OrderedDict

from punch.stun.attributes import Address
from punch.stun.families import mapped

IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
_PKTINFO_SIZE = 20  # struct in6_pktinfo: the address (16 bytes), the interface index (4)
ANCILLARY_SPACE = socket.CMSG_SPACE(_PKTINFO_SIZE)
REMEMBERED = 1 << 16  # sources whose arrival address is kept; an older one is answered from the kernel's choice


def ask_for_destinations(sock: socket.socket) -> None:
    """Have ``sock`` (AF_INET6) report each datagram's destination address with it."""
    sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)


def destination_of(ancillary: list[tuple[int, int, bytes]]) -> bytes | None:
    """The 16-byte destination address in ``ancillary`` (from ``recvmsg``), if it holds an ``IPV6_PKTINFO``."""
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO and len(data) >= _PKTINFO_SIZE:
            return data[:16]
    return None


class ArrivalAddresses:
    """Which of our addresses each source last sent to, for the most recent :data:`REMEMBERED` sources."""

    def __init__(self, capacity: int = REMEMBERED) -> None:
        self._capacity = capacity
        self._by_source: OrderedDict[Address, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_source)

    def arrived(self, source: Address, destination: bytes) -> None:
        """``source`` (as the endpoint speaks of it: IPv4 unmapped) sent to our ``destination`` (16 bytes)."""
        if self._by_source.get(source) == destination:
            self._by_source.move_to_end(source)
            return
        self._by_source[source] = destination
        self._by_source.move_to_end(source)
        if len(self._by_source) > self._capacity:
            self._by_source.popitem(last=False)

    def ancillary_for(self, remote: Address) -> list[tuple[int, int, bytes]]:
        """The ``sendmsg`` ancillary data that sends to ``remote`` from the address it sent to (none if unknown)."""
        destination = self._by_source.get(remote)
        if destination is None:
            return []
        return [(socket.IPPROTO_IPV6, IPV6_PKTINFO, destination + bytes(4))]  # interface 0: the route's


def send_from_arrival(sock: socket.socket, data: bytes, remote: Address, arrivals: ArrivalAddresses) -> None:
    """Send ``data`` to ``remote`` on the dual-stack ``sock``, from the address ``remote`` last sent to."""
    sock.sendmsg([data], arrivals.ancillary_for(remote), 0, mapped(remote))
