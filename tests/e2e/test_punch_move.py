"""A lost race on bare routers, detected and recovered in a few round trips: the peer whose check was refused
moves to a fresh socket (punch.peer.moving)."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from netns.testing import Lab
from tests.e2e.punch_in_lab import (
    FAR_SERVER,
    LOSE_INTRODUCTIONS,
    NEW14,
    WAN,
    chat_peer,
    end_chat,
    finish,
    readdress_mid_chat,
    start_server,
    wait_for_line,
)

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("lab", [{"firewall": "none", "args": FAR_SERVER}], indirect=True, ids=["bare-masquerade"])
def test_a_late_introduction_on_a_bare_router_moves_to_a_fresh_socket_and_goes_direct(lab: Lab) -> None:
    """With early checks, peer14's introduction is lost and comes again later: peer10's checks reach nat14 before
    peer14's probe has opened it, and nat14 (no firewall) records them as a connection of their own; peer14's socket
    is lost for punching (nat14 maps it to another port). nat14 also refuses them (ICMP port unreachable), so
    peer10 knows, and asks the server to move peer14: peer14 opens its NAT from a fresh socket, the server tells
    peer10 where, and peer10 checks it there. Both go direct without the relay, peer10 mapped toward peer14 as
    toward the server, peer14 on its fresh socket's own port."""
    lab.exec("nat14", "nft", "-f", "-", input=LOSE_INTRODUCTIONS, check=True)
    start_server(lab)
    peer10, peer14 = chat_peer(lab, "10", "14", "--early-checks"), chat_peer(lab, "14", "10", "--early-checks")
    wait_for_line(peer10, r"checking without waiting for Go")  # its checks are on their way to nat14
    wait_for_line(peer10, r"our check to 192\.0\.2\.14:\d+ was refused by 14's NAT")
    wait_for_line(peer10, r"asked the server to move the other peer: telling 14 to move")
    lab.exec("nat14", "nft", "delete", "table", "inet", "lose_introductions", check=True)  # the next one arrives
    wait_for_line(peer14, r"server says 10's check was refused by our NAT: we move to a fresh socket")
    moving = wait_for_line(peer14, r"moving to a fresh socket \(port \d+\)")
    wait_for_line(peer10, r"following 14 to 192\.0\.2\.14:\d+")
    result10, result14, _ = direct_without_the_relay(peer10, peer14)
    assert (result10["move"], result14["move"]) == ("followed", "moved")
    fresh = re.search(r"port (\d+)", moving)
    assert fresh is not None
    assert result14["local"] == f"0.0.0.0:{fresh[1]}"  # the path runs over the fresh socket
    assert result10["remote"] == f"192.0.2.14:{fresh[1]}"  # which nat14 maps to a port of its own
    assert result14["remote"] == result10["mapped"]


@pytest.mark.parametrize(
    "lab", [{"firewall": "none", "nat": "nat10=full-cone", "args": FAR_SERVER}], indirect=True, ids=["full-cone-10"]
)
def test_a_refused_opener_behind_a_full_cone_keeps_answering_and_takes_the_probers_path(lab: Lab) -> None:
    """nat10 forwards to peer10 from anywhere (a full cone); nat14 is bare and port-restricted. peer10, the opener,
    checks early; peer14's introduction is lost, so nat14 refuses peer10's checks and peer10 asks the server to move
    peer14. Meanwhile peer14, introduced late, checks from the port nat14 remapped its socket to, nat10 lets that in,
    and peer14 (the prober) chooses the path peer10 answered on. peer10 keeps answering while it waits, takes that
    nomination, and both end on one direct path; had it stopped, it would end on the relay, peer14 direct."""
    server = start_server(lab)
    lab.exec("nat14", "nft", "-f", "-", input=LOSE_INTRODUCTIONS, check=True)
    peer10 = chat_peer(lab, "10", "14", "--early-checks")
    wait_for_line(server, r"10 asks for 14: waiting for 14 to register")  # so peer10 is the opener
    peer14 = chat_peer(lab, "14", "10", "--early-checks")
    wait_for_line(peer10, r"our check to 192\.0\.2\.14:\d+ was refused by 14's NAT")
    wait_for_line(peer10, r"asked the server to move the other peer: telling 14 to move")
    lab.exec("nat14", "nft", "delete", "table", "inet", "lose_introductions", check=True)
    result10, result14, logs = direct_without_the_relay(peer10, peer14)
    assert result10["role"] == "opener"
    # peer14 either chose before the server's Move came (no move) or moved (the race the test does not fix)
    assert (result10["move"], result14["move"]) in ((None, None), ("followed", "moved")), logs
    assert result14["remote"] == result10["mapped"]


@pytest.mark.parametrize("lab", [{"firewall": "none", "args": FAR_SERVER}], indirect=True, ids=["bare-masquerade"])
def test_a_moved_session_is_punched_anew_from_its_own_socket_when_the_nat_gets_a_new_address(lab: Lab) -> None:
    """peer14 moved to a fresh socket (as in the first test); then nat14 gets a new public address, and the path
    over the fresh socket is dead. Both peers miss keepalives and register again; peer14 punches the new path from
    its session's own socket (the one it registered from: the new address flushed the entries that made it move),
    and the texts go on there, the one sent meanwhile included, each once."""
    lab.exec("nat14", "nft", "-f", "-", input=LOSE_INTRODUCTIONS, check=True)
    start_server(lab)
    keepalive = ("--early-checks", "--keepalive", "1")
    peer10, peer14 = chat_peer(lab, "10", "14", *keepalive), chat_peer(lab, "14", "10", *keepalive)
    session_socket = re.search(r"socket bound to (\S+)", wait_for_line(peer14, r"socket bound to "))
    wait_for_line(peer10, r"asked the server to move the other peer: telling 14 to move")
    lab.exec("nat14", "nft", "delete", "table", "inet", "lose_introductions", check=True)
    wait_for_line(peer14, r"moving to a fresh socket \(port \d+\)")
    for peer in (peer10, peer14):
        wait_for_line(peer, r"using the direct path to")
        wait_for_line(peer, r"QUIC is up with")
    readdress_mid_chat(lab, peer10, peer14)  # the text in flight is sent again over the new path
    wait_for_line(peer14, r"the path ran over our fresh socket: punching the new one from our session's socket", 30)
    for peer in (peer10, peer14):
        wait_for_line(peer, r"back on a direct path to 1[04] via", 30)
    end_chat((peer10, "after the change\n"), (peer14, "bye\n"))
    code10, result10, log10 = finish(peer10)
    code14, result14, log14 = finish(peer14)
    assert (code10, code14) == (0, 0), log10 + log14
    assert result14["received"] == ["before the change", "around the change", "after the change"]
    assert result10["received"] == ["bye"]
    assert (result10["move"], result14["move"]) == ("followed", "moved")
    assert (result10["path"], result14["path"], result10["rejoins"], result14["rejoins"]) == ("direct", "direct", 1, 1)
    assert session_socket is not None
    assert result14["local"] == session_socket[1]  # no longer the fresh one
    assert result10["remote"].startswith(f"{NEW14}:")
    assert result14["remote"].startswith(f"{WAN['10']}:")


def direct_without_the_relay(
    peer10: subprocess.Popen[str], peer14: subprocess.Popen[str]
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Both peers go direct, never on the relay, and a text crosses each way: their results and both logs."""
    for peer in (peer10, peer14):
        wait_for_line(peer, r"using the direct path to")
        wait_for_line(peer, r"QUIC is up with")
    end_chat((peer10, "from 10\n"), (peer14, "from 14\n"))
    code10, result10, log10 = finish(peer10)
    code14, result14, log14 = finish(peer14)
    assert (code10, code14) == (0, 0), log10 + log14
    assert (result10["received"], result14["received"]) == (["from 14"], ["from 10"])
    assert (result10["path"], result14["path"]) == ("direct", "direct")
    assert (result10["upgraded"], result14["upgraded"]) == (False, False)  # never on the relay
    return result10, result14, log10 + log14
