"""Running punch in a lab: the server in node `server`, peers in `peer10`/`peer14`, their logs and results.

Shared by the e2e test modules (a helper module, not a test module, so nothing is imported twice).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from netns.testing import Lab
from punch.stun import Method
from punch.stun.fastpath import load
from punch.stun.message import encode
from punch.stun.wire import request
from tests.lines import wait_for_line as wait_for_line  # the e2e tests take it from here

PY = sys.executable
SERVER = "203.0.113.1"
ALTERNATE = "203.0.113.2"
WAN = {"10": "198.51.100.10", "14": "192.0.2.14"}
LAN = {"10": "10.0.10.2", "14": "10.0.14.2"}

# An nft table for a NAT router: it drops every Introduce the server sends through it (a lost introduction; the
# server sends it again until the table is deleted: `nft delete table inet lose_introductions`).
INTRODUCE_TYPE = int.from_bytes(encode(request(Method.INTRODUCE))[:2])  # the first two bytes of a STUN message
LOSE_INTRODUCTIONS = f"""
table inet lose_introductions {{
    chain forward {{ type filter hook forward priority -10; udp sport 3478 @th,64,16 {INTRODUCE_TYPE} drop; }}
}}
"""

# `up` arguments for a server 2 ms from the core each way: far enough that early checks beat Ready/Go
# (punch.peer.puncher.early_pays), which the peers take in a lab without delay
FAR_SERVER = ("--impair", "net-server:delay=2ms")
# The default lab with nat10 a symmetric NAT and nat14 a port-restricted cone: port prediction's lab
SYMMETRIC_VS_CONE = Path(__file__).parent.parent / "data" / "topologies" / "symmetric-vs-cone.yaml"
NEW14 = "192.0.2.15"  # nat14's WAN address after `netns readdress` (the tests of a NAT's new address)


def start_server(lab: Lab, *extra: str) -> subprocess.Popen[Any]:
    server = lab.spawn(
        "server",
        PY,
        "-m",
        "punch",
        "server",
        "--listen",
        f"{SERVER}:3478",
        "--alternate",
        f"{ALTERNATE}:3479",
        *extra,
        text=True,
    )
    wait_for_line(server, r"answering RFC 5780 NAT behaviour discovery")
    # built here: the lab's server uses it (not while it logs or traces every datagram)
    if load() is not None and not {"-v", "--verbose", "--trace"} & set(extra):
        wait_for_line(server, r"Binding requests answered by the C fast path")
    return server


def start_peer(lab: Lab, me: str, other: str, *extra: str, node: str = "") -> subprocess.Popen[Any]:
    """``punch peer --json`` under ID ``me`` in ``node`` (default: peer ME's namespace)."""
    command = [PY, "-m", "punch", "peer", "--server", SERVER, "--id", me, "--to", other, "--json", *extra]
    return lab.spawn(node or f"peer{me}", *command, text=True, stdin=subprocess.DEVNULL)


def start_in_order(
    lab: Lab,
    server: subprocess.Popen[Any],
    first: str,
    *extra: str,
    own: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Start ``first`` (10 or 14), wait until the server has its wish, then the other; both with ``extra``, and
    each with its ``own`` arguments; each one's (exit code, result, log)."""
    second = "14" if first == "10" else "10"
    mine = own or {}
    procs = {first: start_peer(lab, first, second, "--send", f"hello from {first}", *extra, *mine.get(first, ()))}
    wait_for_line(server, rf"{first} asks for {second}: waiting for {second} to register")
    procs[second] = start_peer(lab, second, first, "--send", f"hello from {second}", *extra, *mine.get(second, ()))
    return {me: finish(proc) for me, proc in procs.items()}


def chat_peer(lab: Lab, me: str, other: str, *extra: str) -> subprocess.Popen[str]:
    """A chatting peer: lines written to its stdin go to the other peer, until its stdin is closed."""
    command = [PY, "-m", "punch", "peer", "--server", SERVER, "--id", me, "--to", other, "--json", *extra]
    return lab.spawn(f"peer{me}", *command, text=True, stdin=subprocess.PIPE)


def say(peer: subprocess.Popen[str], text: str) -> None:
    """One line to a chatting peer: it sends it to the other."""
    assert peer.stdin is not None
    peer.stdin.write(text + "\n")
    peer.stdin.flush()


def readdress_mid_chat(lab: Lab, peer10: subprocess.Popen[str], peer14: subprocess.Popen[str]) -> None:
    """peer10 says "before the change" and peer14 gets it; nat14's WAN address becomes NEW14 (`netns readdress`:
    MASQUERADE follows, conntrack is flushed); peer10 says "around the change", in flight while the path is gone."""
    say(peer10, "before the change")
    wait_for_line(peer14, r"message 0 received from 10")
    done = lab.cli("readdress", "--name", lab.name, "nat14", "wan14", NEW14)
    assert done.returncode == 0, done.stderr
    say(peer10, "around the change")


def end_chat(*peers_and_texts: tuple[subprocess.Popen[str], str]) -> None:
    """Write each peer's last text (may be empty) and close its stdin: end of input, the peer says it is done."""
    for peer, text in peers_and_texts:
        assert peer.stdin is not None
        peer.stdin.write(text)
        peer.stdin.close()
        peer.stdin = None  # so that communicate() in finish() does not flush it


def finish(proc: subprocess.Popen[Any]) -> tuple[int, dict[str, Any], str]:
    out, err = proc.communicate(timeout=60)
    lines = out.strip().splitlines()
    return proc.returncode, json.loads(lines[-1]) if lines else {}, err


def conntrack_udp(lab: Lab, node: str) -> str:
    return lab.exec(node, "conntrack", "-L", "-p", "udp", check=True).stdout


def port(endpoint: str) -> str:
    return endpoint.rsplit(":", 1)[1]
