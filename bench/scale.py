"""Outgrowing one machine (issue 29): registration storms and scale-out, `just bench-scale` (writes bench/scale.md).

Needs cc, taskset and Debian's redis-server. The generator is bench/stunload.c's Register mode (``--register
COUNT``: COUNT distinct peers, each a Register with a PEER-ID of its own, LEASE and FINGERPRINT, every answer
checked), compiled with the system cc into a temporary directory. Each `punch server` runs with ``-q`` (no line per
registration) and ``--rate-limit 0`` (all load comes from one IP). Measured in one run:

- storm: one server on CPU 0 with its in-process registry, the generator on CPU 1, ``--count`` peers (a million):
  the seconds until all were taken, and the server's CPU per registration (from /proc: what a registration costs,
  whatever the generator's speed);
- the same storm against a server with ``--registry`` (a redis-server of our own on CPU 1 beside the generator),
  ``--count-redis`` peers: the server's and Redis's CPU per registration; against the in-process registry, what
  Redis costs;
- scale-out: one server with ``--registry``, then two (CPU 0 and CPU 1), each fed ``--count-redis`` peers by a
  generator of its own, all sharing one Redis: registrations a second in all. This machine has 2 cores: the two
  servers, their generators and Redis share them, so the ratio measured here is the machine's; the ratio the
  CPU costs give (each server's CPU per registration, and Redis's, which all servers share) is shown beside it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import redis_nodes
from bench.registry import cpu_seconds
from bench.report import machine, markdown_table, write_report
from bench.server_throughput import HOST, free_port, wait_for

SOURCE = Path(__file__).with_name("stunload.c")
GOAL_SECONDS = 10.0  # a million registrations on one core
GOAL_SCALE_OUT = 1.6  # two servers against one


@dataclass(frozen=True, slots=True)
class Storm:
    """One generator's run against one server."""

    registered: int
    seconds: float
    lost: int
    invalid: int
    server_cpu_s: float

    @property
    def rate(self) -> float:
        return self.registered / self.seconds

    @property
    def server_us(self) -> float:
        return self.server_cpu_s / self.registered * 1e6


def punch_server(port: int, cpu: str, registry: str | None, name: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "punch", "server", "-q", "--listen", f"{HOST}:{port}", "--rate-limit", "0",
               "--stats-interval", "0"]  # fmt: skip
    if registry is not None:
        command += ["--registry", registry, "--name", name]
    return subprocess.Popen(["taskset", "-c", cpu, *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


_first = [0]  # the next peer number: every storm registers peers of its own


def storm(stunload: Path, port: int, cpu: str, count: int, seconds: float) -> subprocess.Popen[str]:
    first, _first[0] = _first[0], _first[0] + count
    return subprocess.Popen(
        ["taskset", "-c", cpu, str(stunload), "load", "--port", str(port), "--register", str(count), "--first",
         str(first), "--fingerprint", "--sockets", "8", "--window", "64", "--seconds", str(seconds),
         "--timeout-ms", "1000"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def run_storms(
    stunload: Path, cpus: list[str], count: int, registry: str | None, seconds: float
) -> tuple[list[Storm], float]:
    """One server per CPU of ``cpus``, each stormed by a generator on the other CPU; the storms and the wall time
    until the last one ended."""
    ports = [free_port() for _ in cpus]
    servers = [punch_server(p, c, registry, f"bench-{i}") for i, (p, c) in enumerate(zip(ports, cpus, strict=True))]
    try:
        for port in ports:
            wait_for(port)
        before = [cpu_seconds(s.pid) for s in servers]
        began = time.monotonic()
        other = {"0": "1", "1": "0"}
        loads = [storm(stunload, p, other[c], count, seconds) for p, c in zip(ports, cpus, strict=True)]
        outputs = [json.loads(load.communicate(timeout=seconds + 60)[0]) for load in loads]
        wall = time.monotonic() - began
        after = [cpu_seconds(s.pid) for s in servers]
        return [
            Storm(int(o["registered"]), float(o["seconds"]), int(o["lost"]), int(o["invalid"]), a - b)
            for o, b, a in zip(outputs, before, after, strict=True)
        ], wall
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="peers in the storm on the in-process registry")
    parser.add_argument("--count-redis", type=int, default=100_000, help="peers per storm with --registry")
    parser.add_argument("--seconds", type=float, default=120.0, help="give up on a storm after this long")
    parser.add_argument("--output", type=Path, default=Path("bench/scale.md"))
    args = parser.parse_args()
    missing = [tool for tool in ("taskset", "cc") if shutil.which(tool) is None]
    if missing or redis_nodes.missing():
        parser.exit(2, "bench: needs taskset, cc and redis-server (apt-get install util-linux gcc redis-server)\n")
    with tempfile.TemporaryDirectory(prefix="stunload-") as tmp:
        stunload = Path(tmp) / "stunload"
        subprocess.run(["cc", "-O2", "-Wall", "-o", str(stunload), str(SOURCE)], check=True)
        [alone], _ = run_storms(stunload, ["0"], args.count, None, args.seconds)
        print(f"in-process: {alone.registered:,} in {alone.seconds:.1f} s, {alone.server_us:.1f} us", file=sys.stderr)
        with redis_nodes.single() as node:
            subprocess.run(["taskset", "-pc", "1", str(node.process.pid if node.process else 0)], check=True,
                           capture_output=True)  # fmt: skip
            redis_before = cpu_seconds(node.process.pid if node.process else 0)
            [shared], _ = run_storms(stunload, ["0"], args.count_redis, node.url, args.seconds)
            redis_us = (cpu_seconds(node.process.pid if node.process else 0) - redis_before) / shared.registered * 1e6
            print(f"redis: {shared.rate:,.0f}/s, {shared.server_us:.1f} + {redis_us:.1f} us", file=sys.stderr)
            one, one_wall = run_storms(stunload, ["0"], args.count_redis, node.url, args.seconds)
            two, two_wall = run_storms(stunload, ["0", "1"], args.count_redis, node.url, args.seconds)
    print(write_report(args.output, report(args, alone, shared, redis_us, one, one_wall, two, two_wall)))
    return 0


def report(
    args: argparse.Namespace,
    alone: Storm,
    shared: Storm,
    redis_us: float,
    one: list[Storm],
    one_wall: float,
    two: list[Storm],
    two_wall: float,
) -> list[str]:
    one_rate = sum(s.registered for s in one) / one_wall
    two_rate = sum(s.registered for s in two) / two_wall
    two_server_us = sum(s.server_cpu_s for s in two) / sum(s.registered for s in two) * 1e6
    # What the CPU costs allow: each server does 1e6/server_us a second on its core; Redis (one core, shared by all
    # servers) does 1e6/redis_us.
    projected_one = min(1e6 / shared.server_us, 1e6 / redis_us)
    projected_two = min(2e6 / two_server_us, 1e6 / redis_us)
    taken = alone.registered == args.count
    rows = [
        ["storm, in-process registry", "1 (CPU 0)", f"{alone.registered:,}", f"{alone.seconds:.1f}",
         f"{alone.rate:,.0f}", f"{alone.server_us:.1f}", "-", f"{alone.lost:,} / {alone.invalid:,}"],
        ["storm, --registry (Redis)", "1 (CPU 0)", f"{shared.registered:,}", f"{shared.seconds:.1f}",
         f"{shared.rate:,.0f}", f"{shared.server_us:.1f}", f"{redis_us:.1f}", f"{shared.lost:,} / {shared.invalid:,}"],
        ["scale-out: one server, Redis", "1 (CPU 0)", f"{sum(s.registered for s in one):,}", f"{one_wall:.1f}",
         f"{one_rate:,.0f}", f"{one[0].server_us:.1f}", "-", f"{sum(s.lost for s in one):,} / 0"],
        ["scale-out: two servers, Redis", "2 (CPU 0, 1)", f"{sum(s.registered for s in two):,}", f"{two_wall:.1f}",
         f"{two_rate:,.0f}", f"{two_server_us:.1f}", "-", f"{sum(s.lost for s in two):,} / 0"],
    ]  # fmt: skip
    return [
        "# Outgrowing one machine: registration storms and scale-out",
        "",
        f"Measured {machine()} by `just bench-scale`.",
        "",
        (__doc__ or "").split("\n\n", 1)[1].strip(),
        "",
        *markdown_table(
            [
                "run",
                "servers",
                "registered",
                "seconds",
                "registrations/s",
                "server CPU (us per registration)",
                "Redis CPU (us per registration)",
                "lost / invalid",
            ],
            rows,
        ),
        "",
        f"- Storm (goal: {args.count:,} distinct peers taken within {GOAL_SECONDS:g} s on one core, about "
        f"{GOAL_SECONDS / args.count * 1e6:.0f} us each): {'all' if taken else 'NOT all'} taken in "
        f"{alone.seconds:.1f} s, {'met' if taken and alone.seconds <= GOAL_SECONDS else 'not met'}. The server spent "
        f"{alone.server_us:.1f} us of CPU per registration, kernel included (a first Register is read and answered "
        "from its bytes: punch.rendezvous.refresh.read_arrival).",
        f"- What Redis costs: {shared.server_us:.1f} us of the server's CPU per registration with --registry against "
        f"{alone.server_us:.1f} in-process ({shared.server_us / alone.server_us:.1f}x: a task per registration and a "
        f"round trip to Redis, one script in a pipeline), plus {redis_us:.1f} us of Redis's.",
        f"- Scale-out (goal: two servers take at least {GOAL_SCALE_OUT:g}x the registrations/s of one): measured "
        f"{two_rate / one_rate:.2f}x ({two_rate:,.0f} against {one_rate:,.0f}/s). This machine has 2 cores: the two "
        "servers, their two generators and Redis share them, so that measures the machine. From the CPU costs "
        f"(each server on a core of its own, one Redis core shared by all): one server {projected_one:,.0f}/s, two "
        f"{projected_two:,.0f}/s, {projected_two / projected_one:.2f}x; Redis's core caps all servers together at "
        f"{1e6 / redis_us:,.0f}/s.",
    ]


if __name__ == "__main__":
    raise SystemExit(main())
