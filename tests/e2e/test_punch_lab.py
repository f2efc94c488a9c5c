"""punch through the lab's real kernel NATs: server in the `server` node, peers behind nat10 and nat14."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from netns.testing import Lab
from tests.e2e.punch_in_lab import (
    FAR_SERVER,
    LAN,
    PY,
    SERVER,
    WAN,
    conntrack_udp,
    finish,
    port,
    start_peer,
    start_server,
    wait_for_line,
)

pytestmark = pytest.mark.e2e

LOOKALIKE = Path(__file__).parent.parent / "data" / "topologies" / "lookalike.yaml"


@pytest.mark.parametrize(
    "lab",
    ["home", "none", {"firewall": "none", "args": FAR_SERVER}],
    indirect=True,
    ids=["home-router", "bare-masquerade", "bare-masquerade-far-server"],
)
def test_peers_punch_a_direct_path_through_both_nats(lab: Lab, request: pytest.FixtureRequest) -> None:
    """Next to the server (no delay) the peers take Ready/Go; with the server a few ms away, early checks."""
    far = "far-server" in request.node.callspec.id
    start_server(lab)
    peer10 = start_peer(lab, "10", "14", "--send", "hello from 10", "--send", "bye from 10")
    peer14 = start_peer(lab, "14", "10", "--send", "hello from 14")
    code10, result10, log10 = finish(peer10)
    code14, result14, log14 = finish(peer14)
    assert (code10, code14) == (0, 0), log10 + log14
    assert result10["received"] == ["hello from 14"]
    assert result14["received"] == ["hello from 10", "bye from 10"]
    assert result10["path"] == result14["path"] == "direct"
    # Each peer talks to the other NAT's public address, at the port the other's NAT mapped: the one the other
    # registered from, or, where a check was refused (bare routers, a peer the scheduler stalled), the port of the
    # fresh socket the other moved to (punch.peer.moving).
    for ours, theirs in ((result10, result14), (result14, result10)):
        assert ours["remote"].startswith(WAN[theirs["id"]] + ":")
        if theirs["move"] != "moved":
            assert ours["remote"] == theirs["mapped"]
        else:
            assert (ours["move"], port(ours["remote"])) == ("followed", port(theirs["local"]))
    # The kernel's own record of the flow: on each NAT, peer -> other NAT's public endpoint, answered from it.
    for me, other, result, theirs in (("10", "14", result10, result14), ("14", "10", result14, result10)):
        lan_port, mapped_port, remote_port = (
            port(result["local"]),
            port(theirs["remote"]),  # how the other reaches us: our mapped port, or our fresh socket's
            port(result["remote"]),
        )
        flow = (
            rf"src={LAN[me]} dst={WAN[other]} sport={lan_port} dport={remote_port} .*"
            rf"src={WAN[other]} dst={WAN[me]} sport={remote_port} dport={mapped_port}"
        )
        assert re.search(flow, conntrack_udp(lab, f"nat{me}")), conntrack_udp(lab, f"nat{me}")
    assert "path chosen: direct" in log10
    assert "path chosen: direct" in log14
    for log in (log10, log14):
        assert ("checking without waiting for Go" in log) is far, log
        assert ("Ready/Go is as fast as early checks here" in log) is not far, log


def test_ten_asks_for_fourteen_before_fourteen_exists(lab: Lab) -> None:
    server = start_server(lab)
    peer10 = start_peer(lab, "10", "14", "--send", "first")
    wait_for_line(server, r"10 asks for 14: waiting for 14 to register")
    peer14 = start_peer(lab, "14", "10", "--send", "second")
    code10, result10, log10 = finish(peer10)
    code14, result14, log14 = finish(peer14)
    assert (code10, code14) == (0, 0), log10 + log14
    assert (result10["role"], result14["role"]) == ("opener", "prober")
    assert (result10["received"], result14["received"]) == (["second"], ["first"])


@pytest.mark.parametrize("lab", ["none"], indirect=True, ids=["bare-masquerade"])
def test_naive_simultaneous_open_deadlocks_on_a_bare_router(lab: Lab) -> None:
    """Without the low-TTL opening probe, conntrack on nat10 records the prober's early probe, and nat10 then
    maps peer10's own probes to another port: no path, as the kernel predicts (this is why the lab is real)."""
    start_server(lab)
    naive = ("--open-ttl", "0", "--punch-timeout", "4", "--no-relay")
    peer10 = start_peer(lab, "10", "14", *naive)
    peer14 = start_peer(lab, "14", "10", *naive)
    code10, result10, _ = finish(peer10)
    code14, result14, _ = finish(peer14)
    assert (code10, code14) == (1, 1)
    assert result10["error"].startswith("no direct path to 14 within 4 s")
    assert result14["error"].startswith("no direct path to 10 within 4 s")


@pytest.mark.parametrize("lab", [{"topology": LOOKALIKE}], indirect=True, ids=["lookalike-lans"])
def test_lookalike_lan_candidates_do_not_fool_the_peers(lab: Lab) -> None:
    """Both LANs are 10.0.0.0/24 with the peer at 10.0.0.2:5000: a probe to the other's host candidate
    reaches ourselves. The session's identity in every probe makes the peers ignore it and go through the NATs."""
    start_server(lab)
    bind = ("--bind", "0.0.0.0:5000")
    peer10 = start_peer(lab, "10", "14", *bind, "--send", "from 10")
    peer14 = start_peer(lab, "14", "10", *bind, "--send", "from 14")
    code10, result10, log10 = finish(peer10)
    code14, result14, log14 = finish(peer14)
    assert (code10, code14) == (0, 0), log10 + log14
    assert result10["path"] == result14["path"] == "direct"
    assert result10["remote"] == f"{WAN['14']}:5000"
    assert result14["remote"] == f"{WAN['10']}:5000"
    assert (result10["received"], result14["received"]) == (["from 14"], ["from 10"])
    assert "ignored our own probe" in log10 + log14


@pytest.mark.parametrize("lab", ["none"], indirect=True, ids=["bare-masquerade"])
def test_peers_fall_back_to_the_relay_where_no_direct_path_exists(lab: Lab) -> None:
    """The naive open cannot get through the bare routers (above); the peers then talk through the server."""
    server = start_server(lab)
    naive = ("--open-ttl", "0", "--punch-timeout", "2")
    peer10 = start_peer(lab, "10", "14", *naive, "--send", "via the relay")
    peer14 = start_peer(lab, "14", "10", *naive, "--send", "me too", "--send", "twice")
    code10, result10, log10 = finish(peer10)
    code14, result14, log14 = finish(peer14)
    assert (code10, code14) == (0, 0), log10 + log14
    assert result10["path"] == result14["path"] == "relay"
    assert result10["remote"] == result14["remote"] == f"{SERVER}:3478"
    assert (result10["received"], result14["received"]) == (["me too", "twice"], ["via the relay"])
    assert "falling back to the relay through the server" in log10
    server.terminate()
    _, server_log = server.communicate(timeout=10)
    assert re.search(r"relaying session \w{8} between (10 and 14|14 and 10)", server_log), server_log


@pytest.mark.parametrize("lab", ["home", "none"], indirect=True, ids=["home-router", "bare-masquerade"])
def test_probe_names_the_behaviour_of_the_lab_nat(lab: Lab) -> None:
    """Linux MASQUERADE keeps the source port (endpoint-independent mapping) and lets in only what answers a
    flow it has seen (address-and-port-dependent filtering): a port-restricted cone, with or without firewall."""
    start_server(lab)
    done = lab.exec("peer10", PY, "-m", "punch", "probe", "--server", SERVER, "--json", timeout=60)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["mapped"].startswith(WAN["10"] + ":")
    assert (found["mapping"], found["filtering"], found["hairpinning"], found["nat"]) == (
        "endpoint-independent",
        "address-and-port-dependent",
        False,
        "port-restricted cone",
    )


def test_a_killed_peer_is_reported_lost_instead_of_waited_for(lab: Lab) -> None:
    start_server(lab)
    chat = lab.spawn(
        "peer10", PY, "-m", "punch", "peer", "--server", SERVER, "--id", "10", "--to", "14",
        text=True, stdin=subprocess.PIPE,
    )  # fmt: skip
    scripted = start_peer(lab, "14", "10", "--send", "are you there?", "--keepalive", "1", "--timeout", "120")
    assert chat.stdout is not None
    assert chat.stdout.readline().strip() == "[14] are you there?"  # punched, and the text crossed
    wait_for_line(scripted, "message 0 acknowledged by 10")
    chat.kill()  # no goodbye: the process is simply gone
    chat.communicate(timeout=10)
    code, result, _log14 = finish(scripted)
    assert code == 1
    assert result["error"].startswith("lost contact with 10: no answer to keepalives at 198.51.100.10:")
    assert result["received"] == []
    assert result["sent"] == ["are you there?"]
