"""IPv6 in the lab (netns/topologies/dual-stack.yaml), proved with hand-made sockets in the nodes and the routers'
conntrack: what address the server sees for each kind of home router (routed, NPTv6 RFC 6296, NAT66), that the
RFC 6092 firewall lets in only answers (and a bare router everything), that NPTv6 maps both ways, and that a punch
(both sides sending at once to each other's public endpoint) gets through between every pair of kinds.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from netns.testing import Lab, LabFactory
from netns.topology.model import TOPOLOGIES
from tests.e2e import requires
from tests.e2e.inbound import receive

pytestmark = [
    pytest.mark.e2e,
    *requires.marks(requires.missing(("ip6tables-restore",), "apt-get install iptables")),
]

DUAL_STACK = TOPOLOGIES / "dual-stack.yaml"
SERVER = "2001:db8:113::1"
# peer -> (its own address, the address others reach it at, its router)
PEERS = {
    "peer10": ("2001:db8:10::2", "2001:db8:10::2", "nat10"),  # routed
    "peer11": ("2001:db8:11::2", "2001:db8:11::2", "nat11"),  # routed
    "peer14": ("2001:db8:14::2", "2001:db8:ff14::2", "nat14"),  # NPTv6: the prefix swapped, the rest kept
    "peer16": ("2001:db8:16::2", "2001:db8:f16::16", "nat16"),  # NAT66: the router's WAN address
}

# Answers each datagram with where it came from: "seen [ADDRESS]:PORT".
ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 9000))
print("ready", flush=True)
s.settimeout(20)
while True:
    data, addr = s.recvfrom(2048)
    s.sendto(f"seen [{addr[0]}]:{addr[1]}".encode(), addr)
"""
# From PORT, sends to ADDRESS:9000 and prints the answer (or "nothing" after WAIT seconds, default 3).
ASK = """
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("::", int(sys.argv[1])))
s.settimeout(float(sys.argv[3]) if len(sys.argv) > 3 else 3)
s.sendto(b"who am I", (sys.argv[2], 9000))
try:
    print(s.recvfrom(2048)[0].decode())
except socket.timeout:
    print("nothing")
"""
# A punch: from PORT, sends to PEER:PEER_PORT every 50 ms until half a second after the first datagram from it
# arrived (or 5 s went by); prints that datagram's sender, or "nothing".
PUNCH = """
import socket, sys, time
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("::", int(sys.argv[1])))
s.settimeout(0.05)
got, until, deadline = None, None, time.monotonic() + 5
while time.monotonic() < (until or deadline):
    s.sendto(b"punch", (sys.argv[2], int(sys.argv[3])))
    try:
        data, addr = s.recvfrom(2048)
    except socket.timeout:
        continue
    if got is None:
        got, until = f"[{addr[0]}]:{addr[1]}", time.monotonic() + 0.5
print(got or "nothing")
"""


def lab_with(firewall: str) -> Iterator[Lab]:
    factory = LabFactory()
    try:
        yield factory(firewall=firewall, topology=DUAL_STACK)
    finally:
        factory.close()


@pytest.fixture(scope="module")
def home() -> Iterator[Lab]:
    yield from lab_with("home")


@pytest.fixture(scope="module")
def bare() -> Iterator[Lab]:
    yield from lab_with("none")


def unsolicited(lab: Lab, peer: str, target: str, port: int, wait: float) -> str:
    """What ``peer`` receives on ``port`` when the server sends one datagram from its ``port`` to ``target``:``port``
    (unasked, unless the peer has sent to the server's ``port`` from its own)."""
    return receive(lab, peer, SERVER, target, port, wait)


def conntrack(lab: Lab, router: str, port: int) -> str:
    return lab.exec(router, "conntrack", "-L", "-f", "ipv6", "-p", "udp", "--dport", str(port)).stdout


def test_the_server_sees_each_kind_at_the_address_it_should(home: Lab) -> None:
    echo = home.spawn("server", sys.executable, "-c", ECHO, SERVER, text=True)
    assert echo.stdout is not None
    assert echo.stdout.readline().strip() == "ready"
    for peer, (_, public, _) in PEERS.items():
        seen = home.exec(peer, sys.executable, "-c", ASK, "7100", SERVER, check=True).stdout.strip()
        assert seen == f"seen [{public}]:7100", peer  # NAT66 keeps the port where it is free
    echo.kill()


@pytest.mark.parametrize("peer", ["peer10", "peer14"])
def test_rfc_6092_firewall_lets_in_only_answers(home: Lab, peer: str) -> None:
    """Unsolicited from the internet: dropped before conntrack confirms it (no entry); once the peer has sent to
    the server from that port, the server's datagram is an answer and arrives."""
    _, public, router = PEERS[peer]
    assert unsolicited(home, peer, public, 7200, 1.0) == "nothing"
    assert conntrack(home, router, 7200) == ""
    home.exec(peer, sys.executable, "-c", ASK.replace("9000", "7200"), "7200", SERVER, "0.1")  # nobody answers
    assert unsolicited(home, peer, public, 7200, 5.0) == f"inbound from {SERVER}"


@pytest.mark.parametrize("peer", ["peer10", "peer14"])
def test_a_bare_router_lets_everything_in_and_nptv6_maps_both_ways(bare: Lab, peer: str) -> None:
    """firewall none: no filter at all, so the internet reaches the LAN host: at its own address behind a routing
    router, at its NPTv6 address (the prefix translated inbound too, RFC 6296 §3) behind nat14."""
    _, public, _ = PEERS[peer]
    assert unsolicited(bare, peer, public, 7300, 5.0) == f"inbound from {SERVER}"


def test_nat66_lets_nothing_in_unasked_even_bare(bare: Lab) -> None:
    """NAT66 maps like IPv4's masquerade: without a mapping there is nobody to deliver to."""
    assert unsolicited(bare, "peer16", "2001:db8:f16::16", 7400, 1.0) == "nothing"


@pytest.mark.parametrize(
    ("a", "b"),
    [("peer10", "peer11"), ("peer10", "peer14"), ("peer10", "peer16"), ("peer14", "peer16")],
    ids=["routed-routed", "routed-nptv6", "routed-nat66", "nptv6-nat66"],
)
def test_a_punch_gets_through_between_kinds(home: Lab, a: str, b: str) -> None:
    """Both send at once to the other's public endpoint (port kept by every kind here); each router's conntrack then
    holds the flow, translated where the router translates."""
    port = 7500 + list(PEERS).index(a) * 10 + list(PEERS).index(b)
    punches: dict[str, subprocess.Popen[str]] = {}
    for me, other in ((a, b), (b, a)):
        punches[me] = home.spawn(me, sys.executable, "-c", PUNCH, str(port), PEERS[other][1], str(port), text=True)
    for me, other in ((a, b), (b, a)):
        out, _ = punches[me].communicate(timeout=15)
        assert out.strip() == f"[{PEERS[other][1]}]:{port}", me
    for peer in (a, b):
        own, public, router = PEERS[peer]
        entries = conntrack(home, router, port)
        assert f"src={own} " in entries, entries
        assert f"dst={public} " in entries, entries  # the reply direction: to the public address
