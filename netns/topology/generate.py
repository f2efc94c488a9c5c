"""Generated topologies: N NAT'd peers on one internet with a server (``python -m netns up --peers N``).

``peers(n)`` writes the same YAML data a user would (version 1, checked by netns/topology/model.py), so a generated lab
is an ordinary lab: ``validate``, ``--nat``, ``--firewall`` and ``down`` treat it like any file. Shape::

    server  (inet 10.0.0.1, 10.0.0.2: a second address for RFC 5780 NAT behaviour discovery)
      |  inet: one bridge in the server's namespace, every router on it (past 1,023 routers, on its branches)
    nat1 .. natN   (inet 10.0.0.0 + 256 + i; NAT home/masquerade by default, WAN inet)
      |  lanI: the /24 at 10.0.0.0 + (256 + i) * 256 (10.1.0.0/24 on), a veth pair
    peer1 .. peerN (lanI .2, default route via the router's .1)

The internet is 10.0.0.0/16: the hand-written topologies put their internet in the TEST-NETs (192.0.2.0/24,
198.51.100.0/24, 203.0.113.0/24), but those three hold only 759 routers together, while one segment of 1,000
routers needs a /22. Private space keeps the lab off every address that belongs to someone else; it exists only
inside the lab's namespaces, and the LANs take the /24s of 10.0.0.0/8 above it. Every router is one hop from
the server and from every other router; a peer's TTL-2 probe therefore reaches the other peer's router, where
the home firewall drops it before conntrack sees it (a bare MASQUERADE router would keep a conntrack entry: use a
hand-written topology with a core for that race).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from netns.errors import TopologyError
from netns.topology import model

INTERNET = ipaddress.IPv4Network("10.0.0.0/16")
SERVER = INTERNET.network_address + 1
ALTERNATE = INTERNET.network_address + 2
FIRST_ROUTER = 256  # routers from 10.0.1.1 on: the server's /24 stays apart
# ARP entries each peer adds to the kernel's one table for all namespaces (gc_thresh3, 1,024 by default): its
# LAN both ways, its router and the server both ways, and its router and the router of the peer it talks to.
NEIGHBOURS_PER_PEER = 5
MAX_PEERS = 65_000  # routers fit in the /16; the LANs 10.1.1.0/24 .. 10.254.232.0/24 in 10.0.0.0/8


def router_address(i: int) -> ipaddress.IPv4Address:
    """Router ``nat{i}``'s address on the internet (peer numbers start at 1)."""
    return INTERNET.network_address + FIRST_ROUTER + i


def lan(i: int) -> ipaddress.IPv4Network:
    """Peer ``i``'s LAN, ``10.(1 + i // 256).(i % 256).0/24``: above the internet's 10.0.0.0/16."""
    return ipaddress.IPv4Network((int(INTERNET.network_address) + ((256 + i) << 8), 24))


def peers(n: int, firewall: str = "home") -> dict[str, Any]:
    """The topology data (as parsed YAML) of ``n`` peers, each behind its own NAT router, and a server."""
    if not 1 <= n <= MAX_PEERS:
        raise TopologyError([f"--peers {n}: give 1 to {MAX_PEERS} peers"])
    networks: dict[str, Any] = {"inet": {"subnet": str(INTERNET)}}
    nodes: dict[str, Any] = {"server": {"kind": "server", "interfaces": {"inet": [str(SERVER), str(ALTERNATE)]}}}
    for i in range(1, n + 1):
        subnet = lan(i)
        networks[f"lan{i}"] = {"subnet": str(subnet)}
        nodes[f"nat{i}"] = {
            "kind": "router",
            "interfaces": {"inet": str(router_address(i)), f"lan{i}": str(subnet.network_address + 1)},
            "nat": {"type": "masquerade", "wan": "inet", "firewall": firewall},
        }
    for i in range(1, n + 1):
        subnet = lan(i)
        nodes[f"peer{i}"] = {
            "kind": "peer",
            "interfaces": {f"lan{i}": str(subnet.network_address + 2)},
            "gateway": str(subnet.network_address + 1),
        }
    return {"version": model.VERSION, "networks": networks, "nodes": nodes}


def topology(n: int, firewall: str = "home") -> model.Topology:
    """``peers(n)`` checked by the strict model, as ``up --peers N`` builds it."""
    return model.parse(peers(n, firewall), f"<--peers {n}>")
