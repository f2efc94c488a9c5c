"""From the relay to a direct path: the internet between the two NATs drops UDP for a while, then stops."""

from __future__ import annotations

import subprocess

import pytest

from netns.testing import Lab
from tests.e2e.punch_in_lab import PY, SERVER, WAN, finish, start_server, wait_for_line

pytestmark = pytest.mark.e2e

BLOCK = [("-s", WAN["10"], "-d", WAN["14"]), ("-s", WAN["14"], "-d", WAN["10"])]


def chat_peer(lab: Lab, me: str, other: str) -> subprocess.Popen[str]:
    """A chatting peer: lines written to its stdin go to the other; punching gives up after 2 s."""
    command = [PY, "-m", "punch", "peer", "--server", SERVER, "--id", me, "--to", other, "--json"]
    command += ["--punch-timeout", "2", "--upgrade-interval", "1"]
    return lab.spawn(f"peer{me}", *command, text=True, stdin=subprocess.PIPE)


def test_peers_on_the_relay_move_to_a_direct_path_once_one_exists(lab: Lab) -> None:
    for rule in BLOCK:  # on the core router: no UDP between the two NATs, the server still reachable
        lab.exec("core", "iptables", "-I", "FORWARD", "-p", "udp", *rule, "-j", "DROP", check=True)
    start_server(lab)
    peer10, peer14 = chat_peer(lab, "10", "14"), chat_peer(lab, "14", "10")
    for peer in (peer10, peer14):
        wait_for_line(peer, r"using the relay path to")
        wait_for_line(peer, r"staying on the relay")  # a retry failed while the block stood
    for rule in BLOCK:
        lab.exec("core", "iptables", "-D", "FORWARD", "-p", "udp", *rule, "-j", "DROP", check=True)
    for peer in (peer10, peer14):
        wait_for_line(peer, r"upgraded from the relay to the direct path via")
    for peer, lines in ((peer10, "over the direct path\n"), (peer14, "")):
        assert peer.stdin is not None
        peer.stdin.write(lines)
        peer.stdin.close()  # end of input: the peer says it is done
        peer.stdin = None  # so that communicate() in finish() does not flush it
    code10, result10, log10 = finish(peer10)
    code14, result14, log14 = finish(peer14)
    assert (code10, code14) == (0, 0), log10 + log14
    assert result14["received"] == ["over the direct path"]
    assert (result10["path"], result10["upgraded"]) == ("direct", True)
    assert (result14["path"], result14["upgraded"]) == ("direct", True)
    assert result10["remote"] == result14["mapped"]
    assert result14["remote"] == result10["mapped"]
