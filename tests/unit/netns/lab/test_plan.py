"""Plan, NAT rules and the undo stack of the netns lab, without root."""

from __future__ import annotations

import os
import signal

import pytest

from netns.lab import apply, plan
from netns.rules import nat
from netns.topology import generate, model
from netns.topology.model import DEFAULT_TOPOLOGY

pytestmark = pytest.mark.unit

GOLDEN = [
    "create namespace punch-core",
    "mark punch-core as netns-lab:punch",
    "sysctl punch-core: net.ipv6.conf.all.disable_ipv6=1",
    "create namespace punch-server",
    "mark punch-server as netns-lab:punch",
    "sysctl punch-server: net.ipv6.conf.all.disable_ipv6=1",
    "create namespace punch-nat10",
    "mark punch-nat10 as netns-lab:punch",
    "sysctl punch-nat10: net.ipv6.conf.all.disable_ipv6=1",
    "create namespace punch-nat14",
    "mark punch-nat14 as netns-lab:punch",
    "sysctl punch-nat14: net.ipv6.conf.all.disable_ipv6=1",
    "create namespace punch-peer10",
    "mark punch-peer10 as netns-lab:punch",
    "sysctl punch-peer10: net.ipv6.conf.all.disable_ipv6=1",
    "create namespace punch-peer14",
    "mark punch-peer14 as netns-lab:punch",
    "sysctl punch-peer14: net.ipv6.conf.all.disable_ipv6=1",
    "veth punch-core:net-server <-> punch-server:net-server",
    "veth punch-core:wan10 <-> punch-nat10:wan10",
    "veth punch-core:wan14 <-> punch-nat14:wan14",
    "veth punch-nat10:lan10 <-> punch-peer10:lan10",
    "veth punch-nat14:lan14 <-> punch-peer14:lan14",
    "sysctl punch-core: net.ipv4.ip_forward=1",
    "sysctl punch-core: net.ipv4.conf.all.rp_filter=0",
    "sysctl punch-core: net.ipv4.conf.default.rp_filter=0",
    "sysctl punch-nat10: net.ipv4.ip_forward=1",
    "sysctl punch-nat10: net.ipv4.conf.all.rp_filter=0",
    "sysctl punch-nat10: net.ipv4.conf.default.rp_filter=0",
    "sysctl punch-nat14: net.ipv4.ip_forward=1",
    "sysctl punch-nat14: net.ipv4.conf.all.rp_filter=0",
    "sysctl punch-nat14: net.ipv4.conf.default.rp_filter=0",
    "address punch-core:net-server 203.0.113.254/24",
    "address punch-core:wan10 198.51.100.1/24",
    "address punch-core:wan14 192.0.2.1/24",
    "address punch-server:net-server 203.0.113.1/24",
    "address punch-server:net-server 203.0.113.2/24",
    "address punch-nat10:wan10 198.51.100.10/24",
    "address punch-nat10:lan10 10.0.10.1/24",
    "address punch-nat14:wan14 192.0.2.14/24",
    "address punch-nat14:lan14 10.0.14.1/24",
    "address punch-peer10:lan10 10.0.10.2/24",
    "address punch-peer14:lan14 10.0.14.2/24",
    "link up punch-core:net-server",
    "link up punch-core:wan10",
    "link up punch-core:wan14",
    "link up punch-server:net-server",
    "link up punch-nat10:wan10",
    "link up punch-nat10:lan10",
    "link up punch-nat14:wan14",
    "link up punch-nat14:lan14",
    "link up punch-peer10:lan10",
    "link up punch-peer14:lan14",
    "route punch-server: 0.0.0.0/0 via 203.0.113.254",
    "route punch-nat10: 0.0.0.0/0 via 198.51.100.1",
    "route punch-nat14: 0.0.0.0/0 via 192.0.2.1",
    "route punch-peer10: 0.0.0.0/0 via 10.0.10.1",
    "route punch-peer14: 0.0.0.0/0 via 10.0.14.1",
    "nat punch-nat10: masquerade/home on wan10",
    "nat punch-nat14: masquerade/home on wan14",
]


def test_default_topology_plan_is_golden() -> None:
    steps = plan.plan(model.load(DEFAULT_TOPOLOGY), "punch")
    assert [step.describe() for step in steps] == GOLDEN


def test_plan_never_names_the_root_namespace() -> None:
    for step in plan.plan(model.load(DEFAULT_TOPOLOGY), "lab2"):
        assert step.ns.startswith("lab2-")
        if isinstance(step, plan.CreateVeth):
            assert step.peer_ns.startswith("lab2-")


def test_more_than_two_members_make_a_bridge_in_the_first_members_namespace() -> None:
    topology = model.parse(
        {
            "version": 1,
            "networks": {"lan": {"subnet": "10.0.0.0/24"}, "up": {"subnet": "192.0.2.0/24"}},
            "nodes": {
                "gw": {"kind": "core", "interfaces": {"up": "192.0.2.1", "lan": "10.0.0.1"}},
                "isp": {"kind": "host", "interfaces": {"up": "192.0.2.2"}},
                "a": {"kind": "host", "interfaces": {"lan": "10.0.0.2"}, "gateway": "10.0.0.1"},
                "b": {"kind": "host", "interfaces": {"lan": "10.0.0.3"}, "gateway": "10.0.0.1"},
            },
        }
    )
    links = [
        s.describe()
        for s in plan.plan(topology, "x")
        if isinstance(s, plan.CreateVeth | plan.CreateBridge | plan.AttachPort | plan.LinkUp)
    ]
    assert links == [
        "bridge x-gw:lan",
        "veth x-gw:a.0 <-> x-a:lan",
        "attach x-gw:a.0 to bridge lan",
        "veth x-gw:b.0 <-> x-b:lan",
        "attach x-gw:b.0 to bridge lan",
        "veth x-gw:up <-> x-isp:up",
        "link up x-gw:up",
        "link up x-gw:lan",
        "link up x-isp:up",
        "link up x-a:lan",
        "link up x-b:lan",
        "link up x-gw:a.0",
        "link up x-gw:b.0",
    ]


def _star(members: int) -> model.Topology:
    """A hub and ``members`` hosts on one network."""
    nodes = {"hub": {"kind": "host", "interfaces": {"lan": "10.0.0.1"}}}
    nodes |= {f"h{i}": {"kind": "host", "interfaces": {"lan": f"10.0.0.{i + 1}"}} for i in range(1, members + 1)}
    return model.parse({"version": 1, "networks": {"lan": {"subnet": "10.0.0.0/24"}}, "nodes": nodes})


def _bridges(steps: list[plan.Step]) -> dict[str, list[str]]:
    """Each bridge the steps create, with the ports attached to it in order."""
    bridges: dict[str, list[str]] = {s.ifname: [] for s in steps if isinstance(s, plan.CreateBridge)}
    for s in steps:
        if isinstance(s, plan.AttachPort):
            bridges[s.bridge].append(s.port)
    return bridges


def test_a_network_that_fills_its_bridge_exactly_has_no_branches() -> None:
    assert _bridges(plan.plan(_star(3), "x", bridge_ports=3)) == {"lan": ["h1.0", "h2.0", "h3.0"]}


def test_members_beyond_a_bridges_ports_are_dealt_evenly_to_branch_bridges() -> None:
    steps = plan.plan(_star(5), "x", bridge_ports=3)
    assert _bridges(steps) == {
        "lan": ["0.up1", "0.up2", "0.up3"],
        "0.br1": ["0.dn1", "h1.0", "h2.0"],
        "0.br2": ["0.dn2", "h3.0", "h4.0"],
        "0.br3": ["0.dn3", "h5.0"],
    }
    described = [s.describe() for s in steps]
    assert "veth x-hub:0.up2 <-> x-hub:0.dn2" in described
    assert "veth x-hub:h4.0 <-> x-h4:lan" in described
    ups = [s.ifname for s in steps if isinstance(s, plan.LinkUp) and s.ns == "x-hub"]
    assert ups[:1] == ["lan"]  # the hub's own interface first, then every bridge and port it holds
    branches = [f"0.{kind}{i}" for kind in ("br", "up", "dn") for i in (1, 2, 3)]
    assert sorted(ups[1:]) == sorted(branches + [f"h{i}.0" for i in range(1, 6)])


def test_a_generated_lab_of_2500_peers_puts_every_router_on_a_bridge_with_ports_to_spare() -> None:
    bridges = _bridges(plan.plan(generate.topology(2500), "x"))
    assert sorted(len(ports) for ports in bridges.values()) == [3, 834, 834, 835]  # uplinks; a downlink + members
    assert max(len(ports) for ports in bridges.values()) <= plan.BRIDGE_PORTS
    routers = [port for ports in bridges.values() for port in ports if not port[0].isdigit()]
    assert sorted(routers) == sorted(f"nat{i}.0" for i in range(1, 2501))


def test_home_firewall_ruleset() -> None:
    nat10 = model.load(DEFAULT_TOPOLOGY).node("nat10")
    assert nat.ruleset(nat10).splitlines() == [
        "*nat",
        ":PREROUTING ACCEPT [0:0]",
        ":INPUT ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":POSTROUTING ACCEPT [0:0]",
        "-A POSTROUTING -o wan10 -j MASQUERADE",
        "COMMIT",
        "*filter",
        ":INPUT ACCEPT [0:0]",
        ":FORWARD DROP [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        "-A INPUT -i wan10 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-A INPUT -i wan10 -j DROP",
        "-A FORWARD -i lan10 -o lan10 -j ACCEPT",
        "-A FORWARD -i lan10 -o wan10 -j ACCEPT",
        "-A FORWARD -i wan10 -o lan10 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "COMMIT",
    ]


def test_bare_router_ruleset_only_masquerades() -> None:
    nat14 = model.load(DEFAULT_TOPOLOGY).with_firewall("none").node("nat14")
    rules = nat.ruleset(nat14).splitlines()
    assert [r for r in rules if r.startswith("-A")] == ["-A POSTROUTING -o wan14 -j MASQUERADE"]
    assert ":FORWARD ACCEPT [0:0]" in rules


def test_firewall_override_reaches_every_router() -> None:
    topology = model.load(DEFAULT_TOPOLOGY).with_firewall("none")
    assert [n.nat.firewall for n in topology.nodes if n.nat] == ["none", "none"]


class Recorder:
    def __init__(self, fail_on: str | None = None, interrupt_on: str | None = None) -> None:
        self.done: list[str] = []
        self.fail_on = fail_on
        self.interrupt_on = interrupt_on

    def __call__(self, step: plan.Step) -> None:
        text = step.describe()
        if text == self.fail_on:
            raise RuntimeError("boom")
        if text == self.interrupt_on:
            raise KeyboardInterrupt
        self.done.append(text)


STEPS: list[plan.Step] = [
    plan.CreateNamespace("t-a"),
    plan.MarkNamespace("t-a", "netns-lab:t"),
    plan.CreateNamespace("t-b"),
    plan.CreateVeth("t-a", "n", "t-b", "n"),
    plan.CreateNamespace("t-c"),
]


def test_apply_runs_every_step_in_order() -> None:
    recorder = Recorder()
    apply.apply(STEPS, recorder)
    assert recorder.done == [s.describe() for s in STEPS]


def test_apply_undoes_finished_steps_in_reverse_on_error() -> None:
    recorder = Recorder(fail_on="veth t-a:n <-> t-b:n")
    with pytest.raises(RuntimeError, match="boom"):
        apply.apply(STEPS, recorder)
    assert recorder.done[3:] == ["delete namespace t-b", "delete namespace t-a"]


def test_apply_undoes_an_interrupted_create_too() -> None:
    recorder = Recorder(interrupt_on="create namespace t-c")
    with pytest.raises(KeyboardInterrupt):
        apply.apply(STEPS, recorder)
    assert recorder.done[4:] == ["delete namespace t-c", "delete namespace t-b", "delete namespace t-a"]


def test_a_signal_stops_apply_at_the_next_step_boundary_and_undoes() -> None:
    done: list[str] = []
    before = signal.getsignal(signal.SIGTERM)  # SIG_DFL, or tests/e2e/conftest.py's handler in a full run

    def execute(step: plan.Step) -> None:
        done.append(step.describe())
        if step.describe() == "create namespace t-b":
            os.kill(os.getpid(), signal.SIGTERM)  # recorded, not raised inside this step

    with pytest.raises(apply.Interrupted) as caught, apply.deferred_signals():
        apply.apply(STEPS, execute)
    assert caught.value.signum == signal.SIGTERM
    assert done == [
        "create namespace t-a",
        "mark t-a as netns-lab:t",
        "create namespace t-b",
        "delete namespace t-b",
        "delete namespace t-a",
    ]
    assert signal.getsignal(signal.SIGTERM) is before  # restored
