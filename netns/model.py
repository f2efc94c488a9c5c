"""Strict topology model: YAML (``version: 1``) -> frozen, slotted dataclasses.

Every problem is reported at once, each as ``FILE: yaml.path: what is wrong; the fix`` (containerlab's
strictness): unknown keys are rejected, addresses must lie in their network's subnet and be unique, a
gateway must be another node's address on a directly connected network, NAT only on routers.

Schema (version 1)::

    version: 1
    networks:                 # one L2 segment each; its name is the interface name in every member
      NAME: {subnet: CIDR}    # 2 members -> a veth pair; more -> a bridge in the first member's namespace
    nodes:                    # in this order: the first member of a network is the first node listing it
      NAME:
        kind: core|router|server|peer|host
        interfaces: {NETWORK: ADDRESS or [ADDRESS, ...]}   # prefix length comes from the subnet
        gateway: ADDRESS      # optional default route
        nat:                  # routers only, required there; RFC 4787 terms (see netns/behaviour.py)
          wan: NETWORK        # the interface facing the internet; LAN sources become its first address
          preset: full-cone|restricted-cone|port-restricted-cone|symmetric|none  # or mapping + filtering:
          mapping: endpoint-independent|address-and-port-dependent      # default endpoint-independent
          filtering: endpoint-independent|address-dependent|address-and-port-dependent  # default the last
          hairpinning: false  # true: LAN hosts reach each other through the public address
          udp-timeout: SECONDS  # optional: conntrack UDP timeouts and the mapping timer (RFC 4787 §4.3)
          firewall: home|none # default home
          type: masquerade|none  # optional; a preset sets it (none: plain routing, for a public LAN)

A preset sets type, mapping and filtering; ``mapping`` or ``filtering`` next to a preset is an error.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from netns import behaviour
from netns.behaviour import FIREWALLS, NAT_TYPES, PRESETS, Nat
from netns.errors import TopologyError
from netns.naming import NETWORK_NAME_RE, NODE_NAME_RE

__all__ = ["FIREWALLS", "NAT_TYPES", "PRESETS", "Interface", "Nat", "Network", "Node", "Topology", "load", "parse"]

VERSION = 1
KINDS = ("core", "router", "server", "peer", "host")
FORWARDING_KINDS = ("core", "router")
# Address space the internet does not route (RFC 1918, RFC 6598): a `type: none` router cannot have it.
PRIVATE = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"))

_TOP_KEYS = ("version", "networks", "nodes")
_NETWORK_KEYS = ("subnet",)
_NODE_KEYS = ("kind", "interfaces", "gateway", "nat")
_NAT_KEYS = ("wan", "preset", "mapping", "filtering", "hairpinning", "udp-timeout", "firewall", "type")


@dataclass(frozen=True, slots=True)
class Network:
    name: str
    subnet: ipaddress.IPv4Network


@dataclass(frozen=True, slots=True)
class Interface:
    """A node's interface on ``network``; it carries the network's name inside the node's namespace."""

    network: str
    addresses: tuple[ipaddress.IPv4Address, ...]


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    kind: str
    interfaces: tuple[Interface, ...]
    gateway: ipaddress.IPv4Address | None = None
    nat: Nat | None = None

    @property
    def forwards(self) -> bool:
        return self.kind in FORWARDING_KINDS


@dataclass(frozen=True, slots=True)
class Topology:
    networks: tuple[Network, ...]
    nodes: tuple[Node, ...]
    source: str = "<topology>"

    def network(self, name: str) -> Network:
        return next(n for n in self.networks if n.name == name)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def members(self, network: str) -> tuple[str, ...]:
        """Node names attached to ``network``, in node order (the first one hosts a bridge)."""
        return tuple(n.name for n in self.nodes if any(i.network == network for i in n.interfaces))

    def with_firewall(self, firewall: str) -> Topology:
        """A copy in which every router's NAT uses ``firewall`` (the ``up --firewall`` override)."""
        nodes = tuple(
            Node(n.name, n.kind, n.interfaces, n.gateway, replace(n.nat, firewall=firewall)) if n.nat is not None else n
            for n in self.nodes
        )
        return Topology(self.networks, nodes, self.source)

    def with_nat(self, preset: str) -> Topology:
        """A copy in which every router uses ``preset`` (the ``up --nat`` override); hairpinning, udp-timeout
        and firewall stay as the file says. Raises TopologyError if the result cannot be built."""
        nodes = tuple(
            Node(n.name, n.kind, n.interfaces, n.gateway, n.nat.with_preset(preset)) if n.nat is not None else n
            for n in self.nodes
        )
        problems = _Problems(self.source, f" (with --nat {preset})")
        _check_nats(list(nodes), {n.name: n for n in self.networks}, problems)
        if problems.items:
            raise TopologyError(problems.items)
        return Topology(self.networks, nodes, self.source)


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
        result[name] = Network(name, subnet)
    return result


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
    nat = None
    if "nat" in body:
        if kind is not None and kind != "router":
            problems.add(f"{path}.nat", f"only a router has NAT; remove it or set `kind: router` (not {kind})")
        nat = _parse_nat(body["nat"], f"{path}.nat", interfaces, problems)
    elif kind == "router":
        problems.add(f"{path}.nat", "missing; a router needs `nat: {type: masquerade, wan: NETWORK}`")
    if kind is None or interfaces is None:
        return None
    return Node(name, kind, interfaces, gateway, nat)


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
        for i, item in enumerate(raws):
            item_path = f"{where}[{i}]" if isinstance(raw, list) else where
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
        result.append(Interface(net_name, tuple(addresses)))
    return tuple(result)


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
    if nat_type == "none":
        return Nat("none", str(wan), str(firewall), hairpinning=hairpinning, udp_timeout=udp_timeout)
    return Nat(nat_type, str(wan), str(firewall), mapping, filtering, hairpinning, udp_timeout)


def _check_nats(nodes: list[Node], networks: dict[str, Network], problems: _Problems) -> None:
    """Each NAT is one the kernel rules build (netns/behaviour.py); a router without NAT has a public LAN."""
    for node in nodes:
        if node.nat is None:
            continue
        path = f"nodes.{node.name}.nat"
        for key, message in behaviour.problems(node.nat):
            problems.add(f"{path}.{key}", message)
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


def _check_links(nodes: list[Node], networks: dict[str, Network], declared: set[str], problems: _Problems) -> None:
    """Addresses are unique on their network (two LANs behind different NATs may look alike); a node's
    networks do not overlap; a gateway is another node's address on a directly connected network."""
    owner: dict[tuple[str, ipaddress.IPv4Address], str] = {}
    for node in nodes:
        for iface in node.interfaces:
            for i, address in enumerate(iface.addresses):
                path = f"nodes.{node.name}.interfaces.{iface.network}"
                if len(iface.addresses) > 1:
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
        if node.gateway is None:
            continue
        path = f"nodes.{node.name}.gateway"
        if any(i.network in declared and i.network not in networks for i in node.interfaces):
            continue  # a connected network is broken; that is reported where it is declared
        connected = [i for i in node.interfaces if i.network in networks]
        on = [i for i in connected if node.gateway in networks[i.network].subnet]
        if not on:
            problems.add(path, f"{node.gateway} is not on a directly connected network of {node.name}")
        elif any(node.gateway in i.addresses for i in on):
            problems.add(path, f"{node.gateway} is {node.name}'s own address; use its next hop's address")
        elif not any((i.network, node.gateway) in owner for i in on):
            problems.add(
                path,
                f"{node.gateway} is not the address of a node on {on[0].network}; use a neighbour's address",
            )


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
