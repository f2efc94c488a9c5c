"""The few rtnetlink requests that build a lab, packed by hand: links, addresses, routes (RFC 3549, rtnetlink(7)).

``up`` sends tens of thousands of them for a big lab; through pyroute2 (an asyncio event loop and a request
filter per call) each cost about a millisecond of Python, here a few microseconds plus the kernel's work. Only
netns/ipr.py uses this module, inside a namespace it has entered: a socket belongs to the namespace it was
opened in. Errors are OSError with the kernel's errno; netns/ipr.py turns them into KernelErrors.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct

NLMSG_ERROR = 2
RTM_NEWLINK, RTM_GETLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 18, 20, 24
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
IFLA_IFNAME, IFLA_MASTER, IFLA_LINKINFO, IFLA_IFALIAS, IFLA_NET_NS_FD = 3, 10, 18, 20, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_GATEWAY = 1, 5
IFF_UP = 0x1
RT_TABLE_MAIN, RTPROT_STATIC, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 4, 0, 1

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBi")  # ifaddrmsg: family, prefix length, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst/src length, tos, table, protocol, scope, type, flags
_CREATE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL


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
            data = self._sock.recv(65536)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, reply, _, seq, _ = _HEADER.unpack_from(data, offset)
                payload = data[offset + _HEADER.size : offset + length]
                offset += (length + 3) & ~3
                if seq != self._seq:
                    continue  # a late reply to an earlier request
                if reply == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        raise OSError(code, os.strerror(code))
                    return b""
                return payload

    def index(self, ifname: str) -> int:
        """The index of interface ``ifname`` (ENODEV if there is none)."""
        payload = self.request(
            RTM_GETLINK, NLM_F_REQUEST, _IFINFO.pack(0, 0, 0, 0, 0) + attr(IFLA_IFNAME, _name(ifname))
        )
        return int(_IFINFO.unpack_from(payload)[2])

    def set_link(self, index: int, up: bool = False, master: int | None = None, alias: str | None = None) -> None:
        """Bring a link up, enslave it to ``master`` and/or set its ifalias."""
        attrs = attr(IFLA_MASTER, struct.pack("=I", master)) if master is not None else b""
        attrs += attr(IFLA_IFALIAS, _name(alias)) if alias is not None else b""
        flags = IFF_UP if up else 0
        self.request(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, _IFINFO.pack(0, 0, index, flags, flags) + attrs)

    def add_bridge(self, ifname: str) -> None:
        self.request(
            RTM_NEWLINK, _CREATE, _IFINFO.pack(0, 0, 0, 0, 0) + attr(IFLA_IFNAME, _name(ifname)) + _link_info("bridge")
        )

    def add_veth(self, ifname: str, peer_ifname: str, peer_netns_fd: int) -> None:
        """A veth pair: ``ifname`` here, ``peer_ifname`` created directly in the namespace of ``peer_netns_fd``."""
        peer = _IFINFO.pack(0, 0, 0, 0, 0) + attr(IFLA_IFNAME, _name(peer_ifname))
        peer += attr(IFLA_NET_NS_FD, struct.pack("=I", peer_netns_fd))
        body = (
            _IFINFO.pack(0, 0, 0, 0, 0)
            + attr(IFLA_IFNAME, _name(ifname))
            + _link_info("veth", attr(VETH_INFO_PEER, peer))
        )
        self.request(RTM_NEWLINK, _CREATE, body)

    def add_address(self, index: int, address: str, prefixlen: int) -> None:
        packed = ipaddress.IPv4Address(address).packed
        body = _IFADDR.pack(socket.AF_INET, prefixlen, 0, RT_SCOPE_UNIVERSE, index)
        self.request(RTM_NEWADDR, _CREATE, body + attr(IFA_LOCAL, packed) + attr(IFA_ADDRESS, packed))

    def add_route(self, dst: str, gateway: str) -> None:
        network = ipaddress.IPv4Network(dst)
        body = _RTMSG.pack(
            socket.AF_INET, network.prefixlen, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0
        )
        if network.prefixlen:
            body += attr(RTA_DST, network.network_address.packed)
        self.request(RTM_NEWROUTE, _CREATE, body + attr(RTA_GATEWAY, ipaddress.IPv4Address(gateway).packed))
