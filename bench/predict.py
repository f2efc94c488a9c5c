"""Port prediction through the real lab: `just bench-predict` (root).

peer10 sits behind a symmetric NAT (MASQUERADE --random-fully), peer14 behind a port-restricted cone
(MASQUERADE), the server answers on its alternate address too (the peers measure their NAT's mapping). For each
row it brings up a lab of its own and runs N trials: both peers started at the same moment, each sending one
text, the relay off. A trial succeeds when both exit 0 on a `predicted` path and each printed the other's text.
From peer14's log it takes how many checks the spray needed and how long.

The rows: the default budget (256 sockets, 2000 checks at 500/s) behind both router kinds; a small budget (250
checks) whose success rate can be compared with the birthday odds; and the usual punch without prediction.

Writes a Markdown table (machine, versions, date) to --output and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.lab import lab
from bench.report import machine, percentile, write_report
from punch.peer.predict import hit_probability

PYTHON = sys.executable
SERVER, ALTERNATE = "203.0.113.1:3478", "203.0.113.2:3479"
TOPOLOGY = Path(__file__).parent.parent / "tests" / "data" / "topologies" / "symmetric-vs-cone.yaml"
HIT = re.compile(r"hit: \S+ answered after (\d+) checks \((\d+\.\d) s\)")


@dataclass
class Row:
    firewall: str
    what: str
    args: tuple[str, ...]
    trials: int
    probes: int | None = None  # the spray's budget, for the expected success rate; None: no prediction
    successes: int = 0
    punch_ms: list[float] = field(default_factory=list)
    checks: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def trial(name: str, number: int, args: tuple[str, ...]) -> tuple[bool, float | None, int | None, str]:
    ids = (f"10-{number}", f"14-{number}")
    procs = []
    for node, me, other in (("peer10", ids[0], ids[1]), ("peer14", ids[1], ids[0])):
        command = [
            PYTHON, "-m", "netns", "exec", "--name", name, node, "--",
            PYTHON, "-m", "punch", "peer", "--server", SERVER, "--id", me, "--to", other,
            "--send", f"hello from {me}", "--json", "--timeout", "20", "--no-relay", *args,
        ]  # fmt: skip
        procs.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results, logs, reasons = [], [], []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        lines = out.strip().splitlines()
        results.append(json.loads(lines[-1]) if lines else {})
        logs.append(err)
        if proc.returncode != 0:
            reasons.append(str(results[-1].get("error") or f"exit {proc.returncode}"))
    ok = (
        all(p.returncode == 0 for p in procs)
        and all(r.get("path") == "predicted" for r in results)
        and results[0].get("received") == [f"hello from {ids[1]}"]
        and results[1].get("received") == [f"hello from {ids[0]}"]
    )
    times = [float(r["punch_ms"]) for r in results if r.get("punch_ms") is not None]
    hit = HIT.search(logs[1])
    return ok, max(times) if ok and times else None, int(hit[1]) if ok and hit else None, "; ".join(reasons)


def run_row(row: Row) -> None:
    name = f"p{os.getpid() % 100000}"[:8]
    lab("up", "--name", name, "--firewall", row.firewall, "--topology", str(TOPOLOGY))
    try:
        logs = lab("logdir", "--name", name).stdout.strip()
        lab("exec", "--name", name, "--detach", "--log", f"{logs}/server.log", "server", "--",
            PYTHON, "-m", "punch", "server", "-q", "--listen", SERVER, "--alternate", ALTERNATE)  # fmt: skip
        for number in range(row.trials):
            ok, punch_ms, checks, reason = trial(name, number, row.args)
            row.successes += ok
            if punch_ms is not None:
                row.punch_ms.append(punch_ms)
            if checks is not None:
                row.checks.append(checks)
            if not ok:
                row.failures.append(reason or "wrong result")
            print(
                f"{row.firewall} / {row.what}: trial {number + 1}: "
                f"{'ok' if ok else 'FAILED ' + (reason or 'wrong result')}"
                f"{f' ({checks} checks, {punch_ms:.0f} ms)' if ok else ''}",
                file=sys.stderr,
                flush=True,
            )
    finally:
        lab("down", "--name", name, check=False)


def table(rows: list[Row]) -> list[str]:
    lines = [
        "# Port prediction through real kernel NAT",
        "",
        f"Measured {machine()} by `just bench-predict`: peer10 behind a symmetric NAT "
        "(MASQUERADE --random-fully), peer14 behind a "
        "port-restricted cone (MASQUERADE), started at the same moment, relay off. The lab adds no delay. "
        "Expected: the chance that n checks to distinct random ports out of 1024-65535 hit one of 256 mapped ports. "
        "Time: from the introduction to the chosen path, the slower of the two peers (it includes opening the 256 "
        "sockets and the Ready/Go round trip through the server).",
        "",
        "| router firewall | technique | successes | expected | checks to a hit: median / p95 | "
        "time to a path: median / p95 (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        expected = f"{hit_probability(256, row.probes):.2%}" if row.probes else "-"
        checks = (
            f"{statistics.median(row.checks):.0f} / {percentile([float(c) for c in row.checks], 0.95):.0f}"
            if row.checks
            else "-"
        )
        ms = f"{statistics.median(row.punch_ms):.0f} / {percentile(row.punch_ms, 0.95):.0f}" if row.punch_ms else "-"
        lines.append(f"| {row.firewall} | {row.what} | {row.successes}/{row.trials} | {expected} | {checks} | {ms} |")
    failures = [(row, row.failures[0]) for row in rows if row.failures]
    if failures:
        lines += ["", "First failure of each row:", ""]
        lines += [f"- {row.firewall} / {row.what}: {reason}" for row, reason in failures]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--trials", type=int, default=100, help="trials per row with the default budget")
    parser.add_argument("--small-trials", type=int, default=100, help="trials of the 250-check row")
    parser.add_argument("--baseline-trials", type=int, default=5, help="trials without prediction")
    parser.add_argument("--output", type=Path, default=Path("bench/predict.md"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.exit(2, "bench: needs root to build the lab; run it as root or with sudo\n")
    rows = [
        Row("home", "prediction: 256 sockets, 2000 checks at 500/s", (), args.trials, 2000),
        Row("none", "prediction: 256 sockets, 2000 checks at 500/s", (), args.trials, 2000),
        Row(
            "home",
            "prediction: 256 sockets, 250 checks at 500/s",
            ("--predict-probes", "250", "--punch-timeout", "3"),
            args.small_trials,
            250,
        ),
        Row("home", "usual punch (`--no-predict`)", ("--no-predict", "--punch-timeout", "3"), args.baseline_trials),
    ]
    for row in rows:
        run_row(row)
    print(write_report(args.output, table(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
