"""punch behind double NAT (NAT444): peer10 and peer11 behind home NATs behind one carrier-grade NAT (cgn),
peer14 behind an ordinary home NAT (netns/topologies/cgnat.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from netns.testing import Lab, LabFactory
from netns.topology.model import TOPOLOGIES
from tests.e2e.punch_in_lab import (
    FAR_SERVER,
    LOSE_INTRODUCTIONS,
    chat_peer,
    end_chat,
    finish,
    start_peer,
    start_server,
    wait_for_line,
)

pytestmark = pytest.mark.e2e

CGN_PUBLIC = "198.51.100.100"


@pytest.fixture
def cgnat_lab(lab_factory: LabFactory) -> Lab:
    return lab_factory(topology=TOPOLOGIES / "cgnat.yaml")


def punch_with_10_opening(
    lab: Lab, other: str, path: str = "direct"
) -> tuple[dict[str, Any], str, dict[str, Any], str]:
    """peer10 asks first (so it opens), then ``other``; both send a text, relay off. Both must take ``path`` with
    the other's text: peer10's result and log, the other's result and log."""
    server = start_server(lab)
    peer10 = start_peer(lab, "10", other, "--send", "hello from 10", "--no-relay")
    wait_for_line(server, rf"10 asks for {other}: waiting for {other} to register")
    them = start_peer(lab, other, "10", "--send", f"hello from {other}", "--no-relay")
    code10, result10, log10 = finish(peer10)
    code, result, log = finish(them)
    assert (code10, code) == (0, 0), log10 + log
    assert (result10["role"], result10["path"], result["path"]) == ("opener", path, path), log10 + log
    assert (result10["received"], result["received"]) == ([f"hello from {other}"], ["hello from 10"])
    return result10, log10, result, log


def test_the_opener_behind_two_nats_finds_ttl_3_and_punches_without_the_fallback(cgnat_lab: Lab) -> None:
    result10, log10, _, _ = punch_with_10_opening(cgnat_lab, "14")
    assert result10["mapped"].startswith(CGN_PUBLIC + ":")  # the server sees the carrier's address
    assert "TTL 2 died at 100.64.0.1 (private)" in log10, log10
    assert "opening probes get TTL 3 (past our own NATs)" in log10, log10
    assert "with TTL 3: opens our NAT mapping" in log10
    assert "no check from 14 after" not in log10, log10  # the prober's first checks got through both NATs


def test_a_fixed_ttl_of_2_dies_inside_the_carrier_and_waits_for_the_fallback(cgnat_lab: Lab) -> None:
    """The contrast: TTL 2 opens peer10's home NAT but not the CGN, whose filter then drops peer14's checks
    until the opener gives up waiting and probes at full TTL. With Ready/Go: with early checks, peer10's own checks
    would open the CGN at once."""
    server = start_server(cgnat_lab)
    ready_go = ("--no-relay", "--no-early-checks")
    peer10 = start_peer(cgnat_lab, "10", "14", "--send", "hello from 10", *ready_go, "--open-ttl", "2")
    wait_for_line(server, r"10 asks for 14: waiting for 14 to register")
    peer14 = start_peer(cgnat_lab, "14", "10", "--send", "hello from 14", *ready_go)
    code10, result10, log10 = finish(peer10)
    code14, _, log14 = finish(peer14)
    assert (code10, code14) == (0, 0), log10 + log14
    assert result10["path"] == "direct"
    assert "route to the server" not in log10  # a fixed TTL traces nothing
    assert "no check from 14 after 2 s; probing" in log10, log10


def test_two_subscribers_of_one_carrier_meet_through_its_hairpin(cgnat_lab: Lab) -> None:
    start_server(cgnat_lab)
    peer10 = start_peer(cgnat_lab, "10", "11", "--send", "hello from 10", "--no-relay")
    peer11 = start_peer(cgnat_lab, "11", "10", "--send", "hello from 11", "--no-relay")
    code10, result10, log10 = finish(peer10)
    code11, result11, log11 = finish(peer11)
    assert (code10, code11) == (0, 0), log10 + log11
    assert result10["path"] == result11["path"] == "direct"
    # Both sit behind the same carrier address: each talks to the other's mapping on the CGN's public side.
    assert result10["remote"] == result11["mapped"]
    assert result10["remote"].startswith(CGN_PUBLIC + ":")
    assert result11["remote"].startswith(CGN_PUBLIC + ":")


def test_behind_one_carrier_and_bare_home_routers_the_opener_probe_dies_at_the_carrier(lab_factory: LabFactory) -> None:
    """With TTL 3 the opener's probe would pass the CGN, be hairpinned to the other home router and, on a router
    without a firewall, be delivered to it and make MASQUERADE move the other peer's checks to a new port (the
    conntrack race: the relay took every such session). Toward a peer with our public address it gets one hop less
    and dies at the CGN, which already maps us and hairpins the other's checks to that mapping."""
    bare = lab_factory(firewall="none", topology=TOPOLOGIES / "cgnat.yaml")
    _, log10, result11, _ = punch_with_10_opening(bare, "11")
    assert f"to {result11['mapped']} with TTL 2: opens our NAT mapping, dies before the NAT we share" in log10, log10


def test_behind_one_carrier_the_subscribers_check_early_and_nominate_the_hairpin_at_once(
    lab_factory: LabFactory,
) -> None:
    """With the server far enough for early checks, two subscribers of one carrier check without waiting for Go,
    as peers behind different NATs do; their LAN candidates lie behind each other's home router (not on a link of
    theirs), so the prober nominates in every check and takes the hairpin the moment it answers: no LAN wait."""
    lab = lab_factory(topology=TOPOLOGIES / "cgnat.yaml", args=FAR_SERVER)
    result10, log10, result11, log11 = punch_with_10_opening(lab, "11")
    assert (result10["early"], result11["early"]) == (True, True), log10 + log11
    assert "none of 10's LAN candidates (10.0.10.2:" in log11, log11
    assert "is on a link of ours: our NAT's hairpin is nominated at once, no LAN wait" in log11
    assert "(we nominated it in our checks)" in log11  # the prober chose as its check was answered
    assert "no LAN candidate of" not in log11  # nothing waited for one


LOOKALIKE = Path(__file__).parent.parent / "data" / "topologies" / "cgnat-lookalike.yaml"


def test_two_homes_with_the_same_addresses_behind_one_carrier_look_like_one_lan_and_wait_for_it(
    lab_factory: LabFactory,
) -> None:
    """Both homes use 192.168.1.0/24: the other's LAN candidate is on our link as far as our routing table can
    tell, so the peers take Ready/Go (a look-alike's router could lose an early race) and the prober waits for the
    LAN candidate before it nominates the hairpin; the path is the hairpin's all the same."""
    lab = lab_factory(topology=LOOKALIKE, args=FAR_SERVER)
    result10, _, result11, log11 = punch_with_10_opening(lab, "11")
    assert (result10["early"], result11["early"]) == (False, False)
    assert result10["remote"] == result11["mapped"]
    assert "LAN candidate is on our link: Ready/Go, not early checks" in log11
    assert "no LAN candidate of 10 answered within" in log11, log11  # peer11 is the prober


def test_a_lost_race_behind_one_carrier_is_refused_through_its_hairpin_and_the_late_peer_moves(
    lab_factory: LabFactory,
) -> None:
    """Bare home routers, early checks, and peer11's introduction lost once: peer10's checks reach nat11 before
    peer11's probe opened it; nat11 records them as a connection of its own and refuses them, and the CGN's hairpin
    brings the refusal back from peer11's public address (the CGN's). peer10 asks the server to move peer11, whose
    fresh socket's probe dies at the CGN (one hop less, as in the punch), and both go direct."""
    lab = lab_factory(firewall="none", topology=TOPOLOGIES / "cgnat.yaml", args=FAR_SERVER)
    lab.exec("nat11", "nft", "-f", "-", input=LOSE_INTRODUCTIONS, check=True)
    start_server(lab)
    peer10, peer11 = chat_peer(lab, "10", "11"), chat_peer(lab, "11", "10")
    wait_for_line(peer10, r"checking without waiting for Go")
    wait_for_line(peer10, rf"our check to {CGN_PUBLIC}:\d+ was refused by 11's NAT")
    wait_for_line(peer10, r"asked the server to move the other peer: telling 11 to move")
    lab.exec("nat11", "nft", "delete", "table", "inet", "lose_introductions", check=True)
    wait_for_line(peer11, r"server says 10's check was refused by our NAT: we move to a fresh socket")
    wait_for_line(peer11, rf"probe sent to {CGN_PUBLIC}:\d+ with TTL 2: opens our NAT mapping, dies before the NAT we")
    wait_for_line(peer10, rf"following 11 to {CGN_PUBLIC}:\d+")
    for peer in (peer10, peer11):
        wait_for_line(peer, r"using the direct path to")
        wait_for_line(peer, r"QUIC is up with")
    end_chat((peer10, "from 10\n"), (peer11, "from 11\n"))
    (code10, result10, log10), (code11, result11, log11) = finish(peer10), finish(peer11)
    assert (code10, code11) == (0, 0), log10 + log11
    assert (result10["path"], result11["path"]) == ("direct", "direct")
    assert (result10["move"], result11["move"]) == ("followed", "moved")
    assert (result10["received"], result11["received"]) == (["from 11"], ["from 10"])
    assert result10["remote"].startswith(CGN_PUBLIC + ":")


@pytest.mark.parametrize(
    ("silent", "why"),
    [
        # Carriers' routers often rate-limit ICMP errors: here the core router sends no Time Exceeded at all. The
        # trace sees both NATs answer, TTL 3 stay silent and the server answer further on: TTL 3, dying there.
        ("core", "to TTL 3's silent router"),
        # Our own router rate-limits the ICMP errors it sends us (port mapping's requests and the trace come in a
        # burst): here nat10 sends none. The trace sees TTL 1 stay silent, TTL 2 die at the CGN (a private address)
        # and TTL 3 at a public router: the routers before a private one are ours, so TTL 3 still (with TTL 2 the
        # probe died at the CGN: the 2 s Ready/Go fallback).
        ("nat10", "some of them silent"),
    ],
    ids=["silent-first-public-router", "silent-home-router-before-the-carrier"],
)
def test_a_router_that_sends_no_time_exceeded_still_gives_ttl_3(cgnat_lab: Lab, silent: str, why: str) -> None:
    """With one router on the way silent, the probe still gets TTL 3 instead of the default 2, and the punch needs
    no fallback."""
    cgnat_lab.exec(
        silent, "iptables", "-A", "OUTPUT", "-p", "icmp", "--icmp-type", "time-exceeded", "-j", "DROP", check=True
    )
    _, log10, _, _ = punch_with_10_opening(cgnat_lab, "14")
    assert f"opening probes get TTL 3 (past our own NATs, {why})" in log10, log10
    assert "with TTL 3: opens our NAT mapping" in log10
    assert "no check from 14 after" not in log10, log10


def test_a_symmetric_home_nat_behind_one_carrier_opens_its_predicted_ports_past_the_carrier(
    lab_factory: LabFactory,
) -> None:
    """peer10's home NAT maps endpoint-dependently and peer11's lets in only the port it sent to, so peer10 opens
    many mappings and peer11 sprays (port prediction). Unlike the plain punch's probe, those go past the CGN (full TTL 3): each fresh socket is new to
    the CGN, which maps it only when a packet of it passes (here: is hairpinned to peer11's home router, whose
    firewall drops it). On bare home routers that router would take them for connections of its own and remap
    peer11's spray, and no TTL helps: a probe that dies at the CGN leaves no mapping there (the relay, then)."""
    lab = lab_factory(topology=TOPOLOGIES / "cgnat.yaml", nat="nat10=symmetric")
    _, log10, result11, _ = punch_with_10_opening(lab, "11", path="predicted")
    # peer11's home NAT lets in only the port it sent to: the checks from peer10's main socket (peer-reflexive first,
    # hairpinned by the CGN) got no answer before ports were predicted
    assert "nothing from 11 reached our main socket within" in log10, log10
    assert "we open 256 mappings and 11 sprays" in log10, log10
    assert f"toward {result11['mapped']} with TTL 3: a fresh mapping on a random port of our NAT each" in log10
