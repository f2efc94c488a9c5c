"""Port mapping through the lab's port-mapping routers (miniupnpd: PCP, NAT-PMP, UPnP IGD) in front of symmetric NATs,
whose mappings are endpoint-dependent: without a router's port, only the relay joins two such peers
(tests/e2e/test_punch_predict.py). Each peer asks its router (punch.portmap), offers the mapped port, and the other
checks it: a direct path, behind home routers and bare MASQUERADE ones alike. The router's own state (its mappings as
`python -m netns status` lists them from miniupnpd's lease file, its nftables DNAT rule) shows the mapping while the
session lives and not after: after SIGTERM, and after Ctrl-C or SIGTERM before the other peer came. A mapping the
router grants for 30 s is renewed, and one it lost is made again; a router with PCP off is asked in NAT-PMP, one with
both off in UPnP IGD.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from typing import Any

import pytest

from netns.kernel import portmap
from netns.testing import Lab
from netns.topology.model import TOPOLOGIES
from tests.e2e import requires
from tests.e2e.punch_in_lab import (
    LAN,
    WAN,
    chat_peer,
    conntrack_udp,
    end_chat,
    finish,
    port,
    say,
    start_in_order,
    start_peer,
    start_server,
    wait_for_line,
)

MINIUPNPD = f"needs miniupnpd 2.3.9 at {portmap.DEFAULT_BINARY}: build it with {portmap.SETUP}"
pytestmark = [
    pytest.mark.e2e,
    *requires.marks(MINIUPNPD if portmap.binary() is None else None),
    *requires.marks(requires.missing(("upnpc",), "apt-get install miniupnpc")),
]

SYMMETRIC = [
    {"topology": TOPOLOGIES / "port-mapping.yaml", "nat": "symmetric", "firewall": kind} for kind in ("home", "none")
]
ROUTER_KINDS = ["home-router", "bare-masquerade"]
ROUTER = {"10": "10.0.10.1", "14": "10.0.14.1"}
IGD = "http://{router}:2189/rootDesc.xml"
# What a router speaks, by an nftables table in its namespace that drops the others' requests before miniupnpd sees
# them: PCP's carry version 2 in their first byte, NAT-PMP's version 0 (RFC 6887 §7, RFC 6886 §3)
PCP_OFF = "udp dport 5351 @th,64,8 2 drop"
PCP_AND_NATPMP_OFF = "udp dport 5351 drop"


def leases(lab: Lab, router: str) -> list[dict[str, Any]]:
    """The mappings miniupnpd in ``router`` holds, as `python -m netns status` lists them (its lease file)."""
    done = lab.cli("status", "--name", lab.name, "--json")
    assert done.returncode == 0, done.stderr
    [node] = [node for node in json.loads(done.stdout)["nodes"] if node["node"] == router]
    found = node["port_mapping"]
    assert "error" not in found, found
    return list(found["mappings"])


def dnat_rules(lab: Lab, router: str) -> str:
    return lab.exec(router, "nft", "list", "chain", "inet", "netns_upnp", "prerouting_miniupnpd", check=True).stdout


def router_off(lab: Lab, router: str, rule: str) -> None:
    table = (
        f"table inet punch_test_portmap {{\n    chain input {{ type filter hook input priority -10; {rule}; }}\n}}\n"
    )
    lab.exec(router, "nft", "-f", "-", input=table, check=True)


def terminated(peer: subprocess.Popen[str]) -> tuple[int, dict[str, Any], str]:
    """SIGTERM to a chatting peer, and its end; its input stays open meanwhile (closed, it would end the chat)."""
    stdin, peer.stdin = peer.stdin, None
    peer.send_signal(signal.SIGTERM)
    try:
        return finish(peer)
    finally:
        if stdin is not None:
            stdin.close()


def mapped_line(proc: Any, me: str, seconds: int | None = None, protocol: str = "PCP") -> tuple[int, int]:
    """Wait for the peer's line saying its router mapped a port: (external port, our port)."""
    lifetime = rf"{seconds} s" if seconds is not None else r"\d+ s"
    line = wait_for_line(
        proc, rf"router {ROUTER[me]} mapped UDP {WAN[me]}:(\d+) -> us \(port (\d+)\) for {lifetime} \({protocol}[;)]"
    )
    found = re.search(r":(\d+) -> us \(port (\d+)\)", line)
    assert found is not None
    return int(found[1]), int(found[2])


@pytest.mark.parametrize("lab", SYMMETRIC, indirect=True, ids=ROUTER_KINDS)
def test_two_symmetric_nats_go_direct_through_their_routers_mappings_which_live_as_long_as_the_session(
    lab: Lab,
) -> None:
    start_server(lab)
    peer10, peer14 = chat_peer(lab, "10", "14"), chat_peer(lab, "14", "10")
    ext10, port10 = mapped_line(peer10, "10")
    ext14, port14 = mapped_line(peer14, "14")
    for peer in (peer10, peer14):
        wait_for_line(peer, r"QUIC is up with")
    say(peer10, "through the mapping")
    wait_for_line(peer14, r"message 0 received from 10: 'through the mapping'")
    # while the session lives, each router lists its peer's mapping, and its DNAT rule is in place
    assert [(m["protocol"], m["external_port"], m["internal"]) for m in leases(lab, "nat10")] == [
        ("udp", ext10, f"{LAN['10']}:{port10}")
    ]
    assert [(m["protocol"], m["external_port"], m["internal"]) for m in leases(lab, "nat14")] == [
        ("udp", ext14, f"{LAN['14']}:{port14}")
    ]
    assert re.search(rf"dport {ext10} dnat ip to {LAN['10']}:{port10}", dnat_rules(lab, "nat10"))
    # each ends by SIGTERM (as a service manager stops it), and its mapping goes with it; the other's stays while the
    # other lives (peers that end at the end of their input delete theirs too: the other tests here)
    code10, result10, log10 = terminated(peer10)
    assert code10 == 0, log10
    assert leases(lab, "nat10") == []
    assert f"dport {ext10} " not in dnat_rules(lab, "nat10")
    assert f"router {ROUTER['10']} deleted our mapping UDP {WAN['10']}:{ext10} (PCP)" in log10
    assert len(leases(lab, "nat14")) == 1
    code14, result14, log14 = terminated(peer14)
    assert code14 == 0, log14
    assert leases(lab, "nat14") == []
    assert f"router {ROUTER['14']} deleted our mapping UDP {WAN['14']}:{ext14} (PCP)" in log14
    # the path: each side through a mapping; the prober checked the opener's mapped port (not its NAT's endpoint)
    assert result10["path"] == result14["path"] == "mapped"
    prober, opener = (result14, result10) if result14["role"] == "prober" else (result10, result14)
    assert prober["remote"] == opener["portmap"]["external"]
    for result, ext, me in ((result10, ext10, "10"), (result14, ext14, "14")):
        assert result["portmap"] == {
            "protocol": "PCP",
            "router": ROUTER[me],
            "external": f"{WAN[me]}:{ext}",
            "lifetime": 7200,
            "renewals": 0,
        }
    assert "no port can be predicted" not in log10 + log14
    assert "relay" not in result10["path"] + result14["path"]
    # the kernel's record on the opener's router: the prober's packets to the mapped port, DNATed to its peer
    o, p = ("10", "14") if opener is result10 else ("14", "10")
    flows = conntrack_udp(lab, f"nat{o}")
    dnat = rf"src={WAN[p]} dst={WAN[o]} sport=\d+ dport={port(opener['portmap']['external'])} .*src={LAN[o]}"
    assert re.search(dnat, flows), flows


@pytest.mark.parametrize("lab", SYMMETRIC, indirect=True, ids=ROUTER_KINDS)
def test_a_mapped_session_whose_nats_forgot_its_flows_rejoins_through_the_mappings(lab: Lab) -> None:
    """Both routers' conntrack flushed mid-session (a NAT that forgets its flows): each symmetric NAT gives the next
    datagrams out a new port, so neither side's keepalives are answered where they go. The routers' mappings (their
    DNAT rules) stay; the peers ask the server for each other again and check the mapped port at once, as the first
    punch did (a plain punch's prober would nominate only the public endpoint, which no check reaches)."""
    start_server(lab)
    keepalive = ("--keepalive", "1")
    peer10, peer14 = chat_peer(lab, "10", "14", *keepalive), chat_peer(lab, "14", "10", *keepalive)
    for peer in (peer10, peer14):
        wait_for_line(peer, r"QUIC is up with")
    for router in ("nat10", "nat14"):
        lab.exec(router, "conntrack", "-F", check=True)
    for peer in (peer10, peer14):
        wait_for_line(peer, r"lost contact with 1[04]: no answer to keepalives at .*; asking the server for", 30)
        wait_for_line(peer, r"back on a mapped path to 1[04] via", 30)
    end_chat((peer10, "after the flush\n"), (peer14, "me too\n"))
    (code10, result10, log10), (code14, result14, log14) = finish(peer10), finish(peer14)
    assert (code10, code14) == (0, 0), log10 + log14
    assert (result10["received"], result14["received"]) == (["me too"], ["after the flush"])
    assert (result10["path"], result14["path"], result10["rejoins"], result14["rejoins"]) == ("mapped", "mapped", 1, 1)
    # the rejoin's prober went to the opener's mapped port (which side probes is the server's choice this time)
    to10, to14 = (
        result14["remote"] == result10["portmap"]["external"],
        result10["remote"] == result14["portmap"]["external"],
    )
    assert to10 or to14, (result10, result14)
    for me in ("10", "14"):
        assert len(leases(lab, f"nat{me}")) == 0  # deleted at the end, as always


@pytest.mark.parametrize("lab", SYMMETRIC[:1], indirect=True, ids=ROUTER_KINDS[:1])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_peer_stopped_while_it_waits_for_the_other_deletes_its_mapping(lab: Lab, signum: signal.Signals) -> None:
    """Ctrl-C (or SIGTERM) before the other peer came: the run ends interrupted (130), its mapping deleted first."""
    server = start_server(lab)
    peer10 = start_peer(lab, "10", "14")
    ext10, port10 = mapped_line(peer10, "10")
    wait_for_line(server, r"10 asks for 14: waiting for 14 to register")
    [held] = leases(lab, "nat10")
    assert (held["external_port"], held["internal"]) == (ext10, f"{LAN['10']}:{port10}")
    peer10.send_signal(signum)
    code, _, log = finish(peer10)
    assert code == 130, log
    assert log.rstrip().endswith("punch: interrupted"), log
    assert f"router {ROUTER['10']} deleted our mapping UDP {WAN['10']}:{ext10} (PCP)" in log
    assert leases(lab, "nat10") == []
    assert f"dport {ext10} " not in dnat_rules(lab, "nat10")


@pytest.mark.parametrize("lab", SYMMETRIC, indirect=True, ids=ROUTER_KINDS)
def test_without_port_mapping_two_symmetric_nats_are_left_the_relay(lab: Lab) -> None:
    server = start_server(lab)
    done = start_in_order(lab, server, "10", "--no-portmap")
    for me in ("10", "14"):
        code, result, log = done[me]
        assert code == 0, log
        assert (result["path"], result["portmap"]) == ("relay", None)
        assert leases(lab, f"nat{me}") == []


@pytest.mark.parametrize("lab", SYMMETRIC[:1], indirect=True, ids=ROUTER_KINDS[:1])
def test_a_mapping_granted_for_30_s_is_renewed_and_one_the_router_lost_is_made_again(lab: Lab) -> None:
    """peer10 asks for 30 s (miniupnpd grants PCP mappings 120 s at least, so nat10 is asked in NAT-PMP, which grants
    what is asked) and renews every 15 s. Its mapping, deleted at the router mid-session (as an administrator or a
    reboot would), is there again after the next renewal, at the same port; the session goes on meanwhile (its flow
    is in conntrack already)."""
    router_off(lab, "nat10", PCP_OFF)
    start_server(lab)
    peer10 = chat_peer(lab, "10", "14", "--portmap-lifetime", "30")
    peer14 = chat_peer(lab, "14", "10")
    ext10, port10 = mapped_line(peer10, "10", 30, "NAT-PMP")
    for peer in (peer10, peer14):
        wait_for_line(peer, r"QUIC is up with")
    renewed = rf"router {ROUTER['10']} renewed UDP {WAN['10']}:{ext10} -> us for 30 s \(NAT-PMP\)"
    wait_for_line(peer10, renewed, 25)
    [held] = leases(lab, "nat10")
    assert held["external_port"] == ext10
    # the router loses it
    lab.exec("peer10", "upnpc", "-u", IGD.format(router=ROUTER["10"]), "-d", str(ext10), "UDP", check=True)
    assert leases(lab, "nat10") == []
    wait_for_line(peer10, renewed, 25)
    [again] = leases(lab, "nat10")
    assert (again["external_port"], again["internal"]) == (ext10, f"{LAN['10']}:{port10}")
    assert re.search(rf"dport {ext10} dnat ip to {LAN['10']}:{port10}", dnat_rules(lab, "nat10"))
    say(peer10, "after the router lost it")
    wait_for_line(peer14, r"message 0 received from 10: 'after the router lost it'")
    end_chat((peer10, ""), (peer14, ""))
    (code10, result10, log10), (code14, _, log14) = finish(peer10), finish(peer14)
    assert (code10, code14) == (0, 0), log10 + log14
    assert result10["portmap"]["renewals"] >= 2
    assert result10["portmap"]["lifetime"] == 30
    assert leases(lab, "nat10") == []


@pytest.mark.parametrize("lab", SYMMETRIC[:1], indirect=True, ids=ROUTER_KINDS[:1])
@pytest.mark.parametrize(
    ("rule", "protocol", "why"),
    [
        (PCP_OFF, "NAT-PMP", rf"PCP: no answer from {ROUTER['10']}:5351 to 3 requests in 1\.75 s\)"),
        (
            PCP_AND_NATPMP_OFF,
            "UPnP IGD",
            rf"PCP: no answer from {ROUTER['10']}:5351 to 3 requests in 1\.75 s; "
            rf"NAT-PMP: no answer from {ROUTER['10']}:5351 to 3 requests in 1\.75 s\)",
        ),
    ],
    ids=["pcp-off", "pcp-and-nat-pmp-off"],
)
def test_a_router_that_does_not_answer_pcp_is_asked_in_nat_pmp_then_in_upnp(
    lab: Lab, rule: str, protocol: str, why: str
) -> None:
    router_off(lab, "nat10", rule)
    server = start_server(lab)
    done = start_in_order(lab, server, "10")
    (code10, result10, log10), (code14, result14, log14) = done["10"], done["14"]
    assert (code10, code14) == (0, 0), log10 + log14
    assert result10["portmap"]["protocol"] == protocol
    assert result14["portmap"]["protocol"] == "PCP"
    assert result10["path"] == result14["path"] == "mapped"
    assert re.search(
        rf"router {ROUTER['10']} mapped UDP \S+ -> us \(port \d+\) for \d+ s \({protocol}; {why}", log10
    ), log10
    assert leases(lab, "nat10") == []  # deleted at the end, in that protocol too
    if protocol == "UPnP IGD":
        # UPnP IGD did not say the router's address (miniupnpd keeps a reserved one to itself): the server's view
        assert result10["portmap"]["external"].startswith("?:")
        assert re.search(rf"candidates {WAN['10']}:\d+, {WAN['10']}:{port(result10['portmap']['external'])}", log14)
