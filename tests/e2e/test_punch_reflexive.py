"""Peer-reflexive first through the lab's real kernel NAT (punch.peer.reflexive): peer10 behind a symmetric NAT
(MASQUERADE --random-fully), peer14 behind a cone that filters by address at most (full cone: endpoint-independent
filtering; restricted cone: address-dependent), both router kinds. peer10's checks from its main socket get in,
peer14 answers the port they came from, and nobody predicts a port. Against a port-restricted cone, where they
cannot get in, ports are still predicted: tests/e2e/test_punch_predict.py."""

from __future__ import annotations

import re

import pytest

from netns.testing import LabFactory
from tests.e2e.punch_in_lab import LAN, WAN, conntrack_udp, port, start_in_order, start_server

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("firewall", ["home", "none"], ids=["home-router", "bare-masquerade"])
@pytest.mark.parametrize("cone", ["full-cone", "restricted-cone"])
def test_a_symmetric_nat_and_a_cone_filtering_by_address_at_most_go_direct_from_the_main_socket(
    lab_factory: LabFactory, firewall: str, cone: str
) -> None:
    lab = lab_factory(firewall=firewall, args=("--nat", "nat10=symmetric", "--nat", f"nat14={cone}"))
    server = start_server(lab)
    done = start_in_order(lab, server, "14", "--no-relay")
    (code10, result10, log10), (code14, result14, log14) = done["10"], done["14"]
    assert (code10, code14) == (0, 0), log10 + log14
    assert result10["path"] == result14["path"] == "direct", log10 + log14
    assert (result10["received"], result14["received"]) == (["hello from 14"], ["hello from 10"])
    assert (result10["role"], result14["role"]) == ("opener", "prober")  # the symmetric side opens, always
    assert re.search(r"NAT mapping is endpoint-dependent \(server saw \S+ and :\d+\)", log10), log10
    # What each side said it would do, and did.
    assert "our NAT maps endpoint-dependently, 14's does not: our checks from our main socket" in log10
    assert "10's NAT maps endpoint-dependently, ours does not: 10 checks from its main socket first" in log14
    assert f"probe sent to {result10['mapped']} with TTL 2: opens our NAT mapping" in log14  # toward nat10's address
    assert f"checking from our main socket: {result14['mapped']}" in log10
    # (On a busy machine the answer may come after the window, while peer10 binds its sockets: still direct.)
    assert re.search(
        r"14 reached our main socket in \d+\.\d ms(, while we opened 256 sockets to predict ports)?: .*; no port prediction",
        log10,
    ), log10
    # No port was predicted: no extra sockets, no spray, no Ready/Go.
    assert "opened 256 sockets" not in log10
    assert "told the server our mapping is open" not in log10
    assert "spraying" not in log14
    # peer10 talks from the socket it registered with, through a port of nat10 the server never saw (unless
    # --random-fully drew the same number by chance: about 1 in 64,512), which peer14 learned from its check.
    bound = re.search(r"socket bound to (\S+)", log10)
    assert bound is not None
    assert result10["local"] == bound[1]
    assert result10["remote"] == result14["mapped"]
    assert result14["remote"].startswith(WAN["10"] + ":")
    if result14["remote"] != result10["mapped"]:
        assert f"probe received from 10 at {result14['remote']} (not one of its candidates: a peer-reflexive" in log14
    # The kernel's record of the flow on nat10: peer10's session socket <-> nat14's mapping of peer14, to the new port.
    easy, reflexive = port(result14["mapped"]), port(result14["remote"])
    flow = (
        rf"src={LAN['10']} dst={WAN['14']} sport={port(result10['local'])} dport={easy} .*"
        rf"src={WAN['14']} dst={WAN['10']} sport={easy} dport={reflexive}"
    )
    assert re.search(flow, conntrack_udp(lab, "nat10")), conntrack_udp(lab, "nat10")
