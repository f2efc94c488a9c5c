"""QUIC on the punched path: throughput, and time to the first tunnelled byte: `just bench-transport` (root).

Throughput (issue 26, section 5): a stream and datagrams from one process to another, each pinned to a core of
its own (``taskset``; bench/transport_load.py is both ends), carried six ways, all measured in the same run, the
rows taking turns round by round (a noisy spell of this shared machine falls on every row alike):

- aioquic's own client and server on loopback: the library's ceiling (the goal: punch's direct path at 0.8x it);
- punch's API (punch.api.Connection) on loopback, through a rendezvous server there: punch's code without the lab;
- punch's API through the lab, direct: the default topology, home routers (real kernel NAT);
- punch's API through the lab, relayed: the same with both NATs symmetric, so the server relays (its budget off);
- aioquic's client and server, and a plain TCP connection, over the same lab path without NAT (the matrix topology,
  routers of preset ``none`` and no firewall, so the peers' addresses are routed): the path's ceilings.

"Loopback" is the loopback of the direct lab's server namespace. The rendezvous servers are not pinned: on two
cores they share them with the ends (on the relay, every packet crosses the server's Python).

Time to the first tunnelled byte: bench/transport_tunnel.py, in the floor benchmark's lab.

Writes a Markdown report (machine, date, load, how) to --output and prints it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import transport_tunnel
from bench.lab import lab
from bench.punch_floor import spawn
from bench.relay import start_server
from bench.report import machine, markdown_table, write_report
from netns.topology.model import TOPOLOGIES

PYTHON = sys.executable
SERVER = "203.0.113.1:3478"
LOOPBACK_SERVER = "127.0.0.1:3480"  # a second server, on the loopback of the direct lab's server namespace
NO_NAT_PEER14 = "192.0.2.130"  # peer14 of the matrix topology, routed when its router does not translate
SENDER_CORE, RECEIVER_CORE = 0, 1
TCP_FACTOR = 16  # TCP uploads this many times the MiB of the others, so that its run lasts long enough to time

LIBRARY, PUNCH_LOOPBACK, DIRECT, RELAY, AIOQUIC_PATH, TCP_PATH = (
    "aioquic, loopback",
    "punch, loopback",
    "punch, direct",
    "punch, relay",
    "aioquic, lab path",
    "TCP, lab path",
)


@dataclass(frozen=True, slots=True)
class Measurement:
    """One round of one row: Mbit/s of application bytes, the share of its core each end used, and the CPU each
    spent per MiB (sender's, receiver's; 1.0 share = a whole core). A share below 1 on both ends means the ends
    waited (for the network, the peer, or a core other work was using); the cost per MiB does not depend on that."""

    stream_mbps: float
    stream_cpu: tuple[float, float]
    stream_cost: tuple[float, float]  # CPU ms per MiB
    datagram_mbps: float | None = None  # delivered: received bytes over the span from the first to the last
    offered_mbps: float | None = None  # what the sender handed over, per second of sending
    lost: float | None = None  # the share of the datagrams sent that did not arrive
    datagram_cpu: tuple[float, float] | None = None
    datagram_cost: float | None = None  # the receiver's CPU ms per MiB received (the sender spins when it waits)
    payload: int | None = None
    path: str | None = None  # punch's path kind


def mbps(count: float, seconds: float) -> float:
    return count * 8 / seconds / 1e6 if seconds > 0 else 0.0


def paced_mbps(cost_ms: float) -> float:
    """Mbit/s at one whole core for an end that spends ``cost_ms`` of CPU per MiB: what it would carry with its
    core to itself, which the machine's other work changes little (unlike the throughput measured on it)."""
    return mbps(1 << 20, cost_ms / 1000) if cost_ms > 0 else 0.0


def share(cpu: float, seconds: float) -> float:
    return cpu / seconds if seconds > 0 else 0.0


def cost(cpu: float, count: float) -> float:
    """CPU milliseconds per MiB."""
    return cpu * 1000 / (count / (1 << 20)) if count > 0 else 0.0


def measurement(sender: dict[str, Any], receiver: dict[str, Any]) -> Measurement:
    """What one round measured, from the JSON lines both ends printed (bench/transport_load.py)."""
    stream, back = sender["stream"], receiver["stream"]
    found = Measurement(
        stream_mbps=mbps(stream["bytes"], stream["seconds"]),
        stream_cpu=(share(stream["cpu"], stream["seconds"]), share(back["cpu"], back["seconds"])),
        stream_cost=(cost(stream["cpu"], stream["bytes"]), cost(back["cpu"], stream["bytes"])),
        path=sender.get("path"),
    )
    if "datagram" not in sender:
        return found
    sent, got = sender["datagram"], receiver["datagram"]
    return dataclasses.replace(
        found,
        datagram_mbps=mbps(sent["received_bytes"], sent["span"]),
        offered_mbps=mbps(sent["sent"] * sent["payload"], sent["seconds"]),
        lost=1 - sent["received"] / sent["sent"] if sent["sent"] else 0.0,
        datagram_cpu=(share(sent["cpu"], sent["seconds"]), share(got["cpu"], got["seconds"])),
        datagram_cost=cost(got["cpu"], sent["received_bytes"]),
        payload=sent["payload"],
    )


@dataclass
class Row:
    """One way of carrying the bytes, and what its rounds measured."""

    name: str
    path: str  # what the bytes cross, for the report
    measurements: list[Measurement] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    expect: str | None = None  # punch's path kind this row must take
    busy: list[float] = field(default_factory=list)  # the machine's busy share in the second before each round


# -- running the ends -------------------------------------------------------------------------------------------


def load_end(lab_name: str, node: str, core: int, *args: str) -> subprocess.Popen[str]:
    """bench/transport_load.py in ``node``'s namespace, pinned to ``core``."""
    command = ["taskset", "-c", str(core), PYTHON, "-m", "bench.transport_load", *args]
    process: subprocess.Popen[str] = spawn(lab_name, node, *command)
    return process


def last_json(process: subprocess.Popen[str], timeout: float) -> tuple[dict[str, Any] | None, str]:
    """The process's result (its last line of stdout), or None and why not."""
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        return None, f"no result within {timeout:g} s"
    lines = out.strip().splitlines()
    if process.returncode != 0 or not lines or not lines[-1].startswith("{"):
        why = err.strip().splitlines()[-1] if err.strip() else f"exit {process.returncode}"
        return None, why
    result: dict[str, Any] = json.loads(lines[-1])
    return result, ""


def listened(receiver: subprocess.Popen[str]) -> str:
    """The port a listening receiver says it listens on ("" if it ended first)."""
    assert receiver.stdout is not None
    line = receiver.stdout.readline()
    return line.split()[1] if line.startswith("listening ") else ""


@dataclass(frozen=True, slots=True)
class Pair:
    """Where a row's two ends run: the namespaces (lab, node) of the sender and the receiver, and how they meet."""

    kind: str  # punch, aioquic or tcp
    sender: tuple[str, str]
    receiver: tuple[str, str]
    host: str = "127.0.0.1"  # aioquic, tcp: the receiver's address as the sender reaches it
    server: str = SERVER  # punch
    bind: str = "0.0.0.0:0"  # punch

    def run(self, number: int, mib: int, seconds: float) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str]:
        """One round: both ends' results, and why it failed ("" if it did not)."""
        size = ["--mib", str(mib * TCP_FACTOR if self.kind == "tcp" else mib), "--seconds", str(seconds)]
        timeout = 60 + 4 * seconds
        if self.kind == "punch":
            me, other = f"s{number}", f"r{number}"
            common = ["--server", self.server, "--bind", self.bind, *size]
            receiver = load_end(
                *self.receiver, RECEIVER_CORE, "punch", "receive", "--me", other, "--other", me, *common
            )
            sender = load_end(*self.sender, SENDER_CORE, "punch", "send", "--me", me, "--other", other, *common)
        else:
            listen = "0.0.0.0" if self.host != "127.0.0.1" else self.host
            receiver = load_end(*self.receiver, RECEIVER_CORE, self.kind, "receive", "--host", listen, *size)
            port = listened(receiver)
            if not port:
                return None, *last_json(receiver, timeout)
            sender = load_end(*self.sender, SENDER_CORE, self.kind, "send", "--host", self.host, "--port", port, *size)
        sent, why = last_json(sender, timeout)
        got, why_not = last_json(receiver, timeout)
        return sent, got, "; ".join(w for w in (why, why_not) if w)


def busy(seconds: float = 1.0) -> float:
    """The share of the machine's CPU time (all cores) that was not idle over the next ``seconds`` (/proc/stat)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]  # all, idle + iowait

    total, idle = sample()
    time.sleep(seconds)
    total2, idle2 = sample()
    return 1 - (idle2 - idle) / (total2 - total) if total2 > total else 0.0


def wait_quiet(limit: float, patience: float) -> float:
    """Wait (at most ``patience`` seconds) for a second in which other work used at most ``limit`` of the
    machine (this benchmark's ends are not running then; its labs idle); the last second's share."""
    deadline = time.monotonic() + patience
    while (share_now := busy()) > limit and time.monotonic() < deadline:
        pass
    return share_now


# -- the labs ---------------------------------------------------------------------------------------------------


def lab_up(stack: ExitStack, name: str, *args: str) -> str:
    """A lab, taken down when ``stack`` closes (also when bringing it up failed half way)."""
    stack.callback(lab, "down", "--name", name, check=False)
    lab("up", "--name", name, *args)
    return name


def pairs(stack: ExitStack, logs: Path) -> dict[str, Pair]:
    """Every row's ends, with the labs and servers they need up until ``stack`` closes."""
    tag = os.getpid() % 100000
    direct = lab_up(stack, f"td{tag}")
    relay = lab_up(stack, f"tr{tag}", "--nat", "symmetric")
    plain = lab_up(stack, f"tn{tag}", "--topology", str(TOPOLOGIES / "matrix.yaml"), "--nat", "none",
                   "--firewall", "none")  # fmt: skip
    for name, listen, log in ((direct, SERVER, "direct"), (relay, SERVER, "relay"), (direct, LOOPBACK_SERVER, "lo")):
        start_server(name, logs / f"{log}.log", "listening on", "--listen", listen, cores=None)
    loopback = (direct, "server")
    return {
        LIBRARY: Pair("aioquic", loopback, loopback),
        PUNCH_LOOPBACK: Pair("punch", loopback, loopback, server=LOOPBACK_SERVER, bind="127.0.0.1:0"),
        DIRECT: Pair("punch", (direct, "peer10"), (direct, "peer14")),
        RELAY: Pair("punch", (relay, "peer10"), (relay, "peer14")),
        AIOQUIC_PATH: Pair("aioquic", (plain, "peer10"), (plain, "peer14"), host=NO_NAT_PEER14),
        TCP_PATH: Pair("tcp", (plain, "peer10"), (plain, "peer14"), host=NO_NAT_PEER14),
    }


def rows() -> list[Row]:
    return [
        Row(LIBRARY, "loopback, aioquic's own client and server: the library's ceiling"),
        Row(PUNCH_LOOPBACK, "loopback, punch's API, a rendezvous server there", expect="direct"),
        Row(DIRECT, "the lab, default topology, home NAT routers (masquerade): direct", expect="direct"),
        Row(RELAY, "the lab, both NATs symmetric: the server's relay (budget off)", expect="relay"),
        Row(AIOQUIC_PATH, "the lab's path without NAT (matrix topology, routers `none`, no firewall)"),
        Row(TCP_PATH, "the lab's path without NAT: the path's ceiling"),
    ]


def measure(table: list[Row], rounds: int, mib: int, seconds: float, quiet: float, patience: float) -> None:
    """Every row once per round, in alternating order, each after a quiet second (:func:`wait_quiet`, at most
    ``patience`` seconds of waiting); the labs up for the whole run."""
    with ExitStack() as stack, tempfile.TemporaryDirectory() as logs:
        ends = pairs(stack, Path(logs))
        for number in range(rounds):
            order = table if number % 2 == 0 else table[::-1]
            for row in order:
                row.busy.append(wait_quiet(quiet, patience))
                sent, got, why = ends[row.name].run(number, mib, seconds)
                if sent is not None and got is not None and not why:
                    found = measurement(sent, got)
                    if row.expect is not None and found.path != row.expect:
                        why = f"path {found.path}, not {row.expect}"
                    else:
                        row.measurements.append(found)
                if why:
                    row.failures.append(why)
                state = why or f"{row.measurements[-1].stream_mbps:.0f} Mbit/s on the stream"
                print(f"round {number + 1}, {row.name}: {state}", file=sys.stderr, flush=True)


# -- the report -------------------------------------------------------------------------------------------------


def median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def cell(value: float | None, form: str = "{:.0f}") -> str:
    return "-" if value is None else form.format(value)


def pair_cell(values: Sequence[tuple[float, float] | None], form: str) -> str:
    """The medians of (sender's, receiver's) values, as ``sender / receiver``."""
    senders = median([v[0] for v in values if v is not None])
    receivers = median([v[1] for v in values if v is not None])
    return "-" if senders is None or receivers is None else f"{form.format(senders)} / {form.format(receivers)}"


def ratio(value: float | None, reference: float | None) -> str:
    return "-" if value is None or not reference else f"{value / reference:.2f}x"


def slowest_cost(m: Measurement, what: str) -> float | None:
    """CPU ms per MiB of the end that sets the pace: the stream's busier end, the datagrams' receiver."""
    return max(m.stream_cost) if what == "stream" else m.datagram_cost


def rate(ms: Sequence[Measurement], what: str) -> float | None:
    """The median Mbit/s of the stream or the datagrams delivered."""
    return median([m.stream_mbps if what == "stream" else m.datagram_mbps for m in ms])


def paced(ms: Sequence[Measurement], what: str) -> float | None:
    """The median of :func:`paced_mbps` at the slower end's cost."""
    return median([paced_mbps(c) for m in ms if (c := slowest_cost(m, what)) is not None])


def cause(met: bool, met_paced: bool) -> str:
    """What the two ratios together say: whether punch's code or the machine's load decided the goal."""
    if met_paced:
        return "by its CPU the code meets the goal" + ("" if met else ", so the shortfall is the machine's load")
    return "by its CPU the code does not meet the goal" + (", although this run did" if met else "")


def goal_lines(
    direct: Sequence[Measurement], library: Sequence[Measurement], on_path: Sequence[Measurement]
) -> list[str]:
    """The issue's goal, punch's direct path at 0.8x the library's ceiling, for the stream and for datagrams: as
    measured, and paced by CPU (each at its slower end's CPU per MiB on a core of its own, :func:`paced_mbps`);
    then punch against aioquic's own over the lab's path (``on_path``), which tells the path's cost from the code's."""
    lines = []
    for what in ("stream", "datagrams"):
        value, top = rate(direct, what), rate(library, what)
        if value is None or not top:
            lines.append(f"- Direct path, {what}: not measured")
            continue
        x = value / top
        verdict = "met" if x >= 0.8 else f"not met, {0.8 - x:.2f}x short ({0.8 * top - value:.0f} Mbit/s)"
        line = (
            f"- Direct path, {what}: {value:.0f} Mbit/s, {x:.2f}x the library's ceiling ({top:.0f} Mbit/s "
            f"on loopback); goal 0.8x: {verdict}"
        )
        own, theirs = paced(direct, what), paced(library, what)
        if own and theirs:
            line += (
                f". Paced by CPU per MiB (its slower end on a core of its own): {own:.0f} against {theirs:.0f} "
                f"Mbit/s, {own / theirs:.2f}x: {cause(x >= 0.8, own / theirs >= 0.8)}"
            )
        beside, beside_paced = rate(on_path, what), paced(on_path, what)
        if beside and beside_paced and own:
            line += (
                f". Over the lab's path aioquic's own makes {beside:.0f} Mbit/s (paced {beside_paced:.0f}): punch "
                f"{value / beside:.2f}x it (paced {own / beside_paced:.2f}x)"
            )
        lines.append(line)
    return lines


def throughput_report(
    table: list[Row], rounds: int, mib: int, seconds: float, quiet_limit: float, patience: float
) -> list[str]:
    by_name = {row.name: row for row in table}
    shares = [b for row in table for b in row.busy]
    noisy = sum(b > quiet_limit for b in shares)
    busy_text = (
        f"median {statistics.median(shares):.0%}, at most {max(shares):.0%}"
        + (f"; {noisy} of {len(shares)} rounds ran without one" if noisy else "")
        if shares
        else "not measured"
    )
    library = by_name[LIBRARY].measurements
    ceiling = median([m.stream_mbps for m in library]), median([m.datagram_mbps for m in library])
    payloads = sorted({m.payload for row in table for m in row.measurements if m.payload is not None})
    lines = [
        "## Throughput",
        "",
        f"{rounds} rounds, each row once per round, the order reversed every other round. Stream: {mib} MiB uploaded "
        f"on one stream ({mib * TCP_FACTOR} MiB over TCP), 64 KiB a write with `drain()`, timed from the first "
        f"write to the receiver's answer that it read every byte. Datagrams: {seconds:g} s of "
        f"{'/'.join(map(str, payloads)) or '-'}-byte datagrams sent as fast as the connection takes them (at most "
        "256 waiting), counted where they arrive: *delivered* is the bytes received over the span from the first to "
        "the last. Mbit/s counts application bytes. Sender on core 0, receiver on core 1 (taskset). *CPU share*: "
        "the share of its core each end's process used (sender / receiver); below 1 on both, the ends waited (for "
        "packets, or for a core that other work or the kernel's packet forwarding had). *CPU (ms/MiB)*: what each "
        "end spent per MiB, which waiting does not change: on one core each, the larger of the two sets the pace "
        "(the datagram sender's is not shown: it spins while its queue is full). QUIC packets of 1200 bytes and reno "
        "on every QUIC row; aioquic's rows with punch's flow-control windows. Medians of the rounds.",
        "",
        f"Each round waited for a second in which the machine was at most {quiet_limit:.0%} busy (at most "
        f"{patience:g} s, then it ran anyway): the busy share in that second was {busy_text}.",
        "",
    ]
    body = []
    for row in table:
        ms = row.measurements
        stream = median([m.stream_mbps for m in ms])
        datagrams = median([m.datagram_mbps for m in ms])
        body.append(
            [
                row.name, row.path, f"{len(ms)}/{len(ms) + len(row.failures)}",
                cell(stream), ratio(stream, ceiling[0]), pair_cell([m.stream_cpu for m in ms], "{:.0%}"),
                pair_cell([m.stream_cost for m in ms], "{:.0f}"),
                cell(datagrams), ratio(datagrams, ceiling[1]), cell(median([m.offered_mbps for m in ms])),
                cell(median([m.lost for m in ms]), "{:.1%}"), pair_cell([m.datagram_cpu for m in ms], "{:.0%}"),
                cell(median([m.datagram_cost for m in ms])),
            ]
        )  # fmt: skip
    lines += markdown_table(
        ["carried by", "path", "rounds", "stream (Mbit/s)", "stream / library", "stream CPU share",
         "stream CPU (ms/MiB)", "datagrams delivered (Mbit/s)", "datagrams / library", "offered (Mbit/s)", "lost",
         "datagram CPU share", "receiver's CPU (ms/MiB)"],
        body,
    )  # fmt: skip
    lines += [""]
    lines += goal_lines(by_name[DIRECT].measurements, library, by_name[AIOQUIC_PATH].measurements)
    failures = [(row, row.failures) for row in table if row.failures]
    if failures:
        lines += ["", "Failed rounds (count, first reason):", ""]
        lines += [f"- {row.name}: {len(f)}, {f[0]}" for row, f in failures]
    return lines


def report(
    table: list[Row], tunnel: list[str], args: argparse.Namespace, load: tuple[Sequence[float], Sequence[float]]
) -> list[str]:
    before, after = (", ".join(f"{v:.2f}" for v in each) for each in load)
    lines = [
        "# QUIC on the punched path: throughput and the first tunnelled byte",
        "",
        f"Measured {machine()} by `just bench-transport`, aioquic {metadata.version('aioquic')} (the load average, "
        f"1/5/15 minutes, was {before} at the start and {after} at the end; the machine is shared with other work). "
        "bench/transport.py says how each figure is taken.",
        "",
    ]
    if args.rounds:
        lines += throughput_report(table, args.rounds, args.mib, args.seconds, args.quiet, args.patience)
    else:
        lines += ["## Throughput", "", "Not run (`--rounds 0`)."]
    return [*lines, "", *tunnel]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="throughput rounds, every row in each (0: none)")
    parser.add_argument("--mib", type=int, default=32, help="MiB uploaded on the stream per round")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds of datagrams per round")
    parser.add_argument("--quiet", type=float, default=0.1, help="the busy share of the machine a round waits for")
    parser.add_argument("--patience", type=float, default=15.0, help="seconds a round waits for it, then runs anyway")
    transport_tunnel.add_arguments(parser)
    parser.add_argument("--output", type=Path, default=Path("bench/transport.md"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.exit(2, "bench: needs root to build the labs; run it as root or with sudo\n")
    before = os.getloadavg()
    table = rows()
    if args.rounds:
        measure(table, args.rounds, args.mib, args.seconds, args.quiet, args.patience)
    tunnel_lines = transport_tunnel.run(args)
    print(write_report(args.output, report(table, tunnel_lines, args, (before, os.getloadavg()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
