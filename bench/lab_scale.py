"""The lab at scale: N NAT'd peers up and down, and N/2 pairs punching through one server: `just bench-lab-scale`.

For each N (10, 100, 1,000 by default) one lab ``python -m netns up --peers N`` (each peer behind its own
NAT router, home firewall, every router on one internet with the server; netns/topology/generate.py), then:

- up and down: wall time of the CLI, and per peer; where up's time goes, per kind of step (``up --json``);
- kernel memory: MemAvailable and Slab (/proc/meminfo) after up against before it (the machine is shared, so
  this is approximate; the namespaces, veths, netfilter tables and conntrack are all kernel memory);
- punching, `punch server` in node server. Every peer is in its own namespace behind its own NAT router
  (bench/crowd.py), ``--peers-as``: ``processes``, each a real `punch peer` forked from this benchmark after it
  imported punch once (as a fork server does: the interpreter's pages are shared), with no ``--send``: it sends
  the lines of its stdin (one, ``hello from ME``) and stays up until its stdin closes; and/or ``hosted``, the
  pairs dealt to one host process per core running the same peer code as coroutines, each peer's socket made
  in its namespace (bench/peer_host.py). In each run all N peers are alive at once: the first peer of each
  pair (peer2k-1) starts, registers and asks the server for its partner; then the pairs arrive, Poisson at
  ``--rates`` pairs a second (the same arrivals both ways): at its time the second peer (peer2k), held until
  then, starts, registers and asks, the server introduces both and they punch. Once every peer holds the
  other's text (all N/2 sessions open together), the stdins close and every pair says goodbye. The single
  pair: peer1 and peer2 alone, ``--single`` times, each way. All at once: every peer of every pair let go at
  the same instant, start-up included (the CPU queue that makes).
- a pair succeeds when both peers end on a direct path (the relay is off) and each received the other's text;
  its punch time runs from its second Connect reaching the server to both peers holding a proven direct path
  (the issue's definition; the later ``path_at`` of the two), and the server's part of it to the later of its two
  Introduces leaving the server, both stamped by a tcpdump on the server's interface (bench/server_packets.py). The
  capacity of the machine at N is the highest rate whose median stays within ``--within`` (1.2x) of the single
  pair's. Peers' memory is their summed PSS (/proc/PID/smaps_rollup) with all sessions open, their CPU the
  children's rusage; the machine's busy share comes from /proc/stat (it counts the server, the kernel's NAT
  and whatever else runs on the machine). Peers use ``--open-ttl 2 --no-predict``: every NAT here maps
  endpoint-independently.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import resource
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import punch.cli
from bench import server_packets
from bench.crowd import Crowd, peer_argv
from bench.report import machine, markdown_table, median_p95, write_report
from netns import naming
from netns.kernel import namespaces
from netns.lab import apply, lifecycle
from netns.topology import generate

PYTHON = sys.executable
ROOT = Path(__file__).resolve().parents[1]
SERVER = str(generate.SERVER)
ALTERNATE = str(generate.ALTERNATE)
# The server stands for a machine of its own: with round-robin real-time priority it runs whenever it has work,
# instead of getting 1/1,001 of the CPU while a thousand peers start (the kernel's RT throttling still leaves
# the rest of the machine 5% of every second).
SERVER_PRIORITY = ["chrt", "--rr", "1"]
CORES = os.cpu_count() or 1
SIDE_BY_SIDE = {kind.__name__ for kind in apply.HELPER_STEPS}  # the kinds of step `up` runs at once (apply.py)
BESIDE = 10  # the peers of the lab brought up beside each measured one (`up_beside`)
BACKGROUND_S = 0.5  # how long the machine's load is sampled before each run
MIN_BUSY_WINDOW_S = 0.2  # shorter, a busy share is mostly the clock ticks' rounding ("-")
QUIET, QUIET_WAIT_S = 0.1, 15.0  # a run starts once the rest of the machine is this quiet, or after this long


@dataclass
class Punching:
    """One run of the N/2 pairs (arriving at ``rate`` pairs a second; 0: all at once) and what it measured."""

    rate: float
    hosts: int  # 0: every peer a process of its own; else the hosts its peers were guests of (bench/peer_host.py)
    pairs: int = 0
    successes: int = 0
    punch_ms: list[float] = field(default_factory=list)  # per pair: its second Connect in to both direct
    server_ms: list[float] = field(default_factory=list)  # per pair: its second Connect in to both Introduces out
    unlogged: int = 0  # successful pairs whose Connects or Introduces the server's capture missed
    open_together: int = 0  # peers holding the other's text at once, before any stdin closed
    peers_pss_mib: float = 0.0  # with every session open
    peers_cpu_s: float = 0.0  # the peers' whole lives: start, register, punch, talk, goodbye
    busy_cpu_s: float = 0.0  # the machine's, from the first arrival until the last session opened
    background: float = 0.0  # the machine's busy share just before (other work on a shared machine)
    init_cpu_s: float = 0.0  # PID 1's share of busy_cpu_s
    window_s: float = 0.0  # that time
    failures: list[str] = field(default_factory=list)


@dataclass
class Size:
    n: int
    up_s: float = 0.0
    steps: dict[str, dict[str, float]] = field(default_factory=dict)  # `up --json`'s: count and seconds by kind
    beside: dict[str, dict[str, float]] = field(default_factory=dict)  # the same, of a BESIDE-peer lab next to it
    status_s: float = 0.0  # `status --json` of the whole lab, right after up
    down_s: float = 0.0
    mem_available_mib: float = 0.0
    slab_mib: float = 0.0
    single_ms: dict[int, list[float]] = field(default_factory=dict)  # by hosts, as Punching
    single_server_ms: dict[int, list[float]] = field(default_factory=dict)
    punching: list[Punching] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def meminfo() -> dict[str, float]:
    """/proc/meminfo in MiB."""
    values = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, value = line.split(":", 1)
        values[key] = int(value.split()[0]) / 1024
    return values


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has been busy since boot (/proc/stat: all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def init_cpu_s() -> float:
    """CPU seconds PID 1 has used (on this VM a process supervisor whose work grows with the processes alive)."""
    fields = Path("/proc/1/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: fields 14 and 15


def busy_share(seconds: float) -> float:
    """The share of the machine's cores busy over the next ``seconds``."""
    before = busy_cpu_s()
    time.sleep(seconds)
    return (busy_cpu_s() - before) / (seconds * CORES)


def arrival_times(pairs: int, rate: float, rng: random.Random) -> list[float]:
    """When each of ``pairs`` arrives (seconds from now) in a Poisson stream of ``rate`` pairs a second."""
    return list(itertools.accumulate(rng.expovariate(rate) for _ in range(pairs)))


SERVER_WITHIN = 2.0  # the goal: the server's part of a punch, all at once, within this x its part for a pair alone


def capacity(single_median: float, rows: Sequence[tuple[float, float]], within: float) -> float | None:
    """The highest rate of ``rows`` (rate, median) up to which every median is within ``within`` x the single
    pair's (a slower rate that missed it ends the search: capacity is what holds from zero up), or None."""
    best = None
    for rate, median in sorted(rows):
        if median > within * single_median:
            break
        best = rate
    return best


def lab(*args: str, timeout: float = 600) -> str:
    done = subprocess.run([PYTHON, "-m", "netns", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"netns {' '.join(args)}: {done.stderr.strip()[-500:]}")
    return done.stdout


def timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def warm_up() -> None:
    """Pay here, once, what every peer would pay on first use (its children share the result): the argument
    parser (punch.cli builds it once per process)."""
    punch.cli.build_parser().parse_args(peer_argv(1, 2, "w"))


def children_cpu_s() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def punch_pairs(
    name: str, pairs: list[tuple[int, int]], logs: Path, run: str, times: list[float] | None, hosts: int
) -> Punching:
    """All the peers of ``pairs`` alive at once (bench/crowd.py; ``hosts`` 0: processes); with ``times``, the
    first peer of each pair starts, registers and asks for its partner, then the partners start at ``times``
    (seconds); without, every peer starts at once. Once every peer has the other's text (or gave up), the
    sessions end together."""
    punching = Punching(0.0, hosts, pairs=len(pairs))
    crowd = Crowd(name, logs, run, timeout=60 + (times[-1] if times else 0), hosts=hosts)
    cpu = children_cpu_s()
    packets = logs / f"{run}server-packets.txt"
    server = naming.namespace(name, "server")
    try:
        with server_packets.watching(server, "inet", packets, server_packets.CONNECT_OR_INTRODUCE):
            _punch(crowd, punching, pairs, times)
    finally:
        crowd.stop()
    punching.peers_cpu_s = children_cpu_s() - cpu
    index = server_packets.by_peer(server_packets.read(packets))
    for a, b in pairs:
        outcomes = [crowd.outcome(a, b), crowd.outcome(b, a)]
        if not all(ok for ok, _ in outcomes):
            punching.failures.append(next(why for ok, why in outcomes if not ok))
            continue
        punching.successes += 1
        timed = server_packets.pair_times([crowd.results[f"{run}{me}"] for me in (a, b)], index)
        if timed is None:
            punching.unlogged += 1
        else:
            punching.punch_ms.append(timed[0])
            punching.server_ms.append(timed[1])
    return punching


def _punch(crowd: Crowd, punching: Punching, pairs: list[tuple[int, int]], times: list[float] | None) -> None:
    """:func:`punch_pairs`' run, from the first peer's start to the last peer's exit."""
    crowd.start(pairs, times)
    if times is not None:
        waiting = {a for a, _ in pairs}

        def all_asked() -> bool:
            waiting.difference_update([me for me in waiting if crowd.asked(me)])
            return not waiting

        crowd.follow(all_asked, 120)
    deadline = time.monotonic() + QUIET_WAIT_S  # every peer idle or held: wait a little for other work to end
    punching.background = busy_share(BACKGROUND_S)
    while punching.background > QUIET and time.monotonic() < deadline:
        punching.background = busy_share(BACKGROUND_S)
    started, busy, init = time.monotonic(), busy_cpu_s(), init_cpu_s()
    crowd.release()
    crowd.follow(crowd.all_talked, crowd.timeout)
    punching.window_s, punching.busy_cpu_s = time.monotonic() - started, busy_cpu_s() - busy
    punching.init_cpu_s = init_cpu_s() - init
    punching.open_together = crowd.open_sessions()
    punching.peers_pss_mib = pss_mib(crowd.alive())
    crowd.end()


def pss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue  # exited meanwhile
        total += next((int(line.split()[1]) for line in text.splitlines() if line.startswith("Pss:")), 0)
    return total / 1024


def standalone_peer_rss_mib(name: str) -> float:
    """Peak RSS of one `python -m punch peer` as its own interpreter (peer1 with peer2, both stand-alone)."""
    commands = [
        ["ip", "netns", "exec", naming.namespace(name, f"peer{me}"), "/usr/bin/time", "-f", "%M",
         PYTHON, "-m", "punch", *peer_argv(me, other, "x")]
        for me, other in ((1, 2), (2, 1))
    ]  # fmt: skip
    procs = [subprocess.Popen(c, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for c in commands]  # fmt: skip
    for proc, me in zip(procs, (1, 2), strict=True):  # both texts given and both stdins closed before waiting
        assert proc.stdin is not None
        proc.stdin.write(f"hello from {me}\n")
        proc.stdin.close()
    peaks = []
    for proc in procs:
        assert proc.stderr is not None
        peaks.append(int(proc.stderr.read().strip().splitlines()[-1]) / 1024)  # /usr/bin/time's line: KiB
        proc.wait(timeout=60)
    return max(peaks)


def resolve_neighbours(name: str, n: int) -> None:
    """Let every NAT router resolve (ARP) its pair's router and the server before the runs.

    The lab's internet is one bridge: a router's first packet to another one asks every router on it who has
    that address, N namespaces woken for one packet (at N=1,000 that doubled a first contact's punch time),
    where a real internet routes. The single pair is resolved by its first trial; this does the same for all.
    """
    for k in range(1, n + 1):
        partner = k + 1 if k % 2 else k - 1
        with (
            namespaces.entered(naming.namespace(name, f"nat{k}")),
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s,
        ):
            for address in (generate.router_address(partner), generate.SERVER):
                s.sendto(b"", (str(address), 9))  # discard; what matters is the neighbour entry on the way


NEIGHBOUR_SYSCTLS = [Path(f"/proc/sys/net/ipv4/neigh/default/gc_thresh{i}") for i in (1, 2, 3)]


@contextmanager
def neighbour_table(entries: int) -> Iterator[None]:
    """The kernel's ARP table holds at least ``entries`` dynamic entries for the block, then what it held before.

    The table is ONE for all namespaces (gc_thresh3, 1,024 by default, counts every namespace's entries), and
    peers need about 5 each (generate.NEIGHBOURS_PER_PEER): LAN, router and server, the pair's two routers.
    Past the limit the kernel cannot resolve a next hop and drops the packet (/proc/net/stat/arp_cache
    table_fulls). Below gc_thresh1 no entry is collected, so what :func:`resolve_neighbours` resolved stays.
    This is a host setting; raising it for the run only lets other labs on the machine grow too.
    """
    saved = [path.read_text() for path in NEIGHBOUR_SYSCTLS]
    try:
        for path, value in zip(NEIGHBOUR_SYSCTLS, (entries // 2, entries // 2, entries), strict=True):
            if int(path.read_text()) < value:
                path.write_text(str(value))
        yield
    finally:
        for path, text in zip(NEIGHBOUR_SYSCTLS, saved, strict=True):
            path.write_text(text)


def run_size(n: int, single: int, rates: list[float], modes: list[int], tag: str, beside: bool) -> tuple[Size, float]:
    size = Size(n)
    name = f"ls{tag}{len(str(n))}"
    before = meminfo()
    started = time.monotonic()
    built = lab("up", "--name", name, "--peers", str(n), "--json")
    size.up_s = time.monotonic() - started
    size.steps = json.loads(built)["steps"]
    standalone = 0.0
    try:
        after = meminfo()
        size.mem_available_mib = before["MemAvailable"] - after["MemAvailable"]
        size.slab_mib = after["Slab"] - before["Slab"]
        size.status_s = timed(lambda: lab("status", "--name", name, "--json"))
        if beside:  # only the largest lab's is reported (step_rows)
            size.beside = up_beside(f"{name}b")
        logs = Path(lab("logdir", "--name", name).strip())
        lab("exec", "--name", name, "--detach", "--log", str(logs / "server.log"), "server", "--", *SERVER_PRIORITY,
            PYTHON, "-m", "punch", "server", "--listen", f"{SERVER}:3478", "--alternate", f"{ALTERNATE}:3479",
            "--log-level", "warning")  # fmt: skip
        check = ["ip", "netns", "exec", naming.namespace(name, "server"), PYTHON, str(ROOT / "docker/stun-check.py")]
        deadline = time.monotonic() + 30
        while subprocess.run([*check, f"{SERVER}:3478"], capture_output=True, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("punch server did not answer within 30 s")
        standalone = standalone_peer_rss_mib(name)
        resolve_neighbours(name, n)
        pairs = [(k, k + 1) for k in range(1, n, 2)]
        runs = [*rates, 0.0]  # 0: all at once
        for hosts in modes:
            rng = random.Random(n)  # the same arrivals in every mode and every run of the benchmark
            for k, rate in enumerate(runs):
                for trial in range(k * single // len(runs), (k + 1) * single // len(runs)):  # side by side with runs
                    alone = punch_pairs(name, [(1, 2)], logs, f"s{hosts}-{trial}-", [0.0], hosts)
                    size.single_ms.setdefault(hosts, []).extend(alone.punch_ms)
                    size.single_server_ms.setdefault(hosts, []).extend(alone.server_ms)
                    size.failures += [f"single pair ({mode(hosts)}): {why}" for why in alone.failures]
                times = arrival_times(len(pairs), rate, rng) if rate else None
                punching = punch_pairs(name, pairs, logs, f"r{hosts}-{k}-", times, hosts)
                punching.rate = rate
                size.punching.append(punching)
    finally:
        size.down_s = timed(lambda: lab("down", "--name", name))
    for hosts, single_ms in size.single_ms.items():
        runs_ = [p for p in size.punching if p.hosts == hosts]
        medians = ", ".join(f"{describe(p)}: {statistics.median(p.punch_ms or [0]):.1f} ms" for p in runs_)
        print(f"N={n} ({mode(hosts)}): up {size.up_s:.1f} s, single {statistics.median(single_ms or [0]):.1f} ms, "
              f"{medians}", file=sys.stderr, flush=True)  # fmt: skip
    return size, standalone


def up_beside(name: str) -> dict[str, dict[str, float]]:
    """`up --json`'s steps of a BESIDE-peer lab brought up (and down) next to the one being measured: a step
    slower there than in a lab of its size alone pays for the namespaces on the machine (the kernel's cost),
    one as fast as alone for its own lab's size (the lab code's)."""
    try:
        return dict(json.loads(lab("up", "--name", name, "--peers", str(BESIDE), "--json"))["steps"])
    finally:
        lab("down", "--name", name)


def busy_during(p: Punching) -> str:
    """The machine's and PID 1's busy share from the first arrival to the last session open; "-" for a window too
    short to tell (/proc/stat counts in clock ticks, 10 ms here: ±1 tick is ±50% of a 20 ms window)."""
    if p.window_s < MIN_BUSY_WINDOW_S:
        return "-"
    return f"{p.busy_cpu_s / (p.window_s * CORES):.0%} ({p.init_cpu_s / (p.window_s * CORES):.0%})"


def describe(p: Punching) -> str:
    return f"{p.rate:g} pairs/s" if p.rate else "all at once"


def mode(hosts: int) -> str:
    return f"{hosts} hosts" if hosts else "processes"


@dataclass
class Verdict:
    """One size and mode's rows of the report, and whether all at once met the goal."""

    rows: list[list[object]]
    summary: list[object]
    text: str
    met: bool


def punch_verdict(
    n: int, hosts: int, single_ms: list[float], single_server_ms: list[float], runs: list[Punching], within: float
) -> Verdict:
    alone = statistics.median(single_ms)
    rows: list[list[object]] = []
    for p in runs:
        median = statistics.median(p.punch_ms) if p.punch_ms else None
        rows.append(
            [
                n,
                mode(hosts),
                describe(p),
                f"{p.successes}/{p.pairs}",
                f"{p.open_together}/{2 * p.pairs}",
                *median_p95(p.punch_ms),
                f"{median / alone:.2f}x" if median else "-",
                " / ".join(median_p95(p.server_ms, 2)),
                f"{p.background:.0%} / {busy_during(p)}",
                f"{p.peers_cpu_s / (2 * p.pairs) * 1000:.1f}",
                f"{p.peers_pss_mib:.0f} ({p.peers_pss_mib / (2 * p.pairs):.1f} each)",
                f"{p.window_s:.1f}",
            ]
        )
    arriving = {p.rate: statistics.median(p.punch_ms) for p in runs if p.rate and p.punch_ms}
    best = capacity(alone, list(arriving.items()), within)
    beyond = min((rate for rate in arriving if best is None or rate > best), default=None)
    burst = next(p for p in runs if not p.rate)

    def load(rate: float) -> str:
        p = next(p for p in runs if p.rate == rate)
        if p.window_s < MIN_BUSY_WINDOW_S:
            return ""
        busy, init = (cpu / (p.window_s * CORES) for cpu in (p.busy_cpu_s, p.init_cpu_s))
        return f" (the machine {busy:.0%} busy meanwhile, PID 1 alone {init:.0%})"

    per_peer = burst.peers_cpu_s / (2 * burst.pairs)
    brought = n * per_peer / CORES
    burst_median = statistics.median(burst.punch_ms) if burst.punch_ms else math.nan
    burst_server = statistics.median(burst.server_ms) if burst.server_ms else math.nan
    server_alone = statistics.median(single_server_ms) if single_server_ms else math.nan
    # The goal (issue 29): all at once, the server's own part of a punch at most SERVER_WITHIN x its part for a pair
    # alone. The peers' side measures the machine's cores (N Python peers at one instant), not punch; it is shown.
    met = burst_server <= SERVER_WITHIN * server_alone
    summary = [
        n,
        mode(hosts),
        " / ".join(median_p95(single_ms)),
        f"{best:g}" if best else "none measured",
        f"{beyond:g} ({arriving[beyond] / alone:.1f}x)" if beyond else "-",
        f"{burst_median:.1f} ({burst_median / alone:.0f}x)",
        f"{burst_server:.2f} ({server_alone:.2f})",
        f"{n} x {per_peer * 1000:.1f} ms / {CORES} = {brought:.2f}",
        f"{burst.window_s:.2f}",
    ]
    text = (
        f"- N={n}, {mode(hosts)}, all at once: the server's part {burst_server:.2f} ms against {server_alone:.2f} ms "
        f"alone ({burst_server / server_alone:.1f}x; goal at most {SERVER_WITHIN:g}x: {'met' if met else 'not met'}). "
        f"The peers' side ({burst_median / alone:.1f}x of a pair alone): the {n} "
        f"peers bring {per_peer * 1000:.1f} ms of CPU each at the same instant, {brought:.2f} s on {CORES} cores, "
        f"and the last session opened after {burst.window_s:.2f} s: a punch in that crowd waits for a core at "
        f"every step, so the median takes {burst_median:.1f} ms against {alone:.1f} ms for a pair alone; of "
        f"that, the server's part (its Connect in to both Introduces out) is {burst_server:.2f} ms against "
        f"{server_alone:.2f} ms alone. Arriving "
        f"at a rate, every peer alive: within {within:g}x "
        + (f"up to {best:g} pairs/s" if best else "at none of the rates measured")
        + (
            f"; {arriving[beyond] / alone:.1f}x at {beyond:g} pairs/s{load(beyond)}."
            if beyond
            else ", the fastest measured."
        )
    )
    return Verdict(rows, summary, text, met)


def step_rows(sizes: Sequence[Size]) -> list[list[object]]:
    """Per kind of step of `up` (in the order they first ran): at each N, how many and the milliseconds each;
    last, the same for the BESIDE-peer lab next to the largest."""
    columns = [s.steps for s in sizes] + [sizes[-1].beside]
    rows: list[list[object]] = []
    for kind in dict.fromkeys(kind for steps in columns for kind in steps):
        row: list[object] = [kind + (" (side by side)" if kind in SIDE_BY_SIDE else "")]
        for steps in columns:
            step = steps.get(kind)
            row.append(f"{step['count']:.0f} x {step['seconds'] / step['count'] * 1000:.2f}" if step else "-")
        rows.append(row)
    taking_turns = [sum(v["seconds"] for k, v in steps.items() if k not in SIDE_BY_SIDE) for steps in columns]
    rows.append(["all but side by side: seconds", *(f"{t:.2f}" for t in taking_turns)])
    rows.append(["up (CLI wall time): seconds", *(f"{s.up_s:.2f}" for s in sizes), "-"])
    return rows


def table(sizes: list[Size], standalone: float, single: int, within: float) -> list[str]:
    lab_rows, punch_rows, summary_rows, verdicts = [], [], [], []
    met: list[str] = []
    missed: list[str] = []
    previous: Size | None = None
    for s in sizes:
        marginal = (s.up_s - previous.up_s) / (s.n - previous.n) * 1000 if previous and s.n > previous.n else None
        previous = s
        lab_rows.append(
            [
                s.n,
                f"{s.up_s:.1f}",
                f"{s.up_s / s.n * 1000:.0f}" + (f" ({marginal:.0f})" if marginal is not None else ""),
                f"{s.status_s:.2f}",
                f"{s.down_s:.1f}",
                f"{s.down_s / s.n * 1000:.1f}",
                f"{s.mem_available_mib:.0f} / {s.slab_mib:.0f}",
                f"{s.mem_available_mib / s.n * 1024:.0f}",
            ]
        )
        for hosts, single_ms in s.single_ms.items():
            mine = [p for p in s.punching if p.hosts == hosts]
            verdict = punch_verdict(s.n, hosts, single_ms, s.single_server_ms.get(hosts, []), mine, within)
            punch_rows += verdict.rows
            summary_rows.append(verdict.summary)
            verdicts.append(verdict.text)
            (met if verdict.met else missed).append(f"{s.n} ({mode(hosts)})")

    runs = [p for s in sizes for p in s.punching]
    pairs, direct = sum(p.pairs for p in runs), sum(p.successes for p in runs)
    together = all(p.open_together == 2 * p.pairs for p in runs)
    worst = max((p.background for p in runs), default=0.0)
    lines = [
        "# The lab at scale: N NAT'd peers, up, down, and N/2 pairs punching through one server",
        "",
        f"Measured {machine()} by `just bench-lab-scale`: one lab per N from `python -m netns up --peers N` (each "
        "peer behind its own NAT router, home firewall, all routers on one internet with the server). Up, status "
        "(`status --json`: every namespace's links, addresses and routes) and down: wall time of the CLI; "
        "marginal: the extra up time per extra peer from the size before. Kernel memory: MemAvailable drop and "
        "Slab growth from before up to after it (a shared machine: approximate).",
        "",
        *markdown_table(
            [
                "N",
                "up (s)",
                "up per peer (ms; marginal)",
                "status (s)",
                "down (s)",
                "down per peer (ms)",
                "kernel MiB (MemAvailable / Slab)",
                "KiB per peer",
            ],
            lab_rows,
        ),
        "",
        "Where up's time goes: `up --json` gives, per kind of step, how many ran and the time they took "
        "(netns/lab/apply.py's StepClock); below, count x milliseconds each. The steps that wait for a helper "
        f"process (`iptables-restore` and the like) run side by side on {lifecycle.JOBS} threads; every other "
        "step takes its turn, so their sum is the part of up that grows with every step's own cost. The last "
        f"column is a lab of {BESIDE} peers brought up beside the largest one: a step that costs more there than "
        f"in the N={BESIDE} lab alone pays for the number of namespaces on the machine (the kernel's work, "
        "whoever made them), one that costs the same grows only with its own lab (the lab code's work).",
        "",
        *markdown_table(["step", *(f"N={s.n}" for s in sizes), f"N={BESIDE} beside N={sizes[-1].n}"], step_rows(sizes)),
        "",
        "## N/2 pairs through one server",
        "",
        f"`punch server` in node server (real-time priority: it stands for a machine of its own). Every peer sits "
        "in its own namespace behind its own NAT router, in one of two ways (*peers as*). *processes*: each peer "
        "is a `punch peer` process, forked from the benchmark after it imported punch once (pages shared), "
        "sending the one line of its stdin and staying up until its stdin closes. *hosts*: the pairs are dealt "
        f"to one host process per core ({CORES}; bench/peer_host.py), each running its peers as coroutines of "
        "the same peer code with the same configuration in one asyncio loop, every peer's UDP socket made in "
        "the peer's namespace: the same packets through the same NATs, without an interpreter and a process per "
        f"peer (the peers of a real deployment each have a machine of their own; here they share {CORES} cores "
        "with the server and the routers). In every run all N peers are alive together: the first peer of each "
        "pair starts, registers and asks for its partner; then the pairs arrive, Poisson at the rate shown (the "
        "same arrivals both ways): the second peer (forked before and held, or held in its host) starts, "
        "registers, asks, and the pair punches. When every peer holds the other's text, all N/2 sessions are "
        "open together (the count below), and then they end. *All at once*: every peer of every pair let go at "
        "the same instant, start-up included (a host's own start, making its sockets, comes before). Punch "
        "time, per successful pair (relay off), as the issue defines it: from the pair's second Connect reaching "
        "the server to both peers holding a proven direct path (the later `path_at` of their `--json` "
        "results); the server's part: from that Connect to the later of its two Introduces leaving the server. "
        "Both ends of the server's part are stamped by the kernel on the server's interface (a tcpdump in its "
        "namespace, bench/server_packets.py), the peers' on the same clock. Busy: the machine's CPU (all "
        "processes, the kernel's NAT) over the "
        f"{CORES} cores, for {BACKGROUND_S:g} s before the first arrival (other work on this shared machine: a "
        f"run waits up to {QUIET_WAIT_S:g} s for it to fall to {QUIET:.0%}) and from the first arrival to the "
        "last session open (- where that took under "
        f"{MIN_BUSY_WINDOW_S:g} s: /proc/stat counts in clock ticks); in brackets, PID 1's part (on this VM a "
        "process supervisor whose work grows with the "
        "number of processes alive). Peer CPU: the peers' whole lives (start, register, punch, talk, goodbye) "
        "from their rusage, a host's divided among its peers. PSS: every peer, all sessions open. One "
        f"stand-alone `python -m punch peer` peaks at {standalone:.0f} MiB RSS. The single pair: peer1 and peer2 "
        f"alone, {single} times each way, between that way's runs. Before the runs every NAT router resolves "
        "(ARP) its pair's router and the server: the lab's internet is one bridge, where a first contact would "
        "ask all N routers who has the address (a real internet routes instead).",
        "",
        *markdown_table(
            [
                "N",
                "peers as",
                "pairs arrive",
                "pairs direct",
                "peers with a session open together",
                "median punch (ms)",
                "p95 punch (ms)",
                "median / single",
                "server's part: median / p95 (ms)",
                "busy before / during (PID 1)",
                "peer CPU (ms per peer)",
                "peers PSS (MiB)",
                "arrivals (s)",
            ],
            punch_rows,
        ),
        "",
        "## What this machine sustains, and the goal",
        "",
        *markdown_table(
            [
                "N",
                "peers as",
                "single pair median / p95 (ms)",
                f"highest rate with median within {within:g}x (pairs/s)",
                "next rate (median / single)",
                "all at once: median (ms)",
                "all at once: server's part, median (ms; a pair alone)",
                "all at once: CPU brought at the instant (peers x CPU each / cores = s)",
                "all at once: last session open (s)",
            ],
            summary_rows,
        ),
        "",
        f"- Success: {direct}/{pairs} pairs direct with both texts across every run"
        + (" (100%)" if direct == pairs else " (NOT 100%: see the failures below)")
        + (
            "; every session open together at the end of every run."
            if together
            else "; not every session was open together."
        ),
        *(
            [f"- Not timed: {untimed} successful pairs whose Connect or Introduce the server's capture missed."]
            if (untimed := sum(p.unlogged for p in runs))
            else []
        ),
        *verdicts,
        f"- So the goal (issue 29: all N/2 pairs at the same instant, the server's own part of a punch, its second "
        f"Connect in to both Introduces out, at most {SERVER_WITHIN:g}x its part for one pair alone) is "
        + (f"met at N={', '.join(map(str, met))}; " if met else "")
        + (f"not met at N={', '.join(map(str, missed))}" if missed else "met everywhere")
        + f". The peers' side of the same burst (N Python peers starting and punching at one instant on {CORES} "
        f"cores; the earlier goal, median within {within:g}x of one pair) measures the machine's cores, not punch: "
        "a punch that waits for a core takes longer than the network does. What this machine sustains is the "
        "arrival rate above, with every peer alive and every session open at the end.",
    ]
    if worst >= 0.1:
        lines.append(
            f"- This machine was shared with other work during the run: up to {worst:.0%} of it busy just before a "
            "run (busy before); such runs wait for a core more often than on a quiet machine."
        )
    failures = [(s.n, describe(p), why) for s in sizes for p in s.punching for why in p.failures[:3]]
    failures += [(s.n, "single pair", why) for s in sizes for why in s.failures[:3]]
    if failures:
        lines += ["", "First failures:", ""]
        lines += [f"- N={n}, {how}: {why}" for n, how, why in failures]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--single", type=int, default=20, help="trials of the pair alone (default 20)")
    parser.add_argument(
        "--rates", type=float, nargs="+", default=[5, 10, 20, 50, 100, 200], help="pairs a second (Poisson)"
    )
    parser.add_argument(
        "--peers-as",
        nargs="+",
        choices=["processes", "hosted"],
        default=["processes", "hosted"],
        help="every peer a process of its own, and/or guests of one host process per core (bench/peer_host.py)",
    )
    parser.add_argument("--within", type=float, default=1.2, help="the goal: median within this x one pair's")
    parser.add_argument("--output", type=Path, default=Path("bench/lab_scale.md"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.exit(2, "bench: needs root to build the lab; run it as root or with sudo\n")
    tag = f"{secrets.randbelow(10000):04d}"
    warm_up()
    sizes = []
    standalone = 0.0
    with neighbour_table(2 * generate.NEIGHBOURS_PER_PEER * max(args.sizes)):  # room for the machine's other labs
        for n in args.sizes:
            modes = [0 if way == "processes" else CORES for way in args.peers_as]
            size, standalone = run_size(n, args.single, sorted(args.rates), modes, tag, n == max(args.sizes))
            sizes.append(size)
    print(write_report(args.output, table(sizes, standalone, args.single, args.within)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
