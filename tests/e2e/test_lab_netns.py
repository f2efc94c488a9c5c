"""The netns lab end to end: real namespaces, veths, routes and the kernel's NAT (needs root)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from netns.testing import Lab, LabFactory, namespaces_of, run_cli, unique_name

pytestmark = pytest.mark.e2e

PY = sys.executable
NAT10_WAN = "198.51.100.10"
NAT14_WAN = "192.0.2.14"
SERVER = "203.0.113.1"

# Replies to each datagram with the source address and port it saw.
ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True:
    data, addr = s.recvfrom(2048)
    s.sendto(f"{addr[0]}:{addr[1]}".encode(), addr)
"""

# Sends one datagram and prints the reply, or the error that came back instead (e.g. ENETUNREACH).
ASK = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.connect((sys.argv[1], int(sys.argv[2])))
s.send(b"hello")
try:
    print(s.recv(2048).decode())
except OSError as exc:
    print(f"error {exc.errno}")
"""

# Sends one datagram with the given IP TTL and exits.
SEND = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, int(sys.argv[3]))
s.bind(("0.0.0.0", int(sys.argv[4])))
s.sendto(b"probe", (sys.argv[1], int(sys.argv[2])))
"""


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def conntrack(lab: Lab, node: str, *filters: str) -> list[str]:
    done = lab.exec(node, "conntrack", "-L", "-p", "udp", *filters)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line.strip()]


def snmp(lab: Lab, node: str, proto: str, field: str) -> int:
    lines = [line.split() for line in lab.exec(node, "cat", "/proc/net/snmp").stdout.splitlines()]
    header, values = [line for line in lines if line[0] == f"{proto}:"]
    return int(values[header.index(field)])


def start_echo(lab: Lab, node: str, address: str, port: int) -> None:
    echo = lab.spawn(node, PY, "-c", ECHO, address, str(port), text=True)
    assert echo.stdout is not None
    assert echo.stdout.readline().strip() == "ready"


def test_up_status_down(lab_factory: LabFactory) -> None:
    lab = lab_factory()
    done = lab.cli("status", "--name", lab.name, "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    nodes = {node["node"]: node for node in info["nodes"]}
    assert sorted(nodes) == ["core", "nat10", "nat14", "peer10", "peer14", "server"]
    assert nodes["nat10"]["nat"] == "masquerade/home on wan10"
    lan = {i["name"]: i for i in nodes["peer10"]["interfaces"]}["lan10"]
    assert lan["addresses"] == ["10.0.10.2/24"]
    assert {"dst": "default", "via": "10.0.10.1", "dev": "lan10"} in nodes["peer10"]["routes"]
    assert not [r for r in nodes["core"]["routes"] if r["dst"].startswith("10.")]
    assert lab.cli("logdir", "--name", lab.name).stdout.strip() == f"/run/netns-lab/{lab.name}"
    assert lab.logdir.is_dir()

    lab.down()
    lab.assert_gone()
    gone = lab.cli("status", "--name", lab.name)
    assert gone.returncode == 1
    assert gone.stderr == (f"netns-lab: lab '{lab.name}' is not up; run `python -m netns up --name {lab.name}`\n")
    again = lab.cli("down", "--name", lab.name)
    assert again.returncode == 0, again.stderr


def test_up_json_gives_the_nodes_and_the_time_each_kind_of_step_took() -> None:
    name = unique_name()
    try:
        done = run_cli("up", "--name", name, "--peers", "3", "--json")
        assert done.returncode == 0, done.stderr
        info = json.loads(done.stdout)
        assert info["lab"] == name
        assert [n["node"] for n in info["nodes"]] == ["server", "nat1", "nat2", "nat3", "peer1", "peer2", "peer3"]
        assert info["nodes"][1]["nat"] == "masquerade/home on inet"
        steps = info["steps"]
        assert {
            kind: steps[kind]["count"] for kind in ("CreateNamespace", "CreateBridge", "CreateVeth", "LoadNat")
        } == {
            "CreateNamespace": 7,
            "CreateBridge": 1,
            "CreateVeth": 6,
            "LoadNat": 3,
        }
        assert all(step["seconds"] > 0 for step in steps.values())
        assert info["seconds"] > 0
    finally:
        run_cli("down", "--name", name)
    assert namespaces_of(name) == []


def test_peer_reaches_server_through_nat(lab: Lab) -> None:
    start_echo(lab, "server", SERVER, 7000)
    done = lab.exec("peer10", PY, "-c", ASK, SERVER, "7000")
    assert done.returncode == 0, done.stderr
    seen_address, seen_port = done.stdout.strip().split(":")
    assert seen_address == NAT10_WAN
    flows = conntrack(lab, "nat10", "--orig-dst", SERVER, "--dport", "7000")
    assert len(flows) == 1
    assert "src=10.0.10.2" in flows[0]
    assert f"dst={NAT10_WAN} sport=7000 dport={seen_port}" in flows[0]


def test_exec_passes_exit_code_and_output(lab: Lab) -> None:
    done = lab.cli("exec", "--name", lab.name, "peer10", "--", "sh", "-c", "ip -br addr show lan10; exit 7")
    assert done.returncode == 7
    assert "10.0.10.2/24" in done.stdout
    unknown = lab.cli("exec", "--name", lab.name, "nobody", "--", "true")
    assert unknown.returncode == 1
    assert f"no node 'nobody' in lab '{lab.name}'" in unknown.stderr


def test_the_lab_speaks_no_ipv6(lab: Lab) -> None:
    """IPv6 is off in every namespace of the (IPv4-only) lab, set before its links existed: no link-local
    addresses, so no duplicate address detection, router solicitations or MLD reports flooding the bridges."""
    for node in ("core", "nat10", "peer10", "server"):
        assert lab.exec(node, "ip", "-6", "-o", "addr", check=True).stdout == "", node
    for iface in ("all", "default", "wan10", "lan10"):
        assert lab.exec("nat10", "cat", f"/proc/sys/net/ipv6/conf/{iface}/disable_ipv6", check=True).stdout == "1\n"


def test_private_lan_is_not_routed(lab: Lab) -> None:
    """core has no route to the 10.x LANs: it answers "net unreachable" and peer14 never sees the packet."""
    before = snmp(lab, "core", "Icmp", "OutDestUnreachs")
    lab.exec("peer10", PY, "-c", SEND, "10.0.14.2", "7000", "64", "41000", check=True)
    wait_until(lambda: snmp(lab, "core", "Icmp", "OutDestUnreachs") > before, "core to reject the packet")
    assert snmp(lab, "peer14", "Udp", "InDatagrams") == 0
    assert snmp(lab, "peer14", "Udp", "NoPorts") == 0
    route = lab.exec("core", "ip", "route", "get", "10.0.14.2")
    assert "Network is unreachable" in route.stderr


@pytest.mark.parametrize("lab", ["none"], indirect=True)
def test_ttl_2_dies_at_core_ttl_64_reaches_nat14(lab: Lab) -> None:
    """The internet is routed: nat10 and nat14 share no link, so TTL 2 passes nat10 and dies at core."""
    before = snmp(lab, "core", "Icmp", "OutTimeExcds")
    lab.exec("peer10", PY, "-c", SEND, NAT14_WAN, "40000", "2", "41000", check=True)
    wait_until(lambda: snmp(lab, "core", "Icmp", "OutTimeExcds") > before, "core to drop the TTL 2 packet")
    assert len(conntrack(lab, "nat10", "--orig-dst", NAT14_WAN, "--dport", "40000")) == 1
    assert conntrack(lab, "nat14", "--dport", "40000") == []

    lab.exec("peer10", PY, "-c", SEND, NAT14_WAN, "40000", "64", "41001", check=True)
    wait_until(lambda: len(conntrack(lab, "nat14", "--dport", "40000")) == 1, "nat14 to see the packet")


@pytest.mark.parametrize(("lab", "firewall"), [("home", "home"), ("none", "none")], indirect=["lab"])
def test_unsolicited_packet_to_nat_wan(lab: Lab, firewall: str) -> None:
    """home: dropped in the filter table before conntrack confirms it; none: it leaves an entry."""
    lab.exec("server", PY, "-c", SEND, NAT14_WAN, "40000", "64", "41000", check=True)
    if firewall == "home":

        def dropped() -> bool:
            rules = lab.exec("nat14", "iptables", "-L", "INPUT", "-v", "-x", "-n").stdout.splitlines()
            drop = next(line for line in rules if " DROP " in f" {line} ")
            return int(drop.split()[0]) >= 1

        wait_until(dropped, "nat14's INPUT DROP rule to count the packet")
        assert conntrack(lab, "nat14", "--dport", "40000") == []
    else:
        wait_until(lambda: len(conntrack(lab, "nat14", "--dport", "40000")) == 1, "a conntrack entry")


def test_up_twice_refuses(lab: Lab) -> None:
    done = lab.cli("up", "--name", lab.name)
    assert done.returncode == 1
    names = ", ".join(f"{lab.name}-{n}" for n in sorted(["core", "server", "nat10", "nat14", "peer10", "peer14"]))
    assert done.stderr == (
        f"netns-lab: lab '{lab.name}' is already up (namespaces {names}); "
        f"run `python -m netns down --name {lab.name}` first\n"
    )


def test_two_labs_side_by_side(lab_factory: LabFactory) -> None:
    first, second = lab_factory(), lab_factory(firewall="none")
    for lab in (first, second):
        start_echo(lab, "server", SERVER, 7000)
        assert lab.exec("peer14", PY, "-c", ASK, SERVER, "7000").stdout.startswith(NAT14_WAN)
    first.down()
    first.assert_gone()
    assert lab_factory.labs[1].exec("peer10", PY, "-c", ASK, SERVER, "7000").stdout.startswith(NAT10_WAN)


def test_down_kills_detached_processes(lab: Lab, tmp_path: Path) -> None:
    log = tmp_path / "sleep.log"
    polite = lab.cli("exec", "--name", lab.name, "--detach", "--log", str(log), "server", "--", "sleep", "300")
    stubborn = lab.cli(
        "exec", "--name", lab.name, "--detach", "peer10", "--", "sh", "-c", "trap '' TERM; echo up; sleep 300"
    )
    pids = [int(polite.stdout), int(stubborn.stdout)]
    assert all(Path(f"/proc/{pid}").exists() for pid in pids)
    wait_until(lambda: (lab.logdir / "peer10.log").read_text() == "up\n", "the detached shell to start")
    lab.down()
    for pid in pids:
        # A zombie (reaped by init later) has no network namespace any more.
        assert not Path(f"/proc/{pid}/ns/net").exists()
    lab.assert_gone()


def big_topology(path: Path, hosts: int = 16) -> Path:
    """A star of ``hosts`` hosts around a core: enough namespaces that ``up`` is still busy when we strike."""
    lines = ["version: 1", "networks:"]
    lines += [f"  n{i}: {{subnet: 198.51.100.{i * 8}/29}}" for i in range(hosts)]
    lines += ["nodes:", "  core:", "    kind: core", "    interfaces:"]
    lines += [f"      n{i}: 198.51.100.{i * 8 + 1}" for i in range(hosts)]
    for i in range(hosts):
        lines += [f"  h{i}:", "    kind: host", f"    interfaces: {{n{i}: 198.51.100.{i * 8 + 2}}}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def start_up_and_wait_for_namespaces(name: str, topology: Path, count: int) -> subprocess.Popen[str]:
    up = subprocess.Popen(
        [sys.executable, "-m", "netns", "up", "--name", name, "--topology", str(topology)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, so a "Ctrl-C" can go to the whole group
    )
    wait_until(lambda: len(namespaces_of(name)) >= count or up.poll() is not None, "up to create namespaces")
    return up


@pytest.mark.parametrize(
    ("signum", "to_group", "code", "message"),
    [
        (signal.SIGINT, False, 130, "netns-lab: interrupted\n"),
        (signal.SIGINT, True, 130, "netns-lab: interrupted\n"),
        (signal.SIGTERM, False, 143, "netns-lab: interrupted by SIGTERM\n"),
    ],
    ids=["sigint", "ctrl-c-to-group", "sigterm"],
)
def test_signal_during_up_leaves_nothing(
    tmp_path: Path, signum: signal.Signals, to_group: bool, code: int, message: str
) -> None:
    name = unique_name()
    up = start_up_and_wait_for_namespaces(name, big_topology(tmp_path / "big.yaml"), 3)
    try:
        assert up.poll() is None, "up finished before it could be interrupted"
        if to_group:
            os.killpg(up.pid, signum)
        else:
            up.send_signal(signum)
        _, stderr = up.communicate(timeout=60)
        assert up.returncode == code, stderr
        assert stderr == message
        assert namespaces_of(name) == []
        assert not Path(f"/run/netns-lab/{name}").exists()
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate()
        run_cli("down", "--name", name)


def test_down_leaves_a_stranger_with_the_prefix_alone(lab: Lab) -> None:
    """Prefix alone is not ownership: an unmarked namespace that is no node of the lab survives down."""
    stranger = f"{lab.name}-stranger"
    subprocess.run(["ip", "netns", "add", stranger], check=True)
    try:
        done = lab.cli("down", "--name", lab.name)
        assert done.returncode == 0, done.stderr
        assert namespaces_of(lab.name) == [stranger]
        assert f"namespace {stranger} has the prefix of lab {lab.name} but not its marker" in done.stderr
    finally:
        subprocess.run(["ip", "netns", "delete", stranger], check=True)


def test_down_after_kill_9_of_up(tmp_path: Path) -> None:
    name = unique_name()
    up = start_up_and_wait_for_namespaces(name, big_topology(tmp_path / "big.yaml"), 3)
    try:
        assert up.poll() is None, "up finished before it could be killed"
        os.kill(up.pid, signal.SIGKILL)
        up.communicate(timeout=30)
        assert namespaces_of(name) != []
        done = run_cli("down", "--name", name)
        assert done.returncode == 0, done.stderr
        assert namespaces_of(name) == []
        assert not Path(f"/run/netns-lab/{name}").exists()
    finally:
        run_cli("down", "--name", name)


BRIDGED = """\
version: 1
networks:
  lan: {subnet: 10.0.0.0/24}
  up: {subnet: 192.0.2.0/24}
nodes:
  gw: {kind: core, interfaces: {up: 192.0.2.1, lan: 10.0.0.1}}
  isp: {kind: host, interfaces: {up: 192.0.2.2}, gateway: 192.0.2.1}
  a: {kind: host, interfaces: {lan: 10.0.0.2}, gateway: 10.0.0.1}
  b: {kind: host, interfaces: {lan: 10.0.0.3}, gateway: 10.0.0.1}
"""


def test_network_with_three_members_is_a_bridge(lab_factory: LabFactory, tmp_path: Path) -> None:
    topology = tmp_path / "bridged.yaml"
    topology.write_text(BRIDGED)
    lab = lab_factory(topology=topology)
    bridge = lab.exec("gw", "ip", "-br", "link", "show", "master", "lan").stdout
    assert sorted(line.split("@")[0] for line in bridge.splitlines()) == ["a.0", "b.0"]
    start_echo(lab, "b", "10.0.0.3", 7000)
    start_echo(lab, "isp", "192.0.2.2", 7000)
    assert lab.exec("a", PY, "-c", ASK, "10.0.0.3", "7000").stdout.strip().startswith("10.0.0.2:")
    assert lab.exec("a", PY, "-c", ASK, "192.0.2.2", "7000").stdout.strip().startswith("10.0.0.2:")
