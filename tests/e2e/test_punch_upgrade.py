"""From the relay to a direct path: after the internet between the two NATs dropped UDP for a while, and after a
race lost on bare routers that send no ICMP, once the NATs have forgotten it."""

from __future__ import annotations

import subprocess

import pytest

from netns.testing import Lab
from tests.e2e.punch_in_lab import (
    FAR_SERVER,
    LOSE_INTRODUCTIONS,
    WAN,
    chat_peer,
    end_chat,
    finish,
    start_server,
    wait_for_line,
)

pytestmark = pytest.mark.e2e

# Give up on direct after 2 s, retry after a second, then after 11 s: the block is in the core, so the NATs never
# recorded anything they would have to forget (--nat-udp-timeout 0).
RETRY = ("--punch-timeout", "2", "--upgrade-interval", "1", "--nat-udp-timeout", "0")
BLOCK = [("-s", WAN["10"], "-d", WAN["14"]), ("-s", WAN["14"], "-d", WAN["10"])]


def test_peers_on_the_relay_move_to_a_direct_path_once_one_exists(lab: Lab) -> None:
    for rule in BLOCK:  # on the core router: no UDP between the two NATs, the server still reachable
        lab.exec("core", "iptables", "-I", "FORWARD", "-p", "udp", *rule, "-j", "DROP", check=True)
    start_server(lab)
    peer10, peer14 = chat_peer(lab, "10", "14", *RETRY), chat_peer(lab, "14", "10", *RETRY)
    for peer in (peer10, peer14):
        wait_for_line(peer, r"using the relay path to")
        wait_for_line(peer, r"QUIC is up with")
        wait_for_line(peer, r"staying on the relay")  # a retry failed while the block stood
    for rule in BLOCK:
        lab.exec("core", "iptables", "-D", "FORWARD", "-p", "udp", *rule, "-j", "DROP", check=True)
    both_go_direct(peer10, peer14, within=20)


def both_go_direct(peer10: subprocess.Popen[str], peer14: subprocess.Popen[str], within: float) -> None:
    """Both peers move from the relay to the direct path (each mapped toward the other as toward the server) within
    ``within`` seconds, and a text crosses it."""
    for peer in (peer10, peer14):
        wait_for_line(peer, r"upgraded from the relay to the direct path via", timeout=within)
    end_chat((peer10, "over the direct path\n"), (peer14, ""))
    code10, result10, log10 = finish(peer10)
    code14, result14, log14 = finish(peer14)
    assert (code10, code14) == (0, 0), log10 + log14
    assert result14["received"] == ["over the direct path"]
    assert (result10["path"], result10["upgraded"]) == ("direct", True)
    assert (result14["path"], result14["upgraded"]) == ("direct", True)
    assert result10["remote"] == result14["mapped"]
    assert result14["remote"] == result10["mapped"]


@pytest.mark.parametrize("lab", [{"firewall": "none", "args": FAR_SERVER}], indirect=True, ids=["bare-masquerade"])
def test_a_late_introduction_on_a_silent_bare_router_ends_on_the_relay_and_then_goes_direct(lab: Lab) -> None:
    """With early checks, peer14's introduction is lost and comes again later: peer10's checks reach nat14 before
    peer14's probe has opened it, nat14 (no firewall) records them as a connection of their own and maps peer14's
    packets to peer10 to another port. Both routers send no ICMP port unreachable here ("stealth"), so no peer can
    tell and move (test_punch_move.py): the punch fails and the session goes over the relay. Retrying at once keeps
    both wrong entries alive (each retry's checks refresh them); the peers stay quiet until the NATs forget them,
    then open their NATs again and go direct.

    The routers time unanswered flows out after 12 s here (Linux: 30 s; no shorter, or the mappings toward the server
    would expire between the peers' refreshes, every 10 s), and the kernel's garbage collector may take 60 s more to
    remove them: until then a new flow from peer14's port still takes the port of the wrong entry. So the peers
    are told the NATs may remember for 72 s, and wait 83 s after the failed retry."""
    for nat in ("nat10", "nat14"):
        lab.exec(nat, "sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout=12", check=True)
        lab.exec(
            nat, "iptables", "-A", "OUTPUT", "-p", "icmp", "--icmp-type", "port-unreachable", "-j", "DROP", check=True
        )
    lab.exec("nat14", "nft", "-f", "-", input=LOSE_INTRODUCTIONS, check=True)
    start_server(lab)
    fast = ("--early-checks", "--punch-timeout", "2", "--upgrade-interval", "1", "--nat-udp-timeout", "72")
    peer10, peer14 = chat_peer(lab, "10", "14", *fast), chat_peer(lab, "14", "10", *fast)
    wait_for_line(peer10, r"checking without waiting for Go")  # its checks are on their way to nat14
    lab.exec("nat14", "nft", "delete", "table", "inet", "lose_introductions", check=True)  # the next one arrives
    for peer in (peer10, peer14):
        wait_for_line(peer, r"using the relay path to")  # the race was lost, as the kernel predicts
        wait_for_line(peer, r"QUIC is up with")
    for peer in (peer10, peer14):
        wait_for_line(peer, r"staying on the relay, next try in 83 s")  # the first retry is too soon
    both_go_direct(peer10, peer14, within=100)  # nat14 maps peer14 toward peer10 on its own port again
