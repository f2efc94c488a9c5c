"""Tunnels through the lab's real kernel NAT (issue 26, section 4): `punch peer --forward` on peer10, `--allow` on
peer14, and real traffic between programs at both ends (tests/e2e/tunnel_ends.py): HTTP downloads checked by their
SHA-256 on each kind of path (and through NATs built by nftables), across a relay -> direct upgrade and a NAT's new
address, a UDP echo, 50 connections at once, and a forward that is not allowed; the peers' texts cross beside them.
Each test runs behind both router kinds (the home router's firewall and a bare MASQUERADE) where it can.

The core router counts the bytes of the path a download moves onto (:class:`UdpCount`): most of the file crossed
the new path, not only the end that was still buffered when the path changed."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from netns.testing import Lab, LabFactory
from tests.e2e.punch_in_lab import (
    NEW14,
    PY,
    SERVER,
    SYMMETRIC_VS_CONE,
    WAN,
    chat_peer,
    end_chat,
    finish,
    say,
    start_server,
    wait_for_line,
)
from tests.e2e.tunnel_ends import ping_datagram
from tests.lines import unread

pytestmark = pytest.mark.e2e

WEB, ECHO = 8000, 7007  # the file server's and the UDP echo's ports on peer14's loopback
LOCAL_WEB, LOCAL_ECHO, LOCAL_CLOSED = 18000, 17007, 18022  # peer10's forwarded ports on its own loopback
BIG = 20 << 20  # bytes of the big download
KINDS = ["home", "none"]
KIND_IDS = ["home-router", "bare-masquerade"]


def ends(lab: Lab, node: str, *args: str, timeout: float = 120) -> Any:
    """Run a client of tests/e2e/tunnel_ends.py in ``node``; the JSON it prints."""
    done = lab.exec(node, PY, "-m", "tests.e2e.tunnel_ends", *args, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def serve(lab: Lab, *args: str, ready: str) -> subprocess.Popen[str]:
    """A server of tests/e2e/tunnel_ends.py in peer14, once it listens (its line ``ready``)."""
    proc: subprocess.Popen[str] = lab.spawn("peer14", PY, "-m", "tests.e2e.tunnel_ends", *args, text=True)
    wait_for_line(proc, ready)
    return proc


def serve_files(lab: Lab, directory: Path, *extra: str) -> subprocess.Popen[str]:
    return serve(lab, "serve-files", str(directory), str(WEB), *extra, ready="serving files from")


def big_file(directory: Path) -> str:
    """A file of BIG random bytes in ``directory``, named big.bin; its SHA-256."""
    data = os.urandom(BIG)
    (directory / "big.bin").write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def tunnel(
    lab: Lab, *extra: str, forward: tuple[str, ...] = (), allow: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[str], subprocess.Popen[str], str]:
    """peer10 forwarding LOCAL_WEB to peer14's file server (and ``forward``), peer14 allowing it (and ``allow``),
    both with ``extra`` and chatting (a line to a peer's stdin is a text to the other), once their QUIC connection is
    up; and the kind of path both took first (from their logs). peer10's forwards listen from its start, before the
    punch: each one's line (``forwarding [UDP ]127.0.0.1:LOCAL_PORT to TARGET``) is checked here."""
    specs = (f"{LOCAL_WEB}:127.0.0.1:{WEB}", *forward)
    forwards = [arg for spec in specs for arg in ("--forward", spec)]
    allows = [arg for spec in (f"127.0.0.1:{WEB}", *allow) for arg in ("--allow", spec)]
    peer10 = chat_peer(lab, "10", "14", *forwards, *extra)
    peer14 = chat_peer(lab, "14", "10", *allows, *extra)
    for spec in specs:
        udp, (local, host, port) = spec.startswith("udp:"), spec.removeprefix("udp:").split(":")
        listens = f"forwarding {'UDP ' if udp else ''}127.0.0.1:{local} to {'udp' if udp else 'tcp'}:{host}:{port} "
        wait_for_line(peer10, re.escape(listens + "on the other peer's side"))
    kinds = [wait_for_line(peer, r"using the \S+ path to", timeout=30).split("using the ")[1].split()[0]
             for peer in (peer10, peer14)]  # fmt: skip
    assert kinds[0] == kinds[1], kinds
    for peer in (peer10, peer14):
        wait_for_line(peer, r"QUIC is up with 1[04]")
    return peer10, peer14, kinds[0]


def text_crosses(sender: subprocess.Popen[str], number: int, text: str) -> None:
    """``sender`` says ``text``, its text ``number``, and the other peer acknowledges it (each text is acknowledged
    before the next is sent: the ones before it arrived too). Only the sender's log is read: what the receiver got is
    in its --json result."""
    say(sender, text)
    wait_for_line(sender, rf"message {number} acknowledged by 1[04]$", timeout=30)


def stop(*peers: subprocess.Popen[str]) -> list[tuple[dict[str, Any], str]]:
    """SIGTERM to each peer: each closes cleanly and exits 0; (its --json result, the rest of its log) each."""
    for peer in peers:
        assert peer.poll() is None, "a peer that forwards runs until it is told to stop"
        peer.send_signal(signal.SIGTERM)
    done = []
    for peer in peers:
        code, result, log = finish(peer)
        log = unread(peer) + log
        assert code == 0, log
        assert result["error"] is None, log
        assert "SIGTERM: closing" in log
        done.append((result, log))
    return done


class UdpCount:
    """The core router's count of the UDP bytes from ``source`` to ``destination``: a rule that only counts, at the
    end of its FORWARD chain (after the DROP rules a test inserts at its start; the core has no rules of its own)."""

    def __init__(self, lab: Lab, source: str, destination: str) -> None:
        self._lab = lab
        self._rule = f"-A FORWARD -s {source}/32 -d {destination}/32 -p udp"
        lab.exec("core", "iptables", *self._rule.split(), check=True)

    def bytes(self) -> int:
        saved = self._lab.exec("core", "iptables-save", "-c", "-t", "filter", check=True).stdout
        counted = re.search(rf"^\[\d+:(\d+)\] {re.escape(self._rule)}$", saved, re.MULTILINE)
        assert counted is not None, saved
        return int(counted[1])


def download(lab: Lab, name: str = "big.bin") -> dict[str, Any]:
    """peer10 downloads ``name`` from peer14's file server through the tunnel."""
    return ends(lab, "peer10", "fetch", f"http://127.0.0.1:{LOCAL_WEB}/{name}")  # type: ignore[no-any-return]


def slow_download(lab: Lab) -> subprocess.Popen[str]:
    """peer10 starts downloading the big file, and reads it slowly after its first MiB until :func:`rest_of` (a
    download still under way while the test changes the path under it)."""
    url = f"http://127.0.0.1:{LOCAL_WEB}/big.bin"
    slowly = ("--pause-after", str(1 << 20), "--slow-rate", str(128 << 10))
    command = (PY, "-m", "tests.e2e.tunnel_ends", "fetch", url, *slowly)
    fetcher: subprocess.Popen[str] = lab.spawn("peer10", *command, text=True, stdin=subprocess.PIPE)
    wait_for_line(fetcher, r"reading slowly after 1048576 bytes")
    return fetcher


def rest_of(fetcher: subprocess.Popen[str]) -> dict[str, Any]:
    """Tell a :func:`slow_download` to read the rest at full speed; what it got (with ``at_go``, the bytes it had
    read when told)."""
    out, err = fetcher.communicate("go\n", timeout=60)
    assert fetcher.returncode == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


# How a path of each kind is made: the lab's arguments, the server's, the peers', and the path they take. On the relay
# (two symmetric NATs) without the relay's rate limit: what these prove is that the bytes arrive whole (the limit has
# tests of its own). The restricted cones are built by nftables (netns/rules/nat.py), the other NATs by MASQUERADE.
PATHS: dict[str, tuple[dict[str, Any], tuple[str, ...], tuple[str, ...], str]] = {
    "direct": ({}, (), (), "direct"),
    "direct-nftables-nat": ({"nat": "restricted-cone"}, (), (), "direct"),
    "predicted": ({"topology": SYMMETRIC_VS_CONE}, (), ("--no-relay",), "predicted"),  # nat10 symmetric, 14 a cone
    "relay": ({"nat": "symmetric"}, ("--relay-rate", "0"), (), "relay"),
}


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("how", PATHS)
def test_an_http_download_through_a_forward_arrives_whole(
    lab_factory: LabFactory, kind: str, how: str, tmp_path: Path
) -> None:
    lab_args, server_args, peer_args, path = PATHS[how]
    lab = lab_factory(firewall=kind, **lab_args)
    start_server(lab, *server_args)
    expected = big_file(tmp_path)
    serve_files(lab, tmp_path)
    peer10, peer14, first = tunnel(lab, *peer_args)
    assert first == path
    say(peer10, "beside the download")  # sent while the download starts
    got = download(lab)
    assert (got["status"], got["bytes"], got["sha256"]) == (200, BIG, expected)
    wait_for_line(peer14, rf"the other peer's forward to tcp:127\.0\.0\.1:{WEB}: connected")
    wait_for_line(peer10, r"message 0 acknowledged by 14$")
    text_crosses(peer14, 0, "got it")
    (result10, _), (result14, _) = stop(peer10, peer14)
    assert result10["path"] == result14["path"] == path  # all the way
    assert (result10["received"], result14["received"]) == (["got it"], ["beside the download"])
    if path == "relay":
        assert result10["remote"] == result14["remote"] == f"{SERVER}:3478"


def assert_arrives_whole_mostly_over(fetcher: subprocess.Popen[str], expected: str, new_path: UdpCount) -> None:
    """The rest of a :func:`slow_download` arrives, the file is whole, it was still under way when the path changed,
    and most of it crossed the new path (what the core counted there, QUIC's packets of 14's stream)."""
    got = rest_of(fetcher)
    assert (got["status"], got["bytes"], got["sha256"]) == (200, BIG, expected)
    assert got["at_go"] < BIG, got
    assert new_path.bytes() > BIG // 2, (new_path.bytes(), got)


# The core drops UDP between the two NATs (test_punch_upgrade.py) until the download is under way: the peers give up
# on a direct path after 2 s and take the relay, and try again 4 s later (11 s later if that try is too early).
BLOCK = [("-s", WAN["10"], "-d", WAN["14"]), ("-s", WAN["14"], "-d", WAN["10"])]
UPGRADE = ("--punch-timeout", "2", "--upgrade-interval", "4", "--nat-udp-timeout", "0")


@pytest.mark.parametrize("lab", KINDS, indirect=True, ids=KIND_IDS)
def test_a_download_goes_on_intact_from_the_relay_to_a_direct_path(lab: Lab, tmp_path: Path) -> None:
    for rule in BLOCK:
        lab.exec("core", "iptables", "-I", "FORWARD", "-p", "udp", *rule, "-j", "DROP", check=True)
    direct = UdpCount(lab, WAN["14"], WAN["10"])  # after the DROP rules: counts only once they are gone
    start_server(lab)
    expected = big_file(tmp_path)
    serve_files(lab, tmp_path)
    peer10, peer14, first = tunnel(lab, *UPGRADE)
    assert first == "relay"
    fetcher = slow_download(lab)
    text_crosses(peer10, 0, "over the relay")
    for rule in BLOCK:
        lab.exec("core", "iptables", "-D", "FORWARD", "-p", "udp", *rule, "-j", "DROP", check=True)
    for peer in (peer10, peer14):
        wait_for_line(peer, r"upgraded from the relay to the direct path via", timeout=30)
    text_crosses(peer14, 0, "over the direct path")
    assert_arrives_whole_mostly_over(fetcher, expected, direct)
    (result10, _), (result14, _) = stop(peer10, peer14)
    assert (result10["path"], result10["upgraded"]) == (result14["path"], result14["upgraded"]) == ("direct", True)
    assert (result10["received"], result14["received"]) == (["over the direct path"], ["over the relay"])


# Behind the home router only: behind a bare MASQUERADE the rejoin after a NAT's new address finds no direct path at
# first and goes through the relay until the NATs forget the old path's entries (test_punch_recovery.py covers it).
def test_a_download_goes_on_intact_when_a_nat_gets_a_new_public_address(lab: Lab, tmp_path: Path) -> None:
    """nat14's WAN address changes under a direct path (test_punch_recovery.py): both peers lose each other, find
    each other again through the server and punch a new direct path, which QUIC, the download and the texts go on
    over; the text in flight meanwhile arrives once."""
    new_path = UdpCount(lab, NEW14, WAN["10"])
    start_server(lab)
    expected = big_file(tmp_path)
    serve_files(lab, tmp_path)
    peer10, peer14, first = tunnel(lab, "--keepalive", "1")
    assert first == "direct"
    fetcher = slow_download(lab)
    text_crosses(peer10, 0, "before the change")
    done = lab.cli("readdress", "--name", lab.name, "nat14", "wan14", NEW14)
    assert done.returncode == 0, done.stderr
    say(peer10, "around the change")  # in flight while the path is gone
    for peer in (peer10, peer14):
        wait_for_line(peer, r"lost contact with 1[04]: no answer to keepalives at .*; asking the server for", 30)
        wait_for_line(peer, r"back on a direct path to 1[04] via", 30)
    text_crosses(peer10, 2, "after the change")
    assert_arrives_whole_mostly_over(fetcher, expected, new_path)
    (result10, _), (result14, _) = stop(peer10, peer14)
    assert (result10["path"], result10["rejoins"]) == (result14["path"], result14["rejoins"]) == ("direct", 1)
    assert result10["remote"].startswith(f"{NEW14}:")
    assert result14["received"] == ["before the change", "around the change", "after the change"]


@pytest.mark.parametrize("lab", KINDS, indirect=True, ids=KIND_IDS)
def test_a_udp_forward_carries_datagrams_both_ways_one_flow_per_source(lab: Lab) -> None:
    start_server(lab)
    serve(lab, "echo-udp", str(ECHO), ready="echoing UDP on")
    forward, allow = f"udp:{LOCAL_ECHO}:127.0.0.1:{ECHO}", f"udp:127.0.0.1:{ECHO}"
    peer10, peer14, _ = tunnel(lab, forward=(forward,), allow=(allow,))
    flows, count = 2, 20
    got = ends(lab, "peer10", "udp-ping", str(LOCAL_ECHO), str(flows), str(count))
    expected = [[flow, n, "echo " + ping_datagram(flow, n)] for flow in range(flows) for n in range(count)]
    assert got["answers"] == expected  # every datagram to the echo and back, to the socket that sent it
    (result10, _), (result14, log14) = stop(peer10, peer14)
    assert result10["path"] == result14["path"] == "direct"
    for flow in (1, 2):
        assert f"the other peer's UDP flow {flow} to udp:127.0.0.1:{ECHO}: open" in log14


@pytest.mark.parametrize("lab", KINDS, indirect=True, ids=KIND_IDS)
def test_fifty_connections_cross_one_tunnel_at_once_each_with_its_own_content(lab: Lab, tmp_path: Path) -> None:
    """The file server answers no request until all 50 are being served at once (tunnel_ends.py, --together). Both
    peers' input has ended before: a peer that forwards keeps running whatever its stdin does."""
    start_server(lab)
    parts = {f"part-{n:02}.bin": os.urandom(256 * 1024) for n in range(50)}
    for name, data in parts.items():
        (tmp_path / name).write_bytes(data)
    serve_files(lab, tmp_path, "--together", str(len(parts)))
    peer10, peer14, _ = tunnel(lab)
    end_chat((peer10, ""), (peer14, ""))
    urls = {f"http://127.0.0.1:{LOCAL_WEB}/{name}": data for name, data in parts.items()}
    got = ends(lab, "peer10", "fetch-many", *urls)
    assert {url: (each["status"], each["sha256"]) for url, each in got.items()} == {
        url: (200, hashlib.sha256(data).hexdigest()) for url, data in urls.items()
    }
    (_, log10), (_, log14) = stop(peer10, peer14)
    assert log14.count(f"the other peer's forward to tcp:127.0.0.1:{WEB}: connected") == len(parts)
    assert "refused" not in log10 + log14


@pytest.mark.parametrize("lab", KINDS, indirect=True, ids=KIND_IDS)
def test_a_forward_to_a_port_not_allowed_is_refused_and_the_session_goes_on(lab: Lab, tmp_path: Path) -> None:
    """peer10 forwards LOCAL_CLOSED to peer14's port WEB + 1, which peer14 does not allow (something even listens
    there): the local connection is closed, both peers say why, and the allowed forward still works."""
    start_server(lab)
    (tmp_path / "after.txt").write_text("still here\n")
    serve_files(lab, tmp_path)
    serve(lab, "serve-files", str(tmp_path), str(WEB + 1), ready="serving files from")
    denied = f"tcp:127.0.0.1:{WEB + 1}"
    peer10, peer14, _ = tunnel(lab, forward=(f"{LOCAL_CLOSED}:127.0.0.1:{WEB + 1}",))
    assert ends(lab, "peer10", "knock", str(LOCAL_CLOSED)) == {"received": 0, "ended": "closed"}
    why = f"{denied} is not allowed here; the other peer may start with `--allow {denied}`"
    assert wait_for_line(peer10, r"refused by the other peer").endswith(
        f"peer 10: forward to {denied} refused by the other peer: {why}"
    )
    assert wait_for_line(peer14, r"refused a forward").endswith(f"peer 14: refused a forward of the other peer: {why}")
    got = download(lab, "after.txt")
    assert (got["status"], got["sha256"]) == (200, hashlib.sha256(b"still here\n").hexdigest())
    (result10, log10), (result14, log14) = stop(peer10, peer14)
    assert result10["path"] == result14["path"] == "direct"
    assert "lost contact" not in log10 + log14
