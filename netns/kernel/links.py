"""Links, addresses and routes inside a namespace, over rtnetlink (netns/kernel/netlink.py): what builds a lab,
and what ``status``, ``down`` and ``readdress`` read back.

Between ``open_cache()`` and ``close_cache()`` a thread keeps one rtnetlink socket per namespace (and the interface
indices it looked up); otherwise each call opens and closes its own. netns/kernel/netlink.py, and with it pyroute2,
is imported on the first call that needs it (``_netlink``).
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Any

from netns.errors import KernelError
from netns.kernel.boundary import POLL_INTERVAL, translated
from netns.kernel.namespaces import NETNS_DIR, entered

if TYPE_CHECKING:
    from netns.kernel.netlink import Socket

log = logging.getLogger(__name__)

_local = threading.local()  # per thread: the namespace handles of ``open_cache()``


def open_cache() -> None:
    """From now on this thread keeps one rtnetlink socket per namespace it touches (and the indices it looked up)."""
    _local.handles = {}
    _local.indices = {}


def close_cache() -> None:
    """Close the sockets ``open_cache`` kept in this thread; from now on each call opens its own again."""
    handles, _local.handles = getattr(_local, "handles", None) or {}, None
    for sock in handles.values():
        sock.close()


def _netlink() -> ModuleType:
    """netns/kernel/netlink.py, imported on first use: importing pyroute2 costs a process about 0.1 s."""
    from netns.kernel import netlink

    return netlink


@contextmanager
def rtnetlink(ns: str) -> Iterator[Socket]:
    """An rtnetlink socket of ``ns``: this thread's cached one after ``open_cache()``, else one for the block."""
    handles = getattr(_local, "handles", None)
    if handles is not None and ns in handles:
        yield handles[ns]
        return
    with entered(ns), translated(f"open namespace {ns}"):
        sock = _netlink().Socket()
    if handles is not None:
        handles[ns] = sock
        yield sock
        return
    try:
        yield sock
    finally:
        sock.close()


def _index_of(sock: Socket, ns: str, ifname: str) -> int:
    """The index of ``ns:ifname`` (``sock`` is a socket of ``ns``), kept from ``open_cache()`` to ``close_cache()``."""
    indices = getattr(_local, "indices", None) if getattr(_local, "handles", None) is not None else None
    if indices is not None and (ns, ifname) in indices:
        return int(indices[ns, ifname])
    try:
        index = sock.index(ifname)
    except OSError as exc:
        if exc.errno != errno.ENODEV:
            raise
        raise KernelError(f"no interface {ifname} in namespace {ns}") from None
    if indices is not None:
        indices[ns, ifname] = index
    return index


def read_marker(ns: str) -> str | None:
    """The ifalias of ``lo`` in ``ns`` (the lab's ownership marker), or None if unreadable."""
    try:
        with rtnetlink(ns) as sock, translated(f"read marker of {ns}"):
            return sock.alias("lo")
    except KernelError as exc:
        log.debug("cannot read marker of %s: %s", ns, exc)
        return None


def mark_namespace(ns: str, marker: str) -> None:
    with rtnetlink(ns) as sock, translated(f"mark namespace {ns}"):
        sock.set_link(_index_of(sock, ns, "lo"), up=True, alias=marker)


def create_veth(ns: str, ifname: str, peer_ns: str, peer_ifname: str) -> None:
    """A veth pair created in ``ns`` with its peer placed directly into ``peer_ns`` (never in root)."""
    with rtnetlink(ns) as sock, translated(f"create veth {ns}:{ifname} <-> {peer_ns}:{peer_ifname}"):
        peer = os.open(os.path.join(NETNS_DIR, peer_ns), os.O_RDONLY | os.O_CLOEXEC)
        try:
            sock.add_veth(ifname, peer_ifname, peer)
        finally:
            os.close(peer)


def create_bridge(ns: str, ifname: str) -> None:
    with rtnetlink(ns) as sock, translated(f"create bridge {ns}:{ifname}"):
        sock.add_bridge(ifname)


def attach_port(ns: str, port: str, bridge: str) -> None:
    with rtnetlink(ns) as sock, translated(f"attach {ns}:{port} to {bridge}"):
        sock.set_link(_index_of(sock, ns, port), master=_index_of(sock, ns, bridge))


@contextmanager
def interface(ns: str, ifname: str, what: str) -> Iterator[tuple[Socket, int]]:
    """The socket of ``ns`` and the index of ``ifname`` there, for the block doing ``what`` (errors name it)."""
    with rtnetlink(ns) as sock, translated(what):
        yield sock, _index_of(sock, ns, ifname)


def add_address(ns: str, ifname: str, address: str, prefixlen: int) -> None:
    with interface(ns, ifname, f"add {address}/{prefixlen} to {ns}:{ifname}") as (sock, index):
        sock.add_address(index, address, prefixlen)


def addresses(ns: str, ifname: str) -> list[tuple[str, int]]:
    """The IPv4 addresses of ``ns:ifname`` as (address, prefix length), primary first."""
    with interface(ns, ifname, f"read the addresses of {ns}:{ifname}") as (sock, index):
        return [(a.address, a.prefixlen) for a in sock.addresses() if a.index == index]


def delete_address(ns: str, ifname: str, address: str, prefixlen: int) -> None:
    with interface(ns, ifname, f"delete {address}/{prefixlen} from {ns}:{ifname}") as (sock, index):
        sock.delete_address(index, address, prefixlen)


def gateway_routes(ns: str, ifname: str) -> list[tuple[str, str]]:
    """Main-table routes through a gateway on ``ns:ifname``, as (destination CIDR, gateway)."""
    with interface(ns, ifname, f"read the routes of {ns}") as (sock, index):
        return [(f"{r.dst or '0.0.0.0'}/{r.dst_len}", r.gateway) for r in sock.routes() if r.gateway and r.oif == index]


def replace_route(ns: str, dst: str, gateway: str) -> None:
    """Add the route, or replace the one to ``dst`` there is."""
    with rtnetlink(ns) as sock, translated(f"replace route {dst} via {gateway} in {ns}"):
        sock.add_route(dst, gateway, replace=True)


def link_up(ns: str, ifname: str) -> None:
    """Set ``ns:ifname`` up: the kernel acknowledges the request once the flag is set (nothing to poll)."""
    with interface(ns, ifname, f"bring up {ns}:{ifname}") as (sock, index):
        sock.set_link(index, up=True)


def add_route(ns: str, dst: str, gateway: str, timeout: float = 5.0) -> None:
    """Add a route; while the gateway's network is not yet usable (ENETUNREACH), poll until it is."""
    deadline = time.monotonic() + timeout
    with rtnetlink(ns) as sock, translated(f"add route {dst} via {gateway} in {ns}"):
        while True:
            try:
                sock.add_route(dst, gateway)
                return
            except OSError as exc:
                if exc.errno != errno.ENETUNREACH or time.monotonic() >= deadline:
                    raise
            time.sleep(POLL_INTERVAL)


def describe(ns: str, ipv6: bool = False) -> dict[str, Any]:
    """Interfaces (name, state, addresses) and main-table routes of ``ns`` (with ``ipv6`` the IPv6 ones too), for
    ``status``: three rtnetlink dumps."""
    with rtnetlink(ns) as sock, translated(f"read namespace {ns}"):
        links = sock.links()
        addresses = sock.addresses(ipv6)
        routes = sock.routes(ipv6=ipv6)
    names = {link.index: link.name for link in links}
    by_link: dict[int, list[str]] = {}
    for address in addresses:
        by_link.setdefault(address.index, []).append(f"{address.address}/{address.prefixlen}")
    return {
        "interfaces": [
            {"name": link.name, "state": link.operstate, "addresses": by_link.get(link.index, [])} for link in links
        ],
        "routes": [
            {
                "dst": f"{route.dst}/{route.dst_len}" if route.dst else "default",
                "via": route.gateway,
                "dev": names.get(route.oif or 0),
            }
            for route in routes
        ],
    }
