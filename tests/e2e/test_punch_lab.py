"""punch through the lab's real kernel NATs: server in the `server` node, peers behind nat10 and nat14."""

from __future__ import annotations

import json
import os
import re
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from netns.testing import Lab

pytestmark = pytest.mark.e2e

PY = sys.executable
SERVER = "203.0.113.1"
ALTERNATE = "203.0.113.2"
WAN = {"10": "198.51.100.10", "14": "192.0.2.14"}
LAN = {"10": "10.0.10.2", "14": "10.0.14.2"}
LOOKALIKE = Path(__file__).parent.parent / "data" / "topologies" / "lookalike.yaml"


_unread: dict[int, bytes] = {}  # stderr bytes read past a matched line, per process


def wait_for_line(proc: subprocess.Popen[Any], pattern: str, timeout: float = 15.0) -> str:
    """Read ``proc``'s stderr until a line matches ``pattern``; the line. Fails on timeout or exit.

    Reads the pipe's file descriptor directly (a buffered readline could hide lines from select()), and keeps
    what it read past the matching line for the next call.
    """
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    buffer = _unread.pop(proc.pid, b"")
    seen = b""
    while True:
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            seen += line + b"\n"
            if re.search(pattern, line.decode(errors="replace")):
                _unread[proc.pid] = buffer
                return line.decode(errors="replace")
        left = deadline - time.monotonic()
        if left <= 0 or not selector.select(left):
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buffer += chunk
    raise AssertionError(f"no line matching {pattern!r} within {timeout} s; saw:\n{seen.decode(errors='replace')}")


def start_server(lab: Lab) -> subprocess.Popen[Any]:
    server = lab.spawn(
        "server",
        PY,
        "-m",
        "punch",
        "server",
        "--listen",
        f"{SERVER}:3478",
        "--alternate",
        f"{ALTERNATE}:3479",
        text=True,
    )
    wait_for_line(server, r"answering RFC 5780 NAT behaviour discovery")
    return server


def start_peer(lab: Lab, me: str, other: str, *extra: str) -> subprocess.Popen[Any]:
    command = [PY, "-m", "punch", "peer", "--server", SERVER, "--id", me, "--to", other, "--json", *extra]
    return lab.spawn(f"peer{me}", *command, text=True, stdin=subprocess.DEVNULL)


def finish(proc: subprocess.Popen[Any]) -> tuple[int, dict[str, Any], str]:
    out, err = proc.communicate(timeout=60)
    lines = out.strip().splitlines()
    return proc.returncode, json.loads(lines[-1]) if lines else {}, err


def conntrack_udp(lab: Lab, node: str) -> str:
    return lab.exec(node, "conntrack", "-L", "-p", "udp", check=True).stdout


def port(endpoint: str) -> str:
    return endpoint.rsplit(":", 1)[1]


@pytest.mark.parametrize("lab", ["home", "none"], indirect=True, ids=["home-router", "bare-masquerade"])
def test_peers_punch_a_direct_path_through_both_nats(lab: Lab) -> None:
    start_server(lab)
    peer10 = start_peer(lab, "10", "14", "--send", "hello from 10", "--send", "bye from 10")
    peer14 = start_peer(lab, "14", "10", "--send", "hello from 14")
    code10, result10, log10 = finish(peer10)
    code14, result14, log14 = finish(peer14)
    assert (code10, code14) == (0, 0), log10 + log14
    assert result10["received"] == ["hello from 14"]
    assert result14["received"] == ["hello from 10", "bye from 10"]
    assert result10["path"] == result14["path"] == "direct"
    # Each peer talks to the other NAT's public address, at the port the other's NAT mapped.
    assert result10["remote"] == result14["mapped"]
    assert result10["remote"].startswith(WAN["14"] + ":")
    assert result14["remote"] == result10["mapped"]
    assert result14["remote"].startswith(WAN["10"] + ":")
    # The kernel's own record of the flow: on each NAT, peer -> other NAT's public endpoint, answered from it.
    for me, other, result in (("10", "14", result10), ("14", "10", result14)):
        lan_port, mapped_port, remote_port = (
            port(result["local"]),
            port(result["mapped"]),
            port(result["remote"]),
        )
        flow = (
            rf"src={LAN[me]} dst={WAN[other]} sport={lan_port} dport={remote_port} .*"
            rf"src={WAN[other]} dst={WAN[me]} sport={remote_port} dport={mapped_port}"
        )
        assert re.search(flow, conntrack_udp(lab, f"nat{me}")), conntrack_udp(lab, f"nat{me}")
    assert "path chosen: direct" in log10
    assert "path chosen: direct" in log14


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
    assert "relaying Data from 10 to 14" in server_log
    assert "relaying Data from 14 to 10" in server_log


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
