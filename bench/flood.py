"""A registration flood against `punch server` on loopback: `just bench-flood` (no root needed).

The server runs as its own process (its RSS is read from /proc). The flood: 110,000 Register requests, each a
new peer ID, from 250 source addresses (127.0.1.1-250; Linux answers for all of 127/8 on `lo`) with 4 ports
each, paced at --rate a second (about what one server core answers), with leases longer than the flood: the
table fills to its maximum of 100,000 and the rest are refused (508). While it runs, two real
peers register, are introduced, punch and exchange a text through the same server. Then the leases
(--max-lease) run out, and a second flood of new IDs follows:
memory that stays flat across the second flood shows the table is bounded, not leaking.

Writes a Markdown table (machine, versions, date) to --output and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.report import machine, write_report
from bench.server_throughput import free_port, wait_for
from punch.errors import StunDecodeError
from punch.stun import AttributeType, MessageClass, Method, decode, encode
from punch.stun.wire import request

PYTHON = sys.executable
SOURCES = [f"127.0.1.{n}" for n in range(1, 251)]
PORTS_PER_SOURCE = 4


def rss_mib(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else float("nan")


class Tally(asyncio.DatagramProtocol):
    """Counts the server's answers by class (and error code)."""

    def __init__(self, counts: Counter[str]) -> None:
        self.counts = counts

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            message = decode(data)
        except StunDecodeError:
            self.counts["undecodable"] += 1
            return
        if message.message_class is MessageClass.SUCCESS:
            self.counts["registered"] += 1
        else:
            error = message.error_code()
            self.counts[f"error {error.code if error else '?'}"] += 1


@dataclass
class Flood:
    sent: int = 0
    seconds: float = 0.0
    answers: Counter[str] = field(default_factory=Counter)


async def flood(server: tuple[str, int], count: int, rate: float, tag: str, lease: int) -> Flood:
    loop = asyncio.get_running_loop()
    result = Flood()
    transports = []
    for source in SOURCES:
        for _ in range(PORTS_PER_SOURCE):
            transport, _protocol = await loop.create_datagram_endpoint(
                lambda: Tally(result.answers), local_addr=(source, 0)
            )
            transports.append(transport)
    started = time.monotonic()
    batch = max(1, int(rate / 100))  # every 10 ms
    try:
        while result.sent < count:
            for _ in range(min(batch, count - result.sent)):
                message = request(
                    Method.REGISTER,
                    (AttributeType.PEER_ID, f"{tag}{result.sent}"),
                    (AttributeType.LEASE, lease),
                )
                transports[result.sent % len(transports)].sendto(encode(message), server)
                result.sent += 1
            target = started + result.sent / rate
            await asyncio.sleep(max(0.0, target - time.monotonic()))
        result.seconds = time.monotonic() - started
        await asyncio.sleep(1.0)  # the last answers
    finally:
        for transport in transports:
            transport.close()
    return result


def real_peers(server: tuple[str, int], tag: str) -> tuple[bool, str]:
    """Two real peers through the flooded server: (both talked, what they said)."""
    address = f"{server[0]}:{server[1]}"

    def command(me: str, other: str) -> list[str]:
        return [
            PYTHON, "-m", "punch", "peer", "--server", address, "--id", f"{tag}{me}", "--to", f"{tag}{other}",
            "--send", f"hello from {me}", "--json", "-q", "--timeout", "30", "--no-relay",
        ]  # fmt: skip

    procs = [
        subprocess.Popen(command(me, other), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for me, other in (("a", "b"), ("b", "a"))
    ]
    outcomes = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        lines = out.strip().splitlines()
        result = json.loads(lines[-1]) if lines else {}
        outcomes.append((proc.returncode, result, err.strip().splitlines()[-1:] or [""]))
    ok = all(code == 0 and result.get("received") for code, result, _ in outcomes)
    detail = ", ".join(
        f"{result.get('path')} in {result.get('punch_ms')} ms" if code == 0 else f"failed: {last[0]}"
        for code, result, last in outcomes
    )
    return ok, detail


async def run(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    port = free_port()
    server_cmd = [
        PYTHON, "-m", "punch", "server", "--listen", f"127.0.0.1:{port}", "-q",
        "--max-lease", str(args.lease), "--stats-interval", "0", "--max-peers", "100000",
    ]  # fmt: skip
    log = open(args.server_log, "w")  # noqa: SIM115, ASYNC230 (lives as long as the server, opened once)
    server = subprocess.Popen(server_cmd, stderr=log, stdout=subprocess.DEVNULL)  # noqa: ASYNC220 (runs throughout)
    address = ("127.0.0.1", port)
    rows = []
    try:
        await asyncio.to_thread(wait_for, port)  # until the server answers a Binding request
        rows.append(("idle", f"{rss_mib(server.pid):.1f}", "-"))
        task = asyncio.create_task(flood(address, args.count, args.rate, "f1-", args.lease))
        await asyncio.sleep(args.count / args.rate / 2)
        ok, detail = await asyncio.to_thread(real_peers, address, "real1-")
        rows.append(("real peers during flood 1", "-", ("ok: " if ok else "FAILED: ") + detail))
        first = await task
        answers = ", ".join(f"{k} {v}" for k, v in sorted(first.answers.items()))
        rows.append(
            (
                f"after flood 1 ({first.sent:,} Registers in {first.seconds:.1f} s)",
                f"{rss_mib(server.pid):.1f}",
                answers or "no answers",
            )
        )
        await asyncio.sleep(args.lease + 2)
        ok, detail = await asyncio.to_thread(real_peers, address, "real2-")  # its Register expires the old ones
        rows.append((f"leases over ({args.lease} s), real peers again", f"{rss_mib(server.pid):.1f}", detail))
        second = await flood(address, args.count, args.rate, "f2-", args.lease)
        answers = ", ".join(f"{k} {v}" for k, v in sorted(second.answers.items()))
        rows.append((f"after flood 2 ({second.sent:,} new IDs)", f"{rss_mib(server.pid):.1f}", answers))
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()
    return rows


def table(rows: list[tuple[str, str, str]], args: argparse.Namespace) -> list[str]:
    lines = [
        "# Registration flood against punch server",
        "",
        f"Measured {machine()} by `just bench-flood`: {args.count:,} "
        f"Registers per flood at {args.rate:,.0f}/s from {len(SOURCES)} addresses x {PORTS_PER_SOURCE} ports, "
        f"leases of {args.lease} s; the server's table holds at most 100,000 registrations and each source "
        "address may send 200 requests/s (bursts of 400).",
        "",
        "| phase | server RSS (MiB) | answers / result |",
        "|---|---|---|",
    ]
    lines += [f"| {phase} | {rss} | {what} |" for phase, rss, what in rows]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=110_000)
    parser.add_argument("--rate", type=float, default=6_000.0)
    parser.add_argument("--lease", type=int, default=30)
    parser.add_argument("--output", type=Path, default=Path("bench/flood.md"))
    parser.add_argument("--server-log", type=Path, default=Path("/tmp/punch-flood-server.log"))
    args = parser.parse_args()
    rows = asyncio.run(run(args))
    print(write_report(args.output, table(rows, args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
