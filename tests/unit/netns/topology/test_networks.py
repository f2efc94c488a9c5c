"""The topology model's new networks: dual-stack networks and routers (ipv6: routed, nptv6, nat66), firewall
udp-blocked, port-allocation and port-mapping, each problem reported with its path and fix."""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

import pytest

from netns.errors import TopologyError
from netns.topology import behaviour, model
from netns.topology.behaviour import APDM, Nat
from netns.topology.model import TOPOLOGIES

pytestmark = pytest.mark.unit

DUAL: dict[str, Any] = {
    "version": 1,
    "networks": {
        "wan": {"subnet": "198.51.100.0/24", "subnet6": "2001:db8:f::/64"},
        "lan": {"subnet": "10.0.0.0/24", "subnet6": "2001:db8:1::/64"},
    },
    "nodes": {
        "core": {"kind": "core", "interfaces": {"wan": ["198.51.100.1", "2001:db8:f::1"]}},
        "nat": {
            "kind": "router",
            "interfaces": {"wan": ["198.51.100.2", "2001:db8:f::2"], "lan": ["10.0.0.1", "2001:db8:1::1"]},
            "gateway": "198.51.100.1",
            "gateway6": "2001:db8:f::1",
            "nat": {"wan": "wan"},
        },
        "peer": {
            "kind": "peer",
            "interfaces": {"lan": ["10.0.0.2", "2001:db8:1::2"]},
            "gateway": "10.0.0.1",
            "gateway6": "2001:db8:1::1",
        },
    },
}


def dual(**nat: Any) -> dict[str, Any]:
    data = copy.deepcopy(DUAL)
    data["nodes"]["nat"]["nat"].update(nat)
    return data


def problems(data: Any) -> list[str]:
    with pytest.raises(TopologyError) as caught:
        model.parse(data, "t.yaml")
    return caught.value.problems


def test_a_dual_stack_topology_parses_into_both_families() -> None:
    topology = model.parse(dual())
    lan = topology.network("lan")
    assert lan.subnet6 == ipaddress.IPv6Network("2001:db8:1::/64")
    peer = topology.node("peer")
    assert peer.interfaces[0].addresses == (ipaddress.IPv4Address("10.0.0.2"),)
    assert peer.interfaces[0].addresses6 == (ipaddress.IPv6Address("2001:db8:1::2"),)
    assert peer.gateway6 == ipaddress.IPv6Address("2001:db8:1::1")
    assert peer.uses_ipv6
    nat = topology.node("nat").nat
    assert nat is not None
    assert nat.ipv6 == behaviour.ROUTED


def test_an_ipv4_only_topology_uses_no_ipv6() -> None:
    assert not any(node.uses_ipv6 for node in model.load(TOPOLOGIES / "default.yaml").nodes)


@pytest.mark.parametrize("name", ["dual-stack.yaml", "port-mapping.yaml"])
def test_the_shipped_topologies_are_valid(name: str) -> None:
    model.load(TOPOLOGIES / name)


def test_ipv6_problems_name_their_path_and_fix() -> None:
    data = dual()
    data["networks"]["wan"]["subnet6"] = "2001:db9::/64"
    data["networks"]["lan"]["subnet6"] = "2001:db8:1::/127"
    data["nodes"]["peer"]["interfaces"]["lan"] = ["10.0.0.2", "2001:db8:2::2", "fe80::zz"]
    data["nodes"]["peer"]["gateway6"] = "2001:db8:1::9"
    assert problems(data) == [
        "t.yaml: networks.wan.subnet6: 2001:db9::/64 is outside 2001:db8::/32, the lab's IPv6 space (RFC 3849); "
        "renumber it",
        "t.yaml: networks.lan.subnet6: 2001:db8:1::/127 is too small; use a prefix length of 126 or less",
        "t.yaml: nodes.core.interfaces.wan[1]: 2001:db8:f::1 is IPv6 but wan has no subnet6; add one like "
        "`subnet6: 2001:db8:1::/64`",
        "t.yaml: nodes.nat.interfaces.wan[1]: 2001:db8:f::2 is IPv6 but wan has no subnet6; add one like "
        "`subnet6: 2001:db8:1::/64`",
        "t.yaml: nodes.nat.interfaces.lan[1]: 2001:db8:1::1 is IPv6 but lan has no subnet6; add one like "
        "`subnet6: 2001:db8:1::/64`",
        "t.yaml: nodes.peer.interfaces.lan[1]: 2001:db8:2::2 is IPv6 but lan has no subnet6; add one like "
        "`subnet6: 2001:db8:1::/64`",
        "t.yaml: nodes.peer.interfaces.lan[2]: 'fe80::zz' is not an IPv6 address; write it like 2001:db8:10::2",
        "t.yaml: nodes.nat.gateway6: 2001:db8:f::1 is not on a directly connected network of nat",
        "t.yaml: nodes.peer.gateway6: 2001:db8:1::9 is not on a directly connected network of peer",
    ]


def test_an_ipv6_address_must_lie_in_its_subnet6_and_a_gateway6_be_a_neighbour() -> None:
    data = dual()
    data["nodes"]["peer"]["interfaces"]["lan"] = ["10.0.0.2", "2001:db8:1::", "2001:db8:7::2"]
    data["nodes"]["peer"]["gateway6"] = "2001:db8:1::99"
    assert problems(data) == [
        "t.yaml: nodes.peer.interfaces.lan[1]: 2001:db8:1:: is the subnet-router anycast address of "
        "2001:db8:1::/64; use another",
        "t.yaml: nodes.peer.interfaces.lan[2]: 2001:db8:7::2 is outside lan's subnet6 2001:db8:1::/64",
        "t.yaml: nodes.peer.gateway6: 2001:db8:1::99 is not the address of a node on lan; use a neighbour's address",
    ]


def test_nptv6_needs_a_prefix_of_the_lans_length_that_no_network_has() -> None:
    assert problems(dual(ipv6="nptv6")) == [
        "t.yaml: nodes.nat.nat.nptv6-prefix: missing; `ipv6: nptv6` needs the public prefix, like 2001:db8:ff10::/64"
    ]
    assert problems(dual(ipv6="nptv6", **{"nptv6-prefix": "2001:db8:f::/48"})) == [
        "t.yaml: nodes.nat.nat.nptv6-prefix: 2001:db8:f::/48 is a /48 but the LAN lan's subnet6 2001:db8:1::/64 is a "
        "/64; NPTv6 maps prefixes of one length (RFC 6296 §3), so make them equal",
        "t.yaml: nodes.nat.nat.nptv6-prefix: 2001:db8:f::/48 overlaps wan's subnet6 2001:db8:f::/64; use a prefix "
        "no network has",
    ]
    nat = model.parse(dual(ipv6="nptv6", **{"nptv6-prefix": "2001:db8:ff::/64"})).node("nat").nat
    assert nat is not None
    assert nat.nptv6_prefix == "2001:db8:ff::/64"


def test_ipv6_translation_needs_ipv6_on_wan_and_lan() -> None:
    data = dual(ipv6="nat66", **{"nptv6-prefix": "2001:db8:ff::/64"})
    data["nodes"]["nat"]["interfaces"]["wan"] = "198.51.100.2"
    data["nodes"]["core"]["interfaces"]["wan"] = "198.51.100.1"
    data["nodes"]["nat"].pop("gateway6")
    assert problems(data) == [
        "t.yaml: nodes.nat.nat.nptv6-prefix: only `ipv6: nptv6` translates to a prefix; remove nptv6-prefix",
    ]
    data["nodes"]["nat"]["nat"].pop("nptv6-prefix")
    assert problems(data) == [
        "t.yaml: nodes.nat.interfaces.wan: the LAN lan has IPv6 but the WAN wan has no IPv6 address; give it one or "
        "remove the LAN's",
        "t.yaml: nodes.nat.nat.ipv6: `ipv6: nat66` translates IPv6, but the router has no IPv6 address on its WAN and "
        "a LAN; add them (and subnet6 to their networks) or remove ipv6",
    ]


def test_port_options_are_checked() -> None:
    assert problems(dual(**{"port-allocation": "odd", "port-mapping": "yes", "ipv6": "nat64"})) == [
        "t.yaml: nodes.nat.nat.port-allocation: 'odd' is not one of preserve, sequential, random",
        "t.yaml: nodes.nat.nat.port-mapping: 'yes' is not true or false",
        "t.yaml: nodes.nat.nat.ipv6: 'nat64' is not one of routed, nptv6, nat66",
    ]
    assert problems(dual(preset="symmetric", **{"port-allocation": "preserve"})) == [
        "t.yaml: nodes.nat.nat.port-allocation: an address-and-port-dependent mapping gives each flow a port of its "
        "own here, so it cannot preserve the internal port (the kernel would map every flow of an endpoint to it: "
        "endpoint-independent); use random or sequential"
    ]
    assert problems(dual(preset="none", **{"port-allocation": "random", "port-mapping": True})) == [
        "t.yaml: nodes.nat.nat.port-allocation: a router without NAT allocates no ports; remove port-allocation",
        "t.yaml: nodes.nat.nat.port-mapping: a router without NAT has no ports to map; remove port-mapping",
        "t.yaml: nodes.nat.nat: no NAT routes lan (10.0.0.0/24) untranslated, but that is private address space the "
        "internet does not route; give lan a public subnet or use a NAT preset",
    ]


@pytest.mark.parametrize(
    ("mapping", "given", "allocation"),
    [
        (behaviour.EIM, None, "preserve"),
        (APDM, None, "random"),
        (APDM, "sequential", "sequential"),
        (behaviour.EIM, "random", "random"),
    ],
)
def test_port_allocation_defaults_to_the_mappings_own(mapping: str, given: str | None, allocation: str) -> None:
    assert behaviour.allocation(Nat("masquerade", "wan", mapping=mapping, port_allocation=given)) == allocation


def test_a_preset_override_keeps_the_new_options() -> None:
    nat = Nat("masquerade", "wan", "udp-blocked", port_allocation="sequential", port_mapping=True, udp_timeout=30)
    changed = nat.with_preset("full-cone")
    assert (changed.firewall, changed.port_allocation, changed.port_mapping, changed.udp_timeout) == (
        "udp-blocked",
        "sequential",
        True,
        30,
    )
    assert changed.filtering == behaviour.EIF
    bare = nat.with_preset("none")
    assert (bare.type, bare.port_allocation, bare.firewall) == ("none", None, "udp-blocked")


def test_udp_blocked_is_a_firewall_kind() -> None:
    nat = model.parse(dual(firewall="udp-blocked")).node("nat").nat
    assert nat is not None
    assert nat.firewall == "udp-blocked"
    assert "firewall udp-blocked" in behaviour.summary(nat)
