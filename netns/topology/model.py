"""Strict topology model: YAML (``version: 1``) -> frozen, slotted dataclasses.

Every problem is reported at once, each as ``FILE: yaml.path: what is wrong; the fix`` (containerlab's
strictness): unknown keys are rejected, addresses must lie in their network's subnet and be unique, a
gateway must be another node's address on a directly connected network, NAT only on routers.

Schema (version 1)::

    version: 1
    networks:                 # one L2 segment each; its name is the interface name in every member
      NAME: {subnet: CIDR}    # 2 members -> a veth pair; more -> a bridge in the first member's namespace
        subnet6: CIDR         # optional: the network is dual-stack, its IPv6 prefix inside 2001:db8::/32
        impair: {delay: 50ms, jitter: 10ms, loss: 20%, duplicate: 1%, rate: 1mbit}  # optional, each key
                              # optional; on every member's egress (netns/topology/impairment.py)
    nodes:                    # in this order: the first member of a network is the first node listing it
      NAME:
        kind: core|router|server|peer|host
        interfaces: {NETWORK: ADDRESS or [ADDRESS, ...]}   # prefix length comes from the subnet (IPv6 ones:
                              # from subnet6); IPv4 and IPv6 addresses mixed in one list
        gateway: ADDRESS      # optional default route
        gateway6: ADDRESS     # optional IPv6 default route (a neighbour's IPv6 address)
        image: REFERENCE      # optional (server, peer, host): run the node as this Docker image's container,
                              # started with no network of Docker's and wired like any node (netns/kernel/containers.py)
        command: [ARG, ...]   # optional, with image: the container's command (a string is split like a shell's)
        env: {NAME: VALUE}    # optional, with image: the container's environment (values are strings)
        nat:                  # routers only, required there; RFC 4787 terms (see netns/topology/behaviour.py)
          wan: NETWORK        # the interface facing the internet; LAN sources become its first address
          preset: full-cone|restricted-cone|port-restricted-cone|symmetric|cgnat|none  # or mapping + filtering:
          mapping: endpoint-independent|address-and-port-dependent      # default endpoint-independent
          filtering: endpoint-independent|address-dependent|address-and-port-dependent  # default the last
          hairpinning: false  # true: LAN hosts reach each other through the public address
          udp-timeout: SECONDS  # optional: conntrack UDP timeouts and the mapping timer (RFC 4787 §4.3)
          firewall: home|none|udp-blocked # default home; udp-blocked: only TCP 80/443 and UDP 53 leave
          type: masquerade|none  # optional; a preset sets it (none: plain routing, for a public LAN)
          port-allocation: preserve|sequential|random  # optional (RFC 4787 §4.2.1); default preserve, random
                              # with an address-and-port-dependent mapping
          port-mapping: false # true: miniupnpd in the router (UPnP IGD, NAT-PMP, PCP; netns/kernel/portmap.py)
          ipv6: routed|nptv6|nat66  # with IPv6 on WAN and LAN; default routed (RFC 6092 with firewall home)
          nptv6-prefix: CIDR  # with ipv6: nptv6, the public prefix the LAN's prefix is translated to (RFC 6296)

A preset sets type, mapping and filtering; ``mapping`` or ``filtering`` next to a preset is an error. ``cgnat`` is
the carrier's NAT of a double NAT: its LANs must lie in 100.64.0.0/10 (RFC 6598), where the home NATs' WANs are.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from netns.errors import TopologyError
from netns.naming import NETWORK_NAME_RE, NODE_NAME_RE
from netns.topology import behaviour, impairment
from netns.topology.behaviour import FIREWALLS, IPV6_MODES, NAT_TYPES, PORT_ALLOCATIONS, PRESETS, Nat
from netns.topology.impairment import Impairment

__all__ = ["FIREWALLS", "NAT_TYPES", "PRESETS", "Interface", "Nat", "Network", "Node", "Topology", "load", "parse"]

VERSION = 1
TOPOLOGIES = Path(__file__).parent.parent / "topologies"  # the topologies shipped with the lab
DEFAULT_TOPOLOGY = TOPOLOGIES / "default.yaml"
KINDS = ("core", "router", "server", "peer", "host")
FORWARDING_KINDS = ("core", "router")
# Address space the internet does not route (RFC 1918, RFC 6598): a `type: none` router cannot have it.
PRIVATE = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"))
# The lab's IPv6 space: the documentation prefix (RFC 3849), never routed outside.
LAB6 = ipaddress.IPv6Network("2001:db8::/32")

_TOP_KEYS = ("version", "networks", "nodes")
_NETWORK_KEYS = ("subnet", "subnet6", "impair")
_NODE_KEYS = ("kind", "interfaces", "gateway", "gateway6", "nat", "image", "command", "env")
CONTAINER_KINDS = ("server", "peer", "host")
# A Docker image reference (distribution's grammar): [DOMAIN[:PORT]/]PATH[/PATH...][:TAG][@DIGEST], paths lowercase.
_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?"
IMAGE_RE = re.compile(
    rf"(?:{_DOMAIN}/)?{_PATH}(?:/{_PATH})*(?::\w[\w.-]{{0,127}})?(?:@[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{{32,}})?"
)
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NAT_KEYS = (
    "wan",
    "preset",
    "mapping",
    "filtering",
    "hairpinning",
    "udp-timeout",
    "firewall",
    "type",
    "port-allocation",
    "port-mapping",
    "ipv6",
    "nptv6-prefix",
)


@dataclass(frozen=True, slots=True)
class Network:
    name: str
    subnet: ipaddress.IPv4Network
    impair: Impairment | None = None
    subnet6: ipaddress.IPv6Network | None = None


@dataclass(frozen=True, slots=True)
class Interface:
    """A node's interface on ``network``; it carries the network's name inside the node's namespace."""

    network: str
    addresses: tuple[ipaddress.IPv4Address, ...]
    addresses6: tuple[ipaddress.IPv6Address, ...] = ()


@dataclass(frozen=True, slots=True)
class Container:
    """A node run as a container of ``image`` (netns/kernel/containers.py); ``command`` None keeps the image's own."""

    image: str
    command: tuple[str, ...] | None = None
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    kind: str
    interfaces: tuple[Interface, ...]
    gateway: ipaddress.IPv4Address | None = None
    nat: Nat | None = None
    container: Container | None = None
    gateway6: ipaddress.IPv6Address | None = None

    @property
    def forwards(self) -> bool:
        return self.kind in FORWARDING_KINDS

    @property
    def uses_ipv6(self) -> bool:
        """Whether the node has an IPv6 address (its namespace keeps IPv6 on; every other one has it off)."""
        return any(i.addresses6 for i in self.interfaces)


@dataclass(frozen=True, slots=True)
class Topology:
    networks: tuple[Network, ...]
    nodes: tuple[Node, ...]
    source: str = "<topology>"
    # Lookups by name, built once: a generated lab has thousands of nodes and networks (netns/topology/generate.py).
    _by_name: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        members: dict[str, list[str]] = {}
        for node in self.nodes:
            for iface in node.interfaces:
                members.setdefault(iface.network, []).append(node.name)
        self._by_name.update(
            networks={n.name: n for n in self.networks},
            nodes={n.name: n for n in self.nodes},
            members={name: tuple(names) for name, names in members.items()},
        )

    def network(self, name: str) -> Network:
        return self._by_name["networks"][name]  # type: ignore[no-any-return]

    def node(self, name: str) -> Node:
        return self._by_name["nodes"][name]  # type: ignore[no-any-return]

    def members(self, network: str) -> tuple[str, ...]:
        """Node names attached to ``network``, in node order (the first one hosts a bridge)."""
        return self._by_name["members"].get(network, ())  # type: ignore[no-any-return]

    def with_firewall(self, firewall: str) -> Topology:
        """A copy in which every router's NAT uses ``firewall`` (the ``up --firewall`` override)."""
        nodes = tuple(replace(n, nat=replace(n.nat, firewall=firewall)) if n.nat is not None else n for n in self.nodes)
        return Topology(self.networks, nodes, self.source)

    def with_nat(self, preset: str, routers: Collection[str] | None = None) -> Topology:
        """A copy in which every router (or each of ``routers``) uses ``preset`` (the ``up --nat`` override);
        hairpinning, udp-timeout and firewall stay as the file says. Raises TopologyError if a router is unknown
        or the result cannot be built."""
        nat_routers = [n.name for n in self.nodes if n.nat is not None]
        unknown = sorted(set(routers or ()) - set(nat_routers))
        if unknown:
            raise TopologyError(
                [
                    f"{self.source}: --nat {r}={preset}: no router named {r!r}; routers: {_one_of(nat_routers)}"
                    for r in unknown
                ]
            )
        chosen = set(nat_routers if routers is None else routers)
        nodes = tuple(
            replace(n, nat=n.nat.with_preset(preset)) if n.nat is not None and n.name in chosen else n
            for n in self.nodes
        )
        given = preset if routers is None else ",".join(f"{r}={preset}" for r in sorted(chosen))
        problems = _Problems(self.source, f" (with --nat {given})")
        _check_nats(list(nodes), {n.name: n for n in self.networks}, problems)
        if problems.items:
            raise TopologyError(problems.items)
        return Topology(self.networks, nodes, self.source)

    def with_impairs(self, overrides: Iterable[str]) -> Topology:
        """A copy with each ``NETWORK:KEY=VALUE,...`` (``up --impair``) laid over that network's ``impair``
        (given keys replace the file's). Raises TopologyError with every problem, in the file's terms."""
        networks = {n.name: n for n in self.networks}
        given: dict[str, dict[str, Any]] = {}
        problems = _Problems(self.source)
        for text in overrides:
            problems.suffix = f" (from --impair {text})"
            parsed = impairment.parse_override(text)
            if isinstance(parsed, str):
                problems.add("--impair", parsed)
                continue
            name, mapping = parsed
            if name not in networks:
                problems.add(f"networks.{name}", f"no such network; the networks are {_one_of(networks)}")
                continue
            current = networks[name].impair
            base = given.get(name) or (current.as_dict() if current else {})
            merged = {**base, **mapping}
            if impairment.parse(merged, f"networks.{name}.impair", problems.add) is not None:
                given[name] = merged
        if problems.items:
            raise TopologyError(problems.items)
        result = tuple(
            replace(n, impair=impairment.from_dict(given[n.name])) if n.name in given else n for n in self.networks
        )
        return Topology(result, self.nodes, self.source)


class _Problems:
    def __init__(self, source: str, suffix: str = "") -> None:
        self.source = source
        self.suffix = suffix
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        message += self.suffix
        self.items.append(f"{self.source}: {path}: {message}" if path else f"{self.source}: {message}")


def _one_of(values: Iterable[str]) -> str:
    return ", ".join(values)


def _mapping(value: Any, path: str, problems: _Problems, what: str) -> Mapping[str, Any] | None:
    if not isinstance(value, dict):
        problems.add(path, f"must be a mapping of {what}, not {type(value).__name__}")
        return None
    for key in value:
        if not isinstance(key, str):
            problems.add(path, f"key {key!r} must be a string")
    return {k: v for k, v in value.items() if isinstance(k, str)}


def _unknown_keys(value: Mapping[str, Any], allowed: tuple[str, ...], path: str, problems: _Problems) -> None:
    for key in value:
        if key not in allowed:
            where = f"{path}.{key}" if path else key
            problems.add(where, f"unknown key; allowed keys are {_one_of(allowed)}")


def _address(value: Any, path: str, problems: _Problems) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(str(value))
    except ValueError:
        problems.add(path, f"{value!r} is not an IPv4 address; write it like 192.0.2.1")
        return None


def parse(data: Any, source: str = "<topology>") -> Topology:
    """Check ``data`` (parsed YAML) and build a Topology, or raise TopologyError with every problem."""
    problems = _Problems(source)
    top = _mapping(data, "", problems, "version, networks and nodes")
    if top is None:
        raise TopologyError(problems.items)
    _unknown_keys(top, _TOP_KEYS, "", problems)
    if "version" not in top:
        problems.add("version", f"missing; add `version: {VERSION}`")
    elif top["version"] != VERSION or isinstance(top["version"], bool):
        problems.add("version", f"{top['version']!r} is not supported; use `version: {VERSION}`")

    networks = _parse_networks(top.get("networks"), problems)
    declared = set(top["networks"]) if isinstance(top.get("networks"), dict) else set()
    nodes = _parse_nodes(top.get("nodes"), networks, declared, problems)
    if nodes is not None:
        _check_links(nodes, networks, declared, problems)
        _check_nats(nodes, networks, problems)
        _check_members(top["nodes"], declared, problems)
    if problems.items:
        raise TopologyError(problems.items)
    assert nodes is not None
    return Topology(tuple(networks.values()), tuple(nodes), source)


def load(path: str | Path) -> Topology:
    """Read and check a topology file; problems are prefixed with the file's base name."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TopologyError([f"{path}: cannot read: {exc.strerror}; check the path"]) from exc
    import yaml  # here: only a topology file needs it, not status, down, exec or a generated lab

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "YAML"
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise TopologyError([f"{path.name}: {where}: {problem}; fix the YAML syntax"]) from exc
    return parse(data, path.name)


def _parse_networks(value: Any, problems: _Problems) -> dict[str, Network]:
    if value is None:
        problems.add("networks", "missing; add a mapping of network name to {subnet: CIDR}")
        return {}
    nets = _mapping(value, "networks", problems, "network name to {subnet: CIDR}")
    result: dict[str, Network] = {}
    for name, spec in (nets or {}).items():
        path = f"networks.{name}"
        if not NETWORK_NAME_RE.fullmatch(name):
            problems.add(
                path,
                "invalid network name; it is the interface name in each member, so use 1-15 lowercase "
                "letters, digits or dashes starting with a letter",
            )
        body = _mapping(spec, path, problems, "subnet")
        if body is None:
            continue
        _unknown_keys(body, _NETWORK_KEYS, path, problems)
        impair = impairment.parse(body["impair"], f"{path}.impair", problems.add) if "impair" in body else None
        if "subnet" not in body:
            problems.add(f"{path}.subnet", "missing; add a subnet like 203.0.113.0/24")
            continue
        try:
            subnet = ipaddress.IPv4Network(str(body["subnet"]))
        except ValueError:
            problems.add(f"{path}.subnet", f"{body['subnet']!r} is not an IPv4 subnet; write it like 203.0.113.0/24")
            continue
        if subnet.prefixlen > 30:
            problems.add(f"{path}.subnet", f"{subnet} is too small; use a prefix length of 30 or less")
            continue
        subnet6 = _subnet6(body["subnet6"], f"{path}.subnet6", problems) if "subnet6" in body else None
        result[name] = Network(name, subnet, impair, subnet6)
    return result


def _subnet6(value: Any, path: str, problems: _Problems, limit: int = 126) -> ipaddress.IPv6Network | None:
    """An IPv6 prefix inside the lab's 2001:db8::/32, with room for hosts (prefix length at most ``limit``)."""
    try:
        subnet = ipaddress.IPv6Network(str(value))
    except ValueError:
        problems.add(path, f"{value!r} is not an IPv6 prefix; write it like 2001:db8:10::/64")
        return None
    if not subnet.subnet_of(LAB6):
        problems.add(path, f"{subnet} is outside {LAB6}, the lab's IPv6 space (RFC 3849); renumber it")
        return None
    if subnet.prefixlen > limit:
        problems.add(path, f"{subnet} is too small; use a prefix length of {limit} or less")
        return None
    return subnet


def _parse_nodes(
    value: Any, networks: dict[str, Network], declared: set[str], problems: _Problems
) -> list[Node] | None:
    if value is None:
        problems.add("nodes", "missing; add a mapping of node name to {kind, interfaces}")
        return None
    specs = _mapping(value, "nodes", problems, "node name to {kind, interfaces}")
    if specs is None:
        return None
    return [n for name, spec in specs.items() if (n := _parse_node(name, spec, networks, declared, problems))]


def _parse_node(
    name: str, spec: Any, networks: dict[str, Network], declared: set[str], problems: _Problems
) -> Node | None:
    path = f"nodes.{name}"
    if not NODE_NAME_RE.fullmatch(name):
        problems.add(path, "invalid node name; use 1-10 lowercase letters or digits starting with a letter")
    body = _mapping(spec, path, problems, "kind, interfaces, gateway, nat")
    if body is None:
        return None
    _unknown_keys(body, _NODE_KEYS, path, problems)
    kind = body.get("kind")
    if kind is None:
        problems.add(f"{path}.kind", f"missing; add one of {_one_of(KINDS)}")
    elif kind not in KINDS:
        problems.add(f"{path}.kind", f"{kind!r} is not one of {_one_of(KINDS)}")
        kind = None

    interfaces = _parse_interfaces(body.get("interfaces"), f"{path}.interfaces", networks, declared, problems)
    gateway = None
    if "gateway" in body:
        gateway = _address(body["gateway"], f"{path}.gateway", problems)
    gateway6 = None
    if "gateway6" in body:
        try:
            gateway6 = ipaddress.IPv6Address(str(body["gateway6"]))
        except ValueError:
            problems.add(f"{path}.gateway6", f"{body['gateway6']!r} is not an IPv6 address; write it like 2001:db8::1")
    container = _parse_container(body, path, kind, problems)
    nat = None
    if "nat" in body:
        if kind is not None and kind != "router":
            problems.add(f"{path}.nat", f"only a router has NAT; remove it or set `kind: router` (not {kind})")
        nat = _parse_nat(body["nat"], f"{path}.nat", interfaces, problems)
    elif kind == "router":
        problems.add(f"{path}.nat", "missing; a router needs `nat: {type: masquerade, wan: NETWORK}`")
    if kind is None or interfaces is None:
        return None
    return Node(name, kind, interfaces, gateway, nat, container, gateway6)


def _parse_container(body: Mapping[str, Any], path: str, kind: str | None, problems: _Problems) -> Container | None:
    """``image``, ``command`` and ``env`` of a node: a container node, or None (problems are reported)."""
    if "image" not in body:
        for key in ("command", "env"):
            if key in body:
                problems.add(f"{path}.{key}", f"{key} is only for a container node; add `image:` or remove {key}")
        return None
    count = len(problems.items)
    image = body["image"]
    if not isinstance(image, str) or not IMAGE_RE.fullmatch(image):
        problems.add(
            f"{path}.image",
            f"{image!r} is not a Docker image reference; write it like punch-local/punch:latest (lowercase name)",
        )
    elif kind is not None and kind not in CONTAINER_KINDS:
        problems.add(
            f"{path}.image",
            f"a {kind} forwards in a namespace of the lab's own; only {_one_of(CONTAINER_KINDS)} nodes can be "
            "containers, so remove image",
        )
    command = _parse_command(body["command"], f"{path}.command", problems) if "command" in body else None
    env: list[tuple[str, str]] = []
    if "env" in body:
        variables = _mapping(body["env"], f"{path}.env", problems, "variable name to string")
        for name, value in (variables or {}).items():
            if not ENV_NAME_RE.fullmatch(name):
                problems.add(
                    f"{path}.env.{name}", "invalid variable name; use letters, digits and _, not starting with a digit"
                )
            elif not isinstance(value, str):
                problems.add(f"{path}.env.{name}", f"{value!r} is not a string; quote it")
            else:
                env.append((name, value))
    if len(problems.items) > count:
        return None
    return Container(str(image), command, tuple(env))


def _parse_command(value: Any, path: str, problems: _Problems) -> tuple[str, ...] | None:
    """A container's command: a list of strings, or a string split into words as a POSIX shell would."""
    if isinstance(value, str):
        try:
            words = shlex.split(value)
        except ValueError as exc:
            problems.add(path, f"cannot split {value!r} into words ({exc}); fix the quoting or write a list")
            return None
    elif isinstance(value, list):
        words = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                words.append(item)
            else:
                problems.add(f"{path}[{i}]", f"{item!r} is not a string; quote it")
        if len(words) < len(value):
            return None
    else:
        problems.add(path, f"must be a list of strings or a string, not {type(value).__name__}")
        return None
    if not words:
        problems.add(path, "is empty; give the command's words, or remove command to run the image's own")
        return None
    return tuple(words)


def _parse_interfaces(
    value: Any, path: str, networks: dict[str, Network], declared: set[str], problems: _Problems
) -> tuple[Interface, ...] | None:
    if value is None:
        problems.add(path, "missing; add a mapping of network name to address")
        return None
    specs = _mapping(value, path, problems, "network name to address")
    if specs is None:
        return None
    if not specs:
        problems.add(path, "empty; attach the node to at least one network")
    result = []
    for net_name, raw in specs.items():
        where = f"{path}.{net_name}"
        network = networks.get(net_name)
        if network is None and net_name not in declared:  # a declared but broken one is reported there
            problems.add(where, f"no network named {net_name!r}; declare it under networks")
        raws = raw if isinstance(raw, list) else [raw]
        if not raws:
            problems.add(where, "no address; give an address or a list of addresses")
        addresses = []
        addresses6 = []
        for i, item in enumerate(raws):
            item_path = f"{where}[{i}]" if isinstance(raw, list) else where
            if ":" in str(item):
                address6 = _address6(item, item_path, network, net_name, problems)
                if address6 is not None:
                    addresses6.append(address6)
                continue
            address = _address(item, item_path, problems)
            if address is None:
                continue
            if network is not None:
                subnet = network.subnet
                if address not in subnet:
                    problems.add(item_path, f"{address} is outside {net_name}'s subnet {subnet}")
                    continue
                if address in (subnet.network_address, subnet.broadcast_address):
                    problems.add(item_path, f"{address} is the network or broadcast address of {subnet}")
                    continue
            addresses.append(address)
        result.append(Interface(net_name, tuple(addresses), tuple(addresses6)))
    return tuple(result)


def _address6(
    item: Any, path: str, network: Network | None, net_name: str, problems: _Problems
) -> ipaddress.IPv6Address | None:
    """An IPv6 address of an interface: inside its network's ``subnet6``, not the prefix's own (anycast) address."""
    try:
        address = ipaddress.IPv6Address(str(item))
    except ValueError:
        problems.add(path, f"{item!r} is not an IPv6 address; write it like 2001:db8:10::2")
        return None
    if network is None:
        return address
    if network.subnet6 is None:
        problems.add(path, f"{address} is IPv6 but {net_name} has no subnet6; add one like `subnet6: 2001:db8:1::/64`")
        return None
    if address not in network.subnet6:
        problems.add(path, f"{address} is outside {net_name}'s subnet6 {network.subnet6}")
        return None
    if address == network.subnet6.network_address:
        problems.add(path, f"{address} is the subnet-router anycast address of {network.subnet6}; use another")
        return None
    return address


def _parse_nat(value: Any, path: str, interfaces: tuple[Interface, ...] | None, problems: _Problems) -> Nat | None:
    body = _mapping(value, path, problems, ", ".join(_NAT_KEYS))
    if body is None:
        return None
    _unknown_keys(body, _NAT_KEYS, path, problems)
    count = len(problems.items)
    preset = body.get("preset")
    if preset is not None and preset not in PRESETS:
        problems.add(f"{path}.preset", f"{preset!r} is not one of {_one_of(PRESETS)}")
        preset = None
    nat_type, mapping, filtering = PRESETS[preset] if preset else ("masquerade", behaviour.EIM, behaviour.APDF)
    if "type" in body:
        given = body["type"]
        if given not in NAT_TYPES:
            hint = f"; for that behaviour write `preset: {given}`" if given in PRESETS else ""
            problems.add(f"{path}.type", f"{given!r} is not one of {_one_of(NAT_TYPES)}{hint}")
        elif preset and given != nat_type:
            problems.add(f"{path}.type", f"{given!r} disagrees with `preset: {preset}` (type {nat_type}); remove type")
        else:
            nat_type = given
    for key, allowed in (("mapping", behaviour.MAPPINGS), ("filtering", behaviour.FILTERINGS)):
        if key not in body:
            continue
        given = body[key]
        if preset:
            what = f"it is {PRESETS[preset][1 if key == 'mapping' else 2]}" if nat_type != "none" else "no NAT"
            problems.add(f"{path}.{key}", f"cannot be given with `preset: {preset}` ({what}); remove {key} or preset")
        elif given not in allowed:
            problems.add(f"{path}.{key}", f"{given!r} is not one of {_one_of(allowed)}")
        elif nat_type == "none":
            problems.add(
                f"{path}.{key}", f"a router with `type: none` does not translate, so it has no {key}; remove it"
            )
        elif key == "mapping":
            mapping = given
        else:
            filtering = given
    hairpinning = body.get("hairpinning", False)
    if not isinstance(hairpinning, bool):
        problems.add(f"{path}.hairpinning", f"{hairpinning!r} is not true or false")
    udp_timeout = body.get("udp-timeout")
    if udp_timeout is not None and (
        isinstance(udp_timeout, bool)
        or not isinstance(udp_timeout, int)
        or not 1 <= udp_timeout <= behaviour.UDP_TIMEOUT_MAX
    ):
        problems.add(
            f"{path}.udp-timeout",
            f"{udp_timeout!r} is not a whole number of seconds from 1 to {behaviour.UDP_TIMEOUT_MAX}",
        )
    firewall = body.get("firewall", "home")
    if firewall not in FIREWALLS:
        problems.add(f"{path}.firewall", f"{firewall!r} is not one of {_one_of(FIREWALLS)}")
    allocation = body.get("port-allocation")
    if allocation is not None and allocation not in PORT_ALLOCATIONS:
        problems.add(f"{path}.port-allocation", f"{allocation!r} is not one of {_one_of(PORT_ALLOCATIONS)}")
    port_mapping = body.get("port-mapping", False)
    if not isinstance(port_mapping, bool):
        problems.add(f"{path}.port-mapping", f"{port_mapping!r} is not true or false")
    ipv6 = body.get("ipv6", behaviour.ROUTED)
    if ipv6 not in IPV6_MODES:
        problems.add(f"{path}.ipv6", f"{ipv6!r} is not one of {_one_of(IPV6_MODES)}")
    nptv6_prefix = None
    if "nptv6-prefix" in body:
        if ipv6 != behaviour.NPTV6:
            problems.add(f"{path}.nptv6-prefix", "only `ipv6: nptv6` translates to a prefix; remove nptv6-prefix")
        else:
            nptv6_prefix = _subnet6(body["nptv6-prefix"], f"{path}.nptv6-prefix", problems, limit=64)
    elif ipv6 == behaviour.NPTV6:
        problems.add(f"{path}.nptv6-prefix", "missing; `ipv6: nptv6` needs the public prefix, like 2001:db8:ff10::/64")
    wan = body.get("wan")
    if wan is None:
        problems.add(f"{path}.wan", "missing; name the interface (network) that faces the internet")
    elif interfaces is not None and wan not in [i.network for i in interfaces]:
        names = _one_of(i.network for i in interfaces)
        problems.add(f"{path}.wan", f"{wan!r} is not one of this node's interfaces ({names})")
    elif interfaces is not None and len(interfaces) < 2:
        problems.add(path, "a NAT needs a LAN besides its WAN; attach the router to a second network")
    if len(problems.items) > count:
        return None
    extra: dict[str, Any] = {
        "port_allocation": allocation,
        "port_mapping": port_mapping,
        "ipv6": ipv6,
        "nptv6_prefix": str(nptv6_prefix) if nptv6_prefix else None,
    }
    if nat_type == "none":
        return Nat(
            "none", str(wan), str(firewall), hairpinning=hairpinning, udp_timeout=udp_timeout, preset=preset, **extra
        )
    return Nat(nat_type, str(wan), str(firewall), mapping, filtering, hairpinning, udp_timeout, preset, **extra)


def _check_nats(nodes: list[Node], networks: dict[str, Network], problems: _Problems) -> None:
    """Each NAT is one the kernel rules build (netns/topology/behaviour.py); a router without NAT has a public LAN."""
    for node in nodes:
        if node.nat is None:
            continue
        path = f"nodes.{node.name}.nat"
        for key, message in behaviour.problems(node.nat):
            problems.add(f"{path}.{key}", message)
        if node.nat.preset == "cgnat":
            carrier = ipaddress.IPv4Network(behaviour.CARRIER_SPACE)
            for iface in node.interfaces:
                network = networks.get(iface.network)
                if iface.network != node.nat.wan and network is not None and not network.subnet.subnet_of(carrier):
                    problems.add(
                        path,
                        f"preset cgnat is the carrier's NAT in front of home NATs: its LAN {iface.network} "
                        f"({network.subnet}) must lie in {carrier} (RFC 6598); renumber it, or use a topology with "
                        "two NAT layers (netns/topologies/cgnat.yaml)",
                    )
        _check_nat6(node, node.nat, networks, problems)
        if node.nat.type != "none":
            continue
        for iface in node.interfaces:
            network = networks.get(iface.network)
            if iface.network == node.nat.wan or network is None:
                continue
            if any(network.subnet.subnet_of(p) for p in PRIVATE):
                problems.add(
                    path,
                    f"no NAT routes {iface.network} ({network.subnet}) untranslated, but that is private address "
                    f"space the internet does not route; give {iface.network} a public subnet or use a NAT preset",
                )


def _check_nat6(node: Node, nat: Nat, networks: dict[str, Network], problems: _Problems) -> None:
    """A router's IPv6: ``ipv6`` other than routed needs IPv6 on the WAN and a LAN; a LAN with IPv6 needs it on
    the WAN; NPTv6 (RFC 6296) maps one LAN prefix to ``nptv6-prefix`` of the same length, which no network uses."""
    path = f"nodes.{node.name}.nat"
    wan6 = any(i.addresses6 for i in node.interfaces if i.network == nat.wan)
    lans6 = [
        networks[i.network]
        for i in node.interfaces
        if i.network != nat.wan and i.addresses6 and i.network in networks and networks[i.network].subnet6
    ]
    if lans6 and not wan6:
        problems.add(
            f"nodes.{node.name}.interfaces.{nat.wan}",
            f"the LAN {lans6[0].name} has IPv6 but the WAN {nat.wan} has no IPv6 address; give it one or remove the "
            "LAN's",
        )
    if nat.ipv6 != behaviour.ROUTED and not (wan6 and lans6):
        problems.add(
            f"{path}.ipv6",
            f"`ipv6: {nat.ipv6}` translates IPv6, but the router has no IPv6 address on its WAN and a LAN; add them "
            "(and subnet6 to their networks) or remove ipv6",
        )
    if nat.ipv6 != behaviour.NPTV6 or nat.nptv6_prefix is None or not lans6:
        return
    prefix = ipaddress.IPv6Network(nat.nptv6_prefix)
    if len(lans6) > 1:
        names = _one_of(n.name for n in lans6)
        problems.add(f"{path}.ipv6", f"NPTv6 maps one LAN prefix, but {names} have IPv6; keep IPv6 on one of them")
    inside = lans6[0].subnet6
    assert inside is not None
    if inside.prefixlen != prefix.prefixlen:
        problems.add(
            f"{path}.nptv6-prefix",
            f"{prefix} is a /{prefix.prefixlen} but the LAN {lans6[0].name}'s subnet6 {inside} is a "
            f"/{inside.prefixlen}; NPTv6 maps prefixes of one length (RFC 6296 §3), so make them equal",
        )
    for network in networks.values():
        if network.subnet6 is not None and network.subnet6.overlaps(prefix):
            problems.add(
                f"{path}.nptv6-prefix",
                f"{prefix} overlaps {network.name}'s subnet6 {network.subnet6}; use a prefix no network has",
            )


def _check_links(nodes: list[Node], networks: dict[str, Network], declared: set[str], problems: _Problems) -> None:
    """Addresses are unique on their network (two LANs behind different NATs may look alike); a node's
    networks do not overlap; a gateway is another node's address on a directly connected network."""
    owner: dict[tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address], str] = {}
    for node in nodes:
        for iface in node.interfaces:
            every: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = (*iface.addresses, *iface.addresses6)
            for i, address in enumerate(every):
                path = f"nodes.{node.name}.interfaces.{iface.network}"
                if len(every) > 1:
                    path += f"[{i}]"
                key = (iface.network, address)
                if key in owner:
                    problems.add(path, f"{address} is already used on {iface.network} by {owner[key]}; give it another")
                else:
                    owner[key] = f"nodes.{node.name}"
        mine = [networks[i.network] for i in node.interfaces if i.network in networks]
        for j, net in enumerate(mine):
            for other in mine[:j]:
                if net.subnet.overlaps(other.subnet):
                    why = f"{net.subnet} overlaps {other.name}'s {other.subnet}"
                    problems.add(
                        f"nodes.{node.name}.interfaces.{net.name}",
                        f"{why}; a node's networks must not overlap",
                    )
    for node in nodes:
        gateways: tuple[tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address | None], ...] = (
            ("gateway", node.gateway),
            ("gateway6", node.gateway6),
        )
        for route, gateway in gateways:
            if gateway is None:
                continue
            path = f"nodes.{node.name}.{route}"
            if any(i.network in declared and i.network not in networks for i in node.interfaces):
                continue  # a connected network is broken; that is reported where it is declared
            connected = [i for i in node.interfaces if i.network in networks]
            on = [i for i in connected if _on(gateway, networks[i.network])]
            if not on:
                problems.add(path, f"{gateway} is not on a directly connected network of {node.name}")
            elif any(gateway in (*i.addresses, *i.addresses6) for i in on):
                problems.add(path, f"{gateway} is {node.name}'s own address; use its next hop's address")
            elif not any((i.network, gateway) in owner for i in on):
                problems.add(
                    path,
                    f"{gateway} is not the address of a node on {on[0].network}; use a neighbour's address",
                )


def _on(address: ipaddress.IPv4Address | ipaddress.IPv6Address, network: Network) -> bool:
    if isinstance(address, ipaddress.IPv4Address):
        return address in network.subnet
    return network.subnet6 is not None and address in network.subnet6


def _check_members(raw_nodes: Any, declared: set[str], problems: _Problems) -> None:
    """Each network joins at least two nodes (counted from the YAML, so a node's own error does not echo)."""
    counts = dict.fromkeys(declared, 0)
    for spec in raw_nodes.values() if isinstance(raw_nodes, dict) else []:
        interfaces = spec.get("interfaces") if isinstance(spec, dict) else None
        for name in interfaces if isinstance(interfaces, dict) else []:
            if name in counts:
                counts[name] += 1
    for name, count in counts.items():
        if count < 2:
            problems.add(f"networks.{name}", f"has {count} member(s); attach at least two nodes or remove it")
