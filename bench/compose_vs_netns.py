"""The same two-peer lab through `docker compose` and through netns, side by side: `just bench-compose` (root).

Both run a rendezvous server and two peers, each behind its own iptables MASQUERADE router with the
home-router firewall. The netns lab is netns/topologies/default.yaml (a core router between the networks);
compose.yaml puts the routers on one public network. Rounds alternate between the two, and each round measures:

- up: from nothing to the server answering a STUN Binding request with both routers in place (netns: `netns
  up` plus starting `punch server` in node server; compose: `compose up --detach --wait server nat10 nat14`,
  with the image already built, since building is a one-off);
- first message: from starting both peers (`netns exec` / `compose run`) to the first "message ... received"
  line either peer logs, that is process start, registration, punching and one encrypted text;
- memory: after up, the resident memory (RSS) of every process inside the lab's network namespaces (netns:
  the server; compose: each container's processes) plus, for compose, each container's containerd-shim;
  kernel objects (namespaces, veths, conntrack) are not counted, in either;
- down: removing everything (`netns down` / `compose down --volumes`).

Needs a Docker engine with the image's base (PUNCH_BASE, as for `just compose-up`).
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import secrets
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.report import machine, markdown_table, write_report

PYTHON = sys.executable
ROOT = Path(__file__).resolve().parents[1]
RECEIVED = re.compile(r"message \d+ received from")
STEPS = ("up", "first message", "down")


@dataclass
class Kind:
    """One way of running the lab, and what it measured over the rounds."""

    name: str
    seconds: dict[str, list[float]] = field(default_factory=lambda: {step: [] for step in STEPS})
    memory_mib: list[float] = field(default_factory=list)


def rss_mib(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0  # gone meanwhile
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) / 1024 if found else 0.0


def processes_in(namespaces: set[int]) -> list[int]:
    """PIDs of the processes whose network namespace (by inode) is one of ``namespaces``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "ns/net").stat().st_ino in namespaces:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def netns_memory(name: str) -> float:
    namespaces = {path.stat().st_ino for path in Path("/run/netns").glob(f"{name}-*")}
    return sum(rss_mib(pid) for pid in processes_in(namespaces))


def compose_memory(base: list[str], env: dict[str, str]) -> float:
    ids = run([*base, "ps", "--quiet"], env=env).split()
    inits = [int(run(["docker", "inspect", "--format", "{{.State.Pid}}", cid]).strip()) for cid in ids]
    shims = {int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) for pid in inits}
    namespaces = {Path(f"/proc/{pid}/ns/net").stat().st_ino for pid in inits}
    return sum(rss_mib(pid) for pid in processes_in(namespaces)) + sum(rss_mib(pid) for pid in shims)


def run(command: list[str], timeout: float = 300.0, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return done.stdout


def timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def first_message(commands: list[list[str]], env: dict[str, str] | None, timeout: float = 60.0) -> float:
    """Start the peers together; seconds until either logs a received message. Waits for both to exit."""
    lines: queue.Queue[str] = queue.Queue()
    started = time.monotonic()
    procs = [
        subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        for command in commands
    ]

    def pump(proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)
        lines.put("")  # this peer's end

    for proc in procs:
        threading.Thread(target=pump, args=(proc,), daemon=True).start()
    seconds: float | None = None
    ended = 0
    tail: list[str] = []
    try:
        while ended < len(procs):
            line = lines.get(timeout=max(0.1, timeout - (time.monotonic() - started)))
            ended += line == ""
            tail = [*tail[-20:], line]
            if seconds is None and RECEIVED.search(line):
                seconds = time.monotonic() - started
    except queue.Empty:
        pass
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(timeout=30)
    if seconds is None:
        raise RuntimeError("no peer received a message; last lines:\n" + "".join(tail))
    return seconds


def netns_round(kind: Kind, name: str) -> None:
    lab = [PYTHON, "-m", "netns"]

    def up() -> None:
        run([*lab, "up", "--name", name, "--firewall", "home"])
        run([*lab, "exec", "--name", name, "--detach", "server", "--", PYTHON, "-m", "punch", "server", "-q"])
        check = [*lab, "exec", "--name", name, "server", "--", PYTHON, str(ROOT / "docker/stun-check.py")]
        deadline = time.monotonic() + 30
        while subprocess.run([*check, "203.0.113.1:3478"], capture_output=True, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("punch server in the netns lab did not answer within 30 s")

    try:
        kind.seconds["up"].append(timed(up))
        kind.memory_mib.append(netns_memory(name))
        peers = [
            [*lab, "exec", "--name", name, f"peer{me}", "--", PYTHON, "-m", "punch", "peer", "--server",
             "203.0.113.1", "--id", me, "--to", other, "--send", f"hello from peer{me}"]
            for me, other in (("10", "14"), ("14", "10"))
        ]  # fmt: skip
        kind.seconds["first message"].append(first_message(peers, None))
    finally:
        kind.seconds["down"].append(timed(lambda: run([*lab, "down", "--name", name])))


def compose_round(kind: Kind, project: str, compose: list[str], env: dict[str, str]) -> None:
    base = [*compose, "--project-name", project]
    try:
        kind.seconds["up"].append(
            timed(lambda: run([*base, "up", "--detach", "--wait", "server", "nat10", "nat14"], env=env))
        )
        kind.memory_mib.append(compose_memory(base, env))
        peers = [[*base, "run", "--rm", "--no-TTY", f"peer{p}", "--send", f"hello from peer{p}"] for p in ("10", "14")]
        kind.seconds["first message"].append(first_message(peers, env))
    finally:
        down = [*base, "down", "--volumes", "--remove-orphans", "--timeout", "5"]
        kind.seconds["down"].append(timed(lambda: run(down, env=env)))


def compose_command() -> list[str]:
    local = Path(PYTHON).parent / "docker-compose"
    return [str(local)] if local.exists() else ["docker", "compose"]


def table(kinds: list[Kind], rounds: int, base: str) -> list[str]:
    def cell(values: list[float], unit: str = "s", digits: int = 2) -> str:
        return f"{statistics.median(values):.{digits}f} {unit}" if values else "-"

    netns, compose = kinds
    rows = [
        [
            step,
            cell(netns.seconds[step]),
            cell(compose.seconds[step]),
            ratio(compose.seconds[step], netns.seconds[step]),
        ]
        for step in STEPS
    ]
    memory = [cell(netns.memory_mib, "MiB", 0), cell(compose.memory_mib, "MiB", 0)]
    rows.append(["memory (RSS of the lab's processes)", *memory, ratio(compose.memory_mib, netns.memory_mib)])
    return [
        "# The two-peer lab: docker compose vs netns",
        "",
        f"Measured {machine()} by `just bench-compose`: {rounds} alternating rounds each, medians; image base "
        f"{base}, already built. Up: to the server answering with both routers ready. First message: from starting "
        "both peers to the first text received (registration, punch, one encrypted text). Memory: after up, the RSS "
        "of the processes in the lab's network namespaces (and, for compose, the containers' containerd-shims); "
        "kernel objects are not counted.",
        "",
        *markdown_table(["step", "netns lab", "docker compose", "compose / netns"], rows),
    ]


def ratio(numerator: list[float], denominator: list[float]) -> str:
    if not numerator or not denominator or statistics.median(denominator) <= 0:
        return "-"
    return f"{statistics.median(numerator) / statistics.median(denominator):.1f}x"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=Path("bench/compose_vs_netns.md"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.exit(2, "bench: needs root to build the lab; run it as root or with sudo\n")
    env = dict(os.environ)
    env.setdefault("PUNCH_BASE", "python:3.12-slim")
    env.setdefault("PUNCH_CA_FILE", "/etc/ssl/certs/ca-certificates.crt")
    compose = compose_command()
    tag = secrets.token_hex(2)
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        # `just bench` runs everything it can: without an engine this report is left as it was (or missing).
        print(f"bench-compose: skipped, no Docker engine answers; {args.output} not written", file=sys.stderr)
        return 0
    print("building the image (not timed)", file=sys.stderr, flush=True)
    run([*compose, "--project-name", f"cv{tag}", "build", "server"], timeout=900, env=env)
    kinds = [Kind("netns"), Kind("compose")]
    for number in range(args.rounds):
        netns_round(kinds[0], f"c{tag}{number}")
        compose_round(kinds[1], f"cv{tag}{number}", compose, env)
        last = "; ".join(
            f"{kind.name} " + ", ".join(f"{step} {kind.seconds[step][-1]:.2f} s" for step in STEPS) for kind in kinds
        )
        print(f"round {number + 1}/{args.rounds}: {last}", file=sys.stderr, flush=True)
    print(write_report(args.output, table(kinds, args.rounds, env["PUNCH_BASE"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
