"""Two peers on one LAN behind one NAT: the direct-lan path."""

from __future__ import annotations

from pathlib import Path

import pytest

from netns.testing import Lab
from tests.e2e.punch_in_lab import FAR_SERVER, finish, start_peer, start_server

pytestmark = pytest.mark.e2e

SAME_LAN = Path(__file__).parent.parent / "data" / "topologies" / "same-lan.yaml"


@pytest.mark.parametrize("lab", [{"topology": SAME_LAN}], indirect=True, ids=["same-lan"])
def test_peers_behind_the_same_nat_talk_over_their_lan(lab: Lab) -> None:
    """The NAT does not hairpin; the host candidates on the shared LAN give a direct-lan path."""
    start_server(lab)
    peer10 = start_peer(lab, "10", "14", "--send", "neighbour")
    peer14 = start_peer(lab, "14", "10", "--send", "hello")
    code10, result10, log10 = finish(peer10)
    code14, result14, log14 = finish(peer14)
    assert (code10, code14) == (0, 0), log10 + log14
    assert result10["path"] == result14["path"] == "direct-lan"
    assert result10["remote"].startswith("10.0.10.14:")
    assert result14["remote"].startswith("10.0.10.2:")
    assert (result10["received"], result14["received"]) == (["hello"], ["neighbour"])


SAME_NAT = Path(__file__).parent.parent.parent / "netns" / "topologies" / "same-nat.yaml"


@pytest.mark.parametrize("lab", [{"topology": SAME_NAT}], indirect=True, ids=["same-nat-hairpin"])
def test_the_lan_path_beats_the_nats_hairpin(lab: Lab) -> None:
    """The NAT hairpins, so both the LAN and the public candidates answer; the prober, seeing that the other
    peer has our public address, waits briefly for the LAN one and nominates it."""
    start_server(lab)
    peer10 = start_peer(lab, "10", "11", "--send", "neighbour")
    peer11 = start_peer(lab, "11", "10", "--send", "hello")
    code10, result10, log10 = finish(peer10)
    code11, result11, log11 = finish(peer11)
    assert (code10, code11) == (0, 0), log10 + log11
    assert result10["path"] == result11["path"] == "direct-lan", log10 + log11
    assert "we are behind the same NAT, so a LAN path is preferred" in log10 + log11
    assert (result10["received"], result11["received"]) == (["hello"], ["neighbour"])


ROUTED_LANS = Path(__file__).parent.parent / "data" / "topologies" / "routed-lans.yaml"


@pytest.mark.parametrize(
    "lab",
    [{"topology": ROUTED_LANS, "firewall": "none", "args": (*FAR_SERVER, "--impair", "lan11:delay=3ms")}],
    indirect=True,
    ids=["routed-lans"],
)
def test_behind_one_nat_that_does_not_hairpin_a_routed_lan_still_answers(lab: Lab) -> None:
    """Two LANs of one router: the other's LAN candidate is off our links (routed), and the router refuses our
    checks to its public address (no hairpinning), which looks like a lost race. peer11's LAN is 3 ms away, so the
    refusals come first; the refused prober keeps checking the LAN candidate while it asks for a move, the peer told
    to move hears those checks and stays, and both take the routed LAN path instead of the relay."""
    start_server(lab)
    peer10 = start_peer(lab, "10", "11", "--send", "neighbour")
    peer11 = start_peer(lab, "11", "10", "--send", "hello")
    code10, result10, log10 = finish(peer10)
    code11, result11, log11 = finish(peer11)
    assert (code10, code11) == (0, 0), log10 + log11
    assert result10["path"] == result11["path"] == "direct-lan", log10 + log11
    assert result10["remote"].startswith("10.0.11.2:")
    assert result11["remote"].startswith("10.0.10.2:")
    assert "is on a link of ours" in log10 + log11
    assert "or the NAT we share does not hairpin" in log10 + log11
    assert (result10["received"], result11["received"]) == (["hello"], ["neighbour"])
