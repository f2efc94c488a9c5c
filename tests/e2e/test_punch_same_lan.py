"""Two peers on one LAN behind one NAT: the direct-lan path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from netns.testing import Lab
from tests.e2e.punch_in_lab import FAR_SERVER, finish, start_peer, start_server

pytestmark = pytest.mark.e2e

SAME_LAN = Path(__file__).parent.parent / "data" / "topologies" / "same-lan.yaml"


def over_their_lan(lab: Lab, other: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """peer10 and ``other`` punch and trade a text; both must take the direct-lan path: their results, both logs."""
    start_server(lab)
    peer10 = start_peer(lab, "10", other, "--send", "neighbour")
    them = start_peer(lab, other, "10", "--send", "hello")
    code10, result10, log10 = finish(peer10)
    code, result, log = finish(them)
    assert (code10, code) == (0, 0), log10 + log
    assert result10["path"] == result["path"] == "direct-lan", log10 + log
    assert (result10["received"], result["received"]) == (["hello"], ["neighbour"])
    return result10, result, log10 + log


@pytest.mark.parametrize("lab", [{"topology": SAME_LAN}], indirect=True, ids=["same-lan"])
def test_peers_behind_the_same_nat_talk_over_their_lan(lab: Lab) -> None:
    """The NAT does not hairpin; the host candidates on the shared LAN give a direct-lan path."""
    result10, result14, _ = over_their_lan(lab, "14")
    assert result10["remote"].startswith("10.0.10.14:")
    assert result14["remote"].startswith("10.0.10.2:")


SAME_NAT = Path(__file__).parent.parent.parent / "netns" / "topologies" / "same-nat.yaml"


@pytest.mark.parametrize("lab", [{"topology": SAME_NAT, "args": FAR_SERVER}], indirect=True, ids=["same-nat-hairpin"])
def test_the_lan_path_beats_the_nats_hairpin(lab: Lab) -> None:
    """The NAT hairpins, so both the LAN and the public candidates answer; the prober, seeing that the other
    peer has our public address and a LAN candidate on our link, waits briefly for the LAN one and nominates it.
    The server is far enough for early checks, but such a candidate may be a look-alike in another home (the same
    addresses behind one carrier NAT), whose router could lose the race with no move to recover: Ready/Go."""
    results10, results11, logs = over_their_lan(lab, "11")
    assert "we are behind the same NAT, so a LAN path is preferred" in logs
    assert "LAN candidate is on our link: Ready/Go, not early checks" in logs
    assert (results10["early"], results11["early"]) == (False, False)


def routed_lans(name: str) -> pytest.MarkDecorator:
    """A lab of tests/data/topologies/NAME.yaml (two LANs of one router), bare, with the server far enough for early
    checks and peer11's LAN 3 ms away."""
    topology = Path(__file__).parent.parent / "data" / "topologies" / f"{name}.yaml"
    args = (*FAR_SERVER, "--impair", "lan11:delay=3ms")
    return pytest.mark.parametrize(
        "lab", [{"topology": topology, "firewall": "none", "args": args}], indirect=True, ids=[name]
    )


@routed_lans("routed-lans")
def test_behind_one_nat_that_does_not_hairpin_a_routed_lan_still_answers(lab: Lab) -> None:
    """Two LANs of one router: the other's LAN candidate is off our links (routed), and the router refuses our
    checks to its public address (no hairpinning), which looks like a lost race. peer11's LAN is 3 ms away, so the
    refusals come first; the refused prober keeps checking the LAN candidate while it asks for a move, the peer told
    to move hears those checks and stays, and both take the routed LAN path instead of the relay."""
    result10, result11, logs = over_their_lan(lab, "11")
    assert result10["remote"].startswith("10.0.11.2:")
    assert result11["remote"].startswith("10.0.10.2:")
    assert "is on a link of ours" in logs
    assert "or the NAT we share does not hairpin" in logs
    assert "did not answer within" in logs  # the hairpin's grace, then the LAN pair's nomination of its own
    assert "nominating the LAN one" in logs


@routed_lans("routed-lans-hairpin")
def test_routed_lans_of_a_hairpinning_router_settle_on_one_path(lab: Lab) -> None:
    """Both the routed LAN and the router's hairpin work. Only the hairpin is nominated unless it stays silent, so
    both peers take the same pair (nominating every candidate, the prober took the LAN pair and the opener the
    hairpin in most trials: both worked, but each reported another path)."""
    start_server(lab)
    peer10 = start_peer(lab, "10", "11", "--send", "neighbour")
    peer11 = start_peer(lab, "11", "10", "--send", "hello")
    (code10, result10, log10), (code11, result11, log11) = finish(peer10), finish(peer11)
    assert (code10, code11) == (0, 0), log10 + log11
    assert (result10["path"], result11["path"]) == ("direct", "direct"), log10 + log11
    assert (result10["remote"], result11["remote"]) == (result11["mapped"], result10["mapped"])
    assert (result10["received"], result11["received"]) == (["hello"], ["neighbour"])
