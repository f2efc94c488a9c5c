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


def labs_left(*runs: subprocess.CompletedProcess[str]) -> list[str]:
    """Namespaces still there of the labs these matrix runs made: each run names a cell's lab on its progress line
    ("CELL: VERDICT (lab NAME)"), so another matrix on this machine, or a lab an interrupted run left, is not
    counted. Every run must have named its labs, or there would be nothing to check."""
    names = [set(re.findall(r"\(lab (m[0-9a-f]{4}[0-9]{3})\)$", run.stderr, re.MULTILINE)) for run in runs]
    assert all(names), [run.stderr for run in runs]
    ours = set().union(*names)
    return sorted(ns for ns in os.listdir("/run/netns") if ns.partition("-")[0] in ours)


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
    assert labs_left(done) == []  # every lab of the matrix is down


def test_a_failing_trial_is_reported_and_its_lab_still_goes_down(tmp_path: Path) -> None:
    done = matrix(tmp_path, "--group", "same-nat", "--firewall", "home", "--trials", "2", "--trial", "false")
    assert done.returncode == 1
    (cell,) = json.loads((tmp_path / "matrix.json").read_text())
    assert (cell["trials"], cell["successes"]) == (2, 0)
    assert cell["failures"] == ["no JSON result from the trial (exit 1)"] * 2
    assert "no JSON result from the trial (exit 1)" in (tmp_path / "matrix.md").read_text()
    assert labs_left(done) == []


UDP_TRIAL = ["--trial", f"{PY} {Path(__file__).with_name('udp_trial.py')}"]
# Four cells, bare routers: a datagram reaches peer14's own address only where nat14 does not translate (preset none).
FOUR_CELLS = ["--group", "pairs", "--firewall", "none", "--preset", "none", "--preset", "full-cone", "--trials", "2"]


def without_times(text: str) -> str:
    return re.sub(r"\b\d+(\.\d+)? ms\b", "N ms", text)


def test_two_shards_merged_are_what_one_unsharded_run_writes(tmp_path: Path) -> None:
    one = matrix(tmp_path / "one", *FOUR_CELLS, "--jobs", "2", *UDP_TRIAL)
    assert one.returncode == 1, one.stderr  # two cells fail, as they must
    shards = [matrix(tmp_path / "shards", *FOUR_CELLS, "--shard", f"{k}/2", *UDP_TRIAL) for k in (1, 2)]
    assert [done.returncode for done in shards] == [0, 1], [done.stderr for done in shards]  # 1/2: both reachable
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == ["shard-1-of-2.json", "shard-2-of-2.json"]
    assert "| **none** |  | direct 2/2" in shards[0].stdout  # a shard's own cells, as a table on its output
    merged = subprocess.run(
        [PY, "-m", "netns", "matrix-merge", "--output", str(tmp_path / "merged"), *(tmp_path / "shards").iterdir()],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert merged.returncode == 1, merged.stderr

    cells = json.loads((tmp_path / "merged" / "matrix.json").read_text())
    unsharded = json.loads((tmp_path / "one" / "matrix.json").read_text())
    assert [{**c, "median_ms": None} for c in cells] == [{**c, "median_ms": None} for c in unsharded]
    assert {c["cell"]: c["successes"] for c in cells} == {
        "none / none, firewall none": 2,
        "none / full-cone, firewall none": 0,
        "full-cone / none, firewall none": 2,
        "full-cone / full-cone, firewall none": 0,
    }
    assert cells[1]["failures"] == ["peer14 (192.0.2.130) did not echo peer10's datagram"] * 2
    for page in ("matrix.md", "matrix.html"):
        made, expected = ((tmp_path / d / page).read_text() for d in ("merged", "one"))
        assert without_times(made) == without_times(expected), page
    assert labs_left(one, *shards) == []
