"""A connectivity-matrix trial whose software is not punch (docs/ci.md): does a UDP datagram from the cell's first peer
reach the second at the second's own address, and its echo come back? Only where the second peer's router neither
translates nor filters (``--nat ROUTER=none --firewall none``): anywhere else, nothing outside its LAN can reach it.

``python -m netns matrix --trial "python tests/e2e/udp_trial.py"`` runs it from the root namespace with NETNS_LAB and
NETNS_PEERS set (netns/matrix/runner.py). It starts an echo server in the second peer's node, waits for its "ready"
line, sends from the first peer's node, and prints one JSON line: ``{"ok": ..., "path": "direct", "ms": ...,
"detail": ...}``. It needs nothing but the lab's own CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

NETNS = [sys.executable, "-m", "netns"]
PORT = 7000
ECHO = f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", {PORT}))
print("ready", flush=True)
s.settimeout(10)
data, sender = s.recvfrom(100)
s.sendto(data, sender)
"""
SEND = f"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
start = time.monotonic()
s.sendto(b"hello", (sys.argv[1], {PORT}))
s.recv(100)
print((time.monotonic() - start) * 1000)
"""


def address(lab: str, node: str) -> str:
    """The node's first IPv4 address, from ``python -m netns status --json``."""
    done = subprocess.run([*NETNS, "status", "--name", lab, "--json"], capture_output=True, text=True, check=True)
    (info,) = [n for n in json.loads(done.stdout)["nodes"] if n["node"] == node]
    found = [a for i in info["interfaces"] for a in i["addresses"] if "." in a and not a.startswith("127.")]
    return str(found[0].split("/")[0])


def trial(lab: str, sender: str, receiver: str) -> dict[str, object]:
    target = address(lab, receiver)
    in_node = [*NETNS, "exec", "--name", lab]
    echo = subprocess.Popen([*in_node, receiver, "--", sys.executable, "-c", ECHO], stdout=subprocess.PIPE, text=True)
    try:
        assert echo.stdout is not None
        if echo.stdout.readline() != "ready\n":
            return {"ok": False, "detail": f"the echo server in {receiver} did not start"}
        sent = subprocess.run(
            [*in_node, sender, "--", sys.executable, "-c", SEND, target], capture_output=True, text=True, timeout=30
        )
    finally:
        echo.kill()  # `netns exec` became the echo server: this is its process
        echo.wait()
    if sent.returncode != 0:
        return {"ok": False, "detail": f"{receiver} ({target}) did not echo {sender}'s datagram"}
    return {"ok": True, "path": "direct", "ms": float(sent.stdout), "detail": ""}


def main() -> int:
    sender, receiver = os.environ["NETNS_PEERS"].split()
    print(json.dumps(trial(os.environ["NETNS_LAB"], sender, receiver)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
