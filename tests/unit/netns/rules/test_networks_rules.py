"""Rule text and plan steps of the new networks: port allocation in nftables, udp-blocked's firewall, the IPv6
ruleset of each kind (ip6tables), miniupnpd's configuration and lease file, and the plan's IPv6 and miniupnpd
steps."""

from __future__ import annotations

import pytest

from netns.lab import plan
from netns.rules import nat, nft, portmap
from netns.topology import model
from netns.topology.behaviour import APDM, Nat
from netns.topology.model import TOPOLOGIES, Interface, Node
from tests.unit.netns.topology.test_networks import dual

pytestmark = pytest.mark.unit

DUAL_STACK = model.load(TOPOLOGIES / "dual-stack.yaml")


def router(**fields: object) -> Node:
    found = model.parse(dual(**fields)).node("nat")
    return found


@pytest.mark.parametrize(
    ("fields", "how"),
    [
        ({}, "masquerade"),
        ({"port-allocation": "random"}, "nftables"),
        ({"port-allocation": "sequential"}, "nftables"),
        ({"preset": "symmetric"}, "masquerade-random-fully"),
        ({"mapping": APDM, "port-allocation": "sequential"}, "nftables"),
    ],
)
def test_port_allocation_picks_the_mechanism(fields: dict[str, object], how: str) -> None:
    node = router(**fields)
    assert node.nat is not None
    assert nat.mechanism(node.nat) == how


def test_random_and_sequential_allocation_in_the_nftables_nat() -> None:
    random_rules = nft.ruleset(router(**{"port-allocation": "random"}))
    assert '\t\tiifname { "lan" } oifname "wan" meta l4proto udp snat ip to 198.51.100.2:1024-65535 fully-random\n' in (
        random_rules
    )
    assert "udp sport @owners snat" not in random_rules
    sequential = nft.ruleset(router(**{"port-allocation": "sequential"}))
    assert "snat ip to 198.51.100.2 : numgen inc mod 4096 map { 0 : 1024, 1 : 1025, " in sequential
    assert "4095 : 5119 }\n" in sequential
    assert "update @mappings" in sequential  # endpoint-independent: the first port is kept for every remote


def test_symmetric_sequential_is_a_counter_per_flow() -> None:
    rules = nft.ruleset(router(mapping=APDM, **{"port-allocation": "sequential"}))
    lines = rules.splitlines()
    assert lines[:3] == [
        "table ip netns_lab {",
        "\tchain postrouting {",
        "\t\ttype nat hook postrouting priority srcnat; policy accept;",
    ]
    assert lines[3].startswith(
        '\t\tiifname { "lan" } oifname "wan" meta l4proto udp snat ip to 198.51.100.2 : numgen inc'
    )
    assert lines[4:] == ['\t\tiifname { "lan" } oifname "wan" snat ip to 198.51.100.2', "\t}", "}"]


def test_udp_blocked_lets_only_web_and_dns_leave() -> None:
    rules = nat.ruleset(router(firewall="udp-blocked")).splitlines()
    leaving = [line for line in rules if line.startswith("-A FORWARD -i lan -o wan")]
    assert leaving == [
        "-A FORWARD -i lan -o wan -p tcp --dport 80 -j ACCEPT",
        "-A FORWARD -i lan -o wan -p tcp --dport 443 -j ACCEPT",
        "-A FORWARD -i lan -o wan -p udp --dport 53 -j ACCEPT",
    ]
    assert ":FORWARD DROP [0:0]" in rules


def test_a_port_mapping_router_lets_dnated_traffic_in() -> None:
    rules = nat.ruleset(router(**{"port-mapping": True}))
    assert "-A FORWARD -i wan -o lan -m conntrack --ctstate DNAT -j ACCEPT\n" in rules
    assert "--ctstate DNAT" not in nat.ruleset(router())


def test_ipv6_rulesets_per_kind() -> None:
    def v6(name: str) -> str:
        node = DUAL_STACK.node(name)
        rules = nat.ruleset6(node, plan.lan_prefixes6(DUAL_STACK, node))
        assert rules is not None
        return rules

    routed, nptv6, nat66 = v6("nat10"), v6("nat14"), v6("nat16")
    assert "-A POSTROUTING" not in routed
    assert "-A PREROUTING" not in routed
    assert "-A POSTROUTING -o wan14 -s 2001:db8:14::/64 -j NETMAP --to 2001:db8:ff14::/64\n" in nptv6
    assert "-A PREROUTING -i wan14 -d 2001:db8:ff14::/64 -j NETMAP --to 2001:db8:14::/64\n" in nptv6
    assert "-A POSTROUTING -o wan16 -j MASQUERADE\n" in nat66
    # RFC 6092: only answers come in; neighbour discovery reaches the router itself
    assert "-A FORWARD -i wan10 -o lan10 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n" in routed
    assert "-A INPUT -i wan10 -p ipv6-icmp --icmpv6-type neighbour-solicitation -j ACCEPT\n" in routed
    assert ":FORWARD DROP [0:0]" in routed
    assert nat.ruleset6(model.load(TOPOLOGIES / "default.yaml").node("nat10"), {}) is None


def test_a_dual_stack_plan_keeps_ipv6_on_only_where_it_is_used_and_routes_public_prefixes() -> None:
    steps = plan.plan(DUAL_STACK, "lab")
    sysctls = {(s.ns, s.key) for s in steps if isinstance(s, plan.Sysctl)}
    assert ("lab-peer10", "net.ipv6.conf.default.accept_dad") in sysctls
    assert ("lab-nat10", "net.ipv6.conf.all.forwarding") in sysctls
    assert not any(key == plan.IPV6_OFF for _, key in sysctls)
    routes = {(s.ns, s.dst, s.gateway) for s in steps if isinstance(s, plan.AddRoute)}
    assert ("lab-peer10", "::/0", "2001:db8:10::1") in routes
    assert ("lab-core", "2001:db8:10::/64", "2001:db8:f10::10") in routes
    assert ("lab-core", "2001:db8:ff14::/64", "2001:db8:f14::14") in routes
    assert not any(dst.startswith(("2001:db8:14:", "2001:db8:16:")) for ns, dst, _ in routes if ns == "lab-core")
    addresses = {(s.ns, s.address, s.prefixlen) for s in steps if isinstance(s, plan.AddAddress)}
    assert ("lab-server", "2001:db8:113::2", 64) in addresses
    default = plan.plan(model.load(TOPOLOGIES / "default.yaml"), "lab")
    assert all(s.key == plan.IPV6_OFF for s in default if isinstance(s, plan.Sysctl) and "ipv6" in s.key)


def test_a_port_mapping_router_starts_miniupnpd_whose_undo_stops_it() -> None:
    steps = plan.plan(model.load(TOPOLOGIES / "port-mapping.yaml"), "lab")
    starts = [s for s in steps if isinstance(s, plan.StartPortmap)]
    assert [s.ns for s in starts] == ["lab-nat10", "lab-nat14"]
    assert plan.inverse(starts[0]) == plan.StopPortmap("lab-nat10")
    nat_loaded = next(i for i, s in enumerate(steps) if isinstance(s, plan.LoadNat) and s.ns == "lab-nat10")
    assert steps.index(starts[0]) > nat_loaded
    assert starts[0].conf_path == "/run/netns-lab/lab/miniupnpd-nat10.conf"


def test_miniupnpd_configuration() -> None:
    node = Node(
        "nat10",
        "router",
        (Interface("wan10", ()), Interface("lan10", ())),
        nat=Nat("masquerade", "wan10", port_mapping=True),
    )
    conf = portmap.config(node, ["lan10"], "/run/x.leases").splitlines()
    assert conf[:4] == ["ext_ifname=wan10", "ext_allow_private_ipv4=yes", "listening_ip=lan10", "http_port=2189"]
    assert "lease_file=/run/x.leases" in conf
    assert "upnp_table_name=netns_upnp" in conf
    assert conf[-2:] == ["allow 1024-65535 0.0.0.0/0 1024-65535", "deny 0-65535 0.0.0.0/0 0-65535"]
    assert "table inet netns_upnp {" in portmap.nft_table()


def test_lease_lines_are_read_and_bad_ones_counted() -> None:
    text = "UDP:4000:10.0.10.2:4000:1796578262:NAT-PMP 4000 UDP\nTCP:80:10.0.10.2:8080:0:web: a colon\nbad line\n\n"
    mappings, bad = portmap.parse_leases(text)
    assert mappings == [
        {
            "protocol": "udp",
            "external_port": 4000,
            "internal": "10.0.10.2:4000",
            "expires": 1796578262,
            "description": "NAT-PMP 4000 UDP",
        },
        {
            "protocol": "tcp",
            "external_port": 80,
            "internal": "10.0.10.2:8080",
            "expires": None,
            "description": "web: a colon",
        },
    ]
    assert bad == 1
