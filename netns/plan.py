"""Topology -> ordered list of steps. Pure: no kernel, no root, testable on its own.

Order: namespaces (each marked right after it is created) -> links (a veth pair per two-member network;
for more members a bridge named after the network in the first member's namespace, with one veth per
other member whose hub end is a bridge port) -> sysctls -> addresses -> links up -> default routes (and routes
to the public LAN of a router without NAT) -> NAT (iptables-restore, then nftables where the behaviour needs it).

Only ``CreateNamespace`` has an inverse (``DeleteNamespace``): everything else lives inside a namespace
and goes with it. No step touches the root namespace: every veth is created with both ends placed
directly in their namespaces.
"""

from __future__ import annotations

from dataclasses import dataclass

from netns import naming, nft
from netns import nat as natrules
from netns.model import Node, Topology


@dataclass(frozen=True, slots=True)
class CreateNamespace:
    ns: str

    def describe(self) -> str:
        return f"create namespace {self.ns}"


@dataclass(frozen=True, slots=True)
class DeleteNamespace:
    ns: str

    def describe(self) -> str:
        return f"delete namespace {self.ns}"


@dataclass(frozen=True, slots=True)
class MarkNamespace:
    """Set the ifalias of ``lo`` to the lab's marker and bring ``lo`` up."""

    ns: str
    marker: str

    def describe(self) -> str:
        return f"mark {self.ns} as {self.marker}"


@dataclass(frozen=True, slots=True)
class CreateVeth:
    ns: str
    ifname: str
    peer_ns: str
    peer_ifname: str

    def describe(self) -> str:
        return f"veth {self.ns}:{self.ifname} <-> {self.peer_ns}:{self.peer_ifname}"


@dataclass(frozen=True, slots=True)
class CreateBridge:
    ns: str
    ifname: str

    def describe(self) -> str:
        return f"bridge {self.ns}:{self.ifname}"


@dataclass(frozen=True, slots=True)
class AttachPort:
    ns: str
    port: str
    bridge: str

    def describe(self) -> str:
        return f"attach {self.ns}:{self.port} to bridge {self.bridge}"


@dataclass(frozen=True, slots=True)
class Sysctl:
    """Set ``key`` in ``ns``; an ``optional`` key that this kernel lacks (a module not loaded) is skipped."""

    ns: str
    key: str
    value: str
    optional: bool = False

    def describe(self) -> str:
        return f"sysctl {self.ns}: {self.key}={self.value}"


@dataclass(frozen=True, slots=True)
class AddAddress:
    ns: str
    ifname: str
    address: str
    prefixlen: int

    def describe(self) -> str:
        return f"address {self.ns}:{self.ifname} {self.address}/{self.prefixlen}"


@dataclass(frozen=True, slots=True)
class LinkUp:
    ns: str
    ifname: str

    def describe(self) -> str:
        return f"link up {self.ns}:{self.ifname}"


@dataclass(frozen=True, slots=True)
class AddRoute:
    ns: str
    dst: str
    gateway: str

    def describe(self) -> str:
        return f"route {self.ns}: {self.dst} via {self.gateway}"


@dataclass(frozen=True, slots=True)
class LoadNat:
    """Load ``ruleset`` with iptables-restore inside ``ns``."""

    ns: str
    kind: str
    ruleset: str

    def describe(self) -> str:
        return f"nat {self.ns}: {self.kind}"


@dataclass(frozen=True, slots=True)
class LoadNft:
    """Load ``ruleset`` with ``nft -f`` inside ``ns`` (after its iptables rules)."""

    ns: str
    ruleset: str

    def describe(self) -> str:
        return f"nftables {self.ns}: table ip {nft.TABLE}"


Step = (
    CreateNamespace
    | DeleteNamespace
    | MarkNamespace
    | CreateVeth
    | CreateBridge
    | AttachPort
    | Sysctl
    | AddAddress
    | LinkUp
    | AddRoute
    | LoadNat
    | LoadNft
)

ROUTER_SYSCTLS = (
    ("net.ipv4.ip_forward", "1"),
    # Asymmetric paths are normal in a lab internet; strict reverse-path filtering would drop them.
    ("net.ipv4.conf.all.rp_filter", "0"),
    ("net.ipv4.conf.default.rp_filter", "0"),
)


BRIDGE_NF_CALL_IPTABLES = "net.bridge.bridge-nf-call-iptables"
# The conntrack UDP timeouts ``udp-timeout`` sets (per namespace): unreplied and assured flows alike.
UDP_TIMEOUT_SYSCTLS = ("net.netfilter.nf_conntrack_udp_timeout", "net.netfilter.nf_conntrack_udp_timeout_stream")


def _router_sysctls(node: Node, hosts_bridge: bool) -> list[tuple[str, str]]:
    result = list(ROUTER_SYSCTLS)
    if node.nat is not None and node.nat.udp_timeout is not None:
        result += [(key, str(node.nat.udp_timeout)) for key in UDP_TIMEOUT_SYSCTLS]
    if node.nat is not None and node.nat.hairpinning and hosts_bridge:
        # A hairpinned packet is routed back out of the bridge it came in on; with br_netfilter the bridged
        # leg would pass the IP hooks a second time. The router's own bridges need only its routing hooks.
        # Without br_netfilter loaded the key does not exist, and nothing needs turning off (hence optional).
        result.append((BRIDGE_NF_CALL_IPTABLES, "0"))
    return result


def inverse(step: Step) -> Step | None:
    """The step that undoes ``step`` (idempotent), or None if it goes away with its namespace."""
    if isinstance(step, CreateNamespace):
        return DeleteNamespace(step.ns)
    return None


def plan(topology: Topology, lab: str) -> list[Step]:
    """The ordered steps that build ``topology`` as lab ``lab``."""
    ns = {node.name: naming.namespace(lab, node.name) for node in topology.nodes}
    steps: list[Step] = []
    for node in topology.nodes:
        steps += [CreateNamespace(ns[node.name]), MarkNamespace(ns[node.name], naming.marker(lab))]

    ups: list[Step] = []
    for index, network in enumerate(topology.networks):
        members = topology.members(network.name)
        if len(members) == 2:
            a, b = members
            steps.append(CreateVeth(ns[a], network.name, ns[b], network.name))
            continue
        hub, *others = members
        steps.append(CreateBridge(ns[hub], network.name))
        for other in others:
            port = naming.bridge_port(other, index)
            steps += [
                CreateVeth(ns[hub], port, ns[other], network.name),
                AttachPort(ns[hub], port, network.name),
            ]
            ups.append(LinkUp(ns[hub], port))

    hubs = {topology.members(n.name)[0] for n in topology.networks if len(topology.members(n.name)) > 2}
    for node in topology.nodes:
        if node.forwards:
            sysctls = _router_sysctls(node, node.name in hubs)
            steps += [Sysctl(ns[node.name], k, v, k == BRIDGE_NF_CALL_IPTABLES) for k, v in sysctls]
    for node in topology.nodes:
        for iface in node.interfaces:
            prefixlen = topology.network(iface.network).subnet.prefixlen
            steps += [AddAddress(ns[node.name], iface.network, str(a), prefixlen) for a in iface.addresses]
    for node in topology.nodes:
        steps += [LinkUp(ns[node.name], iface.network) for iface in node.interfaces]
    steps += ups
    for node in topology.nodes:
        if node.gateway is not None:
            steps.append(AddRoute(ns[node.name], "0.0.0.0/0", str(node.gateway)))
    steps += [AddRoute(ns[hop], dst, via) for hop, dst, via in _public_lan_routes(topology)]
    for node in topology.nodes:
        if node.nat is not None:
            steps.append(LoadNat(ns[node.name], natrules.describe(node.nat), natrules.ruleset(node)))
            if natrules.uses_nftables(node.nat):
                steps.append(LoadNft(ns[node.name], nft.ruleset(node)))
    return steps


def _public_lan_routes(topology: Topology) -> list[tuple[str, str, str]]:
    """``(node, subnet, via)``: a router without NAT (``type: none``) routes a public LAN, so every other
    forwarding node on its WAN network gets a route to that LAN through the router's WAN address."""
    routes = []
    for router in topology.nodes:
        if router.nat is None or router.nat.type != "none":
            continue
        wan = next(i for i in router.interfaces if i.network == router.nat.wan)
        if not wan.addresses:
            continue
        for hop in topology.members(wan.network):
            if hop == router.name or not topology.node(hop).forwards:
                continue
            for iface in router.interfaces:
                if iface.network != wan.network:
                    subnet = str(topology.network(iface.network).subnet)
                    routes.append((hop, subnet, str(wan.addresses[0])))
    return routes
