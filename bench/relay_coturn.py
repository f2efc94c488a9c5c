"""coturn's TURN relay under the load punch's relay gets, for bench/relay.py (`python -m bench.relay_coturn`).

coturn (Debian's `turnserver`) runs where punch's loopback server runs: on the loopback of the lab's server
namespace, pinned to core 0 (taskset; `--relay-threads 1`: its listener, relay and auth threads all share that
core). The bench starts it with its own command line and files, never the system's service: no config file
(`-n`), its user database, pid file and log in the lab's log directory, the long-term credential mechanism with one
user, relay ports in its own range, loopback peers allowed (the receiver is on loopback), no TLS or DTLS.

The load is not turnutils_uclient's: uclient paces each client's messages (`-z` milliseconds apart; with `-z 0` it
still goes in step with their echoes), sends them through turnutils_peer, which echoes each one back through the
relay (every message crosses coturn twice), and reports totals, round trips and a transmit time in whole seconds,
not what one receiver got per second of a one-way stream. Instead the sender here (core 1) makes one UDP allocation,
binds a channel to the receiver (bench/turn.py, no TURN library) and sends ChannelData carrying the same payloads as
punch's Relay indications, in the same loop (bench/relay_load.py); the receiver (core 1) counts what coturn relays
to it, as punch's does. Per message, coturn looks up the channel and its permission and forwards the payload;
punch's server checks the indication's framing, FINGERPRINT, source and budget and forwards it whole (it cannot
check its signature).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from bench.lab import PYTHON, in_node, lab, wait_for_line
from bench.relay_load import (
    blast,
    collect,
    count_bursts,
    delivered_rate,
    load_cells,
    lost_share,
    median_round,
    per_cpu_second,
)
from bench.report import markdown_table
from bench.turn import FIRST_CHANNEL, allocate, bind_channel, channel_data

COTURN = "127.0.0.1:3481"  # coturn on the loopback of the lab's server namespace
PEER = "127.0.0.1:3490"  # the receiver there
USER, PASSWORD, REALM = "bench", "bench", "punch.bench"
RELAY_PORTS = (49152, 49407)
Load = dict[int, dict[str, float]]  # payload size -> the sender's and receiver's counts (bench.relay_load.collect)
SATURATED = 0.05  # a relay that loses less than this share of the offered load may not have reached its ceiling


def address(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


def coturn_command(files: Path) -> list[str]:
    """``turnserver`` pinned to core 0 with one relay thread, listening on COTURN, keeping its files in ``files``."""
    host, port = address(COTURN)
    return ["taskset", "-c", "0", "turnserver", "-n", "--no-cli", "--no-tls", "--no-dtls",
            "--listening-ip", host, "--listening-port", str(port), "--relay-ip", host,
            "--min-port", str(RELAY_PORTS[0]), "--max-port", str(RELAY_PORTS[1]), "--relay-threads", "1",
            "--allow-loopback-peers", "--lt-cred-mech", "--user", f"{USER}:{PASSWORD}", "--realm", REALM,
            "--userdb", str(files / "coturn.db"), "--pidfile", str(files / "coturn.pid"),
            "--log-file", "stdout", "--simple-log"]  # fmt: skip


def start_coturn(name: str, logs: Path) -> int:
    """coturn in lab ``name``'s server node; returns its PID once its log says its relay server is up."""
    log = logs / "coturn.log"
    started = lab("exec", "--name", name, "--detach", "--log", str(log), "server", "--", *coturn_command(logs))
    wait_for_line(log, "Total General servers")
    return int(started.stdout)


def measure_coturn(name: str, payloads: list[int], duration: float) -> dict[int, dict[str, float]]:
    """Sender and receiver in lab ``name``'s server node, pinned to core 1, through coturn; per payload size the
    same counts as bench.relay's measure_load."""
    extra = ["--seconds", str(duration), "--payloads", *map(str, payloads)]
    pin = ["taskset", "-c", "1", PYTHON, "-m", "bench.relay_coturn"]
    receiver = subprocess.Popen(in_node(name, "server", *pin, "receive", *extra), stdout=subprocess.PIPE)
    sender = subprocess.Popen(in_node(name, "server", *pin, "send", *extra), stdout=subprocess.PIPE)
    return collect(sender, receiver)


def ratios(punch: Load, coturn: Load, rate: Callable[[dict[str, float]], float] = delivered_rate) -> dict[int, float]:
    """Per payload size both relays measured: punch's ``rate`` (delivered packets/s, or per CPU-second) over
    coturn's."""
    return {
        payload: rate(punch[payload]) / rate(coturn[payload])
        for payload in sorted(set(punch) & set(coturn))
        if rate(coturn[payload])
    }


def verdict(payload: int, per_second: list[float], per_cpu: list[float], goal: float = 1.0) -> str:
    """One summary line: punch over coturn in delivered packets/s and in packets per CPU-second, the median of the
    rounds' ratios and each round's, beside the goal, and by how much each misses it."""

    def measured(ratios: list[float]) -> str:
        each = ", ".join(f"{r:.2f}x" for r in ratios)
        return f"{statistics.median(ratios):.2f}x (rounds: {each})" if ratios else "unmeasured"

    line = f"{payload}-byte payloads: punch relays {measured(per_second)} coturn's packets/s and Mbit/s, and "
    line += f"{measured(per_cpu)} its packets per CPU-second; goal: at least {goal:.1f}x"
    short = [
        f"{100 * (1 - statistics.median(ratios) / goal):.0f}% short in {what}"
        for what, ratios in (("packets/s", per_second), ("packets per CPU-second", per_cpu))
        if ratios and statistics.median(ratios) < goal
    ]
    return line + (": " + " and ".join(short) + "." if short else ": met.")


def against_coturn(punch_rounds: list[Load], coturn_rounds: list[Load], duration: float) -> list[str]:
    """The report's section on coturn: both relays on the server namespace's loopback, per payload size (the round
    with the median delivered rate), and punch over coturn beside the goal."""
    punch, coturn = median_round(punch_rounds), median_round(coturn_rounds)
    lines = [
        "",
        "## Against coturn's TURN relay",
        "",
        f"In the same run, on the same loopback and cores: coturn (`turnserver`, one relay thread, pinned to core 0, "
        f"long-term credentials) relaying ChannelData from one allocation to the receiver, {duration:g} s per size, "
        f"and punch's loopback server, {len(punch_rounds)} rounds each, alternately; each row is the round with the "
        "median delivered rate (punch's is the loopback row above). The load is bench/relay.py's own sender loop for "
        "both (one allocation and a channel set up by bench/turn.py, then ChannelData as fast as the sender can), "
        "not turnutils_uclient: uclient paces each client's messages (with `-z 0` in step with their echoes), "
        "sends them through turnutils_peer's echo, so every message would cross coturn twice, and reports round "
        "trips and whole seconds, not one receiver's rate. "
        "Both relays carry the same payloads. Punch's server gets a Relay indication and forwards it whole: it "
        "checks its framing and FINGERPRINT, that it comes from the peer's registered endpoint and that it fits "
        "the session's budget (the HMAC-SHA256, with the session's key only the peers hold, it cannot check). "
        "coturn gets ChannelData (a 4-byte header), looks up the channel and its permission and sends the bare "
        "payload from the allocation's relayed address. Both make one send system call a datagram (punch's "
        "batched in sendmmsg). Mbit/s counts the payload bytes delivered. *Server CPU* is the relay process's user "
        "and system time during the load (`/proc/PID/stat`); packets per CPU-second is what it would relay with "
        "the core to itself, whether or not the sender kept it busy and whatever else ran on the shared core.",
        "",
    ]
    table = []
    for relay, load in (("punch server", punch), ("coturn", coturn)):
        for payload, m in sorted(load.items()):
            cpu = [f"{m['cpu']:.2f}", f"{per_cpu_second(m):,.0f}"] if "cpu" in m else ["-", "-"]
            table.append([relay, payload, m["size"], *load_cells(m, payload), *cpu])
    lines += markdown_table(
        ["relay", "payload (bytes)", "datagram in (bytes)", "offered (pkt/s)", "delivered (pkt/s)", "payload Mbit/s",
         "lost", "server CPU (s)", "pkt per CPU-second"],
        table,
    )  # fmt: skip
    pairs = list(zip(punch_rounds, coturn_rounds, strict=True))
    per_second = [ratios(p, c) for p, c in pairs]
    per_cpu = [ratios(p, c, per_cpu_second) for p, c in pairs]
    sizes = sorted({payload for found in per_second for payload in found})
    lines += [""] if sizes else []
    for payload in sizes:
        each_second, each_cpu = ([r[payload] for r in found if payload in r] for found in (per_second, per_cpu))
        lines.append(f"- {verdict(payload, each_second, each_cpu)}")
    unsaturated = [str(payload) for payload, m in sorted(coturn.items()) if lost_share(m) < SATURATED]
    if unsaturated:
        lines += [
            "",
            f"coturn lost less than {100 * SATURATED:.0f}% at {' and '.join(unsaturated)} bytes: it relayed about "
            "all the sender could offer, so its ceiling there is higher than its packets/s show: read the packets "
            "per CPU-second.",
        ]
    return lines


def send(args: argparse.Namespace) -> None:
    server = address(COTURN)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        _, credentials = allocate(sock, server, USER, PASSWORD)
        bind_channel(sock, server, credentials, FIRST_CHANNEL, address(PEER))
        sock.settimeout(None)
        for payload in args.payloads:
            batch = [channel_data(FIRST_CHANNEL, b"\x40" + os.urandom(payload - 1)) for _ in range(256)]
            blast(sock, server, payload, batch, args.seconds)


def receive(args: argparse.Namespace) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(address(PEER))
        count_bursts(sock, len(args.payloads))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("command", choices=["send", "receive"])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--payloads", type=int, nargs="+", required=True)
    args = parser.parse_args()
    (send if args.command == "send" else receive)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
