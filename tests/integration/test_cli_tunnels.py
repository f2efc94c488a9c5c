"""`punch peer --forward/--allow`, `punch send` and `punch receive` as a user runs them, on loopback."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.integration.cli_processes import command, peer, running_server
from tests.lines import wait_for_line

pytestmark = pytest.mark.integration


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@contextmanager
def echo_server() -> Iterator[int]:
    """A TCP echo server on loopback (in a thread); its port."""
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo) as server:
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield int(server.server_address[1])
        finally:
            server.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def through(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := conn.recv(65536):
            got += chunk
    return got


def test_a_forward_carries_connections_until_both_peers_are_interrupted() -> None:
    local = free_port()
    with running_server() as server, echo_server() as target:
        forwarding = peer(server, "10", "14", "--forward", f"{local}:127.0.0.1:{target}", "--json")
        allowing = peer(server, "14", "10", "--allow", f"127.0.0.1:{target}", "--json")
        wait_for_line(forwarding, rf"forwarding 127\.0\.0\.1:{local} to")
        payload = os.urandom(1 << 20)
        for _ in range(3):  # each connection its own stream
            assert hashlib.sha256(through(local, payload)).digest() == hashlib.sha256(payload).digest()
        for proc in (forwarding, allowing):  # stdin was closed from the start: they keep running, until told
            assert proc.poll() is None
            proc.send_signal(signal.SIGTERM)
        outputs = [proc.communicate(timeout=30) for proc in (forwarding, allowing)]
    for proc, (out, err) in zip((forwarding, allowing), outputs, strict=True):
        assert proc.returncode == 0, err
        result = json.loads(out.strip().splitlines()[-1])
        assert (result["path"], result["error"]) == ("direct", None)
        assert "SIGTERM: closing" in err


def test_a_forward_the_other_side_does_not_allow_is_refused_on_both_sides() -> None:
    local = free_port()
    with running_server() as server, echo_server() as target:
        forwarding = peer(server, "10", "14", "--forward", f"{local}:127.0.0.1:{target}")
        allowing = peer(server, "14", "10", "--allow", f"127.0.0.1:{target + 1}")
        wait_for_line(forwarding, rf"forwarding 127\.0\.0\.1:{local} to")
        assert through(local, b"let me in") == b""  # closed at once
        refused = wait_for_line(forwarding, "refused")
        assert f"tcp:127.0.0.1:{target} is not allowed here" in refused
        assert f"--allow tcp:127.0.0.1:{target}" in refused
        told = wait_for_line(allowing, "refused a forward of the other peer")
        assert f"tcp:127.0.0.1:{target} is not allowed here" in told
        for proc in (forwarding, allowing):
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=30)
            assert proc.returncode == 0


def test_send_and_receive_move_one_file_whole(tmp_path: Path) -> None:
    source, inbox = tmp_path / "report.bin", tmp_path / "inbox"
    source.write_bytes(os.urandom(3 << 20))
    inbox.mkdir()
    with running_server() as server:
        common = ("--server", server, "--bind", "127.0.0.1:0")
        sender = command("send", str(source), "--id", "10", "--to", "14", *common)
        receiver = command("receive", "--id", "14", "--from", "10", "--dir", str(inbox), *common)
        (sent, sent_err), (received, received_err) = (p.communicate(timeout=60) for p in (sender, receiver))
    assert (sender.returncode, receiver.returncode) == (0, 0), sent_err + received_err
    assert (inbox / "report.bin").read_bytes() == source.read_bytes()
    assert received.splitlines()[0] == str(inbox / "report.bin")
    assert sent.splitlines()[-1].startswith("sent report.bin; direct path to 14 via 127.0.0.1:")
    assert list(inbox.iterdir()) == [inbox / "report.bin"]  # no temporary file left


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["peer", "--to", "2", "--forward", "8080"],
         "punch: --forward '8080': expected [udp:]LOCAL_PORT:HOST:PORT, e.g. 8080:127.0.0.1:80 or udp:5353:127.0.0.1:53"),
        (["peer", "--to", "*"], "punch: --to '*' is reserved (a wait for anyone, punch.api.accept); give a peer's ID"),
        (["send", "/nonexistent/file", "--to", "2"], "punch: /nonexistent/file: no such file; give a file to send"),
        (["receive", "--from", "2", "--dir", "/nonexistent"],
         "punch: --dir /nonexistent: no such directory; give one to store the file in"),
    ],
)  # fmt: skip
def test_bad_tunnel_flags_are_one_line_naming_the_fix(args: list[str], message: str) -> None:
    done = command(*args[:1], "--server", "127.0.0.1", "--id", "1", *args[1:])
    _, err = done.communicate(timeout=30)
    assert done.returncode == 2
    assert err.strip().splitlines()[-1] == message
