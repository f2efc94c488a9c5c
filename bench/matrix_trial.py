"""punch as the software under test of the lab's connectivity matrix (``just lab-matrix``; see netns/matrix/runner.py).

``python -m bench.matrix_trial setup`` starts ``punch server`` (with its RFC 5780 alternate address, and over TCP
on port 80, which a ``udp-blocked`` firewall lets out) in the lab's ``server`` node and waits until it answers; where
the server node has an IPv6 address (the IPv6 topologies), a second one listens there for the peers that have no
IPv4 (a server on ``[::]`` cannot have an alternate address). ``python -m bench.matrix_trial run`` is one trial:
both peers named in NETNS_PEERS start at the same moment, each sends one text, and the trial prints one JSON line:
``{"ok": ..., "path": ..., "ms": ..., "detail": ...}``. It succeeds when both exit 0 on the same path and each
received the other's text; ``ms`` is the slower side's punch time (time to a proven path, or to the relay).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PYTHON = sys.executable
SERVER, ALTERNATE = "203.0.113.1:3478", "203.0.113.2:3479"
SERVER_TCP = "203.0.113.1:80"  # the server over TCP where UDP does not get out (udp-blocked lets out TCP to 80, 443)
SERVER6 = "[2001:db8:113::1]:3478"  # the IPv6 topologies' server (netns/topologies/dual-stack.yaml, ipv6-only.yaml)
READY = "answering RFC 5780 NAT behaviour discovery"
READY6 = "listening on [2001:db8:113::1]:3478"


def _netns(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "netns", *args], capture_output=True, text=True, check=False, timeout=60)


def setup(lab: str, timeout: float = 15.0) -> int:
    logdir = Path(_netns("logdir", "--name", lab).stdout.strip())
    servers: list[tuple[str, tuple[str, ...], str]] = [
        ("server.log", ("--listen", SERVER, "--alternate", ALTERNATE, "--tcp-listen", SERVER_TCP), READY)
    ]
    if _has_global(lab, "server", "-6"):
        servers.append(("server6.log", ("--listen", SERVER6, "--tcp-listen", "no"), READY6))
    for name, flags, ready in servers:
        log = logdir / name
        started = _netns(
            "exec", "--name", lab, "--detach", "--log", str(log), "server", "--",
            PYTHON, "-m", "punch", "server", *flags,
        )  # fmt: skip
        if started.returncode != 0:
            print(started.stderr.strip(), file=sys.stderr)
            return 1
        if not _ready(log, ready, timeout):
            print(f"punch server did not start within {timeout:g} s; see {log}", file=sys.stderr)
            return 1
    return 0


def _ready(log: Path, line: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # the server's log is a file: poll it, bounded
        if log.exists() and line in log.read_text(errors="replace"):
            return True
        time.sleep(0.05)
    return False


def _has_global(lab: str, node: str, family: str) -> bool:
    """Whether ``node`` has a global address of ``family`` ("-4" or "-6")."""
    shown = _netns("exec", "--name", lab, node, "--", "ip", family, "-o", "addr", "show", "scope", "global")
    return bool(shown.stdout.strip())


def _server_for(lab: str, node: str) -> list[str]:
    """How ``node``'s peer names the server: over IPv4 (and TCP on 80 should its UDP not get out), or, for a peer
    with no IPv4 address, the IPv6 one."""
    if not _has_global(lab, node, "-4"):
        return ["--server", SERVER6]
    return ["--server", SERVER.split(":")[0], "--server-tcp", SERVER_TCP]


def trial(lab: str, peers: list[str], number: str) -> dict[str, Any]:
    tag = secrets.token_hex(2)
    ids = [f"{peer}-{number}-{tag}" for peer in peers]
    # the keys of these one-time IDs go to the lab's own file (gone with the lab), not the user's known_peers
    known = Path(_netns("logdir", "--name", lab).stdout.strip()) / "known_peers"
    procs = []
    for node, me, other in ((peers[0], ids[0], ids[1]), (peers[1], ids[1], ids[0])):
        command = [
            PYTHON, "-m", "netns", "exec", "--name", lab, node, "--",
            PYTHON, "-m", "punch", "peer", *_server_for(lab, node), "--id", me, "--to", other,
            "--send", f"hello from {me}", "--json", "-q", "--known-peers", str(known),
            "--timeout", "30", "--punch-timeout", "5",
        ]  # fmt: skip
        procs.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results, reasons = [], []
    for proc, me in zip(procs, ids, strict=True):
        out, err = proc.communicate(timeout=90)
        lines = out.strip().splitlines()
        results.append(json.loads(lines[-1]) if lines else {})
        if proc.returncode != 0:
            reasons.append(f"{me}: " + (err.strip().splitlines()[-1] if err.strip() else f"exit {proc.returncode}"))
    paths = {r.get("path") for r in results}
    received = [r.get("received") for r in results]
    ok = (
        not reasons
        and len(paths) == 1
        and received[0] == [f"hello from {ids[1]}"]
        and received[1] == [f"hello from {ids[0]}"]
    )
    times = [float(r["punch_ms"]) for r in results if r.get("punch_ms") is not None]
    detail = "; ".join(reasons) or ("" if ok else f"paths {sorted(map(str, paths))}, received {received}")
    return {"ok": ok, "path": "/".join(sorted(map(str, paths))), "ms": max(times) if times else None, "detail": detail}


def main() -> int:
    lab = os.environ.get("NETNS_LAB")
    if len(sys.argv) != 2 or sys.argv[1] not in ("setup", "run") or not lab:
        print("usage: NETNS_LAB=LAB [NETNS_PEERS='A B'] python -m bench.matrix_trial setup|run", file=sys.stderr)
        return 2
    if sys.argv[1] == "setup":
        return setup(lab)
    peers = os.environ.get("NETNS_PEERS", "peer10 peer14").split()
    print(json.dumps(trial(lab, peers, os.environ.get("NETNS_TRIAL", "0"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
