"""A mobile carrier's NAT (netns/topologies/mobile.yaml): nat10 maps each flow to the next port (symmetric, sequential)
and forgets a UDP mapping after 30 s without traffic, under RFC 4787 REQ-5's two minutes; nat14 is a port-restricted
cone. punch predicts a port through it, and its keepalives (every 5 s by default) hold that mapping: the session's
flow outlives the 30 s in which the NAT forgets every other one (the prediction's unused mappings), and a text sent
after that quiet goes the same way, with no new punch. With keepalives slower than the NAT's lifetime the mapping
goes; the peers notice, meet again through the server and go on over the relay, the QUIC connection unbroken.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from netns.testing import Lab, LabFactory
from netns.topology.model import TOPOLOGIES
from tests.e2e.punch_in_lab import WAN, chat_peer, conntrack_udp, end_chat, finish, say, start_server, wait_for_line

pytestmark = pytest.mark.e2e

MOBILE = [{"topology": TOPOLOGIES / "mobile.yaml", "firewall": None}]  # the topology's own firewalls
LAN10 = "198.51.100.130"  # peer10's address (the LANs of mobile.yaml are public space, translated all the same)
UDP_TIMEOUT = 30  # nat10's udp-timeout in mobile.yaml
KEEPALIVE = 5  # punch peer's default --keepalive


def unanswered_flows(lab: Lab, toward: str) -> list[str]:
    """nat10's conntrack entries from peer10 toward ``toward`` (an IP) that nothing answered."""
    return [
        line
        for line in conntrack_udp(lab, "nat10").splitlines()
        if f"src={LAN10} dst={toward} " in line and "[UNREPLIED]" in line
    ]


def wait_until_gone(lab: Lab, toward: str, timeout: float) -> None:
    """Poll nat10's conntrack (once a second) until it holds no unanswered flow toward ``toward``."""
    deadline = time.monotonic() + timeout
    while unanswered_flows(lab, toward):
        assert time.monotonic() < deadline, f"nat10 still holds unanswered flows toward {toward} after {timeout:g} s"
        time.sleep(1)


@pytest.mark.parametrize("lab", MOBILE, indirect=True, ids=["mobile-carrier"])
def test_keepalives_hold_a_predicted_path_through_a_nat_that_forgets_mappings_after_30_s(lab: Lab) -> None:
    start_server(lab)
    peer10, peer14 = chat_peer(lab, "10", "14"), chat_peer(lab, "14", "10")
    chosen = wait_for_line(peer14, r"path chosen: predicted via 198\.51\.100\.10:(\d+)")
    found = re.search(r"via 198\.51\.100\.10:(\d+)", chosen)
    assert found is not None
    public = found[1]  # nat10's port for the session's flow, where peer14 sends
    for peer in (peer10, peer14):
        wait_for_line(peer, r"QUIC is up with")
    # the prediction opened many mappings toward peer14 and uses one: the others, unanswered, go after 30 s
    assert unanswered_flows(lab, WAN["14"])
    wait_until_gone(lab, WAN["14"], UDP_TIMEOUT + 30)
    # the session's own flow is still there at the same public port, and far from its end: the keepalives refresh
    # it every 5 s (without them it would go now, as the others did, a few round trips later)
    session = rf"^udp +17 (\d+) src={LAN10} dst={WAN['14']} .* dst={WAN['10']} sport=\d+ dport={public} "
    flows = conntrack_udp(lab, "nat10")
    entry = re.search(session, flows, re.MULTILINE)
    assert entry is not None, flows
    assert int(entry[1]) >= UDP_TIMEOUT - 2 * KEEPALIVE, flows
    say(peer10, "after the quiet")
    wait_for_line(peer14, r"message 0 received from 10: 'after the quiet'")
    end_chat((peer10, ""), (peer14, ""))
    (code10, result10, log10), (code14, result14, log14) = finish(peer10), finish(peer14)
    assert (code10, code14) == (0, 0), log10 + log14
    assert result10["path"] == result14["path"] == "predicted"
    assert result14["remote"] == f"{WAN['10']}:{public}"
    assert (result10["rejoins"], result14["rejoins"]) == (0, 0)
    assert "lost contact" not in log10 + log14


def forgetful_mobile(directory: Path, udp_timeout: int) -> Path:
    """mobile.yaml with nat10 forgetting a UDP mapping after ``udp_timeout`` seconds without traffic."""
    text = (TOPOLOGIES / "mobile.yaml").read_text()
    assert f"udp-timeout: {UDP_TIMEOUT}" in text
    topology = directory / "forgetful-mobile.yaml"
    topology.write_text(text.replace(f"udp-timeout: {UDP_TIMEOUT}", f"udp-timeout: {udp_timeout}"))
    return topology


def test_a_predicted_path_whose_mapping_expired_between_keepalives_goes_on_over_the_relay(
    lab_factory: LabFactory, tmp_path: Path
) -> None:
    # nat10 forgets the session's mapping 10 s after its last packet; the keepalives come every 15 s: the next one
    # leaves from another port (sequential), which nat14 filters, and peer14's goes to the port nat10 forgot
    lab = lab_factory(topology=forgetful_mobile(tmp_path, 10), firewall=None)
    start_server(lab)
    slow = ("--keepalive", "15")
    peer10, peer14 = chat_peer(lab, "10", "14", *slow), chat_peer(lab, "14", "10", *slow)
    wait_for_line(peer10, r"path chosen: predicted via")
    for peer in (peer10, peer14):
        wait_for_line(peer, r"QUIC is up with")
    wait_for_line(peer10, r"lost contact with 14: no answer to keepalives", timeout=60)
    wait_for_line(
        peer10, r"the path ran over one of port prediction's sockets: punching the new one from our", timeout=5
    )
    for peer in (peer10, peer14):
        wait_for_line(peer, r"back on the relay to 1[04]; a direct path is tried again from it", timeout=60)
    say(peer10, "after the loss")
    wait_for_line(peer14, r"message 0 received from 10: 'after the loss'")
    end_chat((peer10, ""), (peer14, "and back"))
    (code10, result10, log10), (code14, result14, log14) = finish(peer10), finish(peer14)
    assert (code10, code14) == (0, 0), log10 + log14
    assert result10["path"] == result14["path"] == "relay", log10 + log14
    assert min(result10["rejoins"], result14["rejoins"]) >= 1
    assert (result10["received"], result14["received"]) == (["and back"], ["after the loss"])
    # one QUIC connection throughout: it came up once on each side (read above), and never again
    assert "QUIC is up with" not in log10 + log14, log10 + log14
