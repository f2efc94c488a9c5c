"""STUN Binding throughput per core on loopback: coturn and `punch server`, measured alternately in one run.

`just bench-server` (needs cc, taskset and Debian's coturn). The load generator is bench/stunload.c, compiled
with the system cc into a temporary directory: several connected UDP sockets each keep a bounded window of
RFC 8489 Binding requests (random transaction IDs, FINGERPRINT) in flight for a fixed time and check every
reply (type, cookie, transaction ID in flight, XOR-MAPPED-ADDRESS equal to the socket, FINGERPRINT); a request
unanswered for 500 ms counts as lost. Each round runs, in this order:

- `stunload reflect`, a minimal C reflector (header + XOR-MAPPED-ADDRESS + FINGERPRINT, recvmmsg/sendmmsg):
  the generator's ceiling; a server measured well below it is not limited by the generator;
- coturn (`turnserver --stun-only`, loopback, no config file) and `punch server` with its C fast path, then
  `punch server` in pure Python (PUNCH_NO_FASTPATH=1): each on CPU 0, the generator on CPU 1;
- coturn and `punch server --workers 2` on CPUs 0-1, the generator on the same two CPUs (it shares them).

Every `punch server` has 1,000 peers registered before the load starts (registrations alive), answers with
SOFTWARE and FINGERPRINT, and runs with --rate-limit 0 (all load comes from one IP; the limiter would stop it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.report import machine, markdown_table, write_report
from punch.stun import AttributeType, Message, MessageClass, Method, decode, encode, new_transaction_id
from punch.stun.fastpath import load

HOST = "127.0.0.1"
SOURCE = Path(__file__).with_name("stunload.c")
PEERS = 1000


@dataclass(frozen=True, slots=True)
class Server:
    name: str
    command: list[str]  # {port} is replaced
    server_cpus: str
    load_cpus: str
    env: dict[str, str] | None = None

    @property
    def cores(self) -> int:
        return len(self.server_cpus.split(","))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_for(port: int, timeout: float = 10.0) -> None:
    """Until the server answers a Binding request."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.sendto(encode(Message(Method.BINDING, MessageClass.REQUEST, new_transaction_id())), (HOST, port))
            try:
                s.recv(2048)
                return
            except TimeoutError:
                continue
    raise SystemExit(f"bench: the server on port {port} never answered")


def register_peers(port: int, count: int) -> None:
    """Register ``count`` peers (one socket, distinct PEER-IDs) and check that every one was accepted."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2.0)
        for start in range(0, count, 50):
            pending = {}
            for index in range(start, min(count, start + 50)):
                message = Message.request(Method.REGISTER, [(AttributeType.PEER_ID, f"bench-{index}")])
                pending[message.transaction_id] = message
                s.sendto(encode(message), (HOST, port))
            while pending:
                reply = decode(s.recv(2048))
                if reply.message_class is not MessageClass.SUCCESS:
                    raise SystemExit(f"bench: a Register was refused: {reply}")
                pending.pop(reply.transaction_id, None)


def measure(server: Server, stunload: Path, args: argparse.Namespace) -> dict[str, float]:
    port = free_port()
    command = [part.replace("{port}", str(port)) for part in server.command]
    env = {**os.environ, **(server.env or {})}
    process = subprocess.Popen(
        ["taskset", "-c", server.server_cpus, *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    try:
        wait_for(port)
        if "punch" in command:
            register_peers(port, PEERS)
        load = subprocess.run(
            ["taskset", "-c", server.load_cpus, str(stunload), "load", "--port", str(port), "--seconds",
             str(args.seconds), "--sockets", str(args.sockets), "--window", str(args.window), "--fingerprint"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        result: dict[str, float] = json.loads(load.stdout)
        print(f"{server.name}: {result['rate']:,.0f} replies/s, lost {result['lost']}, invalid {result['invalid']}",
              file=sys.stderr)  # fmt: skip
        if result["replies_with_fingerprint"] != result["valid"]:
            raise SystemExit(f"bench: {server.name} answered without FINGERPRINT")
        return result
    finally:
        process.terminate()
        process.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sockets", type=int, default=8)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="alternate the servers this many times")
    parser.add_argument("--output", type=Path, default=Path("bench/server.md"))
    args = parser.parse_args()
    missing = [tool for tool in ("turnserver", "taskset", "cc") if shutil.which(tool) is None]
    if missing:
        parser.exit(2, f"bench: needs {', '.join(missing)} (apt-get install coturn util-linux gcc)\n")
    if load() is None:
        parser.exit(2, "bench: punch._fastpath is not built; run `.venv/bin/python setup.py build_ext --inplace`\n")
    punch = [sys.executable, "-m", "punch", "server", "-q", "--listen", f"{HOST}:{{port}}", "--stats-interval", "0",
             "--rate-limit", "0"]  # fmt: skip
    coturn = ["turnserver", "-n", "--stun-only", "--no-cli", "--listening-ip", HOST, "--listening-port", "{port}",
              "--no-tls", "--no-dtls", "--log-file", "stdout", "--simple-log", "--no-stdout-log"]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="stunload-") as tmp:
        stunload = Path(tmp) / "stunload"
        subprocess.run(["cc", "-O2", "-Wall", "-o", str(stunload), str(SOURCE)], check=True)
        servers = [
            Server("stunload reflect (generator ceiling)", [str(stunload), "reflect", "--port", "{port}"], "0", "1"),
            Server("coturn", coturn, "0", "1"),
            Server("punch server (C fast path)", punch, "0", "1"),
            Server("punch server (pure Python)", punch, "0", "1", {"PUNCH_NO_FASTPATH": "1"}),
            Server("coturn, 2 cores", coturn, "0,1", "0,1"),
            Server("punch server --workers 2", [*punch, "--workers", "2"], "0,1", "0,1"),
        ]
        results: dict[str, list[dict[str, float]]] = {s.name: [] for s in servers}
        for _ in range(args.rounds):
            for server in servers:
                results[server.name].append(measure(server, stunload, args))

    def rate(name: str) -> float:
        return statistics.median(r["rate"] for r in results[name])

    def ratios(name: str, baseline: str) -> str:
        per_round = [a["rate"] / b["rate"] for a, b in zip(results[name], results[baseline], strict=True)]
        return f"{rate(name) / rate(baseline):.2f}x ({min(per_round):.2f}-{max(per_round):.2f})"

    rows = []
    for server in servers:
        baseline = "coturn" if server.cores == 1 else "coturn, 2 cores"
        lost = sum(int(r["lost"]) for r in results[server.name])
        invalid = sum(int(r["invalid"]) for r in results[server.name])
        replies = sum(int(r["replies"]) for r in results[server.name])
        rows.append([
            server.name, server.server_cpus, server.load_cpus, f"{rate(server.name):,.0f}",
            f"{rate(server.name) / server.cores:,.0f}", ratios(server.name, baseline),
            f"{lost:,} of {replies + lost:,}", f"{invalid:,}",
        ])  # fmt: skip
    ceiling = "stunload reflect (generator ceiling)"
    one_core = [s.name for s in servers if s.cores == 1 and s.name != ceiling]
    headroom = [
        results[ceiling][i]["rate"] / max(results[name][i]["rate"] for name in one_core) for i in range(args.rounds)
    ]
    lines = [
        "# STUN Binding throughput per core against coturn, loopback",
        "",
        f"Measured {machine()} by `just bench-server`: bench/stunload.c ({args.sockets} sockets x {args.window} "
        f"Binding requests in flight, FINGERPRINT, every reply checked) for {args.seconds:g} s per run, "
        f"{args.rounds} rounds, the servers alternating within each round; median over the rounds, the ratio's "
        f"range over the rounds in brackets. `punch server` has {PEERS:,} peers registered and answers with "
        "SOFTWARE and FINGERPRINT.",
        "",
        *markdown_table(
            ["server", "server CPUs", "generator CPUs", "replies/s", "per core", "vs coturn", "lost", "invalid"], rows
        ),
        "",
        "The reflector row is the generator's ceiling: any server well below it is measured, not the generator.",
        f"Here the reflector answered {min(headroom):.2f}x to {max(headroom):.2f}x as much as the fastest one-core "
        "server of the same round (above 1.2x the generator is clearly not the limit; near 1x it may be).",
        "On two cores the generator shares the CPUs with the server, so the two-core rows count both; compare",
        "them with each other, not with the one-core rows. Lost: requests unanswered after 500 ms.",
    ]
    print(write_report(args.output, lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
