"""Port prediction through the lab's real kernel NAT: peer10 behind a symmetric NAT (MASQUERADE --random-fully),
peer14 behind a port-restricted cone (MASQUERADE), the server with its alternate address for the mapping test."""

from __future__ import annotations

import re

import pytest

from netns.testing import Lab
from tests.e2e.punch_in_lab import (
    LAN,
    PY,
    SERVER,
    SYMMETRIC_VS_CONE,
    WAN,
    chat_peer,
    conntrack_udp,
    finish,
    port,
    start_in_order,
    start_peer,
    start_server,
    wait_for_line,
)

pytestmark = pytest.mark.e2e

FIREWALLS = [{"topology": SYMMETRIC_VS_CONE, "firewall": kind} for kind in ("home", "none")]


@pytest.mark.parametrize("lab", FIREWALLS, indirect=True, ids=["home-router", "bare-masquerade"])
@pytest.mark.parametrize("first", ["10", "14"], ids=["symmetric-side-first", "cone-side-first"])
def test_the_symmetric_side_opens_many_mappings_and_the_cone_side_finds_one(lab: Lab, first: str) -> None:
    server = start_server(lab)
    done = start_in_order(lab, server, first, "--no-relay")
    (code10, result10, log10), (code14, result14, log14) = done["10"], done["14"]
    assert (code10, code14) == (0, 0), log10 + log14
    assert result10["path"] == result14["path"] == "predicted"
    assert (result10["received"], result14["received"]) == (["hello from 14"], ["hello from 10"])
    assert (result10["role"], result14["role"]) == ("opener", "prober")  # the symmetric side opens, always
    # Each side measured its NAT against the server's two addresses.
    mapped10 = result10["mapped"]
    assert re.search(rf"NAT mapping is endpoint-dependent \(server saw {mapped10} and :\d+\)", log10), log10
    assert f"NAT mapping is endpoint-independent (server saw {result14['mapped']} from both" in log14
    # peer14 talks to the mapping of one of peer10's 256 sockets (not the one the server saw; its port number
    # can still be the same by chance, about 256 in 64,512 runs: --random-fully picks each flow's port on its own,
    # and two flows to different destinations may share one, so the socket switch below is what shows it).
    assert result14["remote"].startswith(WAN["10"] + ":")
    assert result10["remote"] == result14["mapped"]
    bound = re.search(r"socket bound to (\S+)", log10)
    assert bound is not None
    assert result10["local"] != bound[1]  # peer10 switched to the socket whose mapping was hit
    # Peer-reflexive first: peer10 checked from its main socket, but nat14 lets in only the port it sent to; only
    # then were ports predicted, and peer14 sprayed only once told Go.
    assert f"checking from our main socket: {result14['mapped']}" in log10
    assert re.search(r"nothing from 14 reached our main socket within \d+ ms: its NAT lets in only the port", log10)
    assert f"opened 256 sockets toward {result14['mapped']} with TTL 2" in log10
    assert "10 got no answer on its main socket and opened many mappings (Go): spraying" in log14
    assert f"spraying 2000 checks to random ports of {WAN['10']} at 500/s" in log14
    assert re.search(rf"hit: {result14['remote']} answered after \d+ checks \(\d+\.\d s\)", log14), log14
    assert "closed the other 255" in log10
    # The kernel's record of the flow on both NATs: peer10's chosen socket <-> nat14's mapping of peer14.
    hit, easy = port(result14["remote"]), port(result14["mapped"])
    flows = {
        "nat10": rf"src={LAN['10']} dst={WAN['14']} sport={port(result10['local'])} dport={easy} .*"
        rf"src={WAN['14']} dst={WAN['10']} sport={easy} dport={hit}",
        "nat14": rf"src={LAN['14']} dst={WAN['10']} sport={port(result14['local'])} dport={hit} .*"
        rf"src={WAN['10']} dst={WAN['14']} sport={hit} dport={easy}",
    }
    for nat, flow in flows.items():
        assert re.search(flow, conntrack_udp(lab, nat)), conntrack_udp(lab, nat)


SEND_FROM_MANY_SOCKETS = """
import socket, sys
for _ in range(int(sys.argv[1])):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 2)  # creates nat10's mapping, dies at core
        s.sendto(b"x", ("192.0.2.14", 9))
"""


@pytest.mark.parametrize("lab", FIREWALLS[:1], indirect=True, ids=["home-router"])
def test_a_predicted_path_that_breaks_is_sought_again_and_reported_lost_once_rejoin_runs_out(lab: Lab) -> None:
    """peer10's path runs over one of its prediction sockets. When its keepalives go unanswered, it asks the server
    for peer14 again from its session's socket (a rejoin does not predict; without a direct path it would go on over
    the relay: tests/e2e/test_punch_mobile.py); peer14 is gone, so the loss is reported once --rejoin runs out."""
    start_server(lab)
    peer10 = chat_peer(lab, "10", "14", "--keepalive", "1", "--rejoin", "3")
    peer14 = chat_peer(lab, "14", "10", "--keepalive", "1")
    wait_for_line(peer10, r"path chosen: predicted via")
    for peer in (peer10, peer14):
        wait_for_line(peer, r"QUIC is up with")
    peer14.kill()
    peer14.communicate()
    wait_for_line(peer10, r"lost contact with 14: no answer to keepalives", 30)
    wait_for_line(peer10, r"the path ran over one of port prediction's sockets: punching the new one from our", 5)
    code10, result10, log10 = finish(peer10)
    assert code10 == 1, log10
    assert result10["error"].startswith("lost contact with 14: no answer to keepalives"), log10
    assert "it did not come back within 3 s" in result10["error"], log10


@pytest.mark.parametrize("lab", FIREWALLS[:1], indirect=True, ids=["home-router"])
def test_the_symmetric_nat_draws_public_ports_from_1024_to_65535(lab: Lab) -> None:
    """Why the spray aims at 1024-65535: MASQUERADE --random-fully picks from the whole unprivileged range, not
    from the local ephemeral range (32768-60999 by default). 1000 mappings would all miss 1024-2047, or all miss
    64512-65535, with probability about e^-15."""
    sent = lab.exec("peer10", PY, "-c", SEND_FROM_MANY_SOCKETS, "1000", check=True)
    assert sent.returncode == 0
    ports = [int(p) for p in re.findall(rf"dst={WAN['10']} sport=9 dport=(\d+)", conntrack_udp(lab, "nat10"))]
    assert len(ports) > 900  # a few local ports are reused by the kernel, and so are their mappings
    assert all(1024 <= p <= 65535 for p in ports)
    assert min(ports) < 2048
    assert max(ports) >= 64512


@pytest.mark.parametrize("lab", FIREWALLS[:1], indirect=True, ids=["home-router"])
def test_without_prediction_symmetric_to_cone_finds_no_direct_path(lab: Lab) -> None:
    server = start_server(lab)
    done = start_in_order(lab, server, "10", "--no-predict", "--no-relay", "--punch-timeout", "3")
    for me, other in (("10", "14"), ("14", "10")):
        code, result, log = done[me]
        assert code == 1, log
        assert result["error"].startswith(f"no direct path to {other} within 3 s")
        assert "NAT mapping is" not in log  # not even measured


@pytest.mark.parametrize(
    "lab", [{"nat": "symmetric", "firewall": "home"}], indirect=True, ids=["both-symmetric-home-router"]
)
def test_two_symmetric_nats_go_straight_to_the_relay(lab: Lab) -> None:
    server = start_server(lab)
    done = start_in_order(lab, server, "10")
    for me, other in (("10", "14"), ("14", "10")):
        code, result, log = done[me]
        assert code == 0, log
        assert result["path"] == "relay"
        assert result["remote"] == f"{SERVER}:3478"
        assert result["received"] == [f"hello from {other}"]
        assert f"both NATs map endpoint-dependently (ours and {other}'s): no port can be predicted" in log
        assert "using the relay through the server" in log
        assert result["punch_ms"] < 1000  # no punch timeout waited out first


@pytest.mark.parametrize(
    "lab", [{"nat": "symmetric", "firewall": "home"}], indirect=True, ids=["both-symmetric-home-router"]
)
def test_a_relay_budget_that_runs_out_is_reported_by_both_peers(lab: Lab) -> None:
    """The server counts what it relays for a session (QUIC's handshake too); past the session's total it relays
    nothing more and tells both peers, which end with its reason."""
    server = start_server(lab, "--relay-bytes", "30000")
    texts = [arg for n in range(40) for arg in ("--send", f"text {n} " + "x" * 1000)]
    procs = {"10": start_peer(lab, "10", "14", *texts)}
    wait_for_line(server, r"10 asks for 14: waiting for 14 to register")
    procs["14"] = start_peer(lab, "14", "10", *texts)
    done = {me: finish(proc) for me, proc in procs.items()}
    for me in ("10", "14"):
        code, result, log = done[me]
        assert code == 1, log
        assert result["path"] == "relay"
        assert result["error"] == (
            f"the relay at {SERVER}:3478 refused our session: 486 Relay quota reached: 30000 bytes per session"
        ), log
        assert 0 < len(result["sent"]) < 40
    line = wait_for_line(server, r"relay: session \w+ has used \d+ of its 30000 bytes")
    assert "its sender is told (logged once per session)" in line
