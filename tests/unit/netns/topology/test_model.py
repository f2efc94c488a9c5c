"""The netns lab's strict topology model: exact error strings, every problem at once, with paths."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from netns.errors import LabError, TopologyError
from netns.topology import model
from netns.topology.model import DEFAULT_TOPOLOGY

pytestmark = pytest.mark.unit

GOOD: dict[str, Any] = {
    "version": 1,
    "networks": {"wan": {"subnet": "198.51.100.0/24"}, "lan": {"subnet": "10.0.0.0/24"}},
    "nodes": {
        "core": {"kind": "core", "interfaces": {"wan": "198.51.100.1"}},
        "nat": {
            "kind": "router",
            "interfaces": {"wan": "198.51.100.2", "lan": "10.0.0.1"},
            "gateway": "198.51.100.1",
            "nat": {"type": "masquerade", "wan": "wan", "firewall": "home"},
        },
        "peer": {"kind": "peer", "interfaces": {"lan": "10.0.0.2"}, "gateway": "10.0.0.1"},
    },
}


def problems(data: Any) -> list[str]:
    with pytest.raises(TopologyError) as caught:
        model.parse(data, "t.yaml")
    assert isinstance(caught.value, LabError)
    return caught.value.problems


def changed(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    target = data
    for key in parents:
        target = target[key]
    target[last] = value
    return data


def test_good_topology_parses() -> None:
    topology = model.parse(GOOD, "t.yaml")
    assert [n.name for n in topology.nodes] == ["core", "nat", "peer"]
    assert topology.node("nat").nat == model.Nat("masquerade", "wan", "home")
    assert topology.members("lan") == ("nat", "peer")


def test_packaged_default_topology_validates() -> None:
    topology = model.load(DEFAULT_TOPOLOGY)
    assert [n.name for n in topology.nodes] == ["core", "server", "nat10", "nat14", "peer10", "peer14"]
    assert topology.source == "default.yaml"
    assert len(topology.node("server").interfaces[0].addresses) == 2


def test_models_are_frozen() -> None:
    topology = model.parse(GOOD)
    with pytest.raises(AttributeError):
        topology.nodes[0].kind = "router"  # type: ignore[misc]


def test_unknown_key_is_rejected_with_its_path() -> None:
    assert problems(changed("nodes.peer.gatewy", "10.0.0.1")) == [
        "t.yaml: nodes.peer.gatewy: unknown key; allowed keys are kind, interfaces, gateway, gateway6, nat, image, command, env"
    ]


def test_unknown_top_level_key() -> None:
    assert problems(changed("extra", 1)) == ["t.yaml: extra: unknown key; allowed keys are version, networks, nodes"]


def test_bad_version() -> None:
    assert problems(changed("version", 2)) == ["t.yaml: version: 2 is not supported; use `version: 1`"]


def test_missing_version() -> None:
    data = copy.deepcopy(GOOD)
    del data["version"]
    assert problems(data) == ["t.yaml: version: missing; add `version: 1`"]


def test_address_outside_subnet() -> None:
    assert problems(changed("nodes.peer.interfaces", {"lan": "10.0.1.2"})) == [
        "t.yaml: nodes.peer.interfaces.lan: 10.0.1.2 is outside lan's subnet 10.0.0.0/24"
    ]


def test_bad_firewall_value() -> None:
    assert problems(changed("nodes.nat.nat.firewall", "homee")) == [
        "t.yaml: nodes.nat.nat.firewall: 'homee' is not one of home, none, udp-blocked"
    ]


def test_duplicate_address() -> None:
    assert problems(changed("nodes.peer.interfaces", {"lan": "10.0.0.1"})) == [
        "t.yaml: nodes.peer.interfaces.lan: 10.0.0.1 is already used on lan by nodes.nat; give it another",
        "t.yaml: nodes.peer.gateway: 10.0.0.1 is peer's own address; use its next hop's address",
    ]


def test_lookalike_lans_may_reuse_addresses_but_a_node_cannot_straddle_them() -> None:
    data = copy.deepcopy(GOOD)
    data["networks"]["lan2"] = {"subnet": "10.0.0.0/24"}
    data["nodes"]["nat2"] = copy.deepcopy(data["nodes"]["nat"])
    data["nodes"]["nat2"]["interfaces"] = {"wan": "198.51.100.3", "lan2": "10.0.0.1"}
    data["nodes"]["peer2"] = {"kind": "peer", "interfaces": {"lan2": "10.0.0.2"}, "gateway": "10.0.0.1"}
    topology = model.parse(data)
    assert topology.node("peer2").interfaces[0].addresses == topology.node("peer").interfaces[0].addresses
    data["nodes"]["peer2"]["interfaces"] = {"lan2": "10.0.0.2", "lan": "10.0.0.3"}
    assert problems(data) == [
        "t.yaml: nodes.peer2.interfaces.lan: 10.0.0.0/24 overlaps lan2's 10.0.0.0/24; "
        "a node's networks must not overlap"
    ]


def test_gateway_must_be_on_a_connected_network() -> None:
    assert problems(changed("nodes.peer.gateway", "198.51.100.1")) == [
        "t.yaml: nodes.peer.gateway: 198.51.100.1 is not on a directly connected network of peer"
    ]


def test_gateway_must_be_a_neighbours_address() -> None:
    assert problems(changed("nodes.peer.gateway", "10.0.0.9")) == [
        "t.yaml: nodes.peer.gateway: 10.0.0.9 is not the address of a node on lan; use a neighbour's address"
    ]


def test_nat_only_on_routers_and_required_there() -> None:
    data = changed("nodes.peer.nat", {"type": "masquerade", "wan": "lan"})
    data["nodes"]["nat"].pop("nat")
    assert problems(data) == [
        "t.yaml: nodes.nat.nat: missing; a router needs `nat: {type: masquerade, wan: NETWORK}`",
        "t.yaml: nodes.peer.nat: only a router has NAT; remove it or set `kind: router` (not peer)",
        "t.yaml: nodes.peer.nat: a NAT needs a LAN besides its WAN; attach the router to a second network",
    ]


def test_several_errors_at_once_with_paths() -> None:
    data = copy.deepcopy(GOOD)
    data["version"] = "one"
    data["networks"]["Bad_Net"] = {"subnet": "10.9.0.0/16", "mtu": 1400}
    data["networks"]["wan"]["subnet"] = "198.51.100.0/33"
    data["nodes"]["peer"]["kind"] = "laptop"
    data["nodes"]["nat"]["nat"] = {"type": "symmetric", "wan": "wan9", "firewall": "home"}
    data["nodes"]["core"]["interfaces"] = {"wan": "198.51.100.300", "dmz": "10.1.0.1"}
    assert problems(data) == [
        "t.yaml: version: 'one' is not supported; use `version: 1`",
        "t.yaml: networks.wan.subnet: '198.51.100.0/33' is not an IPv4 subnet; write it like 203.0.113.0/24",
        "t.yaml: networks.Bad_Net: invalid network name; it is the interface name in each member, "
        "so use 1-15 lowercase letters, digits or dashes starting with a letter",
        "t.yaml: networks.Bad_Net.mtu: unknown key; allowed keys are subnet, subnet6, impair",
        "t.yaml: nodes.core.interfaces.wan: '198.51.100.300' is not an IPv4 address; write it like 192.0.2.1",
        "t.yaml: nodes.core.interfaces.dmz: no network named 'dmz'; declare it under networks",
        "t.yaml: nodes.nat.nat.type: 'symmetric' is not one of masquerade, none; for that behaviour write `preset: symmetric`",
        "t.yaml: nodes.nat.nat.wan: 'wan9' is not one of this node's interfaces (wan, lan)",
        "t.yaml: nodes.peer.kind: 'laptop' is not one of core, router, server, peer, host",
        "t.yaml: networks.Bad_Net: has 0 member(s); attach at least two nodes or remove it",
    ]


def test_names_that_cannot_be_interfaces_or_namespaces() -> None:
    data = copy.deepcopy(GOOD)
    data["networks"]["a-very-long-network"] = {"subnet": "10.5.0.0/24"}
    data["nodes"]["toolongnodename"] = {"kind": "host", "interfaces": {"a-very-long-network": "10.5.0.2"}}
    data["nodes"]["h2"] = {"kind": "host", "interfaces": {"a-very-long-network": "10.5.0.3"}}
    assert problems(data) == [
        "t.yaml: networks.a-very-long-network: invalid network name; it is the interface name in each "
        "member, so use 1-15 lowercase letters, digits or dashes starting with a letter",
        "t.yaml: nodes.toolongnodename: invalid node name; use 1-10 lowercase letters or digits starting with a letter",
    ]


def test_load_reports_the_file_name_and_yaml_errors(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text("version: 1\nnodes: [\n")
    with pytest.raises(TopologyError) as caught:
        model.load(path)
    assert caught.value.problems == [
        "lab.yaml: line 3: expected the node content, but found '<stream end>'; fix the YAML syntax"
    ]


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TopologyError) as caught:
        model.load(tmp_path / "nope.yaml")
    assert caught.value.problems == [
        f"{tmp_path / 'nope.yaml'}: cannot read: No such file or directory; check the path"
    ]


def test_not_a_mapping() -> None:
    assert problems(["version", 1]) == ["t.yaml: must be a mapping of version, networks and nodes, not list"]
