"""A generated lab (``up --peers N``) end to end: every peer reaches the server through its own NAT (root)."""

from __future__ import annotations

import sys

import pytest

from netns.testing import LabFactory

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
    echo = lab.spawn("server", PY, "-c", ECHO, "198.18.0.1", "3", text=True)
    assert echo.stdout is not None
    assert echo.stdout.readline().strip() == "ready"
    seen = [lab.exec(f"peer{i}", PY, "-c", ASK, "198.18.0.1", check=True).stdout.strip() for i in (1, 2, 3)]
    assert seen == ["198.18.1.1", "198.18.1.2", "198.18.1.3"]
    assert lab.exec("nat2", "iptables", "-t", "nat", "-S", "POSTROUTING", check=True).stdout.splitlines()[-1] == (
        "-A POSTROUTING -o inet -j MASQUERADE"
    )
