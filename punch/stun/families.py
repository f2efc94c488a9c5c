"""IPv4 and IPv6 on one socket: a dual-stack socket (AF_INET6 with ``IPV6_V6ONLY`` off, RFC 3493 §5.3) sees an IPv4
peer as an IPv4-mapped IPv6 address (``::ffff:192.0.2.1``, RFC 4291 §2.5.5.2). Everything above the socket speaks of
that peer by its IPv4 address (so XOR-MAPPED-ADDRESS tells it family 0x01, as RFC 8489 §14.2 expects, and the
registry and the rate limit key it one way whatever socket it came through); the socket boundary translates.
"""

from __future__ import annotations

import ipaddress
import socket

from punch.stun.attributes import Address

_MAPPED_PREFIX = "::ffff:"


def family_of(host: str) -> int:
    """4 or 6: the IP version of ``host`` (an IPv4-mapped IPv6 address counts as IPv6: it is written as one)."""
    return 6 if ":" in host else 4


def family_name(address: Address) -> str:
    """``ipv4`` or ``ipv6``, as ``punch peer --json`` says which family a path runs over."""
    return f"ipv{family_of(address[0])}"


def unmapped(address: Address) -> Address:
    """``address`` with an IPv4-mapped IPv6 host written as the IPv4 address it maps; any other unchanged."""
    host = address[0]
    if not host.startswith(_MAPPED_PREFIX) or "." not in host:
        return address
    return (host[len(_MAPPED_PREFIX) :], address[1])


def mapped(address: Address) -> Address:
    """``address`` as a dual-stack socket sends to it: an IPv4 host as its IPv4-mapped IPv6 address."""
    return (_MAPPED_PREFIX + address[0], address[1]) if ":" not in address[0] else address


def wildcard_for(server: Address) -> Address:
    """Where a socket that talks to ``server`` binds by default: ``::`` (IPv6, and IPv4 with it) for an IPv6 server,
    else 0.0.0.0; any port."""
    return ("::", 0) if ":" in server[0] else ("0.0.0.0", 0)


def takes_both(host: str) -> bool:
    """Whether a socket bound to ``host`` takes both families: the IPv6 wildcard ``::`` (IPv4 comes IPv4-mapped)."""
    return ":" in host and ipaddress.ip_address(host).is_unspecified


def dual_stack_socket(local: Address, reuse_port: bool = False) -> socket.socket:
    """A UDP socket bound to ``local`` (``::`` and a port) that also takes IPv4 (``IPV6_V6ONLY`` off, whatever
    net.ipv6.bindv6only says), in a SO_REUSEPORT group if asked."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(local)
    except OSError:
        sock.close()
        raise
    return sock


def takes_ipv4(sock: socket.socket) -> bool:
    """Whether ``sock`` is an IPv6 socket that also carries IPv4 (its IPv4 peers appear IPv4-mapped)."""
    return sock.family == socket.AF_INET6 and not sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
