"""``python -m netns matrix`` with punch as the software under test (bench/matrix_trial.py): a corner of the
matrix whose answers theory fixes, and a trial command that fails, which must still leave no lab behind."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

PY = sys.executable
TRIAL = ["--setup", f"{PY} -m bench.matrix_trial setup", "--trial", f"{PY} -m bench.matrix_trial run"]


def matrix(output: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "netns", "matrix", "--output", str(output), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def matrix_labs() -> list[str]:
    """Namespaces of matrix labs (named ``m`` + 4 hex digits + a 3-digit counter by netns/matrix/runner.py)."""
    return [ns for ns in os.listdir("/run/netns") if re.match(r"m[0-9a-f]{4}[0-9]{3}-", ns)]


def test_full_cone_pairs_go_direct_and_symmetric_pairs_go_through_the_relay(tmp_path: Path) -> None:
    done = matrix(
        tmp_path, "--group", "pairs", "--firewall", "none", "--preset", "full-cone", "--preset", "symmetric",
        "--trials", "1", "--jobs", "2", *TRIAL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    cells = {c["cell"]: c for c in json.loads((tmp_path / "matrix.json").read_text())}
    assert sorted(cells) == [
        "full-cone / full-cone, firewall none",
        "full-cone / symmetric, firewall none",
        "symmetric / full-cone, firewall none",
        "symmetric / symmetric, firewall none",
    ]
    assert all(c["successes"] == c["trials"] == 1 for c in cells.values()), done.stderr
    assert cells["full-cone / full-cone, firewall none"]["paths"] == {"direct": 1}
    # peer-reflexive, unless port prediction (which runs alongside) finds its own direct path first
    assert cells["full-cone / symmetric, firewall none"]["paths"] in ({"direct": 1}, {"predicted": 1})
    assert cells["symmetric / symmetric, firewall none"]["paths"] == {"relay": 1}
    assert cells["symmetric / symmetric, firewall none"]["theory"].startswith("relay: both mappings")
    report = (tmp_path / "matrix.md").read_text()
    assert re.search(r"\| \*\*symmetric\*\* \| (direct|predicted) 1/1", report), report
    assert "relay 1/1" in report
    assert matrix_labs() == []  # every lab of the matrix is down


def test_a_failing_trial_is_reported_and_its_lab_still_goes_down(tmp_path: Path) -> None:
    done = matrix(tmp_path, "--group", "same-nat", "--firewall", "home", "--trials", "2", "--trial", "false")
    assert done.returncode == 1
    (cell,) = json.loads((tmp_path / "matrix.json").read_text())
    assert (cell["trials"], cell["successes"]) == (2, 0)
    assert cell["failures"] == ["no JSON result from the trial (exit 1)"] * 2
    assert "no JSON result from the trial (exit 1)" in (tmp_path / "matrix.md").read_text()
    assert matrix_labs() == []
