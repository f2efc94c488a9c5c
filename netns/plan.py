"""Topology -> ordered list of steps. Pure: no kernel, no root, testable on its own.

Order: namespaces (each marked right after it is created) -> links (a veth pair per two-member network;
for more members a bridge named after the network in the first member's namespace, with one veth per
other member whose hub end is a bridge port) -> sysctls -> addresses -> links up -> default routes -> NAT.

Only ``CreateNamespace`` has an inverse (``DeleteNamespace``): everything else lives inside a namespace
and goes with it. No step touches the root namespace: every veth is created with both ends placed
directly in their namespaces.
"""

from __future__ import annotations

from dataclasses import dataclass

from netns import naming
from netns import nat as natrules
from netns.model import Topology


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
    ns: str
    key: str
    value: str

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
)

ROUTER_SYSCTLS = (
    ("net.ipv4.ip_forward", "1"),
    # Asymmetric paths are normal in a lab internet; strict reverse-path filtering would drop them.
    ("net.ipv4.conf.all.rp_filter", "0"),
    ("net.ipv4.conf.default.rp_filter", "0"),
)


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

    for node in topology.nodes:
        if node.forwards:
            steps += [Sysctl(ns[node.name], key, value) for key, value in ROUTER_SYSCTLS]
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
    for node in topology.nodes:
        if node.nat is not None:
            steps.append(LoadNat(ns[node.name], natrules.describe(node.nat), natrules.ruleset(node)))
    return steps
