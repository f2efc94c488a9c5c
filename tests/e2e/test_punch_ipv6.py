"""punch over IPv6 in the dual-stack lab (netns/topologies/dual-stack.yaml): one server on [::]:3478 serves both
families; peers given its IPv6 address punch through their home routers' IPv6 kinds (RFC 6092's stateful firewall
on a routed prefix, NPTv6, NAT66), and the routers' conntrack holds the flow; peers given its IPv4 address punch
through the same routers' IPv4 NATs, and are told their IPv4 address (not an IPv4-mapped one). Peers given both
offer candidates of both families and take IPv6, or IPv4 where IPv6 between them is blocked."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from netns.testing import Lab, LabFactory
from netns.topology.model import TOPOLOGIES
from tests.e2e import requires
from tests.e2e.punch_in_lab import PY, finish, port, wait_for_line

pytestmark = [
    pytest.mark.e2e,
    *requires.marks(requires.missing(("ip6tables-restore",), "apt-get install iptables")),
]

SERVER6 = "2001:db8:113::1"
SERVER4 = "203.0.113.1"
WAN = {"10": "198.51.100.10", "11": "198.51.100.75", "14": "192.0.2.14"}  # the routers' IPv4 NAT addresses
# peer ID -> (its own IPv6 address, the address others reach it at, its router): see tests/e2e/test_lab_ipv6.py
PEERS = {
    "10": ("2001:db8:10::2", "2001:db8:10::2", "nat10"),  # routed, RFC 6092 firewall
    "11": ("2001:db8:11::2", "2001:db8:11::2", "nat11"),  # routed, RFC 6092 firewall
    "14": ("2001:db8:14::2", "2001:db8:ff14::2", "nat14"),  # NPTv6 (RFC 6296), RFC 6092 firewall
    "16": ("2001:db8:16::2", "2001:db8:f16::16", "nat16"),  # NAT66
}


def lab_with_server(topology: str) -> Iterator[Lab]:
    """``topology``'s lab with home routers, and `punch server --listen [::]:3478` in it."""
    factory = LabFactory()
    try:
        lab = factory(firewall="home", topology=TOPOLOGIES / topology)
        server = lab.spawn("server", PY, "-m", "punch", "server", "--listen", "[::]:3478", text=True)
        wait_for_line(server, r"listening on \[::\]:3478")
        yield lab
    finally:
        factory.close()


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    yield from lab_with_server("dual-stack.yaml")


@pytest.fixture(scope="module")
def ipv6_only() -> Iterator[Lab]:
    yield from lab_with_server("ipv6-only.yaml")


def start(lab: Lab, me: str, other: str, server: str, *extra: str) -> subprocess.Popen[Any]:
    command = [PY, "-m", "punch", "peer", "--server", server, *extra, "--id", me, "--to", other, "--json"]
    return lab.spawn(f"peer{me}", *command, "--send", f"hello from {me}", text=True, stdin=subprocess.DEVNULL)


def conntrack6(lab: Lab, router: str) -> str:
    return lab.exec(router, "conntrack", "-L", "-f", "ipv6", "-p", "udp", check=True).stdout


def punch_pair(lab: Lab, a: str, b: str, server: str, *extra: str) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """``a`` and ``b`` punch through ``server`` (with ``extra`` arguments); each one's result and log, once both
    succeeded."""
    procs = {a: start(lab, a, b, server, *extra), b: start(lab, b, a, server, *extra)}
    finished = {me: finish(proc) for me, proc in procs.items()}
    for me, (code, _, log) in finished.items():
        assert code == 0, f"peer {me}: {log}"
    return {me: result for me, (_, result, _) in finished.items()}, {me: log for me, (_, _, log) in finished.items()}


@pytest.mark.parametrize(
    ("a", "b"), [("10", "11"), ("10", "14"), ("10", "16")], ids=["routed-routed", "routed-nptv6", "routed-nat66"]
)
def test_peers_with_an_ipv6_server_punch_over_ipv6_through_their_home_routers(lab: Lab, a: str, b: str) -> None:
    results, logs = punch_pair(lab, a, b, f"[{SERVER6}]:3478")
    for me, other in ((a, b), (b, a)):
        ours = results[me]
        # --open-ttl auto traced the route with ICMPv6 Time Exceeded: the home router first (its LAN address)
        assert f"TTL 1 died at {PEERS[me][0].replace('::2', '::1')} " in logs[me], logs[me]
        assert ours["received"] == [f"hello from {other}"]
        assert (ours["path"], ours["family"]) == ("direct", "ipv6")
        # the other's public address (its own, routed; its prefix swapped, NPTv6; its router's, NAT66)
        assert ours["remote"].startswith(f"[{PEERS[other][1]}]:")
        assert ours["mapped"] == f"[{PEERS[me][1]}]:{port(ours['mapped'])}"
    # The firewall's own record of the flow: peer -> the other's public endpoint, answered from there.
    own, public, router = PEERS[a]
    ours = results[a]
    flow = (
        rf"src={own} dst={PEERS[b][1]} sport={port(ours['local'])} dport={port(ours['remote'])} .*"
        rf"src={PEERS[b][1]} dst={public} sport={port(ours['remote'])} dport={port(ours['mapped'])}"
    )
    assert re.search(flow, conntrack6(lab, router)), conntrack6(lab, router)


def test_peers_with_the_same_servers_ipv4_address_punch_over_ipv4(lab: Lab) -> None:
    results, _ = punch_pair(lab, "10", "14", f"{SERVER4}:3478")
    for me, other in (("10", "14"), ("14", "10")):
        ours = results[me]
        assert (ours["path"], ours["family"]) == ("direct", "ipv4")
        assert ours["mapped"].startswith(f"{WAN[me]}:")  # its NAT's IPv4 address, as family 0x01
        assert ours["remote"].startswith(f"{WAN[other]}:")


BOTH = ("--server", f"{SERVER4}:3478")  # beside the IPv6 one: the server's two addresses
# On nat11: IPv6 from peer10 no longer reaches peer11 (the server still does); the lab's teardown removes it too
BLOCK_V6 = """
table inet punch_test_block_v6 {
    chain forward { type filter hook forward priority -10; ip6 saddr 2001:db8:10::2 ip6 daddr 2001:db8:11::2 drop; }
}
"""


def test_dual_stack_peers_offer_both_families_and_take_ipv6(lab: Lab) -> None:
    results, logs = punch_pair(lab, "10", "11", f"[{SERVER6}]:3478", *BOTH)
    for me in ("10", "11"):
        assert f"{SERVER4}:3478 sees us at {WAN[me]}:" in logs[me], logs[me]  # its IPv4 candidate, gathered
        assert (results[me]["path"], results[me]["family"]) == ("direct", "ipv6")


def test_dual_stack_peers_fall_back_to_ipv4_when_ipv6_is_blocked(lab: Lab) -> None:
    lab.exec("nat11", "nft", "-f", "-", input=BLOCK_V6, check=True)
    try:
        results, logs = punch_pair(lab, "10", "11", f"[{SERVER6}]:3478", *BOTH)
    finally:
        lab.exec("nat11", "nft", "delete", "table", "inet", "punch_test_block_v6", check=True)
    for me, other in (("10", "11"), ("11", "10")):
        assert (results[me]["path"], results[me]["family"]) == ("direct", "ipv4")
        assert results[me]["remote"].startswith(f"{WAN[other]}:")
    assert "falling back to IPv4" in logs["10"] + logs["11"]


def test_ipv6_only_peers_given_both_addresses_punch_over_ipv6(ipv6_only: Lab) -> None:
    """No IPv4 at all on the peers (an IPv6-only access network): the server's IPv4 address never answers, so they
    register by IPv6 and offer IPv6 alone, through a routed home firewall and a NAT66 router."""
    results, logs = punch_pair(ipv6_only, "10", "16", f"[{SERVER6}]:3478", *BOTH)
    for me, other in (("10", "16"), ("16", "10")):
        assert "no server of the other family answered" in logs[me], logs[me]
        assert (results[me]["path"], results[me]["family"]) == ("direct", "ipv6")
        assert results[me]["remote"].startswith(f"[{PEERS[other][1]}]:")
