"""Punch time against the physical floor, through the real lab with known delays: `just bench-floor` (root).

Every link of the lab gets a fixed delay (the lab's own NFQUEUE delay daemon where the kernel has no netem):
``net-server`` SERVER_LEG ms and each NAT's WAN WAN_LEG ms one way, so server <-> peer is S = SERVER_LEG + WAN_LEG
one way and peer <-> peer is D = 2 * WAN_LEG one way. A trial times, on the lab's one clock, from the second
peer's Connect reaching the server (an NFLOG rule in the server's INPUT chain, read by tcpdump) to both peers
holding their chosen, proven direct path (``path_at`` in ``punch peer --json``). The floor is S + 2 D: the
introduction reaches the peers, and one round trip between them proves the path in both directions.

Two techniques: early checks, the default (both check at once, timed by their round trips to the server: floor
S + 2 D) in every row, and Ready/Go, ``--no-early-checks`` (the opener opens its mapping, tells the server Ready,
the server tells the prober Go: its own floor is 3 S + 3 D, see punch/peer/puncher.py) alternating with it trial by
trial in the port-restricted rows (``--ready-go-everywhere``: in every row). One lab per router firewall kind and
unordered pair of NAT presets for which the matrix finds a direct path (the cones and `none`; the opener is
whichever peer asked first, so a pair's two orders are one experiment), and per CGNAT cell with one
(:func:`cgnat_rows`), brought up once for all its trials.
All the labs are up together and the rows take turns, one trial each: this machine's noisy spells (other work on
the host) fall on every row alike instead of on whichever rows ran during them.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import server_packets
from bench.lab import peer_results
from bench.report import machine, markdown_table, percentile, write_report
from netns.topology.model import TOPOLOGIES

PYTHON = sys.executable
SERVER = "203.0.113.1"
PRESETS = ("full-cone", "restricted-cone", "port-restricted-cone", "none")  # direct in every matrix cell
NFLOG_GROUP = 7


EARLY, READY_GO = "early checks (default)", "Ready/Go (`--no-early-checks`)"
SAME_NAT = "behind one NAT (default: early checks, the hairpin nominated)"
TECHNIQUES = {READY_GO: ("--no-early-checks",), EARLY: (), SAME_NAT: ()}


@dataclass
class Row:
    """One pair of NATs: presets of the matrix topology (``nat10``, ``nat14``), or a cell of another topology
    (``label``), between peer10 and peer ``other``. The networks in ``delayed`` get the WAN leg's delay, so that
    each peer's way to the server crosses one of them and the way between the peers two."""

    firewall: str
    nat10: str = ""
    nat14: str = ""
    label: str = ""
    topology: str = "matrix.yaml"
    other: str = "14"
    delayed: tuple[str, ...] = ("wan10", "wan14")
    open_ttl: tuple[int, int] = (2, 2)  # peer10's and the other's: one more for each NAT in front of them
    ms: dict[str, list[float]] = field(default_factory=lambda: {t: [] for t in TECHNIQUES})
    trials: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TECHNIQUES, 0))
    failures: dict[str, list[str]] = field(default_factory=lambda: {t: [] for t in TECHNIQUES})
    moved: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TECHNIQUES, 0))  # a peer moved (refused)
    server_rtt_ms: list[float] = field(default_factory=list)
    ping_ms: list[float] = field(default_factory=list)  # kernel round trips peer10 <-> server (ICMP echo)
    techniques: tuple[str, ...] = (EARLY,)

    @property
    def pair(self) -> str:
        return self.label or f"{self.nat10} / {self.nat14}"


def cgnat_rows(firewall: str) -> list[Row]:
    """The CGNAT cells of the matrix (netns/topologies/cgnat.yaml) that have a direct path: peer10 behind its
    home NAT and the carrier's NAT with peer14 behind a home NAT of its own, and with peer11, whose home NAT sits
    behind the same carrier NAT (the carrier's hairpin; both peers see one public address, and neither has the
    other's LAN candidate on a link of its own, so the prober nominates in every check: punch.peer.routes)."""
    return [
        Row(firewall, label="CGNAT + home NAT / home NAT", topology="cgnat.yaml", delayed=("wancgn", "wan14"),
            open_ttl=(3, 2)),
        Row(firewall, label="two homes behind one CGNAT", topology="cgnat.yaml", other="11", delayed=("carrier",),
            open_ttl=(3, 3), techniques=(SAME_NAT,)),
    ]  # fmt: skip


def netns(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "netns", *args], capture_output=True, text=True, check=False, timeout=120)


def spawn(lab: str, node: str, *argv: str, out: Any = subprocess.PIPE, err: Any = subprocess.PIPE) -> Any:
    """``argv`` in ``node``'s namespace (netns names them LAB-NODE)."""
    return subprocess.Popen(
        ["ip", "netns", "exec", f"{lab}-{node}", *argv], stdin=subprocess.DEVNULL, stdout=out, stderr=err, text=True
    )


def wait_for_file(log: Path, text: str, timeout: float = 15.0) -> None:
    """Poll a log file, bounded, until it contains ``text``."""
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {text!r} in {log} within {timeout:g} s")
        time.sleep(0.05)


def ping(lab: str, count: int = 20) -> list[float]:
    """Round trips (ms) from peer10 to the server, echoed by the kernel (no Python on the path): what the
    lab's delays really are, including the delay daemon's own time; [] without ``ping`` (iputils-ping)."""
    if shutil.which("ping") is None:
        return []
    done = subprocess.run(["ip", "netns", "exec", f"{lab}-peer10", "ping", "-n", "-c", str(count), "-i", "0.02",
                           SERVER], capture_output=True, text=True, check=False, timeout=30)  # fmt: skip
    return [float(ms) for ms in re.findall(r"time=([0-9.]+) ms", done.stdout)]


def trial(lab: str, row: Row, number: int, extra: tuple[str, ...]) -> tuple[list[dict[str, Any]], str]:
    """Both peers started at once, one text each; their --json results and why it failed ("" if it did not)."""
    nodes = ("10", row.other)
    ids = [f"{node}-{number}-{secrets.token_hex(2)}" for node in nodes]
    procs = [
        spawn(lab, f"peer{node}", PYTHON, "-m", "punch", "peer", "--server", SERVER, "--id", me, "--to", other,
              "--send", f"from {me}", "--json", "-q", "--no-relay", "--no-predict", "--open-ttl", str(ttl),
              "--linger", "0.05", *extra)
        for node, me, other, ttl in zip(nodes, ids, ids[::-1], row.open_ttl, strict=True)
    ]  # fmt: skip
    results, reasons = peer_results(procs)
    if not reasons and any(r.get("path") != "direct" for r in results):
        reasons.append(f"paths {[r.get('path') for r in results]}")
    return results, "; ".join(reasons)


class RowLab:
    """One row's lab, its server and the capture of the Connects the server takes, up from ``with`` to its end;
    :meth:`trial` runs one trial of every technique of the row, :meth:`finish` times them from the capture."""

    def __init__(self, row: Row, delays: tuple[float, float]) -> None:
        self.row, self.delays = row, delays
        self.name = f"pf{secrets.token_hex(2)}"
        self.helpers: list[subprocess.Popen[str]] = []
        self.watching = ExitStack()  # the capture of the Connects
        self.workdir = tempfile.TemporaryDirectory()
        self.capture = Path(self.workdir.name) / "connects.txt"
        self.finished: list[tuple[str, float, list[dict[str, Any]]]] = []  # (technique, when it began, results)
        self.up = False

    def __enter__(self) -> RowLab:
        server_leg, wan_leg = self.delays
        row, lab = self.row, self.name
        presets = [f"nat10={row.nat10}", f"nat14={row.nat14}"] if row.nat10 else []
        up = netns(
            "up", "--name", lab, "--topology", str(TOPOLOGIES / row.topology), "--firewall", row.firewall,
            *(arg for preset in presets for arg in ("--nat", preset)),
            "--impair", f"net-server:delay={server_leg:g}ms",
            *(arg for network in row.delayed for arg in ("--impair", f"{network}:delay={wan_leg:g}ms")),
        )  # fmt: skip
        if up.returncode != 0:
            row.failures[row.techniques[0]].append(f"lab up failed: {up.stderr.strip()}")
            netns("down", "--name", lab)
            return self
        self.up = True
        try:
            self._start(Path(self.workdir.name) / "server.log")
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self, log: Path) -> None:
        lab = self.name
        # The delay daemon holds a packet where it arrives (netns/rules/impair.py), so a capture on the server's
        # interface would see a Connect before its delay: log the Connects the server's stack takes (INPUT),
        # each at once (the kernel otherwise batches log messages for up to a second).
        subprocess.run(["ip", "netns", "exec", f"{lab}-server", "iptables", "-I", "INPUT", "-p", "udp",
                        "--dport", "3478", "-m", "u32", "--u32", f"0>>22&0x3C@8>>16={server_packets.CONNECT:#x}",
                        "-j", "NFLOG", "--nflog-group", str(NFLOG_GROUP), "--nflog-threshold", "1"],
                       check=True)  # fmt: skip
        self.watching.enter_context(server_packets.watching(f"{lab}-server", f"nflog:{NFLOG_GROUP}", self.capture))
        with log.open("w") as out:
            self.helpers.append(spawn(lab, "server", PYTHON, "-m", "punch", "server", "--listen", f"{SERVER}:3478",
                                      err=out))  # fmt: skip
        wait_for_file(log, "listening on")
        self.row.ping_ms = ping(lab)

    def trial(self, number: int) -> None:
        """One trial of each of the row's techniques, in turn."""
        if not self.up:
            return
        for technique in self.row.techniques:
            begun = time.time()
            results, reason = trial(self.name, self.row, number, TECHNIQUES[technique])
            self.row.trials[technique] += 1
            if reason:
                self.row.failures[technique].append(reason)
            else:
                self.finished.append((technique, begun, results))

    def finish(self) -> Row:
        """Stop the capture and time every successful trial from it (the lab stays up until the ``with`` ends)."""
        row = self.row
        seen = self.connects()
        for technique, begun, results in self.finished:
            row.ms[technique].append((max(r["path_at"] for r in results) - second_connect(seen, begun, results)) * 1000)
            row.moved[technique] += any(r.get("move") == "moved" for r in results)
            row.server_rtt_ms += [r["server_rtt_ms"] for r in results]
        counts = ", ".join(f"{t} {len(row.ms[t])}/{row.trials[t]}" for t in row.techniques)
        print(f"{row.firewall} {row.pair}: {counts}", file=sys.stderr, flush=True)
        return row

    def connects(self) -> list[tuple[float, str]]:
        """Stop the capture (if it still runs); every Connect the server took: (when, from which endpoint)."""
        self.watching.close()
        return [(s.time, s.peer) for s in server_packets.read(self.capture) if s.kind == "connect"] if self.up else []

    def __exit__(self, *_: object) -> None:
        self.watching.close()
        stop(self.helpers)
        if self.up:
            netns("down", "--name", self.name)
            self.up = False
        self.workdir.cleanup()


def second_connect(seen: list[tuple[float, str]], begun: float, results: list[dict[str, Any]]) -> float:
    """When the server took the second Connect of a trial begun at ``begun``: the later of each peer's first
    Connect (from its public endpoint, ``mapped``) since then."""
    return max(min(t for t, source in seen if source == r["mapped"] and t >= begun) for r in results)


def run_rows(rows: list[Row], trials: int, delays: tuple[float, float], make: type[RowLab] = RowLab) -> list[RowLab]:
    """Every row's lab (``make``) up together, then ``trials`` rounds of one trial per row; the labs, finished."""
    with ExitStack() as stack:
        labs = [stack.enter_context(make(row, delays)) for row in rows]
        for number in range(trials):
            for lab in labs:
                lab.trial(number)
        for lab in labs:
            lab.finish()
        return labs


def stop(helpers: list[subprocess.Popen[str]]) -> None:
    """Stop the processes this row started (tcpdump writes out what it captured on SIGTERM)."""
    while helpers:
        helper = helpers.pop()
        helper.send_signal(signal.SIGTERM)
        helper.communicate(timeout=10)


def report(rows: list[Row], trials: int, delays: tuple[float, float]) -> list[str]:
    server_leg, wan_leg = delays
    s, d = server_leg + wan_leg, 2 * wan_leg
    floor = s + 2 * d
    technique_floor = {READY_GO: 3 * s + 3 * d, EARLY: floor, SAME_NAT: floor}
    rtts = [rtt for row in rows for rtt in row.server_rtt_ms]
    lines = [
        "# Punch time against the physical floor",
        "",
        f"Measured {machine()} by `just bench-floor`: {trials} trials per row, one lab per NAT pair (where "
        "both techniques ran, alternating trial by trial), all labs up together and the rows taking turns, one "
        "trial each (a noisy spell of this shared machine falls on every row alike). "
        "Delays one way: server <-> "
        f"peer S = {s:g} ms, peer <-> peer D = {d:g} ms (net-server {server_leg:g} ms, each NAT's WAN "
        f"{wan_leg:g} ms, by the lab's NFQUEUE delay daemon). A trial runs from the second peer's Connect "
        "reaching the server's stack (NFLOG in its INPUT chain, read by tcpdump) to both peers holding their chosen, "
        f"proven direct path (`path_at` of `punch peer --json`). Floor = S + 2 D = {floor:g} ms: the introduction, "
        f"then one round trip between the peers. Ready/Go cannot beat 3 S + 3 D = {3 * s + 3 * d:g} ms "
        "(Introduce, Ready, Go, then the prober's check, its answer, and the answer to the opener's triggered "
        "check); early checks skip Ready and Go. *moved*: trials in which a peer's check was refused and the other "
        "peer moved to a fresh socket (punch.peer.moving; its time counts in the row). The pairs: every pair of "
        "the matrix's presets with a direct path (the matrix topology, the delays on each NAT's WAN), and its "
        "CGNAT cells with one (netns/topologies/cgnat.yaml): peer10 behind its home NAT and the carrier's NAT "
        "with peer14 behind a home NAT (the delays on the carrier's WAN and on peer14's NAT's), and with peer11, "
        "a second home behind the same carrier NAT, through the carrier's hairpin (the delay on the carrier's "
        "network, which the way between them crosses twice). Peers with one public address check early as well "
        "(`behind one NAT`), and since neither has a LAN candidate of the other on a link of its own, the prober "
        "nominates the hairpin in every check instead of waiting for a LAN candidate "
        "(punch.peer.routes). Pairs with a symmetric NAT are not "
        "here: their direct path is found by port prediction, a search over random ports that no round-trip "
        "floor describes (`just bench-predict`).",
        "",
    ]
    pings = [ms for row in rows for ms in row.ping_ms]
    # The delay daemon's own time at each of the 4 delay points of a round trip to the server; the floor's path
    # (the Introduce, a check, its answer) crosses 6.
    delivered = floor + 6 * (statistics.median(pings) - 2 * s) / 4 if pings else floor
    if rtts:
        lines += [
            f"The lab's own overhead: the peers' round trip to the server was {statistics.median(rtts):.1f} ms "
            f"(median, from Python to Python) against {2 * s:g} ms set"
            + (
                f"; the kernel's (ping from peer10, {len(pings)} echoes) {statistics.median(pings):.1f} ms. The "
                f"delay daemon adds its own time at each delay point, so the floor the peers really face is "
                f"about {delivered:.1f} ms (the floor's path crosses 6 points, a round trip to the server 4): "
                f"the last column compares with that."
                if pings
                else "."
            ),
            "",
        ]
    table = []
    for technique in TECHNIQUES:
        for row in rows:
            if technique not in row.techniques:
                continue
            ms = row.ms[technique]
            median = statistics.median(ms) if ms else float("nan")
            p95 = percentile(ms, 0.95) if ms else float("nan")
            table.append(
                [
                    technique, row.firewall, row.pair,
                    f"{len(ms)}/{row.trials[technique]}", str(row.moved[technique]), f"{technique_floor[technique]:g}",
                    f"{median:.1f}", f"{p95:.1f}", f"{median / floor:.2f}x", f"{p95 / floor:.2f}x",
                    f"{median / delivered:.2f}x",
                ]
            )  # fmt: skip
    lines += markdown_table(
        ["technique", "router firewall", "NATs (peer10's / the other's)", "direct", "moved", "technique's floor (ms)",
         "median (ms)", "p95 (ms)", f"median / {floor:g} ms", f"p95 / {floor:g} ms", f"median / {delivered:.1f} ms"],
        table,
    )  # fmt: skip
    lines += [""]
    for technique in TECHNIQUES:
        for firewall in ("home", "none"):
            ms = [m for row in rows if row.firewall == firewall for m in row.ms[technique]]
            if ms:
                own = technique_floor[technique]
                versus_own = f"; median {statistics.median(ms) / own:.2f}x its technique's floor ({own:g} ms)"
                lines.append(
                    f"- {technique}, firewall {firewall}, all pairs: median {statistics.median(ms) / floor:.2f}x, "
                    f"p95 {percentile(ms, 0.95) / floor:.2f}x the floor (goal: 1.2x and 2x); median "
                    f"{statistics.median(ms) / delivered:.2f}x the floor the lab delivers"
                    + (versus_own if own != floor else "")
                )
    failures = [(row, t, row.failures[t]) for row in rows for t in TECHNIQUES if row.failures[t]]
    if failures:
        lines += ["", "Failures (count, first reason):", ""]
        lines += [f"- {t}, {row.firewall} {row.pair}: {len(f)}, {f[0]}" for row, t, f in failures]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--server-leg", type=float, default=15.0, help="delay of net-server, ms one way")
    parser.add_argument("--wan-leg", type=float, default=5.0, help="delay of each NAT's WAN, ms one way")
    parser.add_argument("--rows", type=int, default=0, help="only the first N rows (0 = all)")
    parser.add_argument(
        "--ready-go-everywhere",
        action="store_true",
        help="Ready/Go in every row, not only the port-restricted pairs (twice the trials)",
    )
    parser.add_argument("--output", type=Path, default=Path("bench/punch_floor.md"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.exit(2, "bench: needs root to build the lab; run it as root or with sudo\n")
    rows = [
        Row(firewall, a, b, techniques=(READY_GO, EARLY) if a == b == "port-restricted-cone" or args.ready_go_everywhere
            else (EARLY,))
        for firewall in ("home", "none")
        for a, b in itertools.combinations_with_replacement(PRESETS, 2)
    ]  # fmt: skip
    rows += [row for firewall in ("home", "none") for row in cgnat_rows(firewall)]
    rows = rows[: args.rows] if args.rows else rows
    delays = (args.server_leg, args.wan_leg)
    done = [lab.row for lab in run_rows(rows, args.trials, delays)]
    print(write_report(args.output, report(done, args.trials, delays)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
