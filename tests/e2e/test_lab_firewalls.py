"""``firewall: udp-blocked`` as a user meets it (a corporate or hotel network): from the LAN, curl reaches a web
server on TCP 80 and 443 and DNS on UDP 53 gets answers, while TCP and UDP to any other port get nothing."""

from __future__ import annotations

import sys

import pytest

from netns.testing import Lab
from tests.e2e import requires

pytestmark = [pytest.mark.e2e, *requires.marks(requires.missing(("curl",), "apt-get install curl"))]

SERVER = "203.0.113.1"
# Serves "hello PORT" over HTTP on each TCP port and echoes on each UDP port given; says "ready" when bound.
SERVE = """
import http.server, socket, sys, threading
class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello {self.server.server_address[1]}".encode()
        self.send_response(200); self.end_headers(); self.wfile.write(body)
    def log_message(self, *args):
        pass
def echo(s):
    while True:
        data, addr = s.recvfrom(2048)
        s.sendto(data, addr)
for spec in sys.argv[2:]:
    proto, port = spec.split("/")
    if proto == "tcp":
        server = http.server.HTTPServer((sys.argv[1], int(port)), Hello)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((sys.argv[1], int(port)))
        threading.Thread(target=echo, args=(s,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait(60)
"""
# Sends "ping" to each UDP port and prints "udp PORT: ANSWER" or "udp PORT: nothing".
ASK_UDP = """
import socket, sys
for port in sys.argv[2:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1)
    s.sendto(b"ping", (sys.argv[1], int(port)))
    try:
        print(f"udp {port}: {s.recvfrom(2048)[0].decode()}")
    except socket.timeout:
        print(f"udp {port}: nothing")
"""


def curl(lab: Lab, port: int) -> str:
    done = lab.exec("peer10", "curl", "-s", "--max-time", "1", f"http://{SERVER}:{port}/")
    return done.stdout if done.returncode == 0 else f"curl exit {done.returncode}"


@pytest.mark.parametrize("lab", ["udp-blocked"], indirect=True)
def test_only_web_and_dns_leave(lab: Lab) -> None:
    server = lab.spawn(
        "server", sys.executable, "-c", SERVE, SERVER, "tcp/80", "tcp/443", "tcp/8080", "udp/53", "udp/3478", text=True
    )
    assert server.stdout is not None
    assert server.stdout.readline().strip() == "ready"
    assert curl(lab, 80) == "hello 80"
    assert curl(lab, 443) == "hello 443"
    assert curl(lab, 8080) == "curl exit 28"  # timed out: dropped, not refused
    asked = lab.exec("peer10", sys.executable, "-c", ASK_UDP, SERVER, "53", "3478", check=True).stdout
    assert asked.splitlines() == ["udp 53: ping", "udp 3478: nothing"]


@pytest.mark.parametrize("lab", ["home"], indirect=True)
def test_the_home_firewall_lets_everything_leave(lab: Lab) -> None:
    """The same checks through the default firewall: what udp-blocked drops is its doing."""
    server = lab.spawn("server", sys.executable, "-c", SERVE, SERVER, "tcp/8080", "udp/3478", text=True)
    assert server.stdout is not None
    assert server.stdout.readline().strip() == "ready"
    assert curl(lab, 8080) == "hello 8080"
    asked = lab.exec("peer10", sys.executable, "-c", ASK_UDP, SERVER, "3478", check=True).stdout
    assert asked.splitlines() == ["udp 3478: ping"]
