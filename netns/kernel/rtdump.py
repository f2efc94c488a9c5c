"""What ``status`` reads from the kernel: links, IPv4 addresses and main-table routes, from rtnetlink dumps
parsed by hand (rtnetlink(7); layouts from linux/rtnetlink.h, if_link.h, if_addr.h).

A dump message is a fixed header (ifinfomsg, ifaddrmsg, rtmsg) followed by attributes; only the few attributes
``status`` prints are decoded (a table per message kind: type, field, decoder), the rest are skipped. pyroute2
decoded every attribute of every message, which made ``status`` cost about 10 ms per peer.
Lengths are checked before anything is sliced; a message that does not parse raises rtnl.DecodeError naming
the message kind, the attribute and the sizes.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from netns.kernel import rtnl

IFLA_QDISC, IFLA_OPERSTATE = 6, 16  # IFLA_IFNAME is rtnl's
RTA_OIF, RTA_TABLE = 4, 15  # RTA_DST and RTA_GATEWAY are rtnl's
RT_TABLE_MAIN = rtnl.RT_TABLE_MAIN
# RFC 2863 operational states, as linux/if.h numbers them (IF_OPER_*) and ``ip link`` names them
OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")

_ATTR = struct.Struct("=HH")  # rtattr: length, type


@dataclass(frozen=True, slots=True)
class Link:
    index: int
    name: str
    flags: int  # IFF_*
    operstate: str  # OPERSTATES, or the number if this kernel has a newer one
    qdisc: str | None  # the kind of the root qdisc ("noqueue" when there is none)


@dataclass(frozen=True, slots=True)
class Address:
    index: int
    address: str
    prefixlen: int


@dataclass(frozen=True, slots=True)
class Route:
    dst: str | None  # None for a default route
    dst_len: int
    gateway: str | None
    oif: int | None
    table: int


def _string(where: str, data: bytes) -> str:
    return data.split(b"\0", 1)[0].decode(errors="replace")


def _fixed(size: int, fmt: str) -> Callable[[str, bytes], Any]:
    def decode(where: str, data: bytes) -> Any:
        if len(data) < size:
            raise rtnl.DecodeError(f"{where}: {len(data)} bytes, expected {size}")
        return struct.unpack_from(fmt, data)[0]

    return decode


def _ipv4(where: str, data: bytes) -> str:
    if len(data) != 4:
        raise rtnl.DecodeError(f"{where}: {len(data)} bytes, expected 4 (an IPv4 address)")
    return str(ipaddress.IPv4Address(data))


_u8, _u32 = _fixed(1, "=B"), _fixed(4, "=I")

# One row per attribute decoded: type -> (name in messages and errors, field, decoder)
Table = dict[int, tuple[str, str, Callable[[str, bytes], Any]]]
LINK_ATTRIBUTES: Table = {
    rtnl.IFLA_IFNAME: ("IFLA_IFNAME", "name", _string),
    IFLA_QDISC: ("IFLA_QDISC", "qdisc", _string),
    IFLA_OPERSTATE: ("IFLA_OPERSTATE", "operstate", _u8),
}
ADDRESS_ATTRIBUTES: Table = {rtnl.IFA_ADDRESS: ("IFA_ADDRESS", "address", _ipv4)}
ROUTE_ATTRIBUTES: Table = {
    rtnl.RTA_DST: ("RTA_DST", "dst", _ipv4),
    RTA_OIF: ("RTA_OIF", "oif", _u32),
    rtnl.RTA_GATEWAY: ("RTA_GATEWAY", "gateway", _ipv4),
    RTA_TABLE: ("RTA_TABLE", "table", _u32),
}


def attributes(message: str, payload: bytes, offset: int, table: Table) -> dict[str, Any]:
    """The attributes of ``table`` found in ``payload`` from ``offset`` on, decoded, by field name."""
    found: dict[str, Any] = {}
    while offset < len(payload):
        left = len(payload) - offset
        if left < _ATTR.size:
            raise rtnl.DecodeError(f"{message}: attribute at offset {offset}: {left} bytes left, a header is 4")
        length, kind = _ATTR.unpack_from(payload, offset)
        if length < _ATTR.size or length > left:
            raise rtnl.DecodeError(
                f"{message}: attribute {kind} at offset {offset}: length {length} does not fit the {left} bytes left"
            )
        row = table.get(kind & 0x3FFF)  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER
        if row is not None:
            name, key, decode = row
            found[key] = decode(f"{message}/{name}", payload[offset + _ATTR.size : offset + length])
        offset += (length + 3) & ~3
    return found


def _header(message: str, fixed: struct.Struct, payload: bytes) -> tuple[Any, ...]:
    if len(payload) < fixed.size:
        raise rtnl.DecodeError(f"{message}: {len(payload)} bytes, its header needs {fixed.size}")
    return fixed.unpack_from(payload)


def parse_link(payload: bytes) -> Link:
    """One RTM_NEWLINK message (ifinfomsg and attributes)."""
    _, _, index, flags, _ = _header("RTM_NEWLINK", rtnl.IFINFO, payload)
    found = attributes("RTM_NEWLINK", payload, rtnl.IFINFO.size, LINK_ATTRIBUTES)
    if "name" not in found:
        raise rtnl.DecodeError(f"RTM_NEWLINK: link {index} has no IFLA_IFNAME")
    state = found.get("operstate", 0)
    operstate = OPERSTATES[state] if state < len(OPERSTATES) else str(state)
    return Link(index, found["name"], flags, operstate, found.get("qdisc"))


def parse_address(payload: bytes) -> Address | None:
    """One RTM_NEWADDR message; None for one that is not IPv4."""
    family, prefixlen, _, _, index = _header("RTM_NEWADDR", rtnl.IFADDR, payload)
    if family != socket.AF_INET:
        return None
    found = attributes("RTM_NEWADDR", payload, rtnl.IFADDR.size, ADDRESS_ATTRIBUTES)
    if "address" not in found:
        raise rtnl.DecodeError(f"RTM_NEWADDR: address on link {index} has no IFA_ADDRESS")
    return Address(index, found["address"], prefixlen)


def parse_route(payload: bytes) -> Route | None:
    """One RTM_NEWROUTE message; None for one that is not IPv4."""
    family, dst_len, _, _, table, _, _, _, _ = _header("RTM_NEWROUTE", rtnl.RTMSG, payload)
    if family != socket.AF_INET:
        return None
    found = attributes("RTM_NEWROUTE", payload, rtnl.RTMSG.size, ROUTE_ATTRIBUTES)
    return Route(found.get("dst"), dst_len, found.get("gateway"), found.get("oif"), found.get("table", table))


def links(sock: rtnl.Socket) -> list[Link]:
    """Every link of the socket's namespace, in the kernel's order (by index)."""
    body = rtnl.IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    return [parse_link(payload) for kind, payload in sock.dump(rtnl.RTM_GETLINK, body) if kind == rtnl.RTM_NEWLINK]


def addresses(sock: rtnl.Socket) -> list[Address]:
    """Every IPv4 address of the socket's namespace, grouped by link, primary first."""
    found = []
    for kind, payload in sock.dump(rtnl.RTM_GETADDR, rtnl.IFADDR.pack(socket.AF_INET, 0, 0, 0, 0)):
        if kind == rtnl.RTM_NEWADDR and (address := parse_address(payload)) is not None:
            found.append(address)
    return found


def routes(sock: rtnl.Socket, table: int = RT_TABLE_MAIN) -> list[Route]:
    """The IPv4 routes of ``table`` in the socket's namespace (the kernel dumps every table; the rest is dropped)."""
    found = []
    for kind, payload in sock.dump(rtnl.RTM_GETROUTE, rtnl.RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)):
        if kind == rtnl.RTM_NEWROUTE and (route := parse_route(payload)) is not None and route.table == table:
            found.append(route)
    return found
