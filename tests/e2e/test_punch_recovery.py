"""Faults in the middle of a session over a direct path: both NATs forget their mappings, a NAT gets a new public
address, the server restarts."""

from __future__ import annotations

import re
from subprocess import Popen
from typing import Any

import pytest

from netns.testing import Lab
from tests.e2e.punch_in_lab import (
    LAN,
    NEW14,
    WAN,
    chat_peer,
    conntrack_udp,
    end_chat,
    finish,
    port,
    readdress_mid_chat,
    say,
    start_server,
    wait_for_line,
)

pytestmark = pytest.mark.e2e

KEEPALIVE = ("--keepalive", "1")


def test_a_session_survives_both_nats_flushing_their_mappings(lab: Lab) -> None:
    """`conntrack -F` on both routers: the next datagrams out create the mappings again (MASQUERADE keeps the
    port when it is free); the keepalives of each side reopen its router's filter for the other's datagrams."""
    start_server(lab)
    peer10, peer14 = chat_peer(lab, "10", "14", *KEEPALIVE), chat_peer(lab, "14", "10", *KEEPALIVE)
    for peer in (peer10, peer14):
        wait_for_line(peer, r"using the direct path to")
        wait_for_line(peer, r"QUIC is up with")
    for router in ("nat10", "nat14"):
        # flushed and listed in one go: a keepalive crossing between two separate commands recreates its flow
        flushed = lab.exec(router, "sh", "-c", "conntrack -F 2>/dev/null && conntrack -L -p udp", check=True).stdout
        assert WAN["10"] not in flushed  # nothing of the session is left
    end_chat((peer10, "after the flush\n"), (peer14, "me too\n"))
    code10, result10, log10 = finish(peer10)
    code14, result14, log14 = finish(peer14)
    assert (code10, code14) == (0, 0), log10 + log14
    assert (result10["received"], result14["received"]) == (["me too"], ["after the flush"])
    assert result10["path"] == result14["path"] == "direct"
    assert "lost contact" not in log10 + log14
    # Both routers hold the peer-to-peer flow again, on the same public ports as before the flush.
    for me, other, result in (("10", "14", result10), ("14", "10", result14)):
        flow = rf"src={LAN[me]} dst={WAN[other]} .* src={WAN[other]} dst={WAN[me]} sport=\d+ dport={port(result['mapped'])}"
        assert re.search(flow, conntrack_udp(lab, f"nat{me}")), conntrack_udp(lab, f"nat{me}")


def chat_through_a_new_address(lab: Lab, *flags: str) -> tuple[Popen[str], Popen[str]]:
    """Two chatting peers on a direct path; nat14 gets a new public address mid-chat (readdress_mid_chat) and
    peer14 says "while it moves"; both have lost the other and asked the server for it again."""
    start_server(lab)
    peer10, peer14 = chat_peer(lab, "10", "14", *flags), chat_peer(lab, "14", "10", *flags)
    for peer in (peer10, peer14):
        wait_for_line(peer, r"using the direct path to")
        wait_for_line(peer, r"QUIC is up with")
    readdress_mid_chat(lab, peer10, peer14)  # the text in flight is sent again over the new path
    say(peer14, "while it moves")
    for peer in (peer10, peer14):
        wait_for_line(peer, r"lost contact with 1[04]: no answer to keepalives at .*; asking the server for", 30)
    return peer10, peer14


def end_the_chat(peer10: Popen[str], peer14: Popen[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The last texts; both peers exit 0 having received every text once, in order; their results."""
    end_chat((peer10, "after the change\n"), (peer14, "bye\n"))
    code10, result10, log10 = finish(peer10)
    code14, result14, log14 = finish(peer14)
    assert (code10, code14) == (0, 0), log10 + log14
    assert result14["received"] == ["before the change", "around the change", "after the change"]
    assert result10["received"] == ["while it moves", "bye"]
    return result10, result14


def test_a_session_moves_to_a_new_path_when_a_nat_gets_a_new_public_address(lab: Lab) -> None:
    """nat14's WAN address changes (`netns readdress`: MASQUERADE follows, conntrack is flushed). The old path is
    dead both ways: 192.0.2.14 is gone, and nat10 lets in only what answers 10's own flows. Both peers' keepalives
    go unanswered; they register again (the server now sees 14 at its new address), ask for each other again,
    are introduced anew and punch a new direct path; the texts sent meanwhile arrive once, in order."""
    peer10, peer14 = chat_through_a_new_address(lab, *KEEPALIVE)
    for peer in (peer10, peer14):
        wait_for_line(peer, r"back on a direct path to 1[04] via", 30)
    result10, result14 = end_the_chat(peer10, peer14)
    assert (result10["path"], result14["path"], result10["rejoins"], result14["rejoins"]) == ("direct", "direct", 1, 1)
    assert result10["remote"].startswith(f"{NEW14}:")
    assert result14["remote"].startswith(f"{WAN['10']}:")
    # nat14 translates the peer-to-peer flow to its new address now.
    flow = rf"src={LAN['14']} dst={WAN['10']} .* src={WAN['10']} dst={NEW14} sport={port(result14['remote'])}"
    assert re.search(flow, conntrack_udp(lab, "nat14")), conntrack_udp(lab, "nat14")


@pytest.mark.parametrize("lab", ["none"], indirect=True, ids=["bare-masquerade"])
def test_behind_bare_routers_a_new_public_address_takes_the_session_to_the_relay_then_direct(lab: Lab) -> None:
    """The same change behind bare MASQUERADE routers. peer14's packets, still sent on to peer10's old mapping, now
    come from nat14's new address; nat10, with no firewall to drop them, records them as flows to itself, and one of
    them holds peer10's public port toward peer14's new endpoint: nat10 maps peer10's checks to another port, so the
    rejoin's punch finds no path. The session takes the relay (QUIC and the texts go on over it) and, once nat10
    has forgotten those entries (30 s unanswered), the relay's retry finds the direct path."""
    peer10, peer14 = chat_through_a_new_address(lab, *KEEPALIVE, "--upgrade-interval", "35")
    for peer in (peer10, peer14):
        back = wait_for_line(peer, r"back on (a direct path|the relay) to 1[04]", 30)
        if "the relay" in back:
            wait_for_line(peer, r"upgraded from the relay to the direct path via", 90)
    result10, result14 = end_the_chat(peer10, peer14)
    assert (result10["path"], result14["path"]) == ("direct", "direct")
    assert result10["remote"].startswith(f"{NEW14}:")


def test_a_session_outlives_a_server_restart_and_the_peers_register_again(lab: Lab) -> None:
    """The session does not need the server once the path is direct; the peers' refreshes fail while it is
    down, and register them again with the new server (which knows nothing of them) once it is back."""
    short = ("--max-lease", "3")  # the peers refresh every second
    server = start_server(lab, *short)
    peer10, peer14 = chat_peer(lab, "10", "14"), chat_peer(lab, "14", "10")
    for peer in (peer10, peer14):
        wait_for_line(peer, r"using the direct path to")
        wait_for_line(peer, r"QUIC is up with")
    server.kill()
    server.wait()
    for peer in (peer10, peer14):
        wait_for_line(peer, r"refreshing the registration failed", timeout=30)
    server = start_server(lab, *short)
    lines = [wait_for_line(server, r"registered (10|14) ") for _ in range(2)]  # in either order
    assert sorted(line.split("registered ", 1)[1].split()[0] for line in lines) == ["10", "14"]
    end_chat((peer10, "still here\n"), (peer14, ""))
    code10, result10, log10 = finish(peer10)
    code14, result14, log14 = finish(peer14)
    assert (code10, code14) == (0, 0), log10 + log14
    assert result14["received"] == ["still here"]
    assert result10["path"] == result14["path"] == "direct"
