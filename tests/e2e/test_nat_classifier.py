"""RFC 4787 behaviours of the lab's kernel NAT, judged by a classifier nobody here wrote.

The classic RFC 3489 client ``stun`` (Debian package stun-client) against ``stund`` (stun-server) in node
``server``, which has the two addresses the classic tests need (203.0.113.1 and .2). Its verdict line reads
e.g. ``Primary: Independent Mapping, Port Dependent Filter, preserves ports, no hairpin``.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from netns.testing import Lab, LabFactory
from netns.topology.model import DEFAULT_TOPOLOGY

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        shutil.which("stun") is None or shutil.which("stund") is None or shutil.which("nft") is None,
        reason="the NAT classifier needs `stun`, `stund` and `nft`: apt-get install stun-client stun-server nftables",
    ),
]

SAME_NAT = Path(DEFAULT_TOPOLOGY).parent / "same-nat.yaml"
PUBLIC = Path(DEFAULT_TOPOLOGY).parent / "public.yaml"
PRIMARY, SECONDARY = "203.0.113.1", "203.0.113.2"

# preset -> what the classifier must say about it (its RFC 3489 wording of RFC 4787's terms)
VERDICTS = {
    "full-cone": "Independent Mapping, Independent Filter",
    "restricted-cone": "Independent Mapping, Address Dependent Filter",
    "port-restricted-cone": "Independent Mapping, Port Dependent Filter",
    "symmetric": "Dependent Mapping",
}


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def start_stund(lab: Lab) -> None:
    lab.spawn("server", "stund", "-h", PRIMARY, "-a", SECONDARY)

    def listening() -> bool:
        sockets = lab.exec("server", "ss", "-Hunl").stdout
        return all(f"{a}:{p}" in sockets for a in (PRIMARY, SECONDARY) for p in (3478, 3479))

    wait_until(listening, "stund to listen on both addresses and ports")


def classify(lab: Lab, node: str = "peer10") -> str:
    done = lab.exec(node, "stun", PRIMARY, timeout=60)
    verdicts = [line for line in done.stdout.splitlines() if line.startswith("Primary: ")]
    assert len(verdicts) == 1, done.stdout + done.stderr
    return verdicts[0].removeprefix("Primary: ").strip()


@pytest.mark.parametrize(
    "lab",
    [{"firewall": firewall, "nat": preset} for preset in VERDICTS for firewall in ("home", "none")],
    indirect=True,
    ids=[f"{preset}-{firewall}" for preset in VERDICTS for firewall in ("home", "none")],
)
def test_classifier_names_the_preset(lab: Lab, request: pytest.FixtureRequest) -> None:
    preset = request.node.callspec.params["lab"]["nat"]
    start_stund(lab)
    verdict = classify(lab)
    assert verdict.startswith(VERDICTS[preset] + ","), verdict
    assert verdict.endswith(", no hairpin"), verdict
    if preset == "symmetric":
        assert ", random port," in verdict
    else:
        assert ", preserves ports," in verdict


def test_default_topology_is_a_port_restricted_cone(lab: Lab) -> None:
    start_stund(lab)
    assert classify(lab) == "Independent Mapping, Port Dependent Filter, preserves ports, no hairpin"


@pytest.mark.parametrize(
    "lab",
    [{"topology": SAME_NAT, "nat": preset} for preset in ("full-cone", "restricted-cone", "port-restricted-cone")],
    indirect=True,
    ids=["full-cone", "restricted-cone", "port-restricted-cone"],
)
def test_hairpinning_router_is_seen_to_hairpin(lab: Lab, request: pytest.FixtureRequest) -> None:
    preset = request.node.callspec.params["lab"]["nat"]
    start_stund(lab)
    for peer in ("peer10", "peer11"):
        assert classify(lab, peer) == f"{VERDICTS[preset]}, preserves ports, will hairpin"


# Binds PORT, sends one datagram to the server (which makes the NAT map it), then prints what arrives.
LISTEN = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.sendto(b"map me", (sys.argv[2], 9))
print("ready", flush=True)
s.settimeout(10)
data, addr = s.recvfrom(2048)
print(f"{data.decode()} from {addr[0]}:{addr[1]}", flush=True)
"""

# Sends one datagram from PORT to ADDRESS:DPORT.
SEND = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.sendto(b"hairpinned", (sys.argv[2], int(sys.argv[3])))
"""


@pytest.mark.parametrize("lab", [{"topology": SAME_NAT}], indirect=True, ids=["same-nat"])
def test_a_peer_reaches_its_neighbour_through_the_public_address(lab: Lab) -> None:
    """RFC 4787 REQ-9: the hairpinned packet arrives from the sender's public endpoint, not its LAN one."""
    listener = lab.spawn("peer11", sys.executable, "-c", LISTEN, "7011", PRIMARY, text=True)
    assert listener.stdout is not None
    assert listener.stdout.readline().strip() == "ready"
    lab.exec("peer10", sys.executable, "-c", SEND, "7010", "198.51.100.10", "7011", check=True)
    out, _ = listener.communicate(timeout=15)
    assert out.strip() == "hairpinned from 198.51.100.10:7010"


def test_status_names_the_behaviour_in_rfc_4787_terms(lab_factory: LabFactory) -> None:
    lab = lab_factory(topology=SAME_NAT, nat="full-cone")
    done = lab.cli("status", "--name", lab.name)
    assert done.returncode == 0, done.stderr
    assert "nat10 [router] " + lab.namespace("nat10") + " nat nftables/home on wan10" in done.stdout
    assert (
        "  full-cone: mapping endpoint-independent, filtering endpoint-independent, hairpinning, firewall home, "
        "udp-timeout kernel default, ports preserve\n" in done.stdout
    )


def test_udp_timeout_sets_the_routers_conntrack_timeouts(lab_factory: LabFactory, tmp_path: Path) -> None:
    topology = tmp_path / "timeout.yaml"
    topology.write_text(
        SAME_NAT.read_text().replace("hairpinning: true,", "hairpinning: true, udp-timeout: 45,"), encoding="utf-8"
    )
    lab = lab_factory(topology=topology, nat="restricted-cone")
    keys = ["net.netfilter.nf_conntrack_udp_timeout", "net.netfilter.nf_conntrack_udp_timeout_stream"]
    assert lab.exec("nat10", "sysctl", "-n", *keys).stdout.split() == ["45", "45"]
    assert lab.exec("peer10", "sysctl", "-n", *keys).stdout.split() != ["45", "45"]
    assert "timeout 45s" in lab.exec("nat10", "nft", "list", "map", "ip", "netns_lab", "owners").stdout


@pytest.mark.parametrize(
    ("lab", "verdict"),
    [({"topology": PUBLIC, "firewall": "none"}, "Open"), ({"topology": PUBLIC, "firewall": "home"}, "Firewall")],
    indirect=["lab"],
    ids=["no-nat-bare", "no-nat-firewall"],
)
def test_no_nat_is_open_or_a_firewall(lab: Lab, verdict: str) -> None:
    start_stund(lab)
    assert classify(lab) == verdict
