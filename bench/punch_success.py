"""Punch success rate through the real lab, per router kind: `just bench-punch` (root).

For each router kind (home-router firewall, bare MASQUERADE) and technique it brings up a lab of its own,
starts the server, and runs N trials: peer10 and peer14 started at the same moment, each sending one text. A
trial succeeds when both exit 0 on a direct path and each printed the other's text (the relay is off). The
techniques, all with the low-TTL opening probe but the last: the default next to the server (no delay anywhere:
the peers take Ready/Go, punch.peer.puncher.early_pays); the default with the server 2 ms from the core each way
(the peers check early, while the path between them still has no delay: the race at its tightest); Ready/Go
(``--no-early-checks``) there; and the naive simultaneous open (no opening probe): the home router lets it
through after the opener's 2 s fallback; on the bare router it loses the conntrack race. "checked early" counts
the trials in which both peers checked without waiting for Go (``early`` in their ``--json``), "moved" those in
which a peer's check was refused and the other peer moved to a fresh socket (punch.peer.moving).

Writes a Markdown table (machine, versions, date) to --output and prints it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.lab import lab, peer_results
from bench.report import machine, markdown_table, median_p95, write_report

PYTHON = sys.executable
SERVER = "203.0.113.1"


@dataclass
class Row:
    kind: str
    technique: str
    options: tuple[str, ...]  # punch peer's flags for this technique
    server_ms: float  # the delay of the server's link to the core, each way
    trials: int = 0
    successes: int = 0
    moved: int = 0
    early: int = 0  # trials in which both peers checked without waiting for Go (PeerResult.early)
    punch_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def trial(name: str, number: int, options: tuple[str, ...]) -> tuple[bool, list[float], bool, bool, str]:
    ids = (f"10-{number}", f"14-{number}")
    procs = []
    for node, me, other in (("peer10", ids[0], ids[1]), ("peer14", ids[1], ids[0])):
        command = [
            PYTHON, "-m", "netns", "exec", "--name", name, node, "--",
            PYTHON, "-m", "punch", "peer", "--server", SERVER, "--id", me, "--to", other,
            "--send", f"hello from {me}", "--json", "-q", "--timeout", "20", "--no-relay", *options,
        ]  # fmt: skip
        procs.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results, reasons = peer_results(procs)
    ok = (
        all(p.returncode == 0 for p in procs)
        and all(r.get("path") == "direct" for r in results)
        and results[0].get("received") == [f"hello from {ids[1]}"]
        and results[1].get("received") == [f"hello from {ids[0]}"]
    )
    times = [float(r["punch_ms"]) for r in results if r.get("punch_ms") is not None]
    moved = any(r.get("move") == "moved" for r in results)
    early = all(r.get("early") is True for r in results)
    return ok, times, moved, early, "; ".join(reasons) or ("" if ok else "wrong result")


def run_kind(row: Row, trials: int) -> None:
    name = f"b{os.getpid() % 100000}"[:8]
    firewall = "home" if row.kind.startswith("home") else "none"
    far = ("--impair", f"net-server:delay={row.server_ms:g}ms") if row.server_ms else ()
    lab("up", "--name", name, "--firewall", firewall, *far)
    try:
        logs = lab("logdir", "--name", name).stdout.strip()
        lab("exec", "--name", name, "--detach", "--log", f"{logs}/server.log", "server", "--",
            PYTHON, "-m", "punch", "server", "-q")  # fmt: skip
        for number in range(trials):
            ok, times, moved, early, reason = trial(name, number, row.options)
            row.trials += 1
            row.successes += ok
            row.moved += moved
            row.early += early
            row.punch_ms += times if ok else []
            if not ok:
                row.failures.append(reason)
            print(
                f"{row.kind} / {row.technique}: trial {number + 1}: {'ok' if ok else 'FAILED ' + reason}",
                file=sys.stderr,
                flush=True,
            )
    finally:
        lab("down", "--name", name, check=False)


def table(rows: list[Row]) -> list[str]:
    lines = [
        "# Punch success rate through real kernel NAT",
        "",
        f"Measured {machine()} by `just bench-punch`. The lab adds no delay between the peers: a check that leaves "
        "early has only the early-check margin (1 ms) as slack.",
        "",
    ]
    lines += markdown_table(
        [
            "router kind",
            "server",
            "technique",
            "successes",
            "checked early",
            "moved",
            "median punch (ms)",
            "p95 punch (ms)",
        ],
        [
            [
                row.kind,
                f"{row.server_ms:g} ms away" if row.server_ms else "next to the peers",
                row.technique,
                f"{row.successes}/{row.trials}",
                f"{row.early}/{row.trials}",
                str(row.moved),
                *median_p95(row.punch_ms),
            ]
            for row in rows
        ],
    )
    failures = [(row, row.failures[0]) for row in rows if row.failures]
    if failures:
        lines += ["", "First failure of each row:", ""]
        lines += [f"- {row.kind} / {row.technique}: {reason}" for row, reason in failures]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--naive-trials", type=int, default=10)
    parser.add_argument("--output", type=Path, default=Path("bench/punch_success.md"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.exit(2, "bench: needs root to build the lab; run it as root or with sudo\n")
    probe = ("--open-ttl", "2", "--punch-timeout", "10")
    naive = ("--open-ttl", "0", "--punch-timeout", "4")
    rows = [
        Row(kind, technique, options, server_ms)
        for technique, options, server_ms in (
            ("default", probe, 0.0),
            ("default", probe, 2.0),
            ("Ready/Go (`--no-early-checks`)", (*probe, "--no-early-checks"), 2.0),
            ("naive simultaneous open", naive, 0.0),
        )
        for kind in ("home-router firewall", "bare MASQUERADE")
    ]
    for row in rows:
        run_kind(row, args.naive_trials if row.technique.startswith("naive") else args.trials)
    print(write_report(args.output, table(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
