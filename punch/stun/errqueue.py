"""ICMP errors for our UDP datagrams, as Linux reports them on a socket with ``IP_RECVERR`` (ip(7)).

A UDP socket that is not connected hears nothing of the ICMP errors its datagrams cause, unless ``IP_RECVERR`` is
set. Then the kernel queues each one on the socket's error queue, read with ``recvmsg(..., MSG_ERRQUEUE)``: the
address is the destination of the datagram that failed, and the ancillary data a ``struct sock_extended_err``
(linux/errqueue.h) with the ICMP type and code (RFC 792), followed by the "offender": the address of the host that
sent the ICMP. An IPv6 socket does the same with ``IPV6_RECVERR`` and ICMPv6 (RFC 4443), whose types and codes differ:
:class:`IcmpError` answers the questions asked of it (time exceeded? port unreachable?) for both.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass

IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
SO_EE_ORIGIN_ICMP = 2  # linux/errqueue.h
SO_EE_ORIGIN_ICMP6 = 3
ICMP_DEST_UNREACH = 3  # RFC 792
ICMP_PORT_UNREACH = 3  # the code of Destination Unreachable for "no socket on that port"
ICMP_TIME_EXCEEDED = 11
ICMP6_DST_UNREACH = 1  # RFC 4443 §3.1
ICMP6_PORT_UNREACH = 4
ICMP6_TIME_EXCEEDED = 3  # RFC 4443 §3.3
_EXTENDED_ERR = struct.Struct("=IBBBBII")  # struct sock_extended_err: errno, origin, type, code, pad, info, data


@dataclass(frozen=True, slots=True)
class IcmpError:
    """One ICMP (``icmp6``: ICMPv6) error from the error queue: its type and code, and who sent it (None if the
    kernel did not say)."""

    icmp_type: int
    code: int
    offender: str | None
    icmp6: bool = False

    @property
    def port_unreachable(self) -> bool:
        if self.icmp6:
            return self.icmp_type == ICMP6_DST_UNREACH and self.code == ICMP6_PORT_UNREACH
        return self.icmp_type == ICMP_DEST_UNREACH and self.code == ICMP_PORT_UNREACH

    @property
    def time_exceeded(self) -> bool:
        """A router dropped the datagram when its TTL (hop limit) ran out."""
        return self.icmp_type == (ICMP6_TIME_EXCEEDED if self.icmp6 else ICMP_TIME_EXCEEDED)


def icmp_error_from(ancillary: list[tuple[int, int, bytes]]) -> IcmpError | None:
    """The ICMP error in ``ancillary`` (from ``recvmsg(..., MSG_ERRQUEUE)`` on an IPv4 or IPv6 socket), if it holds
    one."""
    for level, kind, data in ancillary:
        if (level, kind) not in ((socket.IPPROTO_IP, IP_RECVERR), (socket.IPPROTO_IPV6, IPV6_RECVERR)):
            continue
        if len(data) < _EXTENDED_ERR.size:
            continue
        _errno, origin, icmp_type, code, _pad, _info, _data = _EXTENDED_ERR.unpack_from(data)
        if origin not in (SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6):
            continue
        icmp6 = origin == SO_EE_ORIGIN_ICMP6
        return IcmpError(icmp_type, code, _offender(data[_EXTENDED_ERR.size :]), icmp6)
    return None


def _offender(sockaddr: bytes) -> str | None:
    """The host in a ``struct sockaddr_in`` (family, port, 4 bytes) or ``sockaddr_in6`` (family, port, flow
    information, 16 bytes)."""
    if len(sockaddr) < 8:
        return None
    (family,) = struct.unpack_from("=H", sockaddr)
    if family == socket.AF_INET:
        return socket.inet_ntoa(sockaddr[4:8])
    if family == socket.AF_INET6 and len(sockaddr) >= 24:  # (an IPv4 host's, on a dual-stack socket: IPv4-mapped)
        address = ipaddress.IPv6Address(sockaddr[8:24])
        return str(address.ipv4_mapped or address)
    return None
