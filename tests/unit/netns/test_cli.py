"""``python -m netns ... | head``: a reader that leaves early ends the lab's CLI quietly (exit 141, no traceback)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from netns.topology.model import DEFAULT_TOPOLOGY

pytestmark = pytest.mark.unit


def test_a_closed_pipe_on_stdout_is_not_a_traceback() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte, as with `| head -0`
    try:
        done = subprocess.run(
            [sys.executable, "-m", "netns", "validate", str(DEFAULT_TOPOLOGY)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, "")
