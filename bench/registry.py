"""Registration capacity of `punch server`: `just bench-registry` (no root; writes bench/registry.md).

Three measurements, each saying where it was taken:

- memory: the Registry alone (no sockets) holding 10k / 100k / 1M peers, each in a fresh child process: its RSS
  growth and what tracemalloc counts, per peer. A peer is what a real Register leaves behind: an 12-character
  ID, its observed endpoint and one host candidate.
- in-process: a real RendezvousServer whose socket is swapped for a sink (``connection_made``), fed pre-built
  datagrams through the endpoint's ``datagram_received`` exactly as asyncio delivers them; so the figure is
  the server's whole handling (STUN checks, FINGERPRINT, MESSAGE-INTEGRITY-SHA256, rate limit, registry,
  encoding the answer) without the kernel. 1M distinct peers from 1M distinct endpoints register, then each
  refreshes once (signed with its token) on the keepalive fast path (in C where punch._fastpath is built), then a
  sample on the same fast path in pure Python (the fallback without a compiler), then a sample on the general path.
- loopback: `punch server` as its own process and a load generator sending from many sockets; the server's
  CPU time per request (from /proc) is what a request costs on the wire, whatever the generator's speed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hmac
import json
import os
import re
import selectors
import socket
import struct
import subprocess
import sys
import time
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

from bench.report import machine, markdown_table, write_report
from bench.server_throughput import free_port, wait_for
from punch.rendezvous.refresh import PYTHON_CODEC
from punch.rendezvous.registry import Registry
from punch.rendezvous.server import RendezvousServer
from punch.stun import MAGIC_COOKIE, AttributeType, Method, decode, encode
from punch.stun.wire import request

GOAL_BYTES = 1 << 30  # 1 GiB for a million peers
KEEPALIVES = 50_000  # a million peers refreshing every 20 s
LEASE = 60


def rss() -> int:
    return proc_rss(os.getpid())


def endpoint(i: int) -> tuple[str, int]:
    """The i-th peer's public endpoint, each on its own address of 10/8 (so the rate limiter's table of 65,536
    sources turns over, as it would with that many peers)."""
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", 1024 + i % 60_000


def peer_id(i: int) -> str:
    return f"peer-{i:07d}"


# -- pre-built datagrams (the codec encodes one to check them; building a million through it takes minutes) --


def _tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!HH", kind, len(value)) + value + b"\x00" * (-len(value) % 4)


def register_datagram(i: int, token: bytes | None = None) -> bytes:
    """A Register for peer ``i`` (PEER-ID, CANDIDATE, LEASE), signed with ``token`` when given, FINGERPRINT."""
    host = socket.inet_aton(f"192.168.{(i >> 8) & 255}.{i & 255}")
    candidate = struct.pack("!HHI", 1, 5000 ^ (MAGIC_COOKIE >> 16), int.from_bytes(host, "big") ^ MAGIC_COOKIE)
    body = (
        _tlv(AttributeType.PEER_ID, peer_id(i).encode())
        + _tlv(AttributeType.CANDIDATE, candidate)
        + _tlv(AttributeType.LEASE, LEASE.to_bytes(4, "big"))
    )
    txid = os.urandom(12)

    def header(length: int) -> bytes:
        return struct.pack("!HHI", 0x0281, length, MAGIC_COOKIE) + txid

    if token is not None:
        body += _tlv(
            AttributeType.MESSAGE_INTEGRITY_SHA256, hmac.digest(token, header(len(body) + 36) + body, "sha256")
        )
    crc = zlib.crc32(header(len(body) + 8) + body) ^ 0x5354554E
    return header(len(body) + 8) + body + _tlv(AttributeType.FINGERPRINT, crc.to_bytes(4, "big"))


def check_builder() -> None:
    """The pre-built datagrams are what the codec encodes for the same Register."""
    built = register_datagram(7, token=b"k" * 16)
    message = decode(built)
    again = request(Method.REGISTER, *message.attributes[:3])
    again = type(again)(again.method, again.message_class, message.transaction_id, again.attributes)
    assert encode(again, integrity_sha256_key=b"k" * 16) == built, "bench: the datagram builder drifted from the codec"


# -- memory: the Registry alone ----------------------------------------------------------------------------


def memory_child(count: int) -> dict[str, float]:
    """Run in a fresh process: RSS growth, then tracemalloc's count, for ``count`` registrations."""

    def fill() -> Registry:
        registry = Registry(max_registrations=count)
        for i in range(count):
            host = (f"192.168.{(i >> 8) & 255}.{i & 255}", 5000)
            registry.register(peer_id(i), endpoint(i), (host,), LEASE, now=0.0, transaction=os.urandom(12))
        return registry

    gc.collect()
    before = rss()
    registry = fill()
    grown = rss() - before
    del registry
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    registry = fill()
    traced = tracemalloc.get_traced_memory()[0] - base
    assert len(registry.registrations) == count
    return {"count": count, "rss": grown / count, "traced": traced / count, "total_rss": rss()}


def memory(counts: list[int]) -> list[dict[str, float]]:
    results = []
    for count in counts:
        out = subprocess.run(
            [sys.executable, "-m", "bench.registry", "--memory-child", str(count)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        results.append(json.loads(out))
        print(f"memory {count:,}: {results[-1]}", file=sys.stderr)
    return results


# -- in-process: the server's datagram handling --------------------------------------------------------------


class Sink(asyncio.DatagramTransport):
    """Stands in for the server's socket: counts what would be sent. (The real socket stays open, idle, until
    the bench exits.)"""

    def __init__(self, protocol: asyncio.BaseProtocol) -> None:
        super().__init__()
        self.sent = 0
        self._protocol = protocol

    def sendto(self, data: bytes | bytearray | memoryview, addr: object = None) -> None:
        self.sent += 1

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        self._protocol.connection_lost(None)


async def in_process(count: int, sample: int, chunk: int = 10_000) -> dict[str, float]:
    """The server's clock is the bench's: each phase spreads its requests over 20 s of it (the registrations,
    the keepalives 20 s later, the general path's 20 s after that), however long they take on this machine,
    so no lease runs out before the sweep at the end."""
    clock = [0.0]
    server = RendezvousServer(max_registrations=count, clock=lambda: clock[0])
    await server.start(("127.0.0.1", 0))
    endpoint_ = server.endpoint
    sink = Sink(endpoint_)
    endpoint_.connection_made(sink)  # the answers go to the sink, not the kernel
    deliver = endpoint_.datagram_received

    def timed(first: int, last: int, build: Callable[[int], bytes], phase: int) -> tuple[float, float]:
        """(CPU seconds, wall seconds) the server spent on datagrams ``first`` to ``last``; CPU time is what the
        figures use, as the machine is shared (wall time waits for the CPU too)."""
        cpu = wall = 0.0
        for start in range(first, last, chunk):
            clock[0] = 20.0 * (phase + start / last)
            batch = [(build(i), endpoint(i)) for i in range(start, min(last, start + chunk))]
            began, began_cpu = time.perf_counter(), time.thread_time()
            for data, source in batch:
                deliver(data, source)
            cpu += time.thread_time() - began_cpu
            wall += time.perf_counter() - began
        return cpu, wall

    def keepalive(i: int) -> bytes:
        return register_datagram(i, server.registry.registrations[peer_id(i)].token)

    before = rss()
    registering, registering_wall = timed(0, count, register_datagram, 0)
    grown = rss() - before
    counters = endpoint_.counters
    assert len(server.registry.registrations) == count, counters
    fast, _ = timed(0, count, keepalive, 1)
    assert counters["keepalive"] == count, counters
    accelerated = server._refresh is not PYTHON_CODEC
    server._refresh = PYTHON_CODEC  # the fast path as it runs without punch._fastpath
    python, _ = timed(0, sample, keepalive, 2)
    assert counters["keepalive"] == count + sample, counters
    del endpoint_.fast_paths[b"\x02\x81"]  # from here on, Registers take the general path
    general, _ = timed(0, sample, keepalive, 3)
    assert counters["keepalive"] == count + sample, counters
    assert sink.sent == 2 * count + 2 * sample, (counters, sink.sent)
    began = time.thread_time()
    gone = len(server.registry.expire(80.0 + 2 * LEASE))
    sweep = time.thread_time() - began
    assert gone == count
    await server.close()
    return {
        "count": count,
        "sample": sample,
        "register": registering,
        "register_wall": registering_wall,
        "fast": fast,
        "accelerated": accelerated,
        "python": python,
        "general": general,
        "sweep": sweep,
        "rss": grown,
    }


# -- loopback: punch server as a process -----------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def drive(
    port: int, sockets: list[socket.socket], datagrams: list[list[bytes]], window: int, seen: Callable[[bytes], None]
) -> float:
    """Send each socket's datagrams with ``window`` in flight, handing every answer to ``seen``; the seconds
    until the last answer. A second of silence ends it (what is still in flight then is lost)."""
    selector = selectors.DefaultSelector()
    queues = {s: iter(d) for s, d in zip(sockets, datagrams, strict=True)}
    for s in sockets:
        selector.register(s, selectors.EVENT_READ, data=s)
        for data in (next(queues[s], None) for _ in range(window)):
            if data is not None:
                s.sendto(data, ("127.0.0.1", port))
    began = last = time.monotonic()
    while events := selector.select(1.0):
        for key, _ in events:
            s = key.data  # the socket, registered as its own data
            while True:
                try:
                    seen(s.recv(2048))
                except BlockingIOError:
                    break
                data = next(queues[s], None)
                if data is not None:
                    s.sendto(data, ("127.0.0.1", port))
        last = time.monotonic()
    selector.close()
    return last - began


BURST = 400  # the default rate limit's burst per source address (200 requests/s, bursts of twice that)


def loopback(count: int, sources: int, window: int) -> dict[str, float]:
    """``count`` peers register through ``sources`` sockets (one loopback address each, up to 250), then each
    refreshes. The server keeps its default rate limit: with at most BURST peers per address, no address
    sends more keepalives than its bucket holds, however fast the generator goes."""
    port = free_port()
    command = [sys.executable, "-m", "punch", "server", "-q", "--listen", f"127.0.0.1:{port}",
               "--stats-interval", "0"]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sockets = []
    try:
        wait_for(port)
        for n in range(sources):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((f"127.0.2.{1 + n % 250}", 0))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            s.setblocking(False)
            sockets.append(s)
        mine = [range(n, count, sources) for n in range(sources)]
        results: dict[str, float] = {"count": count, "sources": sources}
        first = [[register_datagram(i) for i in ids] for ids in mine]
        owner = {d[8:20]: i for ids, batch in zip(mine, first, strict=True) for i, d in zip(ids, batch, strict=True)}
        tokens: dict[int, bytes] = {}
        answers = {"register": 0, "keepalive": 0}

        def registered(answer: bytes) -> None:  # success: XOR-MAPPED-ADDRESS (IPv4), LEASE, REGISTRATION-TOKEN ...
            if answer[:2] == b"\x03\x81" and answer[40:44] == b"\x4c\x0a\x00\x10":
                tokens[owner[answer[8:20]]] = answer[44:60]
                answers["register"] += 1

        def refreshed(answer: bytes) -> None:
            answers["keepalive"] += answer[:2] == b"\x03\x81"

        for phase, seen in (("register", registered), ("keepalive", refreshed)):
            if phase == "keepalive":  # signed with the tokens the first phase's answers carried
                datagrams = [[register_datagram(i, tokens[i]) for i in ids if i in tokens] for ids in mine]
            else:
                datagrams = first
            cpu = cpu_seconds(server.pid)
            results[f"{phase}_seconds"] = drive(port, sockets, datagrams, window, seen)
            results[f"{phase}_cpu"] = cpu_seconds(server.pid) - cpu
            results[f"{phase}_answers"] = answers[phase]
            if phase == "register":
                results["rss"] = proc_rss(server.pid)
        return results
    finally:
        for s in sockets:
            s.close()
        server.terminate()
        server.wait(timeout=10)


def proc_rss(pid: int) -> int:
    return int(re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text()).group(1)) * 1024  # type: ignore[union-attr]


# -- the report ----------------------------------------------------------------------------------------------


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f}"


def report(memory_rows: list[dict[str, float]], inproc: dict[str, float], wire: dict[str, float]) -> list[str]:
    count, sample = int(inproc["count"]), int(inproc["sample"])
    per = {
        what: inproc[what] / (sample if what in ("python", "general") else count)
        for what in ("register", "fast", "python", "general")
    }
    built = "C" if inproc["accelerated"] else "punch._fastpath not built"
    fast_row = f"keepalive, fast path ({built})"
    lines = [
        "# Registration capacity of punch server",
        "",
        f"Measured {machine()} by `just bench-registry`. Goal (issue 6): a million registered peers in at most "
        "1 GiB, and their keepalives (a million every 20 s: 50,000 a second) within one core.",
        "",
        "## Memory per registered peer: the Registry alone",
        "",
        "Each size in a fresh process: the RSS it grew by while filling, and the bytes tracemalloc counts (a peer: "
        "12-character ID, observed endpoint, one host candidate, token, lease).",
        "",
    ]
    lines += markdown_table(
        ["peers", "RSS growth per peer (bytes)", "tracemalloc per peer (bytes)", "a million at this rate (MiB)",
         "vs the 1 GiB goal"],
        [[f"{int(r['count']):,}", f"{r['rss']:.0f}", f"{r['traced']:.0f}", mib(r["rss"] * 1e6),
          f"{r['rss'] * 1e6 / GOAL_BYTES:.2f}x"] for r in memory_rows],
    )  # fmt: skip
    lines += [
        "",
        "## The server's handling of a Register, in-process",
        "",
        "A RendezvousServer with its socket swapped for a sink, fed pre-built datagrams through "
        "`datagram_received` as asyncio delivers them: decode or fast-path parse, FINGERPRINT, "
        "MESSAGE-INTEGRITY-SHA256 against the token, per-source rate limit, registry, encoding the answer; no "
        f"kernel, no logging output. {count:,} distinct peers from {count:,} distinct endpoints register, then "
        "each sends one keepalive on the fast path (read, checked and answered in C where punch._fastpath is "
        f"built), then {sample:,} of them one on the same fast path in pure Python (what runs without a compiler), "
        "then one on the general path (fast path off). Times are the thread's CPU time (the machine is shared; "
        "wall-clock time would count waiting for a core).",
        "",
    ]
    lines += markdown_table(
        ["what", "requests", "CPU seconds", "CPU µs each", "per second of CPU", "one core's share at 50,000/s"],
        [
            ["register (new ID, unsigned)", f"{count:,}", f"{inproc['register']:.1f}", f"{per['register'] * 1e6:.1f}",
             f"{1 / per['register']:,.0f}", f"{KEEPALIVES * per['register']:.2f}"],
            [fast_row, f"{count:,}", f"{inproc['fast']:.1f}", f"{per['fast'] * 1e6:.1f}",
             f"{1 / per['fast']:,.0f}", f"{KEEPALIVES * per['fast']:.2f}"],
            ["keepalive, fast path in pure Python", f"{sample:,}", f"{inproc['python']:.1f}",
             f"{per['python'] * 1e6:.1f}", f"{1 / per['python']:,.0f}", f"{KEEPALIVES * per['python']:.2f}"],
            ["keepalive, general path", f"{sample:,}", f"{inproc['general']:.1f}", f"{per['general'] * 1e6:.1f}",
             f"{1 / per['general']:,.0f}", f"{KEEPALIVES * per['general']:.2f}"],
        ],
    )  # fmt: skip
    lines += [
        "",
        f"- {count:,} distinct peers registered in {inproc['register']:.1f} s of CPU ({inproc['register_wall']:.1f} s "
        "of wall-clock time on this shared machine); the process grew by "
        f"{mib(inproc['rss'])} MiB RSS meanwhile (server, registry, the rate limiter's 65,536 sources and the "
        "bench's current batch of 10,000 datagrams).",
        f"- The keepalive fast path costs {per['general'] / per['fast']:.1f}x less than the general path "
        f"({per['general'] / per['python']:.1f}x less in pure Python).",
        f"- Forgetting all {count:,} leases once they ended (`Registry.expire`, the lease wheel): "
        f"{inproc['sweep']:.2f} s, {inproc['sweep'] / count * 1e6:.2f} µs per lease.",
        "",
        "## On the wire: punch server as its own process, loopback",
        "",
        "`punch server` with its defaults (C fast path where built: it reads the socket in batches, and what "
        "Python answers in a batch leaves in one sendmmsg; 200 requests/s per source address) and a "
        f"Python load generator: {int(wire['count']):,} peers register through {int(wire['sources'])} sockets, each "
        "on a loopback address of its own (one request in flight per socket), then each "
        "sends one keepalive signed with its token. The generator, not the server, sets the pace; the server's "
        "CPU time (/proc) per answer is the cost, compared with the in-process figure of the same run.",
        "",
    ]
    rows = []
    for phase, inside in (("register", per["register"]), ("keepalive", per["fast"])):
        answered, seconds, cpu = wire[f"{phase}_answers"], wire[f"{phase}_seconds"], wire[f"{phase}_cpu"]
        each = cpu / answered if answered else float("nan")
        rows.append([phase, f"{int(answered):,} of {int(wire['count']):,}", f"{answered / seconds:,.0f}",
                     f"{each * 1e6:.1f}", f"{each / inside:.2f}x", f"{KEEPALIVES * each:.2f}"])  # fmt: skip
    lines += markdown_table(
        ["what", "answered", "answers/s (generator-bound)", "server CPU µs each", "vs in-process",
         "one core's share at 50,000/s"],
        rows,
    )  # fmt: skip
    lines += ["", f"Server RSS after {int(wire['count']):,} registrations: {mib(wire['rss'])} MiB."]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory", default="10000,100000,1000000", help="Registry sizes, comma-separated")
    parser.add_argument("--peers", type=int, default=1_000_000, help="peers registered in-process")
    parser.add_argument("--sample", type=int, default=100_000, help="keepalives on the general path")
    parser.add_argument("--wire", type=int, default=100_000, help="peers registered over loopback")
    parser.add_argument("--sources", type=int, default=250, help="generator sockets, one address each (250 at most)")
    parser.add_argument("--output", type=Path, default=Path("bench/registry.md"))
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 0 < args.sources <= 250 or args.wire > BURST * args.sources:
        parser.error(f"--sources: 1 to 250, and at least --wire / {BURST} (the rate limit's burst per address)")
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child)))
        return 0
    check_builder()
    memory_rows = memory([int(n) for n in args.memory.split(",")])
    inproc = asyncio.run(in_process(args.peers, min(args.sample, args.peers)))
    print(f"in-process: {inproc}", file=sys.stderr)
    wire = loopback(args.wire, args.sources, window=1)
    print(f"loopback: {wire}", file=sys.stderr)
    print(write_report(args.output, report(memory_rows, inproc, wire)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
