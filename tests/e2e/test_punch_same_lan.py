"""Two peers on one LAN behind one NAT: the direct-lan path."""

from __future__ import annotations

from pathlib import Path

import pytest

from netns.testing import Lab
from tests.e2e.punch_in_lab import finish, start_peer, start_server

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
