"""The lab at scale: N NAT'd peers up and down, and N/2 pairs punching at once: `just bench-lab-scale` (root).

For each N (10, 100, 1,000 by default) one lab ``python -m netns up --peers N`` (each peer behind its own
NAT router, home firewall, every router on one internet with the server; netns/generate.py), then:

- up and down: wall time of the CLI, and per peer;
- kernel memory: MemAvailable and Slab (/proc/meminfo) after up against before it (the machine is shared, so
  this is approximate; the namespaces, veths, netfilter tables and conntrack are all kernel memory);
- punching: `punch server` in node server; first one pair (peer1, peer2) punches alone, ``--single`` times one
  after another (the single pair's median); then all N/2 pairs (peer2k-1 with peer2k) punch at once. A pair
  succeeds when both peers exit 0 on a direct path (the relay is off) and each received the other's text.
  The time is each peer's own ``punch_ms`` (from the server's introduction to a proven direct path).
- peer processes: each peer is a real process in its own namespace running `punch peer`, but forked from this
  benchmark after it imported punch once (as a fork server does), so the interpreter's pages are shared; their
  memory is the summed PSS (/proc/PID/smaps_rollup) at its peak, their CPU the children's rusage. One
  stand-alone `python -m punch peer` is measured too (its peak RSS), for what 1,000 separate interpreters
  would need. ``--wave K`` starts the pairs K at a time instead of all at once (the report says so).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import punch.cli
from bench.report import machine, markdown_table, median_p95, write_report
from netns import generate, ipr, naming
from punch.peer.sealing import Sealer

PYTHON = sys.executable
ROOT = Path(__file__).resolve().parents[1]
SERVER = str(generate.SERVER)
ALTERNATE = str(generate.ALTERNATE)
# The server stands for a machine of its own: with round-robin real-time priority it runs whenever it has work,
# instead of getting 1/1,001 of the CPU while a thousand peers start (the kernel's RT throttling still leaves
# the rest of the machine 5% of every second).
SERVER_PRIORITY = ["chrt", "--rr", "1"]


@dataclass
class Size:
    n: int
    up_s: float = 0.0
    down_s: float = 0.0
    mem_available_mib: float = 0.0
    slab_mib: float = 0.0
    single_ms: list[float] = field(default_factory=list)
    pairs: int = 0
    successes: int = 0
    punch_ms: list[float] = field(default_factory=list)
    peers_pss_mib: float = 0.0
    peers_cpu_s: float = 0.0
    punch_wall_s: float = 0.0
    failures: list[str] = field(default_factory=list)


def meminfo() -> dict[str, float]:
    """/proc/meminfo in MiB."""
    values = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, value = line.split(":", 1)
        values[key] = int(value.split()[0]) / 1024
    return values


def lab(*args: str, timeout: float = 600) -> str:
    done = subprocess.run([PYTHON, "-m", "netns", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"netns {' '.join(args)}: {done.stderr.strip()[-500:]}")
    return done.stdout


def timed(action: object) -> float:
    started = time.monotonic()
    action()  # type: ignore[operator]
    return time.monotonic() - started


def peer_argv(me: int, other: int, run: str) -> list[str]:
    """`punch peer` for peer ``me`` talking to ``other``; IDs carry ``run`` so that no two runs share one."""
    return [
        "peer", "--server", SERVER, "--id", f"{run}{me}", "--to", f"{run}{other}", "--send", f"hello from {me}",
        "--json", "-q", "--timeout", "60", "--punch-timeout", "20", "--open-ttl", "2", "--no-relay", "--no-predict",
    ]  # fmt: skip


def warm_up() -> None:
    """Pay here, once, what every peer would pay on first use (its children share the result): the argument
    parser, and OpenSSL's start behind the ChaCha20-Poly1305 sealer (about 30 ms of CPU in each process)."""
    punch.cli.build_parser().parse_args(peer_argv(1, 2, "w"))
    Sealer(bytes(32)).seal(bytes(12), "w", 0, b"warm")


def fork_peer(name: str, me: int, other: int, logs: Path, run: str) -> int:
    """Fork a child that enters peer ``me``'s namespace and runs `punch peer` there; its PID."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        out = os.open(logs / f"p{me}.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        err = os.open(logs / f"p{me}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, 1)
        os.dup2(err, 2)
        with ipr.entered(naming.namespace(name, f"peer{me}")):
            code = punch.cli.main(peer_argv(me, other, run))
    finally:
        os._exit(code)


def pss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue  # exited meanwhile
        total += next((int(line.split()[1]) for line in text.splitlines() if line.startswith("Pss:")), 0)
    return total / 1024


def result(logs: Path, me: int, other: int) -> tuple[bool, float | None, str]:
    """Whether peer ``me`` finished on a direct path with the other's text, its punch_ms, and why not."""
    lines = (logs / f"p{me}.json").read_text().strip().splitlines()
    found = json.loads(lines[-1]) if lines else {}
    ok = found.get("path") == "direct" and found.get("received") == [f"hello from {other}"]
    if ok:
        return True, found.get("punch_ms"), ""
    errors = (logs / f"p{me}.log").read_text().strip().splitlines()
    return False, None, errors[-1] if errors else f"p{me}: {found or 'no result'}"


def punch_pairs(name: str, pairs: list[tuple[int, int]], logs: Path, size: Size, wave: int, run: str) -> list[float]:
    """Run ``pairs`` (``wave`` at a time, 0: all at once); record successes and failures; punch_ms of both peers."""
    times: list[float] = []
    step = wave or len(pairs)
    for start in range(0, len(pairs), step):
        running: dict[int, tuple[int, int]] = {}
        for a, b in pairs[start : start + step]:
            running[fork_peer(name, a, b, logs, run)] = (a, b)
            running[fork_peer(name, b, a, logs, run)] = (b, a)
        codes: dict[int, int] = {}
        next_sample = 0.0
        while len(codes) < len(running):
            if time.monotonic() >= next_sample:  # a measurement, not a synchronisation
                size.peers_pss_mib = max(size.peers_pss_mib, pss_mib([p for p in running if p not in codes]))
                next_sample = time.monotonic() + 1.0
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                time.sleep(0.05)
            elif pid in running:
                codes[pid] = os.waitstatus_to_exitcode(status)
        for a, b in pairs[start : start + step]:
            outcomes = [result(logs, a, b), result(logs, b, a)]
            size.pairs += 1
            if all(ok for ok, _, _ in outcomes):
                size.successes += 1
                times += [ms for _, ms, _ in outcomes if ms is not None]
            else:
                size.failures.append(next(why for ok, _, why in outcomes if not ok))
    return times


def standalone_peer_rss_mib(name: str) -> float:
    """Peak RSS of one `python -m punch peer` as its own interpreter (peer1 with peer2, both stand-alone)."""
    commands = [
        ["ip", "netns", "exec", naming.namespace(name, f"peer{me}"), "/usr/bin/time", "-f", "%M",
         PYTHON, "-m", "punch", *peer_argv(me, other, "x")]
        for me, other in ((1, 2), (2, 1))
    ]  # fmt: skip
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for c in commands]
    peaks = [int(p.communicate(timeout=120)[1].strip().splitlines()[-1]) / 1024 for p in procs]
    return max(peaks)


NEIGHBOUR_SYSCTLS = [Path(f"/proc/sys/net/ipv4/neigh/default/gc_thresh{i}") for i in (2, 3)]


@contextmanager
def neighbour_table(entries: int) -> Iterator[None]:
    """The kernel's ARP table holds at least ``entries`` dynamic entries for the block, then what it held before.

    The table is ONE for all namespaces (gc_thresh3, 1,024 by default, counts every namespace's entries), and
    peers need about 5 each (generate.NEIGHBOURS_PER_PEER): LAN, router and server, the pair's two routers.
    Past the limit the kernel cannot resolve a next hop and drops the packet (/proc/net/stat/arp_cache
    table_fulls). This is a host setting; raising it for the run only lets other labs on the machine grow too.
    """
    saved = [path.read_text() for path in NEIGHBOUR_SYSCTLS]
    try:
        for path, value in zip(NEIGHBOUR_SYSCTLS, (entries // 2, entries), strict=True):
            if int(path.read_text()) < value:
                path.write_text(str(value))
        yield
    finally:
        for path, text in zip(NEIGHBOUR_SYSCTLS, saved, strict=True):
            path.write_text(text)


def run_size(n: int, single: int, wave: int, tag: str) -> tuple[Size, float]:
    size = Size(n)
    name = f"ls{tag}{len(str(n))}"
    before = meminfo()
    size.up_s = timed(lambda: lab("up", "--name", name, "--peers", str(n)))
    standalone = 0.0
    try:
        after = meminfo()
        size.mem_available_mib = before["MemAvailable"] - after["MemAvailable"]
        size.slab_mib = after["Slab"] - before["Slab"]
        logs = Path(lab("logdir", "--name", name).strip())
        lab("exec", "--name", name, "--detach", "--log", str(logs / "server.log"), "server", "--", *SERVER_PRIORITY,
            PYTHON, "-m", "punch", "server", "--listen", f"{SERVER}:3478", "--alternate", f"{ALTERNATE}:3479",
            "--log-level", "warning")  # fmt: skip
        check = ["ip", "netns", "exec", naming.namespace(name, "server"), PYTHON, str(ROOT / "docker/stun-check.py")]
        deadline = time.monotonic() + 30
        while subprocess.run([*check, f"{SERVER}:3478"], capture_output=True, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("punch server did not answer within 30 s")
        for trial in range(single):
            alone = Size(n)
            size.single_ms += punch_pairs(name, [(1, 2)], logs, alone, 0, f"s{trial}-")
            size.failures += [f"single pair: {why}" for why in alone.failures]
        standalone = standalone_peer_rss_mib(name)
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        size.punch_ms = punch_pairs(name, [(k, k + 1) for k in range(1, n, 2)], logs, size, wave, "p")
        size.punch_wall_s = time.monotonic() - started
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        size.peers_cpu_s = used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime
    finally:
        size.down_s = timed(lambda: lab("down", "--name", name))
    print(f"N={n}: {size}", file=sys.stderr, flush=True)
    return size, standalone


def table(sizes: list[Size], standalone: float, single: int, wave: int) -> list[str]:
    rows = []
    previous: Size | None = None
    for s in sizes:
        marginal = (s.up_s - previous.up_s) / (s.n - previous.n) * 1000 if previous and s.n > previous.n else None
        previous = s
        single_median = statistics.median(s.single_ms) if s.single_ms else None
        median = statistics.median(s.punch_ms) if s.punch_ms else None
        ratio = f"{median / single_median:.2f}x" if median and single_median else "-"
        rows.append(
            [
                s.n,
                f"{s.up_s:.1f}",
                f"{s.up_s / s.n * 1000:.0f}" + (f" ({marginal:.0f})" if marginal is not None else ""),
                f"{s.down_s:.1f}",
                f"{s.down_s / s.n * 1000:.1f}",
                f"{s.mem_available_mib:.0f} / {s.slab_mib:.0f}",
                f"{s.mem_available_mib / s.n * 1024:.0f}",
                f"{s.successes}/{s.pairs}",
                "-" if single_median is None else f"{single_median:.1f}",
                *median_p95(s.punch_ms),
                ratio,
                f"{s.peers_pss_mib:.0f}",
                f"{s.peers_cpu_s:.1f} ({s.peers_cpu_s / s.n * 1000:.0f} ms/peer; {s.punch_wall_s:.0f} s)",
            ]
        )
    how = f"{wave} pairs at a time" if wave else "all pairs at once"
    lines = [
        "# The lab at scale: N NAT'd peers, up, down, and N/2 pairs punching at once",
        "",
        f"Measured {machine()} by `just bench-lab-scale`: one lab per N from `python -m netns up --peers N` (each "
        "peer behind its own NAT router, home firewall, all routers on one internet with the server), then "
        f"`punch server` in node server; one pair alone {single} times one after another, then {how}. Up and "
        "down: wall time of the CLI. Kernel memory: MemAvailable drop and Slab growth from before up to after "
        "it (a shared machine: approximate). Punch time: each peer's own `punch_ms` (introduction to proven "
        "direct path, relay off), median over both peers of every successful pair. Peers: each a `punch peer` "
        "process in its own namespace, forked from the benchmark after it imported punch once (pages shared); "
        "their memory is the summed PSS at its peak, their CPU the children's user+system time (wall time of "
        "the punching in brackets). Marginal: the extra up time per extra peer from the size before. One "
        f"stand-alone `python -m punch peer` peaks at {standalone:.0f} MiB RSS.",
        "",
    ]
    lines += markdown_table(
        [
            "N",
            "up (s)",
            "up per peer (ms; marginal)",
            "down (s)",
            "down per peer (ms)",
            "kernel MiB (MemAvailable / Slab)",
            "KiB per peer",
            "pairs direct",
            "single pair median (ms)",
            "median punch (ms)",
            "p95 punch (ms)",
            "median / single",
            "peers PSS (MiB)",
            "peers CPU (s)",
        ],
        rows,
    )
    failures = [(s.n, why) for s in sizes for why in s.failures[:3]]
    if failures:
        lines += ["", "First failures:", ""]
        lines += [f"- N={n}: {why}" for n, why in failures]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--single", type=int, default=10, help="trials of the pair alone (default 10)")
    parser.add_argument("--wave", type=int, default=0, help="start pairs this many at a time (default: all)")
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
            size, standalone = run_size(n, args.single, args.wave, tag)
            sizes.append(size)
    print(write_report(args.output, table(sizes, standalone, args.single, args.wave)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
