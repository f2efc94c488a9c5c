"""Topology -> ordered list of steps. Pure: no kernel, no root, testable on its own.

Order: namespaces (each marked right after it is created; then those of container nodes, each a container
started with no network of Docker's whose namespace is named after it, see netns/kernel/containers.py) -> links (a
veth pair per two-member network; for more members a bridge named after the network in the first member's
namespace, with one veth per other member whose hub end is a bridge port; more members than a bridge has ports
hang from branch bridges there, see ``_bridged``) -> sysctls -> addresses -> links up
-> default routes (and routes to the public LAN of a router without NAT, and to the IPv6 prefix a router routes or
translates to) -> NAT (iptables-restore, ip6tables-restore where the router has IPv6, then nftables where the
behaviour needs it; then miniupnpd where the router maps ports) -> impairments (netns/rules/impair.py): per node,
its delaying daemons (bound before any rule sends them packets), then root qdiscs (netem, or tbf for rate), then the
raw-table NFQUEUE rules and the nftables loss/dup table.

The links and routes inside container nodes come last (``_containers_last``).

Only ``CreateNamespace``, ``StartContainer`` and ``StartPortmap`` have inverses (``DeleteNamespace``,
``RemoveContainer``, ``StopPortmap``): everything else lives inside a namespace and goes with it (a process does
not: it would keep its namespace alive). No step touches the root namespace: every veth is created with both ends
placed directly in their namespaces.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from netns import naming
from netns.rules import impair, nft, portmap
from netns.rules import nat as natrules
from netns.topology import behaviour
from netns.topology.model import Node, Topology


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
class StartContainer:
    """Start ``image`` as node ``node``'s container of lab ``lab`` with ``--network none`` and name its network
    namespace ``ns`` (from its PID, as ``ip netns attach`` does). ``command`` None keeps the image's own."""

    ns: str
    lab: str
    node: str
    image: str
    command: tuple[str, ...] | None = None
    env: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        return f"container {self.ns} ({self.image}) as namespace {self.ns}"


@dataclass(frozen=True, slots=True)
class RemoveContainer:
    """Force-remove node ``node``'s container of lab ``lab`` (found by its labels), then delete namespace ``ns``."""

    ns: str
    lab: str
    node: str

    def describe(self) -> str:
        return f"remove container and namespace {self.ns}"


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
    """Load ``ruleset`` with iptables-restore inside ``ns`` (and ``ruleset6``, if any, with ip6tables-restore)."""

    ns: str
    kind: str
    ruleset: str
    ruleset6: str = ""

    def describe(self) -> str:
        return f"nat {self.ns}: {self.kind}"


@dataclass(frozen=True, slots=True)
class LoadNft:
    """Load ``ruleset`` with ``nft -f`` inside ``ns`` (after its iptables rules)."""

    ns: str
    ruleset: str

    def describe(self) -> str:
        return f"nftables {self.ns}: table ip {nft.TABLE}"


@dataclass(frozen=True, slots=True)
class StartPortmap:
    """Start miniupnpd in router ``ns`` with ``conf`` (written to ``conf_path``), its log in ``log``."""

    ns: str
    conf: str
    conf_path: str
    log: str

    def describe(self) -> str:
        return f"miniupnpd {self.ns} (UPnP IGD, NAT-PMP, PCP)"


@dataclass(frozen=True, slots=True)
class StopPortmap:
    """Stop miniupnpd in ``ns``; none there is success."""

    ns: str

    def describe(self) -> str:
        return f"stop miniupnpd {self.ns}"


@dataclass(frozen=True, slots=True)
class StartDelayd:
    """Start the NFQUEUE delaying daemon ``argv`` in ``ns`` (log ``log``) and wait until it has bound ``queue``."""

    ns: str
    ifname: str
    queue: int
    argv: tuple[str, ...]
    log: str

    def describe(self) -> str:
        return f"delay daemon {self.ns}:{self.ifname} on queue {self.queue}"


@dataclass(frozen=True, slots=True)
class StopDelayd:
    """Stop the delaying daemon of ``queue`` in ``ns`` (it accepts the packets it holds); gone is success."""

    ns: str
    queue: int

    def describe(self) -> str:
        return f"stop delay daemon {self.ns} queue {self.queue}"


@dataclass(frozen=True, slots=True)
class SetQdisc:
    """Replace the root qdisc of ``ns:ifname`` with ``kind`` (pyroute2 tc ``params``); kind None deletes it."""

    ns: str
    ifname: str
    kind: str | None
    params: tuple[tuple[str, object], ...] = ()

    def describe(self) -> str:
        what = f"{self.kind} " + " ".join(f"{k}={v}" for k, v in self.params) if self.kind else "default"
        return f"qdisc {self.ns}:{self.ifname}: {what}"


@dataclass(frozen=True, slots=True)
class LoadImpair:
    """Replace the raw table (NFQUEUE rules) and nftables table ``ip netns_impair`` (loss, dup) in ``ns``."""

    ns: str
    iptables: str
    nftables: str

    def describe(self) -> str:
        return f"impairment rules {self.ns}"


Step = (
    CreateNamespace
    | DeleteNamespace
    | StartContainer
    | RemoveContainer
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
    | StartPortmap
    | StopPortmap
    | StartDelayd
    | StopDelayd
    | SetQdisc
    | LoadImpair
)

ROUTER_SYSCTLS = (
    ("net.ipv4.ip_forward", "1"),
    # Asymmetric paths are normal in a lab internet; strict reverse-path filtering would drop them.
    ("net.ipv4.conf.all.rp_filter", "0"),
    ("net.ipv4.conf.default.rp_filter", "0"),
)


# The ports one bridge holds: the kernel numbers a bridge's ports 1-1023 (BR_MAX_PORTS, 1 << 10, less port 0).
BRIDGE_PORTS = 1023
BRIDGE_NF_CALL_IPTABLES = "net.bridge.bridge-nf-call-iptables"
# The lab is IPv4 only. With IPv6 on, every link that comes up would get a link-local address and send duplicate
# address detection, router solicitations and MLD reports, which a bridge floods to all its ports: with 1,000
# routers on the internet bridge, that kept this 2-core machine 25-39% busy for seconds after `up`. Set before the
# namespace has links, so "all" also sets "default", which the links then inherit; optional (a kernel without IPv6).
IPV6_OFF = "net.ipv6.conf.all.disable_ipv6"
# A node with an IPv6 address keeps IPv6 on, quietly: no duplicate address detection (an address is usable at
# once, not tentative for a second or more), no router solicitations (the lab's routes are static).
IPV6_ON = (
    ("net.ipv6.conf.all.accept_dad", "0"),
    ("net.ipv6.conf.default.accept_dad", "0"),
    ("net.ipv6.conf.default.router_solicitations", "0"),
    ("net.ipv6.conf.default.accept_ra", "0"),
)
IPV6_FORWARDING = ("net.ipv6.conf.all.forwarding", "1")
# The conntrack UDP timeouts ``udp-timeout`` sets (per namespace): unreplied and assured flows alike.
UDP_TIMEOUT_SYSCTLS = ("net.netfilter.nf_conntrack_udp_timeout", "net.netfilter.nf_conntrack_udp_timeout_stream")


def _router_sysctls(node: Node, hosts_bridge: bool) -> list[tuple[str, str]]:
    result = list(ROUTER_SYSCTLS)
    if node.uses_ipv6:
        result.append(IPV6_FORWARDING)
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
    if isinstance(step, StartContainer):
        return RemoveContainer(step.ns, step.lab, step.node)
    if isinstance(step, StartPortmap):
        return StopPortmap(step.ns)
    return None


def plan(
    topology: Topology, lab: str, netem: bool = False, python: str = "python3", bridge_ports: int = BRIDGE_PORTS
) -> list[Step]:
    """The ordered steps that build ``topology`` as lab ``lab`` (impairments with netem if ``netem``, else
    with the fallback mechanisms; ``python`` runs the delaying daemon; ``bridge_ports``: see ``_bridged``)."""
    ns = {node.name: naming.namespace(lab, node.name) for node in topology.nodes}
    steps: list[Step] = []
    for node in topology.nodes:
        if node.container is None:
            steps += [CreateNamespace(ns[node.name]), MarkNamespace(ns[node.name], naming.marker(lab))]
            if node.uses_ipv6:
                steps += [Sysctl(ns[node.name], key, value) for key, value in IPV6_ON]
            else:
                steps.append(Sysctl(ns[node.name], IPV6_OFF, "1", optional=True))
    for node in topology.nodes:  # after the plain ones: a failure there starts no container at all
        if (c := node.container) is not None:
            start = StartContainer(ns[node.name], lab, node.name, c.image, c.command, c.env)
            steps += [start, MarkNamespace(ns[node.name], naming.marker(lab))]

    ups: list[Step] = []
    for index, network in enumerate(topology.networks):
        members = topology.members(network.name)
        if len(members) == 2:
            a, b = members
            steps.append(CreateVeth(ns[a], network.name, ns[b], network.name))
            continue
        hub, *others = members
        bridged, hub_ups = _bridged(ns, network.name, index, hub, others, bridge_ports)
        steps += bridged
        ups += hub_ups

    hubs = {topology.members(n.name)[0] for n in topology.networks if len(topology.members(n.name)) > 2}
    impaired_hubs = {
        topology.members(n.name)[0] for n in topology.networks if n.impair and len(topology.members(n.name)) > 2
    }
    for node in topology.nodes:
        if node.name in impaired_hubs and not node.forwards:
            steps.append(Sysctl(ns[node.name], BRIDGE_NF_CALL_IPTABLES, "0", True))
        if node.forwards:
            sysctls = _router_sysctls(node, node.name in hubs)
            if node.name in impaired_hubs and BRIDGE_NF_CALL_IPTABLES not in dict(sysctls):
                sysctls.append((BRIDGE_NF_CALL_IPTABLES, "0"))
            steps += [Sysctl(ns[node.name], k, v, k == BRIDGE_NF_CALL_IPTABLES) for k, v in sysctls]
    for node in topology.nodes:
        for iface in node.interfaces:
            network = topology.network(iface.network)
            prefixlen = network.subnet.prefixlen
            steps += [AddAddress(ns[node.name], iface.network, str(a), prefixlen) for a in iface.addresses]
            if network.subnet6 is not None:
                prefixlen6 = network.subnet6.prefixlen
                steps += [AddAddress(ns[node.name], iface.network, str(a), prefixlen6) for a in iface.addresses6]
    for node in topology.nodes:
        steps += [LinkUp(ns[node.name], iface.network) for iface in node.interfaces]
    steps += ups
    for node in topology.nodes:
        if node.gateway is not None:
            steps.append(AddRoute(ns[node.name], "0.0.0.0/0", str(node.gateway)))
        if node.gateway6 is not None:
            steps.append(AddRoute(ns[node.name], "::/0", str(node.gateway6)))
    steps += [AddRoute(ns[hop], dst, via) for hop, dst, via in _public_lan_routes(topology)]
    steps += [AddRoute(ns[hop], dst, via) for hop, dst, via in _prefix_routes6(topology)]
    for node in topology.nodes:
        if node.nat is not None:
            ruleset6 = natrules.ruleset6(node, lan_prefixes6(topology, node)) or ""
            steps.append(LoadNat(ns[node.name], natrules.describe(node.nat), natrules.ruleset(node), ruleset6))
            if natrules.uses_nftables(node.nat):
                steps.append(LoadNft(ns[node.name], nft.ruleset(node)))
            if node.nat.port_mapping:
                steps.append(_start_portmap(node, ns[node.name], lab))
    links = impair_links(topology, lab)
    for node in topology.nodes:
        mine = [link for link in links if link.node == node.name]
        steps += impair_steps(mine, [], netem, lab, python)
    return _containers_last(topology, steps, lab)


def _bridged(
    ns: dict[str, str], network: str, index: int, hub: str, others: list[str], ports: int
) -> tuple[list[Step], list[Step]]:
    """The steps that join nodes ``others`` to the bridge ``network`` in node ``hub``'s namespace (``ns`` maps
    nodes to namespaces; the network is the ``index``-th), and the link-ups of the hub's ends, which come after
    the members' own.

    A bridge holds at most ``ports`` ports: the kernel numbers them 1-1023 (BR_MAX_PORTS in
    net/bridge/br_private.h; the 1,024th attach fails with "Exchange full"). With more members, they are dealt
    evenly to branch bridges in the hub's namespace (``naming.branch_bridge``), each joined to the network's own
    bridge by a veth pair: still one Ethernet segment (one broadcast domain, the same addresses), a packet between
    members crossing at most three bridges. Members keep their port names, so impairments and captures, which
    work on the members' own interfaces, do not see the difference."""
    steps: list[Step] = [CreateBridge(ns[hub], network)]
    ups: list[Step] = []
    branches = 0 if len(others) <= ports else -(-len(others) // (ports - 1))  # a branch's last port is its uplink
    for branch in range(1, branches + 1):
        bridge = naming.branch_bridge(index, branch)
        uplink, downlink = naming.branch_uplink(index, branch)
        steps += [
            CreateBridge(ns[hub], bridge),
            CreateVeth(ns[hub], uplink, ns[hub], downlink),
            AttachPort(ns[hub], uplink, network),
            AttachPort(ns[hub], downlink, bridge),
        ]
        ups += [LinkUp(ns[hub], bridge), LinkUp(ns[hub], uplink), LinkUp(ns[hub], downlink)]
    for position, other in enumerate(others):
        bridge = naming.branch_bridge(index, position * branches // len(others) + 1) if branches else network
        port = naming.bridge_port(other, index)
        steps += [CreateVeth(ns[hub], port, ns[other], network), AttachPort(ns[hub], port, bridge)]
        ups.append(LinkUp(ns[hub], port))
    return steps, ups


def _containers_last(topology: Topology, steps: list[Step], lab: str) -> list[Step]:
    """``steps`` with every link-up and route inside a container node's namespace moved to the end.

    A container's program runs from the moment it starts, but it can send nothing until its links are up and
    routed: so it first meets a complete lab, NAT rules and all (a packet forwarded before its router's
    MASQUERADE is loaded would leave an un-NATed conntrack entry behind)."""
    late = {naming.namespace(lab, n.name) for n in topology.nodes if n.container is not None}
    first: list[Step] = []
    deferred: list[Step] = []
    for step in steps:
        (deferred if isinstance(step, LinkUp | AddRoute) and step.ns in late else first).append(step)
    return first + deferred


def impair_links(topology: Topology, lab: str) -> list[impair.Link]:
    """One Link per member interface of each impaired network; the queue number is the network's index."""
    return [
        impair.Link(network.name, member, naming.namespace(lab, member), network.name, network.impair, index)
        for index, network in enumerate(topology.networks)
        if network.impair is not None
        for member in topology.members(network.name)
    ]


def impair_steps(links: list[impair.Link], old: list[impair.Link], netem: bool, lab: str, python: str) -> list[Step]:
    """Steps that bring one node's impaired interfaces from ``old`` to ``links`` (the node's full set).

    Daemons whose link changed start first on their (new) queue, the rules then point at them, and only then
    do the old daemons stop: a change never leaves packets queued to nobody. With no ``old``, this is ``up``.
    """
    steps: list[Step] = []
    daemons = {_daemon(link): link for link in links if not netem and link.impairment.delay_ms is not None}
    running = {_daemon(link): link for link in old if not netem and link.impairment.delay_ms is not None}
    for key, link in daemons.items():
        if key not in running:
            argv = tuple(impair.delayd_argv(python, link))
            log = str(naming.state_dir(lab) / f"delayd-{link.node}-{link.ifname}.log")
            steps.append(StartDelayd(link.ns, link.ifname, link.queue, argv, log))
    for ifname in dict.fromkeys([link.ifname for link in old] + [link.ifname for link in links]):
        link_now = next((link for link in links if link.ifname == ifname), None)
        spec = impair.qdisc(link_now.impairment, netem) if link_now else None
        had = next((link for link in old if link.ifname == ifname), None)
        if spec is not None:
            steps.append(SetQdisc(links[0].ns, ifname, spec[0], spec[1]))
        elif had is not None and impair.qdisc(had.impairment, netem) is not None:
            steps.append(SetQdisc(had.ns, ifname, None))
    if not netem and (links or old):
        ns = (links or old)[0].ns
        steps.append(LoadImpair(ns, impair.iptables_ruleset(links), impair.nft_ruleset(links)))
    steps += [StopDelayd(link.ns, link.queue) for key, link in running.items() if key not in daemons]
    return steps


def _daemon(link: impair.Link) -> tuple[str, int, float | None, float | None]:
    """What a delaying daemon is started with: a link whose key is unchanged keeps its daemon."""
    return link.ifname, link.queue, link.impairment.delay_ms, link.impairment.jitter_ms


def _start_portmap(node: Node, ns: str, lab: str) -> StartPortmap:
    directory = naming.state_dir(lab)
    leases = str(directory / f"miniupnpd-{node.name}.leases")
    conf = portmap.config(node, natrules.lans_of(node), leases)
    return StartPortmap(ns, conf, str(directory / f"miniupnpd-{node.name}.conf"), str(directory / f"{node.name}.log"))


def portmap_leases(lab: str, node: str) -> str:
    """Where miniupnpd of router ``node`` keeps its mappings (``status`` reads them)."""
    return str(naming.state_dir(lab) / f"miniupnpd-{node}.leases")


def lan_prefixes6(topology: Topology, router: Node) -> dict[str, ipaddress.IPv6Network]:
    """The router's LANs that have IPv6, each with its subnet6."""
    assert router.nat is not None
    found = {}
    for iface in router.interfaces:
        subnet6 = topology.network(iface.network).subnet6
        if iface.network != router.nat.wan and iface.addresses6 and subnet6 is not None:
            found[iface.network] = subnet6
    return found


def _prefix_routes6(topology: Topology) -> list[tuple[str, str, str]]:
    """``(node, prefix, via)``: the IPv6 prefix a router puts on its WAN (its LANs' own, routed, or the NPTv6
    prefix they are translated to; NAT66 needs none: its LANs leave as the WAN's address) is routed to it by every
    other forwarding node on its WAN network."""
    routes = []
    for router in topology.nodes:
        nat = router.nat
        if nat is None or nat.ipv6 == behaviour.NAT66:
            continue
        wan = next(i for i in router.interfaces if i.network == nat.wan)
        prefixes = lan_prefixes6(topology, router)
        if not wan.addresses6 or not prefixes:
            continue
        public = [nat.nptv6_prefix] if nat.ipv6 == behaviour.NPTV6 and nat.nptv6_prefix else map(str, prefixes.values())
        for hop in topology.members(wan.network):
            if hop != router.name and topology.node(hop).forwards:
                routes += [(hop, prefix, str(wan.addresses6[0])) for prefix in public]
    return routes


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
