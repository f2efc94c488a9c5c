"""`punch server` and `punch peer` as a user runs them: subprocesses on loopback."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from punch.identity.keyfile import load_identity
from tests.integration.cli_processes import PUNCH, peer, running_server

pytestmark = pytest.mark.integration


@pytest.fixture
def server_address() -> Iterator[str]:
    with running_server() as address:
        yield address


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["peer", "--server", "[nowhere]", "--id", "1", "--to", "2"],
         "punch: --server '[nowhere]': 'nowhere' is not an IP address; give e.g. 203.0.113.1:3478"),
        (["peer", "--server", "127.0.0.1:99999", "--id", "1", "--to", "2"],
         "punch: --server '127.0.0.1:99999': port must be a number from 0 to 65535"),
        (["peer", "--server", "127.0.0.1", "--id", "1", "--to", "1"],
         "punch: --to '1' is our own --id; give the other peer's ID"),
        (["peer", "--server", "127.0.0.1", "--id", "1", "--to", "2", "--timeout", "0"],
         "punch: --timeout must be greater than 0, got 0"),
        (["peer", "--server", "127.0.0.1", "--id", "1", "--to", "2", "--linger", "-1"],
         "punch: --linger must be 0 or more, got -1"),
        (["peer", "--server", "127.0.0.1", "--id", "1", "--to", "2", "--open-ttl", "often"],
         "punch: --open-ttl must be auto or 0 to 255, got 'often'"),
        (["peer", "--server", "127.0.0.1", "--id", "1", "--to", "2", "--open-ttl", "256"],
         "punch: --open-ttl must be auto or 0 to 255, got '256'"),
        (["peer", "--server", "127.0.0.1", "--id", "1", "--to", "2", "--portmap-lifetime", "0"],
         "punch: --portmap-lifetime must be 1 to 4294967295 seconds, got 0"),
        (["peer", "--server", "127.0.0.1", "--id", "1", "--to", "2", "--qlog", "/nonexistent/qlogs"],
         "punch: --qlog /nonexistent/qlogs: not a directory; give an existing directory (mkdir it first)"),
        (["server", "--max-peers", "0"], "punch: --max-peers must be 1 or more, got 0"),
        (["server", "--listen", "0.0.0.0:http"], "punch: --listen '0.0.0.0:http': port must be a number from 0 to 65535"),
        (["server", "--relay-rate", "1000"],
         "punch: --relay-rate must be 0 (no limit) or at least 1500 bytes/s (one datagram), got 1000"),
        (["server", "--relay-bytes", "-1"], "punch: --relay-bytes must be 0 (no limit) or more, got -1"),
        (["server", "--secret-file", "/nonexistent/s"],
         "punch: --secret-file /nonexistent/s: cannot read it (No such file or directory); "
         "make one with `head -c 32 /dev/urandom | base64 > /nonexistent/s`"),
        (["server", "--workers", "0"], "punch: --workers must be 1 or more, got 0"),
        (["server", "--workers", "2"],
         "punch: --workers above 1 needs --rate-limit 0: the per-source limit lives in one process and the other "
         "workers answer Binding without it"),
        (["server", "--workers", "2", "--rate-limit", "0", "--listen", "127.0.0.1:3478", "--alternate", "127.0.0.2:3479"],
         "punch: --workers above 1 does not work with --alternate yet; run one worker for NAT discovery"),
        (["server", "--registry", "localhost:6379"],
         "punch: --registry must be a Redis URL, e.g. redis://127.0.0.1:6379/0, got 'localhost:6379'"),
        (["server", "--name", "east"],
         "punch: --name names this server among those sharing --registry; give --registry URL too"),
        (["server", "--trace", "/nonexistent/server.trace"],
         "punch: --trace /nonexistent/server.trace: cannot write it (No such file or directory); choose another file"),
        (["server", "--trace", "/nonexistent/server.trace", "--workers", "2"],
         "punch: --trace records one process: run the server with --workers 1 to trace it"),
        (["server", "--listen", "[::]:3478", "--workers", "2", "--rate-limit", "0"],
         "punch: --workers above 1 does not work with --listen [::] yet (answers must leave from the address asked); "
         "give --listen a specific address"),
        (["diagram", "/nonexistent/server.trace", "--name", "=core"],
         "punch: --name '=core': write WHO=LABEL, e.g. --name 198.51.100.1=core"),
    ],
)  # fmt: skip
def test_usage_errors_exit_2_with_one_line_naming_the_flag(args: list[str], message: str) -> None:
    done = subprocess.run([*PUNCH, *args], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert done.stderr.strip() == message


def test_workers_without_the_fast_path_is_a_usage_error() -> None:
    done = subprocess.run(
        [*PUNCH, "server", "--workers", "2", "--rate-limit", "0"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, env={**os.environ, "PUNCH_NO_FASTPATH": "1"},
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == "punch: --workers above 1 needs the C fast path: switched off by PUNCH_NO_FASTPATH"


def test_server_port_in_use_is_a_clear_error(server_address: str) -> None:
    done = subprocess.run([*PUNCH, "server", "--listen", server_address], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert done.stderr.strip().endswith(
        f"punch: cannot use {server_address}: Address already in use; choose another --listen"
    )


def test_ctrl_c_while_waiting_exits_130(server_address: str) -> None:
    waiting = peer(server_address, "10", "55", "--timeout", "20")
    assert waiting.stderr is not None
    # Interrupt once the peer is really waiting (bounded: the peer gives up by itself after 20 s).
    for line in waiting.stderr:
        if "asked the server for 55" in line:
            break
    waiting.send_signal(signal.SIGINT)
    _, err = waiting.communicate(timeout=10)
    assert waiting.returncode == 130
    assert err.strip().endswith("punch: interrupted")


def test_a_closed_group_from_the_command_line(tmp_path: Path) -> None:
    secret = tmp_path / "group.secret"
    secret.write_text("a secret of the group, long enough\n")
    with running_server("--secret-file", str(secret)) as address:
        members = [
            peer(address, me, other, "--secret-file", str(secret), "--send", f"from {me}", "--json")
            for me, other in (("10", "14"), ("14", "10"))
        ]
        stranger = peer(address, "66", "10", "--json", "-q")
        results = [m.communicate(timeout=30) for m in members]
        _, err = stranger.communicate(timeout=30)
    assert [m.returncode for m in members] == [0, 0], results
    assert [json.loads(out.splitlines()[-1])["received"] for out, _ in results] == [["from 14"], ["from 10"]]
    assert stranger.returncode == 1
    assert err.strip() == ("punch: the server refused our registration: 401 closed group: sign with --secret-file")


def test_sigterm_stops_the_server_with_its_last_stats_line_and_exit_0() -> None:
    """docker stop, systemd and the lab's `down` send SIGTERM: the server closes cleanly and says what it did."""
    server = subprocess.Popen(
        [*PUNCH, "server", "--listen", "127.0.0.1:0"], stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL
    )
    try:
        assert server.stderr is not None
        assert "listening on" in server.stderr.readline()
        server.terminate()
        _, err = server.communicate(timeout=10)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert server.returncode == 0, err
    assert "SIGTERM: stopping" in err
    assert re.search(r"stopped; registrations=0 waiting=0 sessions=0", err), err


def test_punch_id_makes_the_identity_once_and_prints_its_fingerprint(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere" / "id"
    made = subprocess.run([*PUNCH, "id", "--identity", str(path), "--json"], capture_output=True, text=True, check=True)
    assert json.loads(made.stdout) == {"fingerprint": load_identity(path, create=False)[0].fingerprint,
                                       "identity": str(path), "created": True}  # fmt: skip
    default = subprocess.run(
        [sys.executable, "-m", "punch", "id", "--json"],
        capture_output=True,
        text=True,
        check=True,
        env={"XDG_CONFIG_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    printed = json.loads(default.stdout)
    assert printed["created"] is True
    assert printed["identity"] == str(tmp_path / "punch" / "identity")
    identity_file = Path(printed["identity"])
    assert (identity_file.stat().st_mode & 0o777) == 0o600
    again = subprocess.run(
        [sys.executable, "-m", "punch", "id", "--identity", str(identity_file)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert again.stdout.strip() == printed["fingerprint"]
    assert load_identity(identity_file, create=False)[0].fingerprint == printed["fingerprint"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--to-key", "abcd"], "punch: --to-key 'abcd' is not a fingerprint: it has 4 letters and digits"),
        (
            ["--identity", "/nonexistent/id"],
            "punch: --identity /nonexistent/id: no such file; make a new identity with",
        ),
    ],
)
def test_bad_identity_flags_are_one_line_errors(tmp_path: Path, flags: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "punch", "peer", "--server", "127.0.0.1:9", "--id", "10", "--to", "14", *flags],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(message)
    assert len(done.stderr.strip().splitlines()) == 1


def test_traced_server_and_peers_draw_a_sequence_diagram_of_their_run(tmp_path: Path) -> None:
    """--trace on the server and both peers (one of them -q: its trace still has its info lines), then
    `punch diagram` of the three files."""
    traces = [tmp_path / f"{who}.trace" for who in ("server", "10", "14")]
    with running_server("--trace", str(traces[0])) as address:
        first = peer(address, "10", "14", "--send", "hello", "--trace", str(traces[1]), "--bind", "127.0.0.2:0")
        second = peer(address, "14", "10", "--send", "hi", "--trace", str(traces[2]), "-q", "--bind", "127.0.0.3:0")
        for proc in (first, second):
            _, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
    starts = [json.loads(path.read_text().splitlines()[0]) for path in traces]
    assert [(s["participant"], s["role"]) for s in starts] == [
        ("server", "server"),
        ("peer 10", "peer"),
        ("peer 14", "peer"),
    ]
    assert starts[1]["server"] == address
    quiet = [json.loads(line) for line in traces[2].read_text().splitlines()]
    assert any(e["event"] == "log" and e["message"].startswith("path chosen: direct") for e in quiet)
    done = subprocess.run([*PUNCH, "diagram", *map(str, traces)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "sequenceDiagram"
    assert [line.split(" as ")[1].split("<br/>")[0] for line in lines if line.startswith("    participant ")] == [
        "peer 10",
        "server",
        "peer 14",
    ]
    arrows = [line.split(": ", 1)[1] for line in lines if re.match(r"    P\d-", line)]
    quic = [arrow for arrow in arrows if " ms QUIC " in arrow]
    # the client's first (resent, if it came before the other peer had chosen its path)
    assert re.search(r" ms QUIC Initial → 127\.0\.0\.[23]:\d+( \N{MULTIPLICATION SIGN}\d+)?$", quic[0]), done.stdout
    assert any(" ms QUIC Initial + Handshake → " in arrow for arrow in quic), done.stdout  # the server's answer
    assert any(re.search(r" ms QUIC 1-RTT: message 0 'hello' → 127\.0\.0\.3:\d+$", a) for a in quic), done.stdout
    assert any(re.search(r" ms QUIC 1-RTT: message 0 'hi' → 127\.0\.0\.2:\d+$", a) for a in quic), done.stdout
    assert not [arrow for arrow in arrows if "not STUN" in arrow or "Data" in arrow], done.stdout
