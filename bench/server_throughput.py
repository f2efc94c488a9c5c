"""STUN Binding throughput on loopback, side by side: a trivial echo server, coturn, and `punch server`.

`just bench-server` (Debian's `coturn` must be installed). Each server runs pinned to CPU 0 and the load
generator to CPU 1. The generator keeps a bounded window of Binding requests in flight from several sockets for
a fixed time, checks every reply (success class, transaction ID, XOR-MAPPED-ADDRESS equal to the sender,
FINGERPRINT) and counts replies per second. The echo server shows the generator's own ceiling: a server
measured at or near it is limited by the generator, not by itself. Appends a table to --output.
"""

from __future__ import annotations

import argparse
import os
import platform
import selectors
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from punch.errors import StunDecodeError
from punch.stun import AttributeType, Message, MessageClass, Method, decode, encode, new_transaction_id

HOST = "127.0.0.1"
ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(data, peer)
"""


@dataclass
class Result:
    name: str
    replies: int
    valid: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.replies / self.seconds


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_for(port: int, timeout: float = 10.0) -> None:
    """Until the server answers a Binding request (or echoes it)."""
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


def load(port: int, seconds: float, sockets: int, window: int, echo: bool) -> Result:
    """Keep ``window`` requests in flight per socket for ``seconds``; count and check replies."""
    selector = selectors.DefaultSelector()
    pending: dict[socket.socket, dict[bytes, None]] = {}
    for _ in range(sockets):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((HOST, 0))
        s.setblocking(False)
        selector.register(s, selectors.EVENT_READ, data=s)
        pending[s] = {}
    replies = valid = 0
    request = Message(Method.BINDING, MessageClass.REQUEST, b"")

    def send(s: socket.socket) -> None:
        txid = new_transaction_id()
        pending[s][txid] = None
        s.sendto(encode(Message(request.method, request.message_class, txid)), (HOST, port))

    for s in pending:
        for _ in range(window):
            send(s)
    start = time.monotonic()
    end = start + seconds
    while (now := time.monotonic()) < end:
        events = selector.select(0.05)
        if not events:  # a lost datagram: refill the window
            for s in pending:
                pending[s].clear()
                for _ in range(window):
                    send(s)
            continue
        for key, _ in events:
            s = key.data  # the socket, registered as its own data
            while True:
                try:
                    data = s.recv(2048)
                except BlockingIOError:
                    break
                replies += 1
                try:
                    reply = decode(data)
                except StunDecodeError:
                    continue
                if reply.transaction_id in pending[s]:
                    del pending[s][reply.transaction_id]
                    ok = echo or (
                        reply.message_class is MessageClass.SUCCESS
                        and reply.address(AttributeType.XOR_MAPPED_ADDRESS) == s.getsockname()
                    )
                    valid += ok
                send(s)
    for s in pending:
        s.close()
    return Result("", replies, valid, now - start)


def measure(name: str, command: list[str], port: int, args: argparse.Namespace, echo: bool = False) -> Result:
    server = subprocess.Popen(["taskset", "-c", "0", *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(port)
        result = load(port, args.seconds, args.sockets, args.window, echo)
        result.name = name
        print(f"{name}: {result.rate:,.0f} replies/s ({result.valid:,} valid of {result.replies:,})", file=sys.stderr)
        return result
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sockets", type=int, default=4)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="alternate the servers this many times")
    parser.add_argument("--output", type=Path, default=Path("bench/server.md"))
    args = parser.parse_args()
    if shutil.which("turnserver") is None or shutil.which("taskset") is None:
        parser.exit(2, "bench: needs coturn's turnserver and taskset (apt-get install coturn util-linux)\n")
    os.sched_setaffinity(0, {1})
    results: dict[str, list[Result]] = {"echo (generator ceiling)": [], "coturn": [], "punch server": []}
    for _ in range(args.rounds):
        port = free_port()
        results["echo (generator ceiling)"].append(
            measure("echo", [sys.executable, "-c", ECHO, str(port)], port, args, echo=True)
        )
        port = free_port()
        results["coturn"].append(
            measure(
                "coturn",
                ["turnserver", "--stun-only", "--no-cli", "--listening-ip", HOST, "--listening-port", str(port),
                 "--no-tls", "--no-dtls", "--log-file", "stdout", "--simple-log", "--no-stdout-log"],
                port,
                args,
            )
        )  # fmt: skip
        port = free_port()
        results["punch server"].append(
            measure(
                "punch",
                [
                    sys.executable,
                    "-m",
                    "punch",
                    "server",
                    "-q",
                    "--listen",
                    f"{HOST}:{port}",
                    "--stats-interval",
                    "0",
                    "--rate-limit",
                    "0",
                ],
                port,
                args,
            )
        )
    best = {name: max(r.rate for r in rs) for name, rs in results.items()}
    lines = [
        "# STUN Binding throughput, one server core, loopback",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.node()} ({platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}) by `just bench-server`: server on CPU 0, generator on CPU 1, "
        f"{args.sockets} sockets x {args.window} in flight, {args.seconds:g} s per run, best of {args.rounds} "
        "alternating rounds.",
        "",
        "| server | replies/s | vs coturn |",
        "|---|---|---|",
    ]
    for name, rate in best.items():
        lines.append(f"| {name} | {rate:,.0f} | {rate / best['coturn']:.2f}x |")
    lines += [
        "",
        "The generator is Python: where coturn comes close to the echo row, coturn's own ceiling is higher than shown,",
        "and the ratio for punch is an upper bound of the truth.",
    ]
    text = "\n".join(lines) + "\n"
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
