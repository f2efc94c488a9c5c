"""``readdress``: a node's address on one of its networks changes while the lab runs, as when an ISP hands a home
router a new public address (a DHCP lease that ends, a PPPoE reconnect).

In the node's namespace: the old address goes and the new one comes (same prefix length), and the routes through a
gateway on that network, which the kernel drops with the old address, are put back. On a router whose WAN it is,
the NAT follows: MASQUERADE takes the interface's address per new flow by itself; an nftables NAT (netns/rules/nft.py)
names the address in its rules, so its table is rebuilt (its mappings start empty). Then the router's conntrack
table is flushed: every mapping made with the old address is gone, as it would be after a real renumbering.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from netns import naming
from netns.errors import LabError
from netns.kernel import links, processes
from netns.lab import ownership
from netns.lab.state import read_state
from netns.rules import nat as natrules
from netns.rules import nft
from netns.topology.behaviour import Nat
from netns.topology.model import Interface, Node


@dataclass(slots=True)
class Report:
    node: str
    network: str
    old: str  # ADDRESS/PREFIXLEN
    new: str
    routes: list[tuple[str, str]] = field(default_factory=list)  # (destination, gateway) put back
    nat: str | None = None  # how the NAT followed, if the network is a router's WAN

    def summary(self) -> str:
        routes = ", ".join(f"{'default' if d == '0.0.0.0/0' else d} via {g}" for d, g in self.routes) or "none"
        line = f"{self.node}: {self.network} {self.old} -> {self.new}; routes put back: {routes}"
        return line + (f"; NAT: {self.nat}" if self.nat else "")


def check_new_address(network: str, old: str, prefixlen: int, new: str, used: dict[str, str]) -> str:
    """``new`` as a checked address on ``network`` (where ``old``/``prefixlen`` is the node's address now and
    ``used`` maps the other members' addresses to their nodes); a LabError naming the problem and the fix."""
    try:
        address = ipaddress.IPv4Address(new)
    except ValueError:
        raise LabError(f"readdress: {new!r} is not an IPv4 address; write it like 192.0.2.15") from None
    subnet = ipaddress.IPv4Network(f"{old}/{prefixlen}", strict=False)
    if address not in subnet or address in (subnet.network_address, subnet.broadcast_address):
        raise LabError(f"readdress: {address} is not a host address of {network}'s subnet {subnet}; give one in it")
    if str(address) == old:
        raise LabError(f"readdress: {network} already has {address}; give another address")
    if str(address) in used:
        raise LabError(f"readdress: {address} is already used on {network} by {used[str(address)]}; give another")
    return str(address)


def readdress(lab: str, node: str, network: str, new: str) -> Report:
    """Give ``node`` of running lab ``lab`` the address ``new`` on ``network`` instead of its first one there."""
    ownership.require_root("readdress")
    ns = ownership.node_namespace(lab, node)
    state = read_state(lab) or {}
    members = state.get("networks", {}).get(network, {}).get("members")
    if members is None or node not in members:
        raise LabError(f"readdress: {node} is not on a network {network!r} in lab {lab!r}")
    current = links.addresses(ns, network)
    if not current:
        raise LabError(f"readdress: {node} has no address on {network}")
    old, prefixlen = current[0]
    used = {a: m for m in members if m != node for a, _ in links.addresses(naming.namespace(lab, m), network)}
    address = check_new_address(network, old, prefixlen, new, used)
    report = Report(node, network, f"{old}/{prefixlen}", f"{address}/{prefixlen}", links.gateway_routes(ns, network))
    links.delete_address(ns, network, old, prefixlen)
    links.add_address(ns, network, address, prefixlen)
    for destination, gateway in report.routes:
        links.replace_route(ns, destination, gateway)
    config = state["nodes"].get(node, {}).get("nat_config")
    if config is not None and config["wan"] == network:
        report.nat = _follow(ns, node, config, address)
    return report


def _follow(ns: str, node: str, config: dict[str, Any], address: str) -> str:
    """Make the router's NAT translate to ``address`` from now on, and forget every mapping it had."""
    nat = Nat(**{k: v for k, v in config.items() if k != "lans"})
    how = natrules.mechanism(nat)
    if natrules.uses_nftables(nat):
        wan = Interface(nat.wan, (ipaddress.IPv4Address(address),))
        interfaces = (wan, *(Interface(lan, ()) for lan in config["lans"]))
        ruleset = nft.ruleset(Node(node, "router", interfaces, nat=nat))
        processes.load_nftables(ns, f"delete table ip {nft.TABLE}\n{ruleset}")  # one transaction: never without rules
        how += " rules rebuilt for the new address"
    elif how != "routing":
        how += " follows the interface's address"
    processes.run_in(ns, ["conntrack", "-F"])
    return how + "; conntrack flushed"
