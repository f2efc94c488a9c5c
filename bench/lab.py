"""What the benchmarks that run peers in the lab share: the lab's CLI, commands in its nodes, and the peers'
results."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PYTHON = sys.executable


def lab(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``python -m netns ARGS``, its output captured."""
    return subprocess.run([PYTHON, "-m", "netns", *args], check=check, capture_output=True, text=True)


def in_node(name: str, node: str, *command: str) -> list[str]:
    """The command line that runs ``command`` in ``node`` of lab ``name``."""
    return [PYTHON, "-m", "netns", "exec", "--name", name, node, "--", *command]


def wait_for_line(path: Path, text: str, timeout: float = 15.0) -> None:
    """Poll a log file until a line contains ``text`` (the server has started)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise SystemExit(f"bench: {path} never said {text!r}")


def peer_results(procs: Sequence[subprocess.Popen[str]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Wait for ``punch peer --json`` processes: each one's result (its last stdout line; {} if none), and the
    reasons of those that failed (the last line of their stderr, or their exit status)."""
    results, reasons = [], []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        lines = out.strip().splitlines()
        results.append(json.loads(lines[-1]) if lines else {})
        if proc.returncode != 0:
            reasons.append(err.strip().splitlines()[-1] if err.strip() else f"exit {proc.returncode}")
    return results, reasons
