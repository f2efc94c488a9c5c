"""Soak: 1,000 live peers refreshing through two servers and Redis for an hour, `just bench-soak` (bench/soak.md).

Two `punch server --registry` processes (A and B) share a redis-server of our own, all on loopback. ``--peers``
peers live in this process, each a RendezvousClient on a socket of its own (on an address of its own in 127/8, as
peers behind their own NATs would be), half registered at A and half at B, each refreshing its registration every
third of its lease (``--lease``). Peers join and leave all along: every ``--churn`` seconds one peer says goodbye and
a new one (a new ID) registers in its place; and every ``--pair-every`` seconds two of the newcomers, one at each
server, ask for each other and must both be introduced (by their own servers: the introduction crosses Redis).

Every ``--sample`` seconds: each server's and Redis's resident memory (/proc), Redis's own count (INFO used_memory)
and its keys (DBSIZE). The report gives each one's slope over the run after the first sample (least squares, KiB a
minute; the goal: flat), and every failed refresh, join and introduction with its reason (the goal: none).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import redis

from bench import redis_nodes
from bench.registry import proc_rss
from bench.report import machine, markdown_table, write_report
from bench.server_throughput import HOST, free_port, wait_for
from punch.errors import PeerError
from punch.peer.client import RendezvousClient
from punch.peer.keys import PeerKeys, RequestKey
from punch.stun import Address, Message
from punch.stun.protocol import open_endpoint
from punch.stun.transaction import RetransmitPolicy

POLICY = RetransmitPolicy(rto=0.5, max_rto=2.0, max_sends=7, last_wait=4.0)


@dataclass
class Tally:
    refreshes: int = 0
    joins: int = 0
    leaves: int = 0
    introductions: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    samples: list[dict[str, float]] = field(default_factory=list)


@dataclass
class Peer:
    client: RendezvousClient
    task: asyncio.Task[None] | None = None
    registered: asyncio.Event = field(default_factory=asyncio.Event)


_addresses = itertools.count(1)


async def make_peer(server: Address, peer_id: str, lease: int) -> Peer:
    """A peer on an address of its own in 127/8, its client taking what the server sends it."""
    n = next(_addresses)
    clients: list[RendezvousClient] = []

    def to_client(message: Message, source: Address, data: bytes) -> None:
        clients[0].on_request(message, source)

    keys = PeerKeys(RequestKey())
    endpoint = await open_endpoint(to_client, (f"127.1.{n >> 8 & 255}.{n & 255}", 0), keys=keys)
    client = RendezvousClient(
        endpoint, server, peer_id, (endpoint.local_address,), lease=lease, policy=POLICY, credentials=keys.request
    )
    clients.append(client)
    return Peer(client)


async def refreshing(peer: Peer, tally: Tally, lease: int) -> None:
    """Register, then refresh every third of the lease, counting each failure with its reason."""
    client = peer.client
    try:
        await client.register()
        tally.joins += 1
        peer.registered.set()
    except PeerError as error:
        tally.failures[f"join: {error}"] += 1
        return
    while True:
        await asyncio.sleep(lease / 3 * random.uniform(0.9, 1.1))
        try:
            await client.register()
            tally.refreshes += 1
        except PeerError as error:
            tally.failures[f"refresh: {error}"] += 1


def sample(servers: list[subprocess.Popen[bytes]], node: redis_nodes.RedisNode, began: float) -> dict[str, float]:
    client = redis.Redis(host="127.0.0.1", port=node.port)
    try:
        used = int(client.info("memory")["used_memory"])
        keys = int(client.dbsize())
    finally:
        client.close()
    assert node.process is not None
    return {
        "minute": (time.monotonic() - began) / 60,
        "A": proc_rss(servers[0].pid) / 1024,
        "B": proc_rss(servers[1].pid) / 1024,
        "redis": proc_rss(node.process.pid) / 1024,
        "redis_used": used / 1024,
        "keys": keys,
    }


def slope(samples: list[dict[str, float]], key: str) -> float:
    """Least-squares slope of ``key`` over the samples after the first (KiB a minute)."""
    points = samples[1:]
    if len(points) < 2:
        return float("nan")
    xs, ys = [p["minute"] for p in points], [p[key] for p in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread if spread else float("nan")


async def soak(args: argparse.Namespace, addresses: list[Address], servers: list[subprocess.Popen[bytes]],
               node: redis_nodes.RedisNode) -> Tally:  # fmt: skip
    tally = Tally()
    ids = itertools.count()
    live: dict[str, Peer] = {}
    newcomers: list[list[Peer]] = [[], []]

    async def join(index: int) -> Peer:
        peer_id = f"soak-{next(ids):07d}"
        peer = await make_peer(addresses[index], peer_id, args.lease)
        peer.task = asyncio.create_task(refreshing(peer, tally, args.lease))
        live[peer_id] = peer
        return peer

    async def leave(peer_id: str) -> None:
        peer = live.pop(peer_id)
        assert peer.task is not None
        peer.task.cancel()
        await asyncio.gather(peer.task, return_exceptions=True)
        await peer.client.unregister()
        await peer.client._endpoint.close()
        tally.leaves += 1

    async def pair() -> None:
        first, second = newcomers[0].pop(), newcomers[1].pop()
        a, b = first.client, second.client
        try:
            async with asyncio.timeout(10):
                await asyncio.gather(first.registered.wait(), second.registered.wait())
            await asyncio.gather(a.connect(b.peer_id), b.connect(a.peer_id))
            async with asyncio.timeout(10):
                await asyncio.gather(a.introduction, b.introduction)
            tally.introductions += 1
        except (PeerError, TimeoutError) as error:
            tally.failures[f"introduction: {error!r}"] += 1

    for i in range(args.peers):
        await join(i % 2)
    began = time.monotonic()
    tally.samples.append(sample(servers, node, began))
    end = began + args.minutes * 60
    next_sample, next_churn, next_pair = began + args.sample, began + args.churn, began + args.pair_every
    pairs: set[asyncio.Task[None]] = set()
    while (now := time.monotonic()) < end:
        await asyncio.sleep(max(0.0, min(next_sample, next_churn, next_pair, end) - now))
        now = time.monotonic()
        if now >= next_churn:
            next_churn += args.churn
            waiting = {p.client.peer_id for side in newcomers for p in side}
            await leave(random.choice(sorted(set(live) - waiting)))
            side = random.randrange(2)
            newcomers[side].append(await join(side))
        if now >= next_pair:
            next_pair += args.pair_every
            if newcomers[0] and newcomers[1]:
                task = asyncio.create_task(pair())
                pairs.add(task)
                task.add_done_callback(pairs.discard)
        if now >= next_sample:
            next_sample += args.sample
            tally.samples.append(sample(servers, node, began))
            print(f"soak: {tally.samples[-1]}, failures {sum(tally.failures.values())}", file=sys.stderr)
    await asyncio.gather(*pairs, return_exceptions=True)
    for peer_id in list(live):
        await leave(peer_id)
    return tally


def report(args: argparse.Namespace, tally: Tally) -> list[str]:
    keys = {"A": "server A RSS", "B": "server B RSS", "redis": "Redis RSS", "redis_used": "Redis used_memory"}
    rows = [[f"{s['minute']:.1f}", *(f"{s[k] / 1024:.1f}" for k in keys), f"{s['keys']:,.0f}"] for s in tally.samples]
    failed = sum(tally.failures.values())
    return [
        "# Soak: live peers refreshing through two servers and Redis",
        "",
        f"Measured {machine()} by `just bench-soak --minutes {args.minutes:g}`.",
        "",
        (__doc__ or "").split("\n\n", 1)[1].strip(),
        "",
        f"{args.peers:,} peers, lease {args.lease} s, {args.minutes:g} minutes: {tally.refreshes:,} refreshes, "
        f"{tally.joins:,} joins, {tally.leaves:,} leaves, {tally.introductions:,} introductions across the servers.",
        "",
        *markdown_table(["minute", *(f"{v} (MiB)" for v in keys.values()), "Redis keys"], rows),
        "",
        "- Memory slope after the first sample (goal: flat): "
        + ", ".join(f"{v} {slope(tally.samples, k):+.1f} KiB/min" for k, v in keys.items())
        + ".",
        f"- Failed (goal: none): {failed}"
        + ("." if not failed else ": " + "; ".join(f"{n} x {why}" for why, n in tally.failures.most_common(5)) + "."),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--peers", type=int, default=1000)
    parser.add_argument("--lease", type=int, default=30)
    parser.add_argument("--churn", type=float, default=2.0, help="seconds between a peer leaving and one joining")
    parser.add_argument("--pair-every", type=float, default=10.0, help="seconds between two newcomers meeting")
    parser.add_argument("--sample", type=float, default=60.0, help="seconds between memory samples")
    parser.add_argument("--output", type=Path, default=Path("bench/soak.md"))
    args = parser.parse_args()
    if redis_nodes.missing():
        parser.exit(2, f"bench: {redis_nodes.missing()}\n")
    with redis_nodes.single() as node:
        ports = [free_port(), free_port()]
        servers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "punch",
                    "server",
                    "-q",
                    "--listen",
                    f"{HOST}:{port}",
                    "--registry",
                    node.url,
                    "--name",
                    name,
                    "--stats-interval",
                    "0",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for port, name in zip(ports, "AB", strict=True)
        ]
        try:
            for port in ports:
                wait_for(port)
            tally = asyncio.run(soak(args, [(HOST, p) for p in ports], servers, node))
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=30)
    print(write_report(args.output, report(args, tally)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
