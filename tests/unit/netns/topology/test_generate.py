"""Generated topologies (``up --peers N``): the strict model's data, names within the kernel's limits."""

from __future__ import annotations

import ipaddress

import pytest
import yaml

from netns import naming
from netns.cli import main
from netns.errors import TopologyError
from netns.lab import plan
from netns.topology import generate, model

pytestmark = pytest.mark.unit


def test_three_peers_each_behind_its_own_nat() -> None:
    topology = generate.topology(3)
    assert [n.name for n in topology.nodes] == ["server", "nat1", "nat2", "nat3", "peer1", "peer2", "peer3"]
    assert topology.members("inet") == ("server", "nat1", "nat2", "nat3")
    assert topology.members("lan2") == ("nat2", "peer2")
    nat2, peer2 = topology.node("nat2"), topology.node("peer2")
    assert nat2.nat == model.Nat("masquerade", "inet", "home")
    assert [(i.network, [str(a) for a in i.addresses]) for i in nat2.interfaces] == [
        ("inet", ["10.0.1.2"]),
        ("lan2", ["10.1.2.1"]),
    ]
    assert str(peer2.gateway) == "10.1.2.1"
    assert [str(a) for a in topology.node("server").interfaces[0].addresses] == ["10.0.0.1", "10.0.0.2"]


def test_generated_data_is_the_yaml_a_user_could_write() -> None:
    text = yaml.safe_dump(generate.peers(5, firewall="none"), sort_keys=False)
    written = model.parse(yaml.safe_load(text), "peers.yaml")
    generated = generate.topology(5, firewall="none")
    assert (written.networks, written.nodes) == (generated.networks, generated.nodes)


def test_addresses_stay_apart_at_the_largest_size() -> None:
    last = generate.MAX_PEERS
    assert generate.router_address(last) in generate.INTERNET
    assert generate.lan(last).subnet_of(ipaddress.IPv4Network("10.0.0.0/8"))
    assert not any(generate.lan(i).overlaps(generate.INTERNET) for i in (1, 255, 256, last))
    assert generate.lan(255) != generate.lan(256)
    assert generate.router_address(1) not in ipaddress.IPv4Network("10.0.0.0/24")  # the server's own /24


def test_names_fit_ifnamsiz_and_carry_the_lab_prefix_at_1000_peers() -> None:
    steps = plan.plan(generate.topology(1000), "abcdefgh")
    ifnames = {s.ifname for s in steps if isinstance(s, plan.CreateVeth)}
    ifnames |= {s.peer_ifname for s in steps if isinstance(s, plan.CreateVeth)}
    assert "nat1000.0" in ifnames
    assert max(map(len, ifnames)) <= naming.IFNAME_MAX
    namespaces = {s.ns for s in steps if isinstance(s, plan.CreateNamespace)}
    assert len(namespaces) == 2001
    assert all(naming.has_prefix("abcdefgh", ns) for ns in namespaces)


@pytest.mark.parametrize("n", [0, generate.MAX_PEERS + 1])
def test_peer_count_out_of_range(n: int) -> None:
    with pytest.raises(TopologyError) as caught:
        generate.topology(n)
    assert caught.value.problems == [f"--peers {n}: give 1 to 65000 peers"]


def test_peers_and_topology_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["up", "--peers", "3", "--topology", "x.yaml"])
    assert caught.value.code == 2
    assert "argument --topology: not allowed with argument --peers" in capsys.readouterr().err
