"""The few rtnetlink requests that build a lab, packed by hand: links, addresses, routes (RFC 3549, rtnetlink(7));
and the dumps ``status`` reads back (netns/kernel/rtdump.py parses their messages).

``up`` sends tens of thousands of them for a big lab; through pyroute2 (an asyncio event loop and a request
filter per call) each cost about a millisecond of Python, here a few microseconds plus the kernel's work. Only
netns/kernel/links.py uses this module, inside a namespace it has entered: a socket belongs to the namespace it was
opened in. Errors are OSError with the kernel's errno, or DecodeError for a reply that does not parse;
netns/kernel/boundary.py turns both into KernelErrors.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Iterator

from netns.kernel.boundary import DecodeError as DecodeError

NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_GETLINK, RTM_NEWADDR, RTM_GETADDR, RTM_NEWROUTE, RTM_GETROUTE = 16, 18, 20, 22, 24, 26
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_DUMP, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x2, 0x4, 0x300, 0x200, 0x400
IFLA_IFNAME, IFLA_MASTER, IFLA_LINKINFO, IFLA_IFALIAS, IFLA_NET_NS_FD = 3, 10, 18, 20, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_GATEWAY = 1, 5
IFF_UP = 0x1
RT_TABLE_MAIN, RTPROT_STATIC, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 4, 0, 1

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
IFADDR = struct.Struct("=BBBBi")  # ifaddrmsg: family, prefix length, flags, scope, index
RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst/src length, tos, table, protocol, scope, type, flags
_CREATE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
_ERRNO = struct.Struct("=i")  # nlmsgerr's error (negative errno, 0 for an ack); NLMSG_DONE's payload starts so too
RECV_SIZE = 65536  # more than the kernel puts in one datagram of a dump (at most 32 KiB)


def messages(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """The netlink messages of one datagram as (type, flags, sequence, payload), lengths checked first."""
    offset = 0
    while offset < len(data):
        if len(data) - offset < _HEADER.size:
            raise DecodeError(
                f"netlink header at offset {offset}: {len(data) - offset} bytes left, a header is {_HEADER.size}"
            )
        length, kind, flags, seq, _ = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size:
            raise DecodeError(
                f"netlink message at offset {offset}: length {length}, less than its {_HEADER.size}-byte header"
            )
        if offset + length > len(data):
            raise DecodeError(f"netlink message at offset {offset}: length {length}, {len(data) - offset} bytes left")
        yield kind, flags, seq, data[offset + _HEADER.size : offset + length]
        offset += (length + 3) & ~3


def error_code(payload: bytes, kind: int) -> int:
    """The errno (positive, 0 for none) an NLMSG_ERROR or NLMSG_DONE payload carries."""
    if len(payload) < _ERRNO.size:
        what = "NLMSG_ERROR" if kind == NLMSG_ERROR else "NLMSG_DONE"
        raise DecodeError(f"{what}: {len(payload)} bytes of payload, its error code needs {_ERRNO.size}")
    return -int(_ERRNO.unpack_from(payload)[0])


def attr(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _name(text: str) -> bytes:
    return text.encode() + b"\0"


def _link_info(kind: str, data: bytes = b"") -> bytes:
    return attr(IFLA_LINKINFO, attr(IFLA_INFO_KIND, _name(kind)) + (attr(IFLA_INFO_DATA, data) if data else b""))


class Socket:
    """An rtnetlink socket of the namespace the calling thread is in when it is made."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
        self._sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def request(self, kind: int, flags: int, body: bytes) -> bytes:
        """Send one request and return the reply's payload (b"" for an ack); an error reply raises OSError."""
        self._seq += 1
        self._sock.send(_HEADER.pack(_HEADER.size + len(body), kind, flags, self._seq, 0) + body)
        while True:
            for reply, _, seq, payload in messages(self._sock.recv(RECV_SIZE)):
                if seq != self._seq:
                    continue  # a late reply to an earlier request
                if reply == NLMSG_ERROR:
                    code = error_code(payload, reply)
                    if code:
                        raise OSError(code, os.strerror(code))
                    return b""
                return payload

    def dump(self, kind: int, body: bytes) -> list[tuple[int, bytes]]:
        """Send a dump request; return every (type, payload) of its multi-part reply, up to NLMSG_DONE. An error
        (NLMSG_ERROR, or an error code in NLMSG_DONE) raises OSError."""
        self._seq += 1
        self._sock.send(_HEADER.pack(_HEADER.size + len(body), kind, NLM_F_REQUEST | NLM_F_DUMP, self._seq, 0) + body)
        found: list[tuple[int, bytes]] = []
        while True:
            for reply, _, seq, payload in messages(self._sock.recv(RECV_SIZE)):
                if seq != self._seq:
                    continue  # a late reply to an earlier request
                if reply in (NLMSG_ERROR, NLMSG_DONE):
                    code = error_code(payload, reply)
                    if code:
                        raise OSError(code, os.strerror(code))
                    if reply == NLMSG_DONE:
                        return found
                    continue  # an ack (a dump is not acked unless asked; skip it if it comes)
                found.append((reply, payload))

    def index(self, ifname: str) -> int:
        """The index of interface ``ifname`` (ENODEV if there is none)."""
        payload = self.request(
            RTM_GETLINK, NLM_F_REQUEST, IFINFO.pack(0, 0, 0, 0, 0) + attr(IFLA_IFNAME, _name(ifname))
        )
        return int(IFINFO.unpack_from(payload)[2])

    def set_link(self, index: int, up: bool = False, master: int | None = None, alias: str | None = None) -> None:
        """Bring a link up, enslave it to ``master`` and/or set its ifalias."""
        attrs = attr(IFLA_MASTER, struct.pack("=I", master)) if master is not None else b""
        attrs += attr(IFLA_IFALIAS, _name(alias)) if alias is not None else b""
        flags = IFF_UP if up else 0
        self.request(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, IFINFO.pack(0, 0, index, flags, flags) + attrs)

    def add_bridge(self, ifname: str) -> None:
        self.request(
            RTM_NEWLINK, _CREATE, IFINFO.pack(0, 0, 0, 0, 0) + attr(IFLA_IFNAME, _name(ifname)) + _link_info("bridge")
        )

    def add_veth(self, ifname: str, peer_ifname: str, peer_netns_fd: int) -> None:
        """A veth pair: ``ifname`` here, ``peer_ifname`` created directly in the namespace of ``peer_netns_fd``."""
        peer = IFINFO.pack(0, 0, 0, 0, 0) + attr(IFLA_IFNAME, _name(peer_ifname))
        peer += attr(IFLA_NET_NS_FD, struct.pack("=I", peer_netns_fd))
        body = (
            IFINFO.pack(0, 0, 0, 0, 0)
            + attr(IFLA_IFNAME, _name(ifname))
            + _link_info("veth", attr(VETH_INFO_PEER, peer))
        )
        self.request(RTM_NEWLINK, _CREATE, body)

    def add_address(self, index: int, address: str, prefixlen: int) -> None:
        packed = ipaddress.IPv4Address(address).packed
        body = IFADDR.pack(socket.AF_INET, prefixlen, 0, RT_SCOPE_UNIVERSE, index)
        self.request(RTM_NEWADDR, _CREATE, body + attr(IFA_LOCAL, packed) + attr(IFA_ADDRESS, packed))

    def add_route(self, dst: str, gateway: str) -> None:
        network = ipaddress.IPv4Network(dst)
        body = RTMSG.pack(
            socket.AF_INET, network.prefixlen, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0
        )
        if network.prefixlen:
            body += attr(RTA_DST, network.network_address.packed)
        self.request(RTM_NEWROUTE, _CREATE, body + attr(RTA_GATEWAY, ipaddress.IPv4Address(gateway).packed))
