"""Running the connectivity matrix: each cell in a lab of its own, N trials each, labs in parallel.

The lab knows NAT, not the software under test: each cell is a lab (a topology with per-router presets) in
which a caller-given ``--setup`` command runs once and a ``--trial`` command runs N times, from the root
namespace, with the environment naming the lab and the two peer nodes:

    NETNS_LAB=t1a2b3  NETNS_PEERS="peer10 peer14"  NETNS_TRIAL=0  NETNS_CELL="symmetric / full-cone, firewall home"

A trial prints one JSON object as its last line of output: ``{"ok": true, "path": "direct", "ms": 5.2,
"detail": "..."}``. The matrix counts successes and paths and takes the median time (``Result``).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shlex
import statistics
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netns.matrix.cells import Cell

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Result:
    """What the trials of one cell found."""

    cell: Cell
    trials: int = 0
    successes: int = 0
    paths: Counter[str] = field(default_factory=Counter)
    ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    error: str = ""  # the cell could not run at all (lab up or setup failed)

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.ms) if self.ms else None

    @property
    def path(self) -> str:
        """The path most trials took ("direct", "relay", ...), or "-" if none succeeded."""
        return self.paths.most_common(1)[0][0] if self.paths else "-"

    @property
    def succeeded(self) -> bool:
        """Every trial succeeded (and the cell ran)."""
        return self.successes == self.trials and not self.error

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.cell.describe(),
            "trials": self.trials,
            "successes": self.successes,
            "paths": dict(self.paths),
            "median_ms": self.median_ms,
            "failures": self.failures,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class Commands:
    """What to run in each cell; ``capture`` is a directory for pcaps (``up --capture``), one subdir per cell."""

    trial: Sequence[str]
    setup: Sequence[str] = ()
    trials: int = 3
    trial_timeout: float = 120.0
    capture: Path | None = None


def _netns(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netns", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _last_json(text: str) -> dict[str, Any] | None:
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        return value if isinstance(value, dict) else None
    return None


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


class Runner:
    """Runs cells in parallel labs named ``PREFIX`` + a counter; every lab it started is taken down."""

    def __init__(self, commands: Commands, jobs: int, progress: Callable[[str], None] | None = None) -> None:
        self.commands = commands
        self.jobs = max(1, jobs)
        self._progress = progress or (lambda line: None)
        self._prefix = "m" + secrets.token_hex(2)
        self._count = 0
        self._lock = threading.Lock()
        self._live: set[str] = set()

    def _lab_name(self) -> str:
        with self._lock:
            self._count += 1
            return f"{self._prefix}{self._count:03d}"[:8]

    def run(self, cells: Sequence[Cell]) -> list[Result]:
        """Run every cell (``jobs`` at a time); on Ctrl-C the labs still up are taken down, then it re-raises."""
        try:
            with ThreadPoolExecutor(self.jobs) as pool:
                return list(pool.map(self._run_cell, cells))
        finally:
            for name in sorted(self._live):
                _netns("down", "--name", name)

    def _env(self, name: str, cell: Cell) -> dict[str, str]:
        return {**os.environ, "NETNS_LAB": name, "NETNS_PEERS": " ".join(cell.peers), "NETNS_CELL": cell.name}

    def _run_cell(self, cell: Cell) -> Result:
        result = Result(cell)
        name = self._lab_name()
        args = ["up", "--name", name, *cell.up_args()]
        if self.commands.capture is not None:
            where = self.commands.capture / cell.name.replace(" / ", "-").replace(", ", "-").replace(" ", "_")
            args += ["--capture", str(where)]
        with self._lock:
            self._live.add(name)
        try:
            done = _netns(*args)
            if done.returncode != 0:
                result.error = f"lab up failed: {_last_line(done.stderr)}"
                return result
            env = self._env(name, cell)
            if self.commands.setup:
                setup = subprocess.run(
                    self.commands.setup, env=env, capture_output=True, text=True, timeout=60, check=False
                )
                if setup.returncode != 0:
                    result.error = f"setup failed: {_last_line(setup.stderr) or setup.returncode}"
                    return result
            for number in range(self.commands.trials):
                self._trial(result, {**env, "NETNS_TRIAL": str(number)})
            return result
        finally:
            _netns("down", "--name", name)
            with self._lock:
                self._live.discard(name)
            verdict = result.error or f"{result.successes}/{result.trials} {result.path}"
            self._progress(f"{cell.name}: {verdict} (lab {name})")

    def _trial(self, result: Result, env: dict[str, str]) -> None:
        result.trials += 1
        try:
            done = subprocess.run(
                self.commands.trial,
                env=env,
                capture_output=True,
                text=True,
                timeout=self.commands.trial_timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            result.failures.append(f"trial timed out after {self.commands.trial_timeout:g} s")
            return
        report = _last_json(done.stdout)
        if report is None:
            detail = _last_line(done.stderr) or f"exit {done.returncode}"
            result.failures.append(f"no JSON result from the trial ({detail})")
            return
        if report.get("ok") is True:
            result.successes += 1
            result.paths[str(report.get("path", "?"))] += 1
            if isinstance(report.get("ms"), int | float):
                result.ms.append(float(report["ms"]))
        else:
            result.failures.append(str(report.get("detail") or "failed"))


def parse_command(text: str) -> list[str]:
    """A command line given as one string (``--trial "python -m bench.matrix_trial"``)."""
    return shlex.split(text)
