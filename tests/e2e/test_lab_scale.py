"""A generated lab (``up --peers N``) end to end: every peer reaches the server through its own NAT (root)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from netns.testing import LabFactory
from tests.e2e.punch_in_lab import finish, wait_for_line

pytestmark = pytest.mark.e2e

PY = sys.executable

# Replies to each datagram with the source address it saw, until it has answered ``count`` of them.
ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 7000))
print("ready", flush=True)
for _ in range(int(sys.argv[2])):
    data, addr = s.recvfrom(2048)
    s.sendto(addr[0].encode(), addr)
"""

ASK = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(b"hello", (sys.argv[1], 7000))
print(s.recv(2048).decode())
"""


def test_every_peer_reaches_the_server_from_its_own_public_address(lab_factory: LabFactory) -> None:
    lab = lab_factory(args=["--peers", "3"])
    status = lab.cli("status", "--name", lab.name)
    assert status.returncode == 0, status.stderr
    echo = lab.spawn("server", PY, "-c", ECHO, "10.0.0.1", "3", text=True)
    assert echo.stdout is not None
    assert echo.stdout.readline().strip() == "ready"
    seen = [lab.exec(f"peer{i}", PY, "-c", ASK, "10.0.0.1", check=True).stdout.strip() for i in (1, 2, 3)]
    assert seen == ["10.0.1.1", "10.0.1.2", "10.0.1.3"]
    assert lab.exec("nat2", "iptables", "-t", "nat", "-S", "POSTROUTING", check=True).stdout.splitlines()[-1] == (
        "-A POSTROUTING -o inet -j MASQUERADE"
    )


def test_more_routers_than_a_bridge_has_ports_hang_from_branches_and_still_punch(lab_factory: LabFactory) -> None:
    # A Linux bridge numbers its ports 1-1023: the 1,024th router would not attach ("Exchange full") without
    # branch bridges (netns.lab.plan._bridged). nat1 and nat1030 end up on different branches of the internet.
    lab = lab_factory(args=["--peers", "1030"])
    masters = {}
    for port in ("nat1.0", "nat1030.0", "0.up1", "0.up2"):
        link = lab.exec("server", "ip", "-o", "link", "show", "dev", port, check=True).stdout
        masters[port] = link.split(" master ")[1].split()[0]
    assert masters == {"nat1.0": "0.br1", "nat1030.0": "0.br2", "0.up1": "inet", "0.up2": "inet"}
    server = lab.spawn(
        "server", PY, "-m", "punch", "server", "--listen", "10.0.0.1:3478", "--alternate", "10.0.0.2:3479", text=True
    )
    try:
        wait_for_line(server, r"answering RFC 5780 NAT behaviour discovery")
        peers = [
            lab.spawn(
                f"peer{me}",
                *(PY, "-m", "punch", "peer", "--server", "10.0.0.1", "--id", me, "--to", other),
                *("--send", f"hello from {me}", "--no-relay", "--json"),
                text=True,
                stdin=subprocess.DEVNULL,
            )
            for me, other in (("1", "1030"), ("1030", "1"))
        ]
        results = [finish(peer) for peer in peers]
    finally:
        server.terminate()
        server.communicate(timeout=10)
    for (code, result, err), other in zip(results, ("1030", "1"), strict=True):
        assert code == 0, err
        assert result["path"] == "direct", err
        assert result["received"] == [f"hello from {other}"]
