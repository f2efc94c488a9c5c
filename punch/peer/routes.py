"""Whether an address is on one of our own links: the kernel's IPv4 routing table reaches it without a gateway; and
else which router it goes through (the router we ask for a port mapping, punch.peer.portmapping).

Behind one NAT the other peer's LAN candidates tell whether a LAN path is likely: one on a network we are attached to
(the same home or office LAN) usually answers sooner than the NAT's hairpin, and is worth a short wait
(punch.peer.puncher.lan_wait); one we could reach only through a router (two homes behind one carrier NAT, whose
LANs are private to each home) usually leads nowhere.

Linux only (``/proc/self/net/route``, the table of the calling thread's network namespace); anywhere else, for IPv6,
or for a socket that lives in another namespace than ours (bench/peer_host.py makes such sockets) the answer is None:
unknown.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os

ROUTE_TABLE = "/proc/self/net/route"
SIOCGSKNS = 0x894C  # linux/sockios.h: a file descriptor of the socket's network namespace


def _route_to(table: str, address: str) -> tuple[int, int] | None:
    """The most specific route of ``table`` (the text of ``/proc/net/route``) to the IPv4 ``address``: its prefix
    length and gateway (0: on link); None for an address that is not IPv4 or a table without a route to it."""
    try:
        target = int(ipaddress.IPv4Address(address))
    except ValueError:
        return None
    best: tuple[int, int] | None = None  # (prefix length, gateway) of the most specific route so far
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        try:
            # Destination, gateway and mask are 32-bit words in the kernel's byte order (little-endian here).
            destination, gateway, mask = (int.from_bytes(bytes.fromhex(f), "little") for f in fields[1:3] + fields[7:8])
        except ValueError:
            continue
        if target & mask != destination:
            continue
        prefix = mask.bit_count()
        if best is None or prefix > best[0]:
            best = (prefix, gateway)
    return best


def on_link_in(table: str, address: str) -> bool | None:
    """Whether ``table`` (the text of ``/proc/net/route``) reaches the IPv4 ``address`` without a gateway, by its
    most specific route (a loopback address is on link); None for an address that is not IPv4 or a table without a
    route to it."""
    if _is_loopback(address):
        return True  # our own host (the kernel's local table, which /proc/net/route leaves out)
    route = _route_to(table, address)
    return None if route is None else route[1] == 0


def gateway_in(table: str, address: str) -> str | None:
    """The router ``table`` sends IPv4 packets for ``address`` to (the gateway of its most specific route); None
    where there is none: the address is on link, our own (loopback), not IPv4, or has no route."""
    if _is_loopback(address):
        return None
    route = _route_to(table, address)
    if route is None or route[1] == 0:
        return None
    return str(ipaddress.IPv4Address(route[1]))


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.IPv4Address(address).is_loopback
    except ValueError:
        return False


def same_namespace(fd: int) -> bool | None:
    """Whether the socket ``fd`` lives in our own network namespace (None where the kernel cannot tell)."""
    try:
        theirs = fcntl.ioctl(fd, SIOCGSKNS)
    except OSError:
        return None
    try:
        return os.fstat(theirs).st_ino == os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return None
    finally:
        os.close(theirs)


def table_of(fd: int) -> str | None:
    """The routing table (the text of ``/proc/net/route``, for :func:`on_link_in`) of the socket ``fd``'s network
    namespace, read once for all the addresses asked about; None where it is unknown (module docstring)."""
    if not same_namespace(fd):
        return None
    try:
        with open(ROUTE_TABLE, encoding="ascii") as routes:
            return routes.read()
    except OSError:
        return None
