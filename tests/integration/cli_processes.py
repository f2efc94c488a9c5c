"""`punch` run as a user runs it, in subprocesses on loopback: a server, and peers of it."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
from collections.abc import Iterator

PUNCH = [sys.executable, "-m", "punch"]


@contextlib.contextmanager
def running_server(*extra: str) -> Iterator[str]:
    """`punch server` on an ephemeral loopback port, stopped afterwards even when the test fails; its address."""
    server = subprocess.Popen(
        [*PUNCH, "server", "--listen", "127.0.0.1:0", *extra],
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert server.stderr is not None
        line = server.stderr.readline()  # the first log line says where it listens
        match = re.search(r"listening on (127\.0\.0\.1:\d+)", line)
        assert match, line
        yield match.group(1)
    finally:
        server.terminate()
        server.communicate(timeout=10)


def _ctrl_c_as_from_a_terminal() -> None:
    """In the child: SIGINT to its default. A shell's background job (``pytest &``) hands it on ignored, and
    Python then keeps ignoring it, as nohup and ``&`` ask; a peer started from a terminal has it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def peer(server: str, me: str, other: str, *extra: str, stdin: str | None = None) -> subprocess.Popen[str]:
    return command("peer", "--server", server, "--id", me, "--to", other, "--bind", "127.0.0.1:0", *extra, stdin=stdin)


def command(*args: str, stdin: str | None = None) -> subprocess.Popen[str]:
    """``punch ARGS...`` with its stdout and stderr piped (and stdin, if ``stdin`` is given)."""
    return subprocess.Popen(
        [*PUNCH, *args],
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_ctrl_c_as_from_a_terminal,
    )
