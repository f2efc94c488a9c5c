"""A peer behind a firewall that lets no UDP out (``firewall: udp-blocked``: only TCP to ports 80 and 443 and UDP to
port 53 leave lan10) reaches the server over TCP or TLS and talks, and tunnels, through the relay over that connection
(punch.peer.reach, punch.rendezvous.streams); a TLS server whose certificate it does not trust is refused; two peers
behind one such firewall start on the relay and move to their LAN once a retry finds it.

The server listens over UDP on 3478 as always, over TCP on 80 and over TLS on 443 (a certificate of a test CA,
tests/certificates.py, which a peer verifies with that CA or pins by its SHA-256). peer14, behind a home router,
reaches it over UDP.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from netns.testing import Lab
from tests.certificates import Authority, Issued
from tests.e2e.punch_in_lab import SERVER, WAN, chat_peer, end_chat, finish, start_peer, start_server, wait_for_line

pytestmark = pytest.mark.e2e

TOPOLOGIES = Path(__file__).parent.parent / "data" / "topologies"
LAB = {"firewall": None, "topology": TOPOLOGIES / "udp-blocked.yaml"}
ONE_LAN = {"firewall": "udp-blocked", "topology": TOPOLOGIES / "same-lan.yaml"}  # peer10 and peer14 on lan10
TCP_AT = f"{SERVER}:80"
TLS_AT = f"{SERVER}:443"

# An echo server on 127.0.0.1:PORT in its node (the service peer14 lets peer10 reach); says "ready" when bound.
ECHO = """
import socketserver, sys
class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while data := self.request.recv(65536):
            self.request.sendall(data)
server = socketserver.ThreadingTCPServer(("127.0.0.1", int(sys.argv[1])), Echo)
print("ready", flush=True)
server.serve_forever()
"""
# Sends stdin's bytes to 127.0.0.1:PORT, half-closes, and prints the SHA-256 of what comes back.
THROUGH = """
import hashlib, socket, sys
payload = sys.stdin.buffer.read()
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20) as conn:
    conn.sendall(payload)
    conn.shutdown(socket.SHUT_WR)
    got = b""
    while chunk := conn.recv(65536):
        got += chunk
print(hashlib.sha256(got).hexdigest())
"""


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return Authority(tmp_path)


@pytest.fixture
def certificate(authority: Authority) -> Issued:
    return authority.issue("server", SERVER)


def start_streams_server(lab: Lab, certificate: Issued) -> subprocess.Popen[Any]:
    """The server over UDP on 3478, TCP on 80 and TLS on 443."""
    tls = ("--tls-cert", str(certificate.cert), "--tls-key", str(certificate.key))
    server = start_server(lab, "--tcp-listen", TCP_AT, "--tls-listen", TLS_AT, *tls)
    wait_for_line(server, rf"listening on {SERVER}:443 over TLS too")
    return server


def tls_flags(authority: Authority) -> tuple[str, ...]:
    return ("--server-tls", TLS_AT, "--server-ca", str(authority.pem))


def talk(lab: Lab, server: subprocess.Popen[Any], *flags10: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """peer10 (behind udp-blocked, with ``flags10``) and peer14 send each other a text; their results. peer10
    registered from its NAT's address (over TCP or TLS), saying its UDP does not get out."""
    peer10 = start_peer(lab, "10", "14", "--send", "hello from 10", *flags10)
    registered = wait_for_line(server, r"registered 10 at ")
    assert f"registered 10 at {WAN['10']}:" in registered
    assert "NAT mapping udp-blocked" in registered
    wait_for_line(server, r"10 asks for 14: waiting for 14 to register")
    peer14 = start_peer(lab, "14", "10", "--send", "hello from 14")
    (code10, result10, log10), (code14, result14, log14) = finish(peer10), finish(peer14)
    assert (code10, code14) == (0, 0), log10 + log14
    assert (result10["received"], result14["received"]) == (["hello from 14"], ["hello from 10"])
    return result10, result14


@pytest.mark.parametrize("lab", [LAB], indirect=True, ids=["udp-blocked"])
def test_a_peer_behind_udp_blocked_talks_through_the_relay_over_tcp(lab: Lab, certificate: Issued) -> None:
    server = start_streams_server(lab, certificate)
    result10, result14 = talk(lab, server, "--server-tcp", TCP_AT)
    assert (result10["server_via"], result14["server_via"]) == ("tcp", "udp")
    assert (result10["path"], result14["path"]) == ("relay", "relay")
    wait_for_line(server, r"relaying session ")


@pytest.mark.parametrize("lab", [LAB], indirect=True, ids=["udp-blocked"])
def test_a_peer_behind_udp_blocked_talks_through_the_relay_over_tls(
    lab: Lab, authority: Authority, certificate: Issued
) -> None:
    server = start_streams_server(lab, certificate)
    result10, result14 = talk(lab, server, "--server-tcp", "no", *tls_flags(authority))
    assert (result10["server_via"], result14["server_via"]) == ("tls", "udp")
    assert (result10["path"], result14["path"]) == ("relay", "relay")
    # Nothing but TCP to the web's ports left lan10: nat10 tracked no UDP flow of peer10 (UDP 53 unused here) but to
    # nat10 itself, which the peer asks for a port mapping (PCP and NAT-PMP on 5351, UPnP's SSDP on 1900)
    udp = lab.exec("nat10", "conntrack", "-L", "-p", "udp", check=True).stdout
    flows = re.findall(r"^\S+\s+\d+\s+\d+\s+src=(\S+) dst=(\S+)", udp, re.MULTILINE)  # each one's original direction
    assert len(flows) == len(udp.splitlines())
    assert [dst for src, dst in flows if src == "10.0.10.2" and dst != "10.0.10.1"] == []


@pytest.mark.parametrize("lab", [LAB], indirect=True, ids=["udp-blocked"])
@pytest.mark.parametrize("via", ["tcp", "tls"], ids=["tcp", "tls-pinned"])
def test_a_peer_behind_udp_blocked_tunnels_through_the_relay(lab: Lab, certificate: Issued, via: str) -> None:
    """Over TCP, or over TLS with the server's certificate pinned (no CA given)."""
    server = start_streams_server(lab, certificate)
    reach = (
        ("--server-tcp", TCP_AT) if via == "tcp" else ("--server-tls", TLS_AT, "--server-pin", certificate.sha256.hex())
    )
    echo = lab.spawn("peer14", sys.executable, "-c", ECHO, "7000", text=True)
    assert echo.stdout is not None
    assert echo.stdout.readline().strip() == "ready"
    forwarding = start_peer(lab, "10", "14", "--forward", "9000:127.0.0.1:7000", "--server-via", via, *reach)
    allowing = start_peer(lab, "14", "10", "--allow", "127.0.0.1:7000")
    wait_for_line(forwarding, r"forwarding 127\.0\.0\.1:9000 to")
    payload = os.urandom(256 * 1024)
    for _ in range(2):  # each connection its own QUIC stream, through the relay
        done = subprocess.run(
            ["ip", "netns", "exec", lab.namespace("peer10"), sys.executable, "-c", THROUGH, "9000"],
            input=payload,
            capture_output=True,
            timeout=60,
            check=True,
        )
        assert done.stdout.decode().strip() == hashlib.sha256(payload).hexdigest()
    for proc in (forwarding, allowing):
        assert proc.poll() is None  # tunnels keep running until told
        proc.send_signal(signal.SIGTERM)
    (code10, result10, log10), (code14, result14, log14) = finish(forwarding), finish(allowing)
    assert (code10, code14) == (0, 0), log10 + log14
    assert (result10["server_via"], result10["path"], result14["path"]) == (via, "relay", "relay")
    assert "SIGTERM: closing" in log10
    wait_for_line(server, r"relaying session ")


@pytest.mark.parametrize("lab", [LAB], indirect=True, ids=["udp-blocked"])
def test_a_tls_server_with_a_certificate_we_do_not_trust_is_refused(
    lab: Lab, tmp_path: Path, certificate: Issued
) -> None:
    start_streams_server(lab, certificate)
    stranger = Authority(tmp_path, "another CA")  # did not sign the server's certificate
    peer10 = start_peer(
        lab, "10", "14", "--server-via", "tls", "--server-tls", TLS_AT, "--server-ca", str(stranger.pem)
    )
    code, result, log = finish(peer10)
    assert code == 1
    assert log.strip().splitlines()[-1] == (
        f"punch: the server at {TLS_AT} presented a certificate we do not trust (unable to get local issuer "
        "certificate): refused; give --server-ca with the CA that signed it, or --server-pin with its SHA-256"
    )
    assert result["error"] is not None
    assert result["error"].startswith(f"the server at {TLS_AT} presented a certificate we do not trust")


@pytest.mark.parametrize("lab", [ONE_LAN], indirect=True, ids=["one-lan-udp-blocked"])
def test_peers_behind_one_udp_blocked_firewall_move_from_the_tls_relay_to_their_lan(
    lab: Lab, authority: Authority, certificate: Issued
) -> None:
    start_streams_server(lab, certificate)
    flags = ("--server-tcp", "no", *tls_flags(authority), "--upgrade-interval", "1")
    peer10, peer14 = chat_peer(lab, "10", "14", *flags), chat_peer(lab, "14", "10", *flags)
    for peer in (peer10, peer14):
        wait_for_line(peer, r"reaching the server at .* over TLS")
        wait_for_line(peer, r"using the relay path to")
        wait_for_line(peer, r"upgraded from the relay to the direct-lan path via 10\.0\.10\.", timeout=30)
    end_chat((peer10, "over our LAN\n"), (peer14, ""))
    (code10, result10, log10), (code14, result14, log14) = finish(peer10), finish(peer14)
    assert (code10, code14) == (0, 0), log10 + log14
    assert result14["received"] == ["over our LAN"]
    for result in (result10, result14):
        assert (result["server_via"], result["path"], result["upgraded"]) == ("tls", "direct-lan", True)


@pytest.mark.parametrize("lab", [LAB], indirect=True, ids=["udp-blocked"])
def test_a_peer_on_the_tcp_relay_moves_to_a_direct_path_once_its_udp_gets_out(lab: Lab, certificate: Issued) -> None:
    """peer10 reaches the server over TCP from its UDP socket's port, so nat10 (keeping ports) maps the connection to
    the public port it gives peer10's UDP: the address the server saw is right for UDP too. A retry from the relay
    fails while the firewall stands; once nat10 lets UDP out, the next one goes direct."""
    start_streams_server(lab, certificate)
    retry = ("--punch-timeout", "2", "--upgrade-interval", "1", "--nat-udp-timeout", "0")
    peer10 = chat_peer(lab, "10", "14", "--server-via", "tcp", "--server-tcp", TCP_AT, *retry)
    peer14 = chat_peer(lab, "14", "10", *retry)
    for peer in (peer10, peer14):
        wait_for_line(peer, r"using the relay path to")
        wait_for_line(peer, r"staying on the relay")  # a retry failed while the firewall stood
    lab.exec(
        "nat10", "iptables", "-I", "FORWARD", "-i", "lan10", "-o", "wan10", "-p", "udp", "-j", "ACCEPT", check=True
    )
    for peer in (peer10, peer14):
        wait_for_line(peer, r"upgraded from the relay to the direct path via", timeout=30)
    end_chat((peer10, "over the direct path\n"), (peer14, ""))
    (code10, result10, log10), (code14, result14, log14) = finish(peer10), finish(peer14)
    assert (code10, code14) == (0, 0), log10 + log14
    assert result14["received"] == ["over the direct path"]
    assert (result10["server_via"], result10["path"], result10["upgraded"]) == ("tcp", "direct", True)
    assert (result14["server_via"], result14["path"], result14["upgraded"]) == ("udp", "direct", True)
    assert result14["remote"] == result10["mapped"]  # the connection's public address, as the server saw it
