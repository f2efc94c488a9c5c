"""punch.peer.routes: whether an address is on one of our links, from the kernel's routing table."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from punch.peer.routes import ROUTE_TABLE, gateway_in, on_link_in, table_of

# /proc/net/route of a host on 10.0.10.0/24 (gateway 10.0.10.1) that also routes 10.9.0.0/16 through 10.0.10.254
TABLE = """Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT
eth0	00000000	010A000A	0003	0	0	0	00000000	0	0	0
eth0	000A000A	00000000	0001	0	0	0	00FFFFFF	0	0	0
eth0	0000090A	FE0A000A	0003	0	0	0	0000FFFF	0	0	0
"""


def test_an_address_on_our_lan_is_on_link_and_one_through_a_router_is_not() -> None:
    assert on_link_in(TABLE, "10.0.10.7") is True
    assert on_link_in(TABLE, "10.0.11.2") is False  # only the default route (a gateway) reaches it
    assert on_link_in(TABLE, "10.9.3.4") is False  # the most specific route has a gateway
    assert on_link_in(TABLE, "127.0.0.1") is True  # ourselves: in the local table, not this one


def test_the_most_specific_route_decides() -> None:
    host_route = "eth1	0700090A	00000000	0005	0	0	0	FFFFFFFF	0	0	0\n"
    assert on_link_in(TABLE + host_route, "10.9.0.7") is True  # a /32 on eth1 beats the /16 through a router
    assert on_link_in(TABLE + host_route, "10.9.0.8") is False


def test_unknown_where_the_table_cannot_say() -> None:
    assert on_link_in(TABLE, "fd00::1") is None  # not IPv4
    assert on_link_in(TABLE.splitlines()[0] + "\n", "10.0.10.7") is None  # no route at all
    assert on_link_in(TABLE + "garbage line\neth0 zz zz 0 0 0 0 zz\n", "10.0.10.7") is True  # bad lines skipped


def test_the_router_toward_an_address_is_the_gateway_of_its_most_specific_route() -> None:
    """The router a peer asks for a port mapping: the one its packets to the server go through."""
    assert gateway_in(TABLE, "203.0.113.1") == "10.0.10.1"  # the default route
    assert gateway_in(TABLE, "10.9.3.4") == "10.0.10.254"  # the /16 through another router
    assert gateway_in(TABLE, "10.0.10.7") is None  # on our link: no router between
    assert gateway_in(TABLE, "127.0.0.1") is None  # ourselves (a server on loopback)
    assert gateway_in(TABLE, "fd00::1") is None  # not IPv4
    assert gateway_in(TABLE.splitlines()[0] + "\n", "203.0.113.1") is None  # no route at all


def test_a_socket_of_ours_reads_our_own_table() -> None:
    """The socket lives in our namespace, so the answer is the table's: for an address of each route's network."""
    try:
        with open(ROUTE_TABLE, encoding="ascii") as routes:
            table = routes.read()
    except OSError:
        pytest.skip(f"no {ROUTE_TABLE} here (not Linux)")
    networks = [line.split()[1] for line in table.splitlines()[1:] if len(line.split()) >= 8]
    addresses = [str(ipaddress.IPv4Address(int.from_bytes(bytes.fromhex(n), "little") + 1)) for n in networks]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        ours = table_of(sock.fileno())
    assert ours is not None
    for address in [*addresses, "192.0.2.77"]:
        assert on_link_in(ours, address) == on_link_in(table, address)
