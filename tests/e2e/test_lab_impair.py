"""Link impairments end to end (needs root): delay, jitter, loss, duplication and rate measured with UDP.

tests/data/topologies/impair.yaml joins hosts a and b by one network per impairment; every member's interface
is impaired, so a round trip crosses each impairment twice. Bounds are statistical bands of at least six
standard deviations, or lower bounds that physics requires; nothing waits by sleeping.

An impaired wire loses and delays ARP too (as netem does): a lost ARP request or reply leaves the first
datagrams queued for the kernel's retry a second later, and most of a 1 ms burst is dropped from that queue.
A measurement that counts datagrams therefore starts after one answered round trip has resolved both ends.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from netns.kernel import boundary, processes
from netns.testing import Lab, LabFactory, run_cli, unique_name

pytestmark = pytest.mark.e2e

PY = sys.executable
TOPOLOGY = Path(__file__).parents[1] / "data" / "topologies" / "impair.yaml"
PORT = 7000
B = {"delay": "10.1.1.2", "jitter": "10.1.2.2", "loss": "10.1.3.2", "dup": "10.1.4.2", "rate": "10.1.5.2"}
PLAIN = "10.1.6.2"

ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
while True:
    data, addr = s.recvfrom(4096)
    try:
        s.sendto(data, addr)
    except OSError as exc:  # e.g. ENOBUFS from a full tbf queue: that answer is lost, as on a real link
        print(exc, flush=True)
"""

# argv: address port count size interval quiet warm -> JSON: replies in arrival order, RTT of each id's first
# reply (ms), bytes and arrival times of the replies. With warm = 1 it first sends an uncounted datagram every
# 20 ms until one is answered (neighbours resolved both ways). Sends on schedule while it receives (select, no
# busy loop); then stops when every id has answered or nothing came for `quiet` seconds.
PROBE = """
import json, select, socket, sys, time
dst, port, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
interval, quiet, warm = float(sys.argv[5]), float(sys.argv[6]), sys.argv[7] == "1"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.connect((dst, port))
sent, order, rtt, times, total, errors = {}, [], {}, [], [0], 0
WARM = b"%08d" % 99999999
deadline = time.monotonic() + 30
while warm and time.monotonic() < deadline:
    s.send(WARM)
    if select.select([s], [], [], 0.02)[0] and s.recv(4096)[:8] == WARM:
        break

def take(data):
    now = time.monotonic()
    i = int(data[:8])
    if i not in sent:  # a late answer to the warm-up
        return
    order.append(i)
    times.append(now)
    total[0] += len(data)
    rtt.setdefault(i, (now - sent[i]) * 1000)

start = time.monotonic()
i = 0
while i < count:
    wait = start + i * interval - time.monotonic()
    if wait > 0:
        if select.select([s], [], [], wait)[0]:
            take(s.recv(4096))
        continue
    sent[i] = time.monotonic()
    try:
        s.send(b"%08d" % i + b"x" * (size - 8))
    except OSError:
        errors += 1
    i += 1
s.settimeout(quiet)
while len(rtt) < count:
    try:
        take(s.recv(4096))
    except TimeoutError:
        break
print(json.dumps({"order": order, "rtt": rtt, "bytes": total[0], "times": times, "errors": errors}))
"""


def start_echo(lab: Lab) -> None:
    echo = lab.spawn("b", PY, "-c", ECHO, str(PORT), text=True)
    assert echo.stdout is not None
    assert echo.stdout.readline().strip() == "ready"


def probe(
    lab: Lab, dst: str, count: int, size: int = 64, interval: float = 0.001, quiet: float = 1.0, warm: bool = False
) -> Any:
    args = (dst, str(PORT), str(count), str(size), str(interval), str(quiet), "1" if warm else "0")
    done = lab.exec("a", PY, "-c", PROBE, *args, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def status(lab: Lab) -> tuple[int, dict[str, Any], str]:
    js = lab.cli("status", "--name", lab.name, "--json")
    text = lab.cli("status", "--name", lab.name)
    return text.returncode, json.loads(js.stdout), text.stdout


def netem(lab: Lab) -> bool:
    return bool(json.loads((lab.logdir / "lab.json").read_text())["netem"])


def daemon_pids(info: dict[str, Any]) -> list[int]:
    return [
        m["pid"]
        for n in info["impairments"]
        for member in n["members"]
        for m in member["mechanisms"]
        if m["mechanism"] == "nfqueue"
    ]


@pytest.fixture
def lab(lab_factory: LabFactory) -> Lab:
    lab = lab_factory(topology=TOPOLOGY)
    start_echo(lab)
    return lab


def test_delay_is_per_direction_so_rtt_is_at_least_twice_it(lab: Lab) -> None:
    result = probe(lab, B["delay"], 5, interval=0.05)
    assert len(result["rtt"]) == 5
    assert min(result["rtt"].values()) >= 100.0  # 50ms out of a's egress + 50ms out of b's
    assert min(probe(lab, PLAIN, 5, interval=0.05)["rtt"].values()) < 50.0


def test_jitter_reorders_a_burst(lab: Lab) -> None:
    result = probe(lab, B["jitter"], 200)
    order = result["order"]
    assert sorted(order) == list(range(200))
    assert sum(1 for x, y in itertools.pairwise(order) if y < x) > 0
    assert min(result["rtt"].values()) >= 2 * (20 - 15)


def test_loss_lands_in_a_six_sigma_band(lab: Lab) -> None:
    # A round trip survives two independent 20% losses: p = 0.64; over n = 1000, sd = sqrt(n p (1-p)) = 15.2.
    n, p = 1000, 0.8 * 0.8
    sd = (n * p * (1 - p)) ** 0.5
    result = probe(lab, B["loss"], n, warm=True)
    answered = len(result["rtt"])
    assert n * p - 6 * sd <= answered <= n * p + 6 * sd, answered
    assert result["errors"] == 0  # lost silently, as on a wire: send() never fails


def test_duplicate_shows_duplicates_and_loses_nothing(lab: Lab) -> None:
    result = probe(lab, B["dup"], 500)
    assert sorted(set(result["order"])) == list(range(500))
    assert len(result["order"]) > 500  # expected 500 * (1.1 * 1.1 - 1) = 105 extra


def test_rate_limits_throughput(lab: Lab) -> None:
    # 2 Mbit/s offered for one second (1000-byte datagrams every 4 ms) against 1 mbit on each egress.
    limited = probe(lab, B["rate"], 250, size=1000, interval=0.004)
    span = limited["times"][-1] - limited["times"][0]
    after_first = (limited["bytes"] - 1000) * 8  # payload bits, fewer than the wire bits tbf counts
    assert after_first <= 1e6 * span + 2 * 3028 * 8  # the rate, plus at most one burst from each tbf
    plain = probe(lab, PLAIN, 250, size=1000, interval=0.004)
    assert len(plain["rtt"]) > len(limited["rtt"])


def test_status_reports_each_impairment_and_its_mechanism(lab: Lab) -> None:
    code, info, text = status(lab)
    assert code == 0, text
    by_network = {n["network"]: n for n in info["impairments"]}
    assert set(by_network) == {"delay", "jitter", "loss", "dup", "rate"}
    assert all(n["ok"] for n in info["impairments"])
    assert by_network["jitter"]["summary"] == "delay 20ms ±15ms"
    assert [m["node"] for m in by_network["loss"]["members"]] == ["a", "b"]
    if netem(lab):
        assert "(netem)" in text
        return
    assert "loss 20% (nft numgen)" in text
    assert "duplicate 10% (nft dup)" in text
    assert "rate 1mbit (tbf)" in text
    pid = by_network["delay"]["members"][0]["mechanisms"][0]["pid"]
    assert f"delay 50ms (nfqueue daemon pid {pid}, queue 0)" in text


def test_a_dead_daemon_stops_its_traffic_and_status_says_so(lab: Lab) -> None:
    if netem(lab):
        pytest.skip("this kernel has netem: no delay daemon")
    _, info, _ = status(lab)
    pid = next(n for n in info["impairments"] if n["network"] == "delay")["members"][0]["mechanisms"][0]["pid"]
    os.kill(pid, signal.SIGKILL)
    boundary.wait_for(lambda: not processes.alive(pid), f"PID {pid} to die")
    code, info, text = status(lab)
    assert code == 1
    assert "daemon DEAD: traffic is dropped" in text
    assert not next(n for n in info["impairments"] if n["network"] == "delay")["ok"]
    assert probe(lab, B["delay"], 3, quiet=1.0)["rtt"] == {}  # not passed unimpaired: not passed at all
    assert len(probe(lab, PLAIN, 3)["rtt"]) == 3


def test_runtime_impair_verb_adds_changes_and_clears(lab: Lab) -> None:
    done = lab.cli("impair", "--name", lab.name, "plain", "loss=100%")
    assert done.returncode == 0, done.stderr
    assert probe(lab, PLAIN, 3, quiet=1.0)["rtt"] == {}
    done = lab.cli("impair", "--name", lab.name, "plain", "delay=30ms")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "plain: delay 30ms"
    assert min(probe(lab, PLAIN, 3, interval=0.05)["rtt"].values()) >= 60.0
    done = lab.cli("impair", "--name", lab.name, "plain", "delay=10ms")  # a new daemon takes over
    assert done.returncode == 0, done.stderr
    assert len(probe(lab, PLAIN, 20)["rtt"]) == 20
    bad = lab.cli("impair", "--name", lab.name, "plain", "loss=120%")
    assert bad.returncode == 1
    assert bad.stderr == (
        "netns-lab: networks.plain.impair.loss: 120% is more than 100%; give a percentage from 0% to 100%\n"
    )
    assert lab.cli("impair", "--name", lab.name, "plain", "--clear").returncode == 0
    code, info, _ = status(lab)
    assert code == 0
    assert "plain" not in {n["network"] for n in info["impairments"]}
    assert max(probe(lab, PLAIN, 5, interval=0.05)["rtt"].values()) < 30.0


def test_down_stops_the_daemons_and_leaves_nothing(lab: Lab) -> None:
    _, info, _ = status(lab)
    pids = [pid for pid in daemon_pids(info) if pid]
    lab.down()
    lab.assert_gone()
    assert not any(processes.alive(pid) for pid in pids)


def test_two_labs_use_the_same_queue_numbers_side_by_side(lab_factory: LabFactory) -> None:
    labs = [lab_factory(topology=TOPOLOGY), lab_factory(topology=TOPOLOGY)]
    for lab in labs:
        start_echo(lab)
        code, _, text = status(lab)
        assert code == 0, text
        assert min(probe(lab, B["delay"], 3, interval=0.05)["rtt"].values()) >= 100.0


def test_up_impair_override_on_the_default_topology() -> None:
    name = unique_name()
    lab = Lab(name)
    try:
        bad = run_cli("up", "--name", name, "--impair", "wan10:delay=50")
        assert bad.returncode == 1
        assert bad.stderr == (
            "default.yaml: networks.wan10.impair.delay: 50 has no unit; write it like 50ms or 1s "
            "(from --impair wan10:delay=50)\n"
        )
        done = run_cli("up", "--name", name, "--impair", "lan10:delay=50ms,loss=1%")
        assert done.returncode == 0, done.stderr
        text = run_cli("status", "--name", name).stdout
        assert "lan10: delay 50ms, loss 1%" in text
        answer = lab.exec("peer10", PY, "-c", "import socket; print(socket.gethostname())")
        assert answer.returncode == 0
    finally:
        lab.down()
        lab.assert_gone()
    assert subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.count(name) == 0


SEND_ONE = "import socket, sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', (sys.argv[1], 9))"


def test_a_nat_maps_its_packet_at_once_while_the_wan_still_delays_it(lab_factory: LabFactory) -> None:
    """A delayed link holds a packet where it arrives (or in netem's qdisc, after the stack): either way the NAT
    it leaves records its mapping the moment it leaves. Held at the sender's egress, before conntrack confirms
    it, the mapping would appear only after the link's delay, and a packet from the other side arriving
    meanwhile would race it (netns/rules/impair.py)."""
    lab = lab_factory(firewall="none", args=["--impair", "wan10:delay=3s"])
    sent = time.monotonic()
    lab.exec("peer10", PY, "-c", SEND_ONE, "203.0.113.1", check=True)
    while True:
        table = lab.exec("nat10", "conntrack", "-L", "-p", "udp", "--dport", "9", check=True).stdout
        if "dst=198.51.100.10" in table:  # the reply direction carries the NAT's public address: mapped
            break
        assert time.monotonic() - sent < 1.5, f"nat10 has no mapping yet, half the 3 s delay later: {table!r}"
    snmp = [line.split() for line in lab.exec("server", "cat", "/proc/net/snmp", check=True).stdout.splitlines()]
    names, values = [fields for fields in snmp if fields[0] == "Udp:"][:2]
    assert (
        dict(zip(names, values, strict=True))["NoPorts"] == "0"
    )  # the packet has not reached the server yet: still delayed
