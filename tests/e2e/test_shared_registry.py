"""Two servers, one registry, through the lab's kernel NATs (tests/data/topologies/two-servers.yaml): east 1 ms from the
core, west 5 ms, Redis beside them. A peer registered at east punches with a peer registered at west; a server killed
mid-session leaves the direct session going and its peers register at the other; Redis restarted under the servers
is a pause, not an outage. Behind two symmetric NATs, a peer at east and a peer at west talk and tunnel through the
relay of the server that introduced them (punch.rendezvous.tickets), and a relayed session whose server is killed
moves to the other server and goes on.

The lab's node ``redis`` runs Debian's redis-server (skipped where it is not installed; PUNCH_REQUIRE_REDIS=1 fails
instead, as .ci/run sets)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from netns.testing import Lab
from tests.e2e.punch_in_lab import PY, end_chat, finish, say, wait_for_line

pytestmark = pytest.mark.e2e

TOPOLOGY = Path(__file__).parent.parent / "data" / "topologies" / "two-servers.yaml"
EAST, WEST, REDIS = "203.0.113.1", "203.0.113.65", "203.0.113.129"
ALTERNATE = {EAST: "203.0.113.2:3479", WEST: "203.0.113.66:3479"}  # RFC 5780: peers measure their NAT's mapping
REGISTRY = f"redis://{REDIS}:6379/0"
SYMMETRIC = {"topology": TOPOLOGY, "nat": "symmetric"}  # both NATs: a new port toward each destination, the relay
# A TCP echo server (in peer14's node, behind the --allow) and a client that sends 256 KiB through a --forward
ECHO = """
import socket, sys
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
print("echoing", file=sys.stderr, flush=True)
while True:
    conn, _ = server.accept()
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)
"""
THROUGH = """
import os, socket, sys
payload = os.urandom(256 * 1024)
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30) as conn:
    conn.sendall(payload)
    conn.shutdown(socket.SHUT_WR)
    got = b""
    while chunk := conn.recv(65536):
        got += chunk
print("the same bytes came back" if got == payload else f"{len(got)} of {len(payload)} bytes came back, or others")
"""


@pytest.fixture(autouse=True)
def _redis_installed() -> None:
    if shutil.which("redis-server") is None:
        reason = "redis-server is not installed; `apt-get install redis-server`"
        if os.environ.get("PUNCH_REQUIRE_REDIS") == "1":
            pytest.fail(f"PUNCH_REQUIRE_REDIS=1, but {reason}")
        pytest.skip(reason)


def start_redis(lab: Lab, port: int = 6379, *cluster: str) -> subprocess.Popen[Any]:
    """redis-server in node ``redis`` on ``port``, nothing saved (a restart forgets everything); ``cluster``: more
    arguments (cluster mode)."""
    folder = lab.logdir / f"redis-{port}"
    folder.mkdir(exist_ok=True)
    redis = lab.spawn(
        "redis",
        "redis-server",
        *("--bind", REDIS, "--port", str(port), "--save", "", "--appendonly", "no", "--protected-mode", "no"),
        *("--dir", str(folder), "--logfile", "/dev/stderr", *cluster),
        stdout=subprocess.DEVNULL,
        text=True,
    )
    wait_for_line(redis, r"Ready to accept connections")
    return redis


def start_cluster(lab: Lab, ports: tuple[int, ...] = (7000, 7001, 7002)) -> str:
    """A Redis Cluster of three masters in node ``redis`` (redis-cli --cluster create); the registry URL."""
    for port in ports:
        start_redis(lab, port, "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf")
    nodes = [f"{REDIS}:{port}" for port in ports]
    made = lab.exec("redis", "redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes")
    assert made.returncode == 0, made.stdout + made.stderr
    for port in ports:  # every node agrees the cluster is up (its own state, polled with a deadline)
        deadline = time.monotonic() + 30
        while (
            "cluster_state:ok"
            not in lab.exec("redis", "redis-cli", "-h", REDIS, "-p", str(port), "cluster", "info").stdout
        ):
            assert time.monotonic() < deadline, f"the cluster is not up at {REDIS}:{port}"
            time.sleep(0.1)
    return f"redis://{REDIS}:{ports[0]}/0"


def start_shared_server(
    lab: Lab, node: str, address: str, registry: str = REGISTRY, *extra: str
) -> subprocess.Popen[Any]:
    server = lab.spawn(
        node,
        PY,
        "-m",
        "punch",
        "server",
        "--listen",
        f"{address}:3478",
        "--registry",
        registry,
        "--name",
        node,
        *extra,
        text=True,
    )
    wait_for_line(server, r"registry: (Redis|a Redis Cluster) at")
    return server


def peer(
    lab: Lab, me: str, other: str, servers: tuple[str, ...], *extra: str, chat: bool = False
) -> subprocess.Popen[Any]:
    command = [PY, "-m", "punch", "peer", *(a for s in servers for a in ("--server", s)), "--id", me, "--to", other]
    return lab.spawn(
        f"peer{me}",
        *command,
        "--json",
        *extra,
        text=True,
        stdin=subprocess.PIPE if chat else subprocess.DEVNULL,
    )


def stop(process: subprocess.Popen[Any]) -> None:
    process.terminate()
    process.communicate(timeout=30)


@pytest.mark.parametrize(
    ("lab", "redis"),
    [({"firewall": "home", "topology": TOPOLOGY}, "single"), ({"firewall": "none", "topology": TOPOLOGY}, "single"),
     ({"firewall": "home", "topology": TOPOLOGY}, "cluster")],
    indirect=["lab"], ids=["home-router", "bare-masquerade", "home-router-redis-cluster"],
)  # fmt: skip
def test_a_peer_at_east_punches_with_a_peer_at_west(lab: Lab, redis: str) -> None:
    registry = start_cluster(lab) if redis == "cluster" else REGISTRY
    if redis == "single":
        start_redis(lab)
    east, west = start_shared_server(lab, "east", EAST, registry), start_shared_server(lab, "west", WEST, registry)
    peer10 = peer(lab, "10", "14", (EAST,), "--send", "hello from 10")
    wait_for_line(east, r"10 asks for 14: waiting for 14 to register")
    peer14 = peer(lab, "14", "10", (WEST,), "--send", "hello from 14")
    (code10, result10, log10), (code14, result14, log14) = finish(peer10), finish(peer14)
    assert (code10, code14) == (0, 0), log10 + log14
    assert (result10["received"], result14["received"]) == (["hello from 14"], ["hello from 10"])
    assert result10["path"] == result14["path"] == "direct"
    assert f"registered as 10 with {EAST}:3478" in log10
    assert f"registered as 14 with {WEST}:3478" in log14
    # Each Introduce came from the peer's own server: one from another would have been ignored ("not our server")
    assert "not our server" not in log10 + log14
    wait_for_line(west, r"14 asks for 10: both want each other, introducing")
    for server in (east, west):
        stop(server)


@pytest.mark.parametrize("lab", [{"firewall": "home", "topology": TOPOLOGY}], indirect=True, ids=["home-router"])
def test_a_server_killed_mid_session_leaves_the_session_going_and_its_peers_register_at_the_other(lab: Lab) -> None:
    start_redis(lab)
    east, west = start_shared_server(lab, "east", EAST), start_shared_server(lab, "west", WEST)
    both = (EAST, WEST)
    peer10, peer14 = peer(lab, "10", "14", both, chat=True), peer(lab, "14", "10", both, chat=True)
    for proc in (peer10, peer14):
        wait_for_line(proc, rf"nearest answering server: {EAST}:3478")  # 1 ms away, west 5
    say(peer10, "before")
    wait_for_line(peer14, r"message 0 received from 10")
    stop(east)
    for proc in (peer10, peer14):
        wait_for_line(proc, rf"registering with {WEST}:3478 instead", timeout=40)
    here = r"(\S+) registers here now \(it was registered at 'east'\)"
    arrivals = {re.search(here, wait_for_line(west, here)).group(1) for _ in "ab"}  # type: ignore[union-attr]
    assert arrivals == {"10", "14"}
    say(peer14, "after")
    wait_for_line(peer10, r"message 0 received from 14")
    end_chat((peer10, ""), (peer14, ""))
    (code10, result10, log10), (code14, result14, log14) = finish(peer10), finish(peer14)
    assert (code10, code14) == (0, 0), log10 + log14
    assert (result10["received"], result14["received"]) == (["after"], ["before"])
    assert result10["path"] == result14["path"] == "direct"
    assert result10["rejoins"] == result14["rejoins"] == 0  # the direct path never broke
    stop(west)


@pytest.mark.parametrize("lab", [{"firewall": "home", "topology": TOPOLOGY}], indirect=True, ids=["home-router"])
def test_redis_restarted_under_the_servers_is_a_pause_they_recover_from_by_themselves(lab: Lab) -> None:
    redis = start_redis(lab)
    east, west = start_shared_server(lab, "east", EAST), start_shared_server(lab, "west", WEST)
    stop(redis)
    refused = peer(lab, "10", "14", (EAST,), "--timeout", "5")
    code, _, log = finish(refused)
    assert code == 1
    assert "503 Service Unavailable: the registry does not answer; try again" in log
    wait_for_line(east, r"registry redis://\S+ does not answer")
    start_redis(lab)  # empty: nothing was saved
    peer10 = peer(lab, "10", "14", (EAST,), "--send", "hello from 10")
    wait_for_line(east, r"registry redis://\S+ answers again")
    wait_for_line(east, r"10 asks for 14: waiting for 14 to register")
    peer14 = peer(lab, "14", "10", (WEST,), "--send", "hello from 14")
    (code10, result10, log10), (code14, result14, log14) = finish(peer10), finish(peer14)
    assert (code10, code14) == (0, 0), log10 + log14
    assert (result10["received"], result14["received"]) == (["hello from 14"], ["hello from 10"])
    for server in (east, west):
        stop(server)


def relaying_servers(lab: Lab) -> tuple[subprocess.Popen[Any], subprocess.Popen[Any]]:
    """Redis, and east and west with their alternate addresses (peers find their NATs symmetric: the relay)."""
    start_redis(lab)
    return tuple(  # type: ignore[return-value]
        start_shared_server(lab, node, address, REGISTRY, "--alternate", ALTERNATE[address])
        for node, address in (("east", EAST), ("west", WEST))
    )


@pytest.mark.parametrize(
    "lab", [{**SYMMETRIC, "firewall": "home"}, {**SYMMETRIC, "firewall": "none"}], indirect=True,
    ids=["home-router", "bare-masquerade"],
)  # fmt: skip
def test_a_relayed_session_across_servers_carries_texts_and_a_tunnel(lab: Lab) -> None:
    east, west = relaying_servers(lab)
    echo = lab.spawn("peer14", PY, "-c", ECHO, "7000", text=True)
    wait_for_line(echo, "echoing")
    peer10 = peer(lab, "10", "14", (EAST,), "--send", "hello from 10", "--forward", "9000:127.0.0.1:7000")
    wait_for_line(east, r"10 asks for 14: waiting for 14 to register")
    peer14 = peer(lab, "14", "10", (WEST,), "--send", "hello from 14", "--allow", "127.0.0.1:7000")
    # 14's Connect completed the pair at west: west relays; 10, registered at east, opened its way there itself
    opened = wait_for_line(west, r"relay: 10 \(registered at server 'east'\) reaches us at 198\.51\.100\.10:\d+")
    wait_for_line(peer10, r"forwarding 127\.0\.0\.1:9000 to", timeout=30)
    for proc, other in ((peer10, "14"), (peer14, "10")):
        wait_for_line(proc, rf"message 0 received from {other}", timeout=30)
    done = lab.exec("peer10", PY, "-c", THROUGH, "9000", timeout=60)
    assert done.stdout.strip() == "the same bytes came back", done.stderr
    for proc in (peer10, peer14):  # the tunnels keep them running until told
        proc.terminate()
    (code10, result10, log10), (code14, result14, log14) = finish(peer10), finish(peer14)
    assert (code10, code14) == (0, 0), log10 + log14
    assert (result10["received"], result14["received"]) == (["hello from 14"], ["hello from 10"])
    assert result10["path"] == result14["path"] == "relay"
    assert result10["remote"] == result14["remote"] == f"{WEST}:3478"
    # The relay reaches 10 where its symmetric NAT maps it toward west, not where east sees it
    assert opened.split("reaches us at ")[1].split()[0] != result10["mapped"]
    assert result10["mapped"].startswith("198.51.100.10:")


@pytest.mark.parametrize(
    "lab", [{**SYMMETRIC, "firewall": "home"}, {**SYMMETRIC, "firewall": "none"}], indirect=True,
    ids=["home-router", "bare-masquerade"],
)  # fmt: skip
def test_a_relayed_session_whose_server_is_killed_moves_to_the_other_one(lab: Lab) -> None:
    """14 knows west alone and asks first; 10 knows both, registers at east (the nearer) and completes the pair
    there: east relays. East is killed: 10 registers at west, both ask again there, and west relays the same QUIC
    connection: the chat goes on."""
    east, west = relaying_servers(lab)
    peer14 = peer(lab, "14", "10", (WEST,), chat=True)
    wait_for_line(west, r"14 asks for 10: waiting for 10 to register")
    peer10 = peer(lab, "10", "14", (EAST, WEST), chat=True)
    wait_for_line(peer10, rf"nearest answering server: {EAST}:3478")
    for proc in (peer10, peer14):
        wait_for_line(proc, rf"using the relay path to 1[04] via {EAST}:3478", timeout=30)
    say(peer10, "before")
    wait_for_line(peer14, r"message 0 received from 10", timeout=30)
    east.kill()  # no goodbye, no stats line: gone
    east.communicate(timeout=30)
    for proc, other in ((peer10, "14"), (peer14, "10")):
        wait_for_line(proc, rf"back on the relay to {other} via {WEST}:3478", timeout=60)
    say(peer14, "after")
    wait_for_line(peer10, r"message 0 received from 14", timeout=30)
    end_chat((peer10, ""), (peer14, ""))
    (code10, result10, log10), (code14, result14, log14) = finish(peer10), finish(peer14)
    assert (code10, code14) == (0, 0), log10 + log14
    assert (result10["received"], result14["received"]) == (["after"], ["before"])
    assert result10["path"] == result14["path"] == "relay"
    assert result10["remote"] == result14["remote"] == f"{WEST}:3478"
    assert result10["rejoins"] == result14["rejoins"] == 1
    stop(west)
