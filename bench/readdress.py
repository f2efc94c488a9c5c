"""A NAT's mappings flushed vs its public address changed, mid-session, through the real lab: `just bench-readdress`
(root).

One default lab; rounds alternate two faults on a session whose direct path is up (keepalives every second):
`conntrack -F` on both routers (the mappings come back as they were: MASQUERADE keeps the port), and
`netns readdress nat14 wan14` to the other of 192.0.2.14/.15 (the old path is dead: the peers must notice, find
each other again through the server and punch anew). Right after the fault peer10 sends one text. Measured: the
time from the fault being in place to that text's acknowledgement (peer10's log), whether it arrived exactly once,
and how often the peers rejoined; the time also as a share of the keepalive budget (interval + the keepalive
policy's silence) after which a peer declares the path broken.

Writes a Markdown table (machine, date) to --output and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.lab import lab
from bench.report import machine, markdown_table, median_p95, write_report
from punch.peer.config import KEEPALIVE_POLICY

PYTHON = sys.executable
SERVER = "203.0.113.1:3478"
KEEPALIVE = 1.0
ACKED = re.compile(r"^(\d\d):(\d\d):(\d\d\.\d{3}) peer \S+: message 0 acknowledged by", re.MULTILINE)


@dataclass
class Row:
    fault: str
    rounds: int = 0
    once: int = 0
    rejoined: int = 0
    seconds: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def seconds_of_day(stamp: float) -> float:
    local = time.localtime(stamp)
    return local.tm_hour * 3600 + local.tm_min * 60 + local.tm_sec + stamp % 1


def one_round(name: str, number: int, fault: list[list[str]]) -> tuple[float | None, bool, int, str]:
    """(seconds to the acknowledgement, exactly once, rejoins, failure) of one session hit by ``fault``."""
    ids = (f"a{number}", f"b{number}")
    peers = []
    for node, me, other in (("peer10", *ids), ("peer14", *reversed(ids))):
        command = [
            PYTHON, "-m", "netns", "exec", "--name", name, node, "--", PYTHON, "-m", "punch", "peer",
            "--server", SERVER, "--id", me, "--to", other, "--json", "--keepalive", str(KEEPALIVE),
        ]  # fmt: skip
        pipe = subprocess.PIPE
        peers.append(subprocess.Popen(command, stdin=pipe, stdout=pipe, stderr=pipe, text=True))
    seen = ["", ""]
    for index, peer in enumerate(peers):
        assert peer.stderr is not None
        while "using the direct path" not in seen[index]:
            line = peer.stderr.readline()
            if not line:
                break
            seen[index] += line
    for command in fault:
        lab(*command)
    started = time.time()  # the fault is in place
    results: list[dict[str, Any]] = []
    for peer, text in zip(peers, ("after the fault\n", ""), strict=True):
        assert peer.stdin is not None
        peer.stdin.write(text)
        peer.stdin.close()
        peer.stdin = None  # so that communicate() does not flush it
    for index, peer in enumerate(peers):
        out, err = peer.communicate(timeout=120)
        seen[index] += err
        lines = out.strip().splitlines()
        results.append(json.loads(lines[-1]) if lines else {})
    acked = ACKED.search(seen[0])
    if acked is None or any(p.returncode != 0 for p in peers):
        return None, False, 0, str(results[0].get("error") or results[1].get("error") or "no acknowledgement")
    at = int(acked[1]) * 3600 + int(acked[2]) * 60 + float(acked[3])
    once = results[1].get("received") == ["after the fault"]
    return at - seconds_of_day(started), once, int(results[0].get("rejoins", 0)), ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per fault (default 5)")
    parser.add_argument("--output", type=Path, default=Path("bench/readdress.md"))
    args = parser.parse_args()
    name = f"r{os.getpid() % 100000}"[:8]
    rows = [Row("conntrack -F on both NATs"), Row("nat14 gets a new public address")]
    lab("up", "--name", name)
    try:
        logs = lab("logdir", "--name", name).stdout.strip()
        lab("exec", "--name", name, "--detach", "--log", f"{logs}/server.log", "server", "--",
            PYTHON, "-m", "punch", "server", "-q", "--listen", SERVER)  # fmt: skip
        for number in range(args.rounds * 2):
            row = rows[number % 2]
            if number % 2 == 0:
                fault = [["exec", "--name", name, r, "--", "conntrack", "-F"] for r in ("nat10", "nat14")]
            else:
                address = "192.0.2.15" if number % 4 == 1 else "192.0.2.14"
                fault = [["readdress", "--name", name, "nat14", "wan14", address]]
            seconds, once, rejoins, failure = one_round(name, number, fault)
            row.rounds += 1
            row.once += once
            row.rejoined += rejoins > 0
            if seconds is not None:
                row.seconds.append(seconds)
            if failure:
                row.failures.append(failure)
            print(f"{row.fault}: round {row.rounds}: {failure or f'{seconds:.2f} s'}", file=sys.stderr, flush=True)
    finally:
        lab("down", "--name", name, check=False)
    budget = KEEPALIVE + KEEPALIVE_POLICY.total()
    table = []
    for row in rows:
        median, p95 = median_p95(row.seconds, 2)
        share = f"{float(median) / budget:.2f}" if row.seconds else "-"
        table.append([row.fault, f"{row.once}/{row.rounds}", f"{row.rejoined}/{row.rounds}", median, p95, share])
    lines = [
        "# A NAT flushed vs readdressed mid-session",
        "",
        f"Measured {machine()} by `just bench-readdress`: the default lab, keepalives every {KEEPALIVE:g} s "
        f"(a peer declares the path broken after {budget:g} s without an answer); one text sent right after the "
        "fault, timed from the moment the fault is in place to its acknowledgement (peer10's log).",
        "",
        *markdown_table(
            ["fault", "text arrived once", "peers rejoined", "to the ack: median (s)", "p95 (s)", "median / budget"],
            table,
        ),
    ]
    failures = [f"- {row.fault}: {row.failures[0]}" for row in rows if row.failures]
    if failures:
        lines += ["", "First failure of each row:", "", *failures]
    print(write_report(args.output, lines))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
