"""A process's log lines, as a test waits for them (the e2e peers in the lab, the CLI's on loopback)."""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import time
from typing import Any

_unread: dict[int, bytes] = {}  # stderr bytes read past a matched line, per process


def wait_for_line(proc: subprocess.Popen[Any], pattern: str, timeout: float = 15.0) -> str:
    """Read ``proc``'s stderr until a line matches ``pattern``; the line. Fails on timeout or exit.

    Reads the pipe's file descriptor directly (a buffered readline could hide lines from select()), and keeps
    what it read past the matching line for the next call.
    """
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    buffer = _unread.pop(proc.pid, b"")
    seen = b""
    while True:
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            seen += line + b"\n"
            if re.search(pattern, line.decode(errors="replace")):
                _unread[proc.pid] = buffer
                return line.decode(errors="replace")
        left = deadline - time.monotonic()
        if left <= 0 or not selector.select(left):
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buffer += chunk
    raise AssertionError(f"no line matching {pattern!r} within {timeout} s; saw:\n{seen.decode(errors='replace')}")


def unread(proc: subprocess.Popen[Any]) -> str:
    """What :func:`wait_for_line` read of ``proc``'s stderr past the last line it matched (and forgets it): the start
    of the rest of the log, which ``communicate()`` no longer sees."""
    return _unread.pop(proc.pid, b"").decode(errors="replace")
