"""What a node receives when the server sends it one datagram: a listener in the node (hand-made socket, IPv4 or
IPv6 by the address), then one datagram from the server node, from SOURCE:PORT to TARGET:PORT."""

from __future__ import annotations

import sys

from netns.testing import Lab

# Binds PORT (on every address of FAMILY), says "ready", prints the first datagram and its sender's address, or
# "nothing" after WAIT seconds.
LISTEN = """
import socket, sys
family = socket.AF_INET6 if sys.argv[3] == "6" else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
s.settimeout(float(sys.argv[2]))
try:
    data, addr = s.recvfrom(2048)
    print(f"{data.decode()} from {addr[0]}", flush=True)
except socket.timeout:
    print("nothing", flush=True)
"""
# From SOURCE:PORT, sends one datagram ("inbound") to TARGET:PORT.
SEND = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[2] else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[3])))
s.sendto(b"inbound", (sys.argv[2], int(sys.argv[3])))
"""


def receive(lab: Lab, node: str, source: str, target: str, port: int, wait: float) -> str:
    """What ``node`` receives on ``port`` when the server sends one datagram from ``source``:``port`` to
    ``target``:``port``: ``inbound from SOURCE``, or ``nothing``."""
    family = "6" if ":" in target else "4"
    listener = lab.spawn(node, sys.executable, "-c", LISTEN, str(port), str(wait), family, text=True)
    assert listener.stdout is not None
    assert listener.stdout.readline().strip() == "ready"
    lab.exec("server", sys.executable, "-c", SEND, source, target, str(port), check=True)
    out, _ = listener.communicate(timeout=wait + 10)
    return str(out).strip()
