"""RFC 4787 NAT behaviours: presets, strict validation with exact strings, and the generated kernel rules."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from netns.errors import TopologyError
from netns.lab import plan
from netns.rules import nat, nft
from netns.topology import behaviour, model
from netns.topology.behaviour import ADF, ADM, APDF, APDM, EIF, EIM, Nat
from netns.topology.model import DEFAULT_TOPOLOGY

pytestmark = pytest.mark.unit

SAME_NAT = DEFAULT_TOPOLOGY.parent / "same-nat.yaml"

GOOD: dict[str, Any] = {
    "version": 1,
    "networks": {"wan": {"subnet": "198.51.100.0/24"}, "lan": {"subnet": "10.0.0.0/24"}},
    "nodes": {
        "core": {"kind": "core", "interfaces": {"wan": "198.51.100.1"}},
        "nat": {
            "kind": "router",
            "interfaces": {"wan": "198.51.100.2", "lan": "10.0.0.1"},
            "gateway": "198.51.100.1",
            "nat": {"wan": "wan"},
        },
        "peer": {"kind": "peer", "interfaces": {"lan": "10.0.0.2"}, "gateway": "10.0.0.1"},
    },
}


def with_nat(**fields: Any) -> dict[str, Any]:
    data = copy.deepcopy(GOOD)
    data["nodes"]["nat"]["nat"].update(fields)
    return data


def nat_of(**fields: Any) -> Nat:
    found = model.parse(with_nat(**fields)).node("nat").nat
    assert found is not None
    return found


def problems(data: Any) -> list[str]:
    with pytest.raises(TopologyError) as caught:
        model.parse(data, "t.yaml")
    return caught.value.problems


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        ("full-cone", Nat("masquerade", "wan", "home", EIM, EIF)),
        ("restricted-cone", Nat("masquerade", "wan", "home", EIM, ADF)),
        ("port-restricted-cone", Nat("masquerade", "wan", "home", EIM, APDF)),
        ("symmetric", Nat("masquerade", "wan", "home", APDM, APDF)),
    ],
)
def test_preset_expands_to_mapping_and_filtering(preset: str, expected: Nat) -> None:
    assert nat_of(preset=preset) == expected
    assert behaviour.preset_of(expected) == preset


def test_defaults_are_todays_port_restricted_cone() -> None:
    assert nat_of() == nat_of(type="masquerade", firewall="home") == Nat("masquerade", "wan", "home", EIM, APDF)
    assert nat.mechanism(nat_of()) == "masquerade"


def test_explicit_fields_build_the_same_nat_as_the_preset() -> None:
    assert nat_of(mapping=EIM, filtering=ADF) == nat_of(preset="restricted-cone")


def test_knobs_next_to_a_preset_are_kept() -> None:
    found = nat_of(preset="full-cone", hairpinning=True, **{"udp-timeout": 300}, firewall="none")
    assert found == Nat("masquerade", "wan", "none", EIM, EIF, True, 300)


def test_preset_none_is_plain_routing_of_a_public_lan() -> None:
    data = with_nat(preset="none")
    data["networks"]["lan"]["subnet"] = "192.0.2.0/24"
    data["nodes"]["nat"]["interfaces"]["lan"] = "192.0.2.1"
    data["nodes"]["peer"] = {"kind": "host", "interfaces": {"lan": "192.0.2.2"}, "gateway": "192.0.2.1"}
    topology = model.parse(data)
    assert topology.node("nat").nat == Nat("none", "wan", "home")
    assert nat.describe(Nat("none", "wan", "home")) == "routing/home on wan"
    descriptions = [s.describe() for s in plan.plan(topology, "x")]
    assert "route x-core: 192.0.2.0/24 via 198.51.100.2" in descriptions
    assert not [d for d in descriptions if d.startswith("nftables")]
    assert [r for r in nat.ruleset(topology.node("nat")).splitlines() if "POSTROUTING" in r] == []


def test_errors_name_the_path_and_the_fix() -> None:
    data = with_nat(
        preset="full-cone",
        mapping=APDM,
        type="none",
        hairpinning="yes",
        **{"udp-timeout": 0, "timeout": 30},
    )
    assert problems(data) == [
        "t.yaml: nodes.nat.nat.timeout: unknown key; allowed keys are wan, preset, mapping, filtering, "
        "hairpinning, udp-timeout, firewall, type, port-allocation, port-mapping, ipv6, nptv6-prefix",
        "t.yaml: nodes.nat.nat.type: 'none' disagrees with `preset: full-cone` (type masquerade); remove type",
        "t.yaml: nodes.nat.nat.mapping: cannot be given with `preset: full-cone` (it is endpoint-independent); "
        "remove mapping or preset",
        "t.yaml: nodes.nat.nat.hairpinning: 'yes' is not true or false",
        "t.yaml: nodes.nat.nat.udp-timeout: 0 is not a whole number of seconds from 1 to 86400",
    ]


def test_unknown_preset_and_values() -> None:
    assert problems(with_nat(preset="cone", firewall="open")) == [
        "t.yaml: nodes.nat.nat.preset: 'cone' is not one of full-cone, restricted-cone, port-restricted-cone, "
        "symmetric, cgnat, none",
        "t.yaml: nodes.nat.nat.firewall: 'open' is not one of home, none, udp-blocked",
    ]
    assert problems(with_nat(mapping="random", filtering="none")) == [
        "t.yaml: nodes.nat.nat.mapping: 'random' is not one of endpoint-independent, address-dependent, "
        "address-and-port-dependent",
        "t.yaml: nodes.nat.nat.filtering: 'none' is not one of endpoint-independent, address-dependent, "
        "address-and-port-dependent",
    ]


def test_behaviours_the_kernel_rules_do_not_build_are_refused_with_the_reason() -> None:
    assert problems(with_nat(mapping=ADM, hairpinning=True)) == [
        "t.yaml: nodes.nat.nat.mapping: address-dependent mapping is not built by this lab (no kernel rules for "
        "it yet); use endpoint-independent or address-and-port-dependent",
    ]
    assert problems(with_nat(mapping=APDM, filtering=EIF, hairpinning=True)) == [
        "t.yaml: nodes.nat.nat.filtering: endpoint-independent filtering cannot go with address-and-port-dependent "
        "mapping here: MASQUERADE --random-fully may give one public port to several internal endpoints (towards "
        "different remotes), so there is no single endpoint to let other senders through to; use "
        "address-and-port-dependent filtering (preset symmetric)",
        "t.yaml: nodes.nat.nat.hairpinning: hairpinning cannot go with address-and-port-dependent mapping here: "
        "MASQUERADE --random-fully may give one public port to several internal endpoints, so a hairpinned "
        "packet has no single owner; use an endpoint-independent mapping or `hairpinning: false`",
    ]


def test_no_nat_on_a_private_lan_is_refused() -> None:
    assert problems(with_nat(preset="none", filtering=EIF)) == [
        "t.yaml: nodes.nat.nat.filtering: cannot be given with `preset: none` (no NAT); remove filtering or preset",
    ]
    assert problems(with_nat(preset="none")) == [
        "t.yaml: nodes.nat.nat: no NAT routes lan (10.0.0.0/24) untranslated, but that is private address space the "
        "internet does not route; give lan a public subnet or use a NAT preset",
    ]


def test_nat_override_keeps_the_knobs_and_checks_the_result() -> None:
    topology = model.load(SAME_NAT)
    router = topology.with_nat("full-cone").node("nat10").nat
    assert router == Nat("masquerade", "wan10", "home", EIM, EIF, hairpinning=True)
    with pytest.raises(TopologyError) as caught:
        topology.with_nat("symmetric")
    assert caught.value.problems == [
        "same-nat.yaml: nodes.nat10.nat.hairpinning: hairpinning cannot go with address-and-port-dependent "
        "mapping here: MASQUERADE --random-fully may give one public port to several internal endpoints, so a "
        "hairpinned packet has no single owner; use an endpoint-independent mapping or `hairpinning: false` "
        "(with --nat symmetric)",
    ]
    assert [n.nat.mapping for n in model.load(DEFAULT_TOPOLOGY).with_nat("symmetric").nodes if n.nat] == [APDM] * 2


@pytest.mark.parametrize("path", sorted((DEFAULT_TOPOLOGY.parent).glob("*.yaml")), ids=lambda p: Path(p).name)
def test_shipped_topologies_validate(path: Path) -> None:
    model.load(path)


def test_summary_in_rfc_4787_terms() -> None:
    assert behaviour.summary(nat_of(preset="restricted-cone", **{"udp-timeout": 60})) == (
        "restricted-cone: mapping endpoint-independent, filtering address-dependent, no hairpinning, "
        "firewall home, udp-timeout 60s, ports preserve"
    )
    assert behaviour.summary(Nat("masquerade", "wan", "none", APDM, EIF)) == (
        "custom: mapping address-and-port-dependent, filtering endpoint-independent, no hairpinning, "
        "firewall none, udp-timeout kernel default, ports random"
    )
    assert behaviour.as_dict(nat_of(preset="symmetric")) == {
        "preset": "symmetric",
        "mapping": APDM,
        "filtering": APDF,
        "hairpinning": False,
        "udp_timeout": None,
        "firewall": "home",
        "port_allocation": "random",
        "port_mapping": False,
    }


def test_symmetric_is_masquerade_random_fully() -> None:
    router = model.load(DEFAULT_TOPOLOGY).with_nat("symmetric").node("nat10")
    rules = nat.ruleset(router).splitlines()
    assert [r for r in rules if r.startswith("-A POSTROUTING")] == [
        "-A POSTROUTING -o wan10 -j MASQUERADE --random-fully"
    ]
    assert not [r for r in rules if "DNAT" in r]
    assert nat.describe(router.nat) == "masquerade-random-fully/home on wan10"  # type: ignore[arg-type]


def test_open_filtering_lets_dnat_through_the_home_firewall_and_has_no_iptables_nat() -> None:
    router = model.load(DEFAULT_TOPOLOGY).with_nat("full-cone").node("nat10")
    rules = nat.ruleset(router).splitlines()
    assert "*nat" not in rules
    assert rules[-2:] == ["-A FORWARD -i wan10 -o lan10 -m conntrack --ctstate DNAT -j ACCEPT", "COMMIT"]


def test_full_cone_with_hairpinning_nftables_ruleset() -> None:
    router = model.load(SAME_NAT).with_nat("full-cone").node("nat10")
    assert nft.ruleset(router).splitlines() == [
        "table ip netns_lab {",
        "\tmap mappings { type ipv4_addr . inet_service : inet_service; flags dynamic,timeout; timeout 120s; }",
        "\tmap owners { type inet_service : ipv4_addr . inet_service; flags dynamic,timeout; timeout 120s; }",
        "\tset bindings { type ipv4_addr . inet_service . inet_service; flags dynamic,timeout; timeout 120s; }",
        "\tchain prerouting {",
        "\t\ttype nat hook prerouting priority dstnat; policy accept;",
        '\t\tiifname { "lan10" } ip daddr 198.51.100.10 udp dport @owners dnat ip addr . port to udp dport map @owners',
        '\t\tiifname "wan10" udp dport @owners dnat ip addr . port to udp dport map @owners',
        "\t}",
        "\tchain postrouting {",
        "\t\ttype nat hook postrouting priority srcnat; policy accept;",
        '\t\tiifname { "lan10" } oifname { "lan10" } ct status dnat meta l4proto udp snat ip to 198.51.100.10 : ip saddr . udp sport map @mappings',
        '\t\tiifname { "lan10" } oifname { "lan10" } ct status dnat snat ip to 198.51.100.10',
        '\t\tiifname { "lan10" } oifname "wan10" meta l4proto udp snat ip to 198.51.100.10 : ip saddr . udp sport map @mappings',
        '\t\tiifname { "lan10" } oifname "wan10" udp sport @owners snat ip to 198.51.100.10:1024-65535 random',
        '\t\tiifname { "lan10" } oifname "wan10" snat ip to 198.51.100.10',
        "\t}",
        "\tchain record {",
        "\t\ttype filter hook postrouting priority srcnat + 10; policy accept;",
        "\t\tct direction reply accept",
        "\t\tct status & snat == 0 accept",
        "\t\tmeta l4proto udp ct original ip saddr . ct original proto-src . udp sport != @bindings udp sport @owners drop",
        "\t\tmeta l4proto udp update @mappings { ct original ip saddr . ct original proto-src : udp sport }",
        "\t\tmeta l4proto udp update @owners { udp sport : ct original ip saddr . ct original proto-src }",
        "\t\tmeta l4proto udp update @bindings { ct original ip saddr . ct original proto-src . udp sport }",
        "\t}",
        "}",
    ]


def test_restricted_cone_records_and_checks_contacted_addresses() -> None:
    router = model.load(DEFAULT_TOPOLOGY).with_nat("restricted-cone").node("nat14")
    rules = nft.ruleset(router).splitlines()
    assert "\tset contacted { type inet_service . ipv4_addr; flags dynamic,timeout; timeout 120s; }" in rules
    assert '\t\tiifname "wan14" udp dport . ip saddr @contacted dnat ip addr . port to udp dport map @owners' in rules
    assert "\t\tmeta l4proto udp update @contacted { udp sport . ct original ip daddr }" in rules
    assert not [r for r in rules if "ip daddr 192.0.2.14" in r]  # no hairpinning


def test_port_restricted_cone_that_hairpins_is_built_with_nftables_but_lets_nothing_in() -> None:
    router = model.load(SAME_NAT).node("nat10")
    assert router.nat is not None
    assert nat.mechanism(router.nat) == "nftables"
    rules = nft.ruleset(router).splitlines()
    assert not [r for r in rules if r.startswith('\t\tiifname "wan10"')]
    assert "DNAT" not in nat.ruleset(router)


def test_plan_sets_timeouts_bridge_hook_and_loads_nftables_after_iptables() -> None:
    data = model.load(SAME_NAT)
    router = data.node("nat10")
    assert router.nat is not None
    topology = model.Topology(
        data.networks,
        tuple(
            model.Node(n.name, n.kind, n.interfaces, n.gateway, dataclasses.replace(router.nat, udp_timeout=45))
            if n.name == "nat10"
            else n
            for n in data.nodes
        ),
        data.source,
    )
    steps = plan.plan(topology, "x")
    texts = [s.describe() for s in steps]
    assert [t for t in texts if t.startswith("sysctl x-nat10")] == [
        "sysctl x-nat10: net.ipv6.conf.all.disable_ipv6=1",
        "sysctl x-nat10: net.ipv4.ip_forward=1",
        "sysctl x-nat10: net.ipv4.conf.all.rp_filter=0",
        "sysctl x-nat10: net.ipv4.conf.default.rp_filter=0",
        "sysctl x-nat10: net.netfilter.nf_conntrack_udp_timeout=45",
        "sysctl x-nat10: net.netfilter.nf_conntrack_udp_timeout_stream=45",
        "sysctl x-nat10: net.bridge.bridge-nf-call-iptables=0",
    ]
    assert [s.optional for s in steps if isinstance(s, plan.Sysctl) and s.ns == "x-nat10"] == [True] + [False] * 5 + [
        True
    ]
    assert texts[-2:] == ["nat x-nat10: nftables/home on wan10", "nftables x-nat10: table ip netns_lab"]
    assert "timeout 45s" in steps[-1].ruleset  # type: ignore[union-attr]


def test_nat_override_per_router_names_unknown_routers() -> None:
    topology = model.load(DEFAULT_TOPOLOGY).with_nat("symmetric", ["nat10"]).with_nat("full-cone", ["nat14"])
    assert [(n.name, behaviour.preset_of(n.nat)) for n in topology.nodes if n.nat] == [
        ("nat10", "symmetric"),
        ("nat14", "full-cone"),
    ]
    with pytest.raises(TopologyError) as caught:
        model.load(DEFAULT_TOPOLOGY).with_nat("symmetric", ["nat99"])
    assert caught.value.problems == [
        "default.yaml: --nat nat99=symmetric: no router named 'nat99'; routers: nat10, nat14"
    ]


def test_cgnat_is_the_carriers_nat_and_needs_shared_address_space_behind_it() -> None:
    cgn = model.load(DEFAULT_TOPOLOGY.parent / "cgnat.yaml").node("cgn").nat
    assert cgn is not None
    assert behaviour.preset_of(cgn) == "cgnat"
    assert (cgn.mapping, cgn.filtering, cgn.hairpinning) == (EIM, APDF, True)
    with pytest.raises(TopologyError) as caught:
        model.load(DEFAULT_TOPOLOGY).with_nat("cgnat", ["nat10"])
    assert caught.value.problems == [
        "default.yaml: nodes.nat10.nat: preset cgnat is the carrier's NAT in front of home NATs: its LAN lan10 "
        "(10.0.10.0/24) must lie in 100.64.0.0/10 (RFC 6598); renumber it, or use a topology with two NAT layers "
        "(netns/topologies/cgnat.yaml) (with --nat nat10=cgnat)"
    ]
