"""From the relay to a direct path: the internet between the two NATs drops UDP for a while, then stops."""

from __future__ import annotations

import pytest

from netns.testing import Lab
from tests.e2e.punch_in_lab import WAN, chat_peer, end_chat, finish, start_server, wait_for_line

pytestmark = pytest.mark.e2e

RETRY = ("--punch-timeout", "2", "--upgrade-interval", "1")  # give up on direct after 2 s, retry every second
BLOCK = [("-s", WAN["10"], "-d", WAN["14"]), ("-s", WAN["14"], "-d", WAN["10"])]


def test_peers_on_the_relay_move_to_a_direct_path_once_one_exists(lab: Lab) -> None:
    for rule in BLOCK:  # on the core router: no UDP between the two NATs, the server still reachable
        lab.exec("core", "iptables", "-I", "FORWARD", "-p", "udp", *rule, "-j", "DROP", check=True)
    start_server(lab)
    peer10, peer14 = chat_peer(lab, "10", "14", *RETRY), chat_peer(lab, "14", "10", *RETRY)
    for peer in (peer10, peer14):
        wait_for_line(peer, r"using the relay path to")
        wait_for_line(peer, r"staying on the relay")  # a retry failed while the block stood
    for rule in BLOCK:
        lab.exec("core", "iptables", "-D", "FORWARD", "-p", "udp", *rule, "-j", "DROP", check=True)
    for peer in (peer10, peer14):
        wait_for_line(peer, r"upgraded from the relay to the direct path via")
    end_chat((peer10, "over the direct path\n"), (peer14, ""))
    code10, result10, log10 = finish(peer10)
    code14, result14, log14 = finish(peer14)
    assert (code10, code14) == (0, 0), log10 + log14
    assert result14["received"] == ["over the direct path"]
    assert (result10["path"], result10["upgraded"]) == ("direct", True)
    assert (result14["path"], result14["upgraded"]) == ("direct", True)
    assert result10["remote"] == result14["mapped"]
    assert result14["remote"] == result10["mapped"]
