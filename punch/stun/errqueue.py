"""ICMP errors for our UDP datagrams, as Linux reports them on a socket with ``IP_RECVERR`` (ip(7)).

A UDP socket that is not connected hears nothing of the ICMP errors its datagrams cause, unless ``IP_RECVERR`` is
set. Then the kernel queues each one on the socket's error queue, read with ``recvmsg(..., MSG_ERRQUEUE)``: the
address is the destination of the datagram that failed, and the ancillary data a ``struct sock_extended_err``
(linux/errqueue.h) with the ICMP type and code (RFC 792), followed by the "offender": the address of the host that
sent the ICMP.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
SO_EE_ORIGIN_ICMP = 2  # linux/errqueue.h
ICMP_DEST_UNREACH = 3  # RFC 792
ICMP_PORT_UNREACH = 3  # the code of Destination Unreachable for "no socket on that port"
ICMP_TIME_EXCEEDED = 11
_EXTENDED_ERR = struct.Struct("=IBBBBII")  # struct sock_extended_err: errno, origin, type, code, pad, info, data


@dataclass(frozen=True, slots=True)
class IcmpError:
    """One ICMP error from the error queue: its type and code, and who sent it (None if the kernel did not say)."""

    icmp_type: int
    code: int
    offender: str | None

    @property
    def port_unreachable(self) -> bool:
        return self.icmp_type == ICMP_DEST_UNREACH and self.code == ICMP_PORT_UNREACH


def icmp_error_from(ancillary: list[tuple[int, int, bytes]]) -> IcmpError | None:
    """The ICMP error in ``ancillary`` (from ``recvmsg(..., MSG_ERRQUEUE)`` on an IPv4 socket), if it holds one."""
    for level, kind, data in ancillary:
        if level != socket.IPPROTO_IP or kind != IP_RECVERR or len(data) < _EXTENDED_ERR.size:
            continue
        _errno, origin, icmp_type, code, _pad, _info, _data = _EXTENDED_ERR.unpack_from(data)
        if origin != SO_EE_ORIGIN_ICMP:
            continue
        return IcmpError(icmp_type, code, _offender(data[_EXTENDED_ERR.size :]))
    return None


def _offender(sockaddr: bytes) -> str | None:
    if len(sockaddr) < 8:
        return None
    (family,) = struct.unpack_from("=H", sockaddr)
    return socket.inet_ntoa(sockaddr[4:8]) if family == socket.AF_INET else None
