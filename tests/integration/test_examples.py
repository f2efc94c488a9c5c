"""The examples of docs/api.md (examples/*.py) run as their users run them: two processes on loopback, each with an
identity of its own, through a `punch server`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.cli_processes import running_server

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name: str, *args: str, home: Path, stdin: str | None = None) -> subprocess.Popen[str]:
    home.mkdir(exist_ok=True)
    env = {**os.environ, "XDG_CONFIG_HOME": str(home)}  # its own identity and known peers
    return subprocess.Popen(
        [sys.executable, str(EXAMPLES / name), *args],
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=home,
        env=env,
    )


def outputs(*procs: subprocess.Popen[str], stdins: tuple[str, ...] = ()) -> list[str]:
    """What each process printed, once all ended well; ``stdins`` are written to each first (all of them: a chat
    ends only when both sides are done)."""
    for proc, stdin in zip(procs, stdins, strict=False):
        assert proc.stdin is not None
        proc.stdin.write(stdin)
        proc.stdin.close()
        proc.stdin = None
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        done.append(out)
    return done


def test_the_chat_example_carries_lines_both_ways(tmp_path: Path) -> None:
    with running_server() as server:
        alice = example("chat.py", server, "alice", "bob", home=tmp_path / "alice", stdin="")
        bob = example("chat.py", server, "bob", "alice", home=tmp_path / "bob", stdin="")
        said_alice, said_bob = outputs(alice, bob, stdins=("hi bob\n\nhow are you?\n", "fine, thanks\n"))
    assert said_alice.splitlines()[0].startswith("talking to bob (key ")
    assert said_alice.splitlines()[1:] == ["[bob] fine, thanks"]
    assert said_bob.splitlines()[1:] == ["[alice] hi bob", "[alice] how are you?"]


def test_the_file_example_moves_a_file_whole(tmp_path: Path) -> None:
    source = tmp_path / "photo.jpg"
    source.write_bytes(os.urandom(2 << 20))
    with running_server() as server:
        sender = example("send_file.py", server, "alice", "bob", str(source), home=tmp_path / "alice")
        receiver = example("send_file.py", server, "bob", "alice", home=tmp_path / "bob")
        sent, received = outputs(sender, receiver)
    assert (tmp_path / "bob" / "photo.jpg").read_bytes() == source.read_bytes()
    assert sent.startswith(f"bob has {source} whole (SHA-256 ")
    assert received.strip() == f"received {tmp_path / 'bob' / 'photo.jpg'} from alice"


def test_the_stream_example_echoes_a_line_and_a_datagram(tmp_path: Path) -> None:
    with running_server() as server:
        serving = example("echo_stream.py", server, "alice", "bob", "serve", home=tmp_path / "alice")
        asking = example("echo_stream.py", server, "bob", "alice", "ask", home=tmp_path / "bob")
        _, asked = outputs(serving, asking)
    lines = asked.splitlines()
    assert lines[0] == "stream: hello over a QUIC stream"
    assert lines[1].startswith("datagram: hello as a datagram via PathInfo(kind='direct', remote='127.0.0.1:")
