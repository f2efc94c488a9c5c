"""The relay through the real lab, side by side with the direct path: `just bench-relay` (root).

Two labs of the default topology, bare MASQUERADE routers: both NATs `symmetric` (both map endpoint-dependently,
so no direct path exists and the peers go to the server's relay) and both `port-restricted-cone` (a direct path).
The server answers on its alternate address too, so the peers measure their NAT's mapping first.

1. Time to a working path, N trials per lab: peer10 and peer14 started together, each sending one text. From
   each peer's own log: from "introduced to" to "message 0 acknowledged" (the first text has crossed and its
   acknowledgement has come back).
2. Throughput: the server pinned to core 0 (its relay budget and rate limit off), a sender in peer10 and a
   receiver in peer14 pinned to core 1. Both register and are introduced as usual; then the sender sends signed
   Relay indications (as the peers' carrier wraps QUIC packets) as fast as it can for a few seconds, through the
   relay or to the other peer's public endpoint; the receiver counts what arrives (it does not answer). The direct
   rows show what the lab and the generator reach without the server: the relay's ceiling is the server's, not
   theirs.
   In the lab, the kernel also carries every relayed datagram through the lab's namespaces (veth, bridge,
   conntrack, NAT), possibly on the server's core: so the same load runs once more through a second server on the
   loopback of the server's namespace (sender and receiver there too), the server without the lab.
3. Against coturn: on that loopback, coturn's TURN relay pinned to the same core (bench/relay_coturn.py) and the
   loopback server take the same load from the same sender loop, a few rounds alternately, one payload size at a
   time while their CPU time is read; the report gives punch's delivered packets/s and packets per CPU-second over
   coturn's per payload size, beside the goal (at least 1.0x).

Writes a Markdown report (machine, date, how) to --output and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from bench.lab import PYTHON, in_node, lab, wait_for_line
from bench.relay_coturn import against_coturn, measure_coturn, start_coturn
from bench.relay_load import blast, collect, count_bursts, delivered_rate, load_cells, median_round, with_cpu
from bench.report import machine, markdown_table, median_p95, write_report

SERVER, ALTERNATE = "203.0.113.1:3478", "203.0.113.2:3479"
LOOPBACK = "127.0.0.1:3480"  # the second server, on the loopback of the server's namespace
STAMP = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) ")
LABS = {"relay": "symmetric", "direct": "port-restricted-cone"}  # path -> the NAT preset of both routers


@dataclass
class Row:
    path: str
    trials: int = 0
    successes: int = 0
    ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    load: dict[int, dict[str, float]] = field(default_factory=dict)  # payload bytes -> sender's and receiver's counts
    loopback: dict[int, dict[str, float]] = field(default_factory=dict)  # the same, relayed on loopback (relay row)
    punch_rounds: list[dict[int, dict[str, float]]] = field(default_factory=list)  # the loopback loads, with CPU
    coturn_rounds: list[dict[int, dict[str, float]]] = field(default_factory=list)  # coturn's, alternating with them


def seconds(line: str) -> float | None:
    found = STAMP.match(line)
    if found is None:
        return None
    h, m, s, ms = (int(g) for g in found.groups())
    return h * 3600 + m * 60 + s + ms / 1000


def working_after(log: str) -> float | None:
    """Milliseconds from the introduction to the first acknowledged text, from one peer's log."""
    introduced = next((seconds(line) for line in log.splitlines() if " introduced to " in line), None)
    acked = next((seconds(line) for line in log.splitlines() if "message 0 acknowledged" in line), None)
    return None if introduced is None or acked is None else (acked - introduced) * 1000


def trial(name: str, number: int, path: str) -> tuple[list[float], str]:
    ids = (f"10-{number}", f"14-{number}")
    procs = []
    for node, me, other in (("peer10", ids[0], ids[1]), ("peer14", ids[1], ids[0])):
        command = [PYTHON, "-m", "punch", "peer", "--server", SERVER, "--id", me, "--to", other, "--timeout", "20",
                   "--send", f"hello from {me}", "--json", "--upgrade-interval", "0"]  # fmt: skip
        procs.append(subprocess.Popen(in_node(name, node, *command), stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    times, problems = [], []
    for proc in procs:
        out, err = (s.decode(errors="replace") for s in proc.communicate(timeout=60))
        lines = out.strip().splitlines()
        result = json.loads(lines[-1]) if lines else {}
        took = working_after(err)
        if proc.returncode != 0 or result.get("path") != path or took is None:
            problems.append(result.get("error") or f"exit {proc.returncode}, path {result.get('path')}")
        else:
            times.append(took)
    return (times, "") if not problems else ([], "; ".join(problems))


# -- the load generator: `python -m bench.relay send|receive ...` inside a peer's namespace ---------------------


async def introduced(me: str, other: str, server: str) -> tuple[int, bytes, bytes, tuple[str, int]]:
    """Register as ``me`` with ``server`` (HOST:PORT), ask for ``other``; our local port, the session, its key,
    the other's public endpoint."""
    from punch.peer.client import RendezvousClient
    from punch.peer.keys import PeerKeys, RequestKey
    from punch.stun import Address, Message
    from punch.stun.protocol import open_endpoint

    host, port = server.split(":")

    def handle(message: Message, source: Address, data: bytes) -> None:
        client.on_request(message, source)  # Introduce

    keys = PeerKeys(RequestKey())  # the server's Introduce is signed with our request key, and so is our answer
    endpoint = await open_endpoint(handle, ("0.0.0.0", 0), keys=keys)
    client = RendezvousClient(endpoint, (host, int(port)), me, (), lease=60, credentials=keys.request)
    await client.register()
    await client.connect(other)
    introduction = await asyncio.wait_for(client.introduction, 30)
    key = client.session_key(introduction)
    if key is None:
        raise RuntimeError(f"{other}'s key share does not check out")
    local = endpoint.local_address[1]
    await endpoint.close()  # the registration stays for its lease: the same port sends and receives from now on
    return local, introduction.session_id, key, introduction.candidates[0]


def relay_indications(me: str, session: bytes, key: bytes, payload: int, count: int = 256) -> list[bytes]:
    """Relay indications as a peer's carrier sends them (punch.peer.carrier): each wraps ``payload`` bytes that
    start like a QUIC short-header packet, signed with the session's key."""
    from punch.stun import AttributeType, Message, MessageClass, Method, encode, new_transaction_id

    def one() -> bytes:
        attributes = (
            (AttributeType.PEER_ID, me),
            (AttributeType.SESSION_ID, session),
            (AttributeType.DATA_PAYLOAD, b"\x40" + os.urandom(payload - 1)),
        )
        message = Message(Method.RELAY, MessageClass.INDICATION, new_transaction_id(), attributes)
        return encode(message, integrity_sha256_key=key)

    return [one() for _ in range(count)]


def open_mapping(sock: socket.socket, remote: tuple[str, int]) -> None:
    """The receiver's side of a direct path: low-TTL datagrams toward the sender open our NAT's mapping and filter
    for it, and die before the sender's NAT (which would otherwise keep a conntrack entry for them: the conntrack
    race of bare routers, see bench/matrix.md)."""
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 2)
    for _ in range(5):
        sock.sendto(b"open", remote)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 64)


def send(args: argparse.Namespace) -> None:
    local, session, key, other = asyncio.run(introduced(args.me, args.other, args.server))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("0.0.0.0", local))
        host, port = args.server.split(":")
        target = (host, int(port)) if args.via == "relay" else other
        if args.via == "direct":
            time.sleep(1.0)  # the receiver opens its NAT first: it was introduced at the same moment
        for payload in args.payloads:
            blast(sock, target, payload, relay_indications(args.me, session, key, payload), args.seconds)


def receive(args: argparse.Namespace) -> None:
    local, _, _, other = asyncio.run(introduced(args.me, args.other, args.server))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("0.0.0.0", local))
        if args.via == "direct":
            open_mapping(sock, other)
        count_bursts(sock, len(args.payloads))


# -- the benchmark -----------------------------------------------------------------------------------------


def measure_load(
    name: str, path: str, payloads: list[int], duration: float, *, loopback: bool = False
) -> dict[int, dict[str, float]]:
    """Sender (peer10) and receiver (peer14) pinned to core 1, through the lab's server; with ``loopback``, both
    in the server's namespace, through the server on LOOPBACK. Per payload size: offered and received counts.
    Each call registers new IDs (the last call's are still leased to other keys)."""
    extra = ["--via", path, "--seconds", str(duration), "--payloads", *map(str, payloads)]
    extra += ["--server", LOOPBACK if loopback else SERVER]
    pin = ["taskset", "-c", "1", PYTHON, "-m", "bench.relay"]
    nodes = ("server", "server") if loopback else ("peer14", "peer10")
    tag = os.urandom(3).hex()
    me, other = f"r14-{tag}", f"s10-{tag}"
    receiver = subprocess.Popen(in_node(name, nodes[0], *pin, "receive", me, other, *extra), stdout=subprocess.PIPE)
    sender = subprocess.Popen(in_node(name, nodes[1], *pin, "send", other, me, *extra), stdout=subprocess.PIPE)
    return collect(sender, receiver)


def start_server(name: str, log: Path, ready: str, *listen: str, cores: str | None = "0") -> int:
    """``punch server`` on ``listen`` in the lab's server node, pinned to ``cores`` (None: where the kernel puts
    it), with the relay budget and the rate limit off; returns its PID once its log (``log``) says ``ready``."""
    pin = ["taskset", "-c", cores] if cores is not None else []
    started = lab("exec", "--name", name, "--detach", "--log", str(log), "server", "--",
                  *pin, PYTHON, "-m", "punch", "server", *listen,
                  "--rate-limit", "0", "--relay-rate", "0", "--relay-bytes", "0", "--stats-interval", "0")  # fmt: skip
    wait_for_line(log, ready)
    return int(started.stdout)


def run(row: Row, trials: int, payloads: list[int], duration: float, rounds: int) -> None:
    name = f"{row.path[0]}r{os.getpid() % 100000}"
    lab("up", "--name", name, "--firewall", "none", "--nat", LABS[row.path])
    try:
        logs = Path(lab("logdir", "--name", name).stdout.strip())
        start_server(name, logs / "server.log", "answering RFC 5780", "--listen", SERVER, "--alternate", ALTERNATE)
        for number in range(trials):
            times, problem = trial(name, number, row.path)
            row.trials += 1
            row.successes += not problem
            row.ms += times
            if problem:
                row.failures.append(problem)
            print(f"{row.path}: trial {number + 1}: {problem or 'ok'}", file=sys.stderr, flush=True)
        row.load = measure_load(name, row.path, payloads, duration)
        print(f"{row.path}: load {row.load}", file=sys.stderr, flush=True)
        if row.path == "relay":
            server = start_server(name, logs / "loopback.log", "listening on", "--listen", LOOPBACK)
            coturn = start_coturn(name, logs)
            for number in range(rounds):  # alternately, so a busy moment of the shared machine hits both
                punch = partial(measure_load, name, row.path, duration=duration, loopback=True)
                row.punch_rounds.append(with_cpu(server, punch, payloads))
                row.coturn_rounds.append(with_cpu(coturn, partial(measure_coturn, name, duration=duration), payloads))
                print(f"{row.path}: round {number + 1}: loopback {row.punch_rounds[-1]}, "
                      f"coturn {row.coturn_rounds[-1]}", file=sys.stderr)  # fmt: skip
            row.loopback = median_round(row.punch_rounds)
    finally:
        lab("down", "--name", name, check=False)


def report(rows: list[Row], duration: float) -> list[str]:
    lines = [
        "# The relay through the real lab, side by side with the direct path",
        "",
        f"Measured {machine()} by `just bench-relay`: two labs of the default topology with bare MASQUERADE "
        "routers, both NATs `symmetric` (no direct path: the peers use the relay) or both `port-restricted-cone` "
        "(direct); the server answers on its alternate address too, so the peers measure their mapping first.",
        "",
        "## Time to a working path",
        "",
        "From each peer's log: from its introduction to the acknowledgement of its first text (both ends of a trial "
        "count).",
        "",
    ]
    lines += markdown_table(
        ["path", "NATs", "successes", "median (ms)", "p95 (ms)"],
        [[r.path, LABS[r.path], f"{r.successes}/{r.trials}", *median_p95(r.ms)] for r in rows],
    )
    if all(r.ms for r in rows):
        ratio = statistics.median(rows[0].ms) / statistics.median(rows[1].ms)
        lines += ["", f"Median time to a working relayed path: {ratio:.2f}x the direct path's."]
    lines += [
        "",
        "## Throughput",
        "",
        f"The server pinned to core 0 (relay budget and rate limit off: `--relay-rate 0 --relay-bytes 0 "
        f"--rate-limit 0`), sender and receiver pinned to core 1; signed Relay indications sent as fast as one Python "
        f"sender can for {duration:g} s per size, counted where they arrive (no answers): read by the receiver, or "
        "dropped by its kernel for a full receive buffer (the receiver shares its core with the sender; "
        "`/proc/net/udp`'s `drops`). Mbit/s counts UDP payload bytes. Relay and direct rows ran in the same run; "
        "the machine is shared, so read ratios.",
        "",
        "*Through the lab*: from peer10 behind nat10 to peer14 behind nat14; the kernel also carries every relayed "
        "datagram through the lab's namespaces (veth, bridge, conntrack, NAT). *Loopback*: the same sender and "
        "receiver in the server's namespace, through a second server on its loopback (`127.0.0.1`, pinned to the "
        "same core): the server without the lab.",
        "",
    ]
    table = []
    measured = [(r.path, "the lab", r.load) for r in rows] + [(r.path, "loopback", r.loopback) for r in rows]
    for path, where, load in measured:
        for payload, m in sorted(load.items()):
            table.append([path, where, payload, m["size"], *load_cells(m, int(m["size"]))])
    lines += markdown_table(
        ["path", "through", "payload (bytes)", "datagram (bytes)", "offered (pkt/s)", "delivered (pkt/s)", "Mbit/s",
         "lost"],
        table,
    )  # fmt: skip
    relay, direct = rows
    for payload in sorted(set(relay.load) & set(direct.load)):
        relayed, direct_rate = delivered_rate(relay.load[payload]), delivered_rate(direct.load[payload])
        if not relayed or not direct_rate:
            continue  # a row that delivered nothing has its failure below
        line = f"\n{payload}-byte payloads: through the lab the relay delivers {relayed / direct_rate:.2f}x what the "
        line += "direct path does"
        if payload in relay.loopback:
            alone = delivered_rate(relay.loopback[payload]) / relayed
            line += f"; on loopback the server relays {alone:.2f}x what it relays through the lab"
        lines.append(line + ".")
    lines += against_coturn(relay.punch_rounds, relay.coturn_rounds, duration)
    failures = [(r, r.failures[0]) for r in rows if r.failures]
    if failures:
        lines += ["", "First failure of each row:", ""] + [f"- {r.path}: {reason}" for r, reason in failures]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    for verb in ("send", "receive"):
        load = commands.add_parser(verb)
        load.add_argument("me")
        load.add_argument("other")
        load.add_argument("--via", choices=["relay", "direct"], required=True)
        load.add_argument("--seconds", type=float, default=3.0)
        load.add_argument("--payloads", type=int, nargs="+", required=True)
        load.add_argument("--server", default=SERVER, help="HOST:PORT of the server to register with")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=3.0, help="load per payload size")
    parser.add_argument("--payloads", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--rounds", type=int, default=3, help="loopback loads, punch and coturn alternately")
    parser.add_argument("--output", type=Path, default=Path("bench/relay.md"))
    args = parser.parse_args()
    if args.command == "send":
        send(args)
        return 0
    if args.command == "receive":
        receive(args)
        return 0
    if os.geteuid() != 0:
        parser.exit(2, "bench: needs root to build the lab; run it as root or with sudo\n")
    missing = [tool for tool in ("turnserver", "taskset") if shutil.which(tool) is None]
    if missing:
        parser.exit(2, f"bench: needs {', '.join(missing)} (apt-get install coturn util-linux)\n")
    rows = [Row("relay"), Row("direct")]
    for row in rows:
        run(row, args.trials, args.payloads, args.seconds, args.rounds)
    print(write_report(args.output, report(rows, args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
