"""The matrix split over runners: which cells a shard runs (netns/matrix/shards.py), and the merge of the shards'
files into the report one unsharded run of the same cells writes (netns/matrix/merge.py), with the one-line
errors for shards that do not make one matrix."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from netns import cli
from netns.errors import ShardError
from netns.matrix import cells as matrix_cells
from netns.matrix import merge, report
from netns.matrix.runner import Result
from netns.matrix.shards import Shard

pytestmark = pytest.mark.unit

EVERY = matrix_cells.select()
SMALL = merge.Matrix(("home",), ("full-cone", "symmetric"), ("pairs", "same-nat", "cgnat"), 2, "setup", "trial", 3)


def test_cells_have_names_of_their_own() -> None:
    """The merge finds a shard's results by the cell's name."""
    assert len({cell.name for cell in EVERY}) == len(EVERY) == 62


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 61, 62, 63])
def test_every_cell_is_in_exactly_one_shard_and_shards_differ_by_one_cell_at_most(count: int) -> None:
    shares = [shard.share(EVERY) for shard in Shard.every(count)]
    assert Counter(cell.name for share in shares for cell in share) == Counter(cell.name for cell in EVERY)
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_cells_go_to_the_shards_in_turn_in_the_matrix_order() -> None:
    first, _, third, fourth = (shard.share(EVERY) for shard in Shard.every(4))
    assert [cell.name for cell in first[:3]] == [
        "full-cone / full-cone, firewall home",
        "full-cone / none, firewall home",
        "restricted-cone / symmetric, firewall home",
    ]
    # the networks, the costliest cells (their trials time out where punch cannot go yet), land on every shard
    networks = {shard: [c.name for c in shard.share(EVERY) if c.group == "networks"] for shard in Shard.every(4)}
    assert [len(names) for names in networks.values()] == [2, 2, 1, 1]
    assert third[-1].name == "mobile carrier (symmetric, sequential ports, 30 s) / home NAT"
    assert fourth[-1].name == "IPv6 only, both routed (RFC 6092 firewalls)"


def test_the_assignment_does_not_depend_on_the_process() -> None:
    """The same shares under two hash seeds: nothing in it hashes, orders a set or draws at random."""
    code = "from netns.matrix import cells, shards; print([c.name for c in shards.Shard(2, 5).share(cells.select())])"
    shares = {
        subprocess.run(
            [sys.executable, "-c", code], env={"PYTHONHASHSEED": seed}, capture_output=True, text=True, check=True
        ).stdout
        for seed in ("1", "2")
    }
    assert shares == {f"{[c.name for c in Shard(2, 5).share(EVERY)]}\n"}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("5/4", "K must be from 1 to 4"),
        ("0/4", "K must be from 1 to 4"),
        ("1/0", "N must be at least 1"),
        ("2", "not K/N"),
        ("one/two", "not K/N"),
        ("-1/2", "not K/N"),
    ],
)
def test_a_shard_that_is_not_k_of_n_is_one_line_naming_the_flag_and_the_fix(
    text: str, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["matrix", "--trial", "true", f"--shard={text}"]) == cli.EXIT_USAGE  # before it asks for root
    assert capsys.readouterr().err == (
        f"netns-lab: --shard {text}: {why}; write --shard K/N with 1 <= K <= N, e.g. --shard 1/4 for the first of "
        "four shards\n"
    )


# -- the merge ---------------------------------------------------------------------------------------------------


def results(matrix: merge.Matrix) -> list[Result]:
    """Every cell of ``matrix`` with trials that differ from cell to cell: paths, times, failures, an error."""
    made = []
    for number, cell in enumerate(matrix.cells()):
        result = Result(cell, trials=matrix.trials)
        if number % 4 == 3:
            result.error = f"lab up failed: cell {number}"
        else:
            result.successes = number % 3
            result.paths = Counter({"relay": number % 3, "direct": number % 3}) if number % 3 else Counter()
            result.ms = [float(number), 2.5 * number][: number % 3]
            result.failures = [f"trial {number} timed out"] * (matrix.trials - number % 3)
        made.append(result)
    return made


def shard_files(directory: Path, matrix: merge.Matrix = SMALL, where: str = "") -> list[Path]:
    """The files of every shard of ``matrix``, each holding its share of ``results(matrix)``."""
    whole = results(matrix)
    return [
        merge.write(directory, shard, matrix, [r for r in whole if r.cell in shard.share(matrix.cells())], where)
        for shard in Shard.every(matrix.shards)
    ]


def test_the_merged_shards_write_what_one_unsharded_run_writes(tmp_path: Path) -> None:
    files = shard_files(tmp_path / "shards", where=report.measured())
    assert [path.name for path in files] == ["shard-1-of-3.json", "shard-2-of-3.json", "shard-3-of-3.json"]
    merged = merge.merge(list(reversed(files)))  # in any order
    made = report.write(merged.results, tmp_path / "merged", SMALL.trials, "python -m netns matrix", merged.where)
    one = report.write(results(SMALL), tmp_path / "one", SMALL.trials, "python -m netns matrix")
    for page, expected in zip(made, one, strict=True):
        assert page.read_text() == expected.read_text(), page.name
    cells = json.loads(made[1].read_text())
    assert [c["paths"] for c in cells[1:3]] == [{"relay": 1, "direct": 1}, {"relay": 2, "direct": 2}]
    assert cells[2]["median_ms"] == 3.5  # from every trial's time, not from the shard's median


def test_the_report_names_every_machine_the_shards_ran_on(tmp_path: Path) -> None:
    files = shard_files(tmp_path)
    for number, path in enumerate(files):
        data = json.loads(path.read_text())
        data["where"] = f"2026-12-07 on runner{number % 2} (x86_64, 4 cores, Linux 6.8)"
        path.write_text(json.dumps(data))
    merged = merge.merge(files)
    assert merged.where == (
        "2026-12-07 on runner0 (x86_64, 4 cores, Linux 6.8) and 2026-12-07 on runner1 (x86_64, 4 cores, Linux 6.8)"
    )
    assert f"Measured {merged.where} by `x`: 2 trial(s)" in report.markdown(merged.results, 2, "x", merged.where)


def edited(path: Path, change: Any) -> Path:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


def refusal(paths: list[Path]) -> str:
    with pytest.raises(ShardError) as refused:
        merge.merge(paths)
    return str(refused.value)


def test_a_missing_shard_is_named_with_the_file_to_add(tmp_path: Path) -> None:
    one, two, three = shard_files(tmp_path)
    assert refusal([one, three]) == (
        "shard 2/3 is missing (2 of the matrix's 7 cells are in no file given); add shard-2-of-3.json, which "
        "`python -m netns matrix --shard K/N` writes"
    )
    assert refusal([two]).startswith("shard 1/3, 3/3 are missing (5 of the matrix's 7 cells")


def test_a_shard_given_twice_is_refused(tmp_path: Path) -> None:
    one, two, three = shard_files(tmp_path)
    assert refusal([one, two, three, two]) == (
        f"{two} is given twice: its cells would be in the matrix twice; give each shard's file once"
    )
    again = tmp_path / "again" / two.name
    again.parent.mkdir()
    again.write_text(two.read_text())
    assert refusal([one, two, again, three]) == (
        f"{again} is shard 2/3 again, as {two} is: its cells would be in the matrix twice; give each shard's file once"
    )


def test_a_cell_missing_from_its_shard_or_in_it_twice_is_refused(tmp_path: Path) -> None:
    one, two, three = shard_files(tmp_path)
    name = json.loads(two.read_text())["results"][0]["cell"]
    edited(two, lambda data: data["results"].pop(0))
    assert refusal([one, two, three]) == f"{two}: cell {name!r} of shard 2/3 missing; run shard 2/3 again"
    edited(three, lambda data: data["results"].append(data["results"][0]))
    twice = json.loads(three.read_text())["results"][0]["cell"]
    assert refusal([one, three]) == f"{three}: cell {twice!r} is in it 2 times; run shard 3/3 again"
    edited(one, lambda data: data["results"].append(json.loads(three.read_text())["results"][0]))
    assert refusal([one]) == f"{one}: cell {twice!r} is not shard 1/3's; run shard 1/3 again"


@pytest.mark.parametrize(
    ("field", "value", "flag", "shown"),
    [
        ("trials", 3, "--trials", "3, not 2"),
        ("presets", ["full-cone"], "--preset", "full-cone, not full-cone symmetric"),
        ("trial", "other", "--trial", "'other', not 'trial'"),
        ("shards", 2, "--shard's N", "2, not 3"),
    ],
)
def test_shards_of_another_matrix_are_refused_naming_the_flag(
    tmp_path: Path, field: str, value: object, flag: str, shown: str
) -> None:
    one, two, three = shard_files(tmp_path)
    if field == "shards":
        edited(two, lambda data: data.update(shard="2/2"))
    edited(two, lambda data: data["matrix"].update({field: value}))
    assert refusal([one, two, three]) == (
        f"{two}: a shard of another matrix than {one} (its {flag} is {shown}); merge the shards of one run, each run "
        "with the same flags"
    )


def test_shards_of_another_version_are_refused(tmp_path: Path) -> None:
    one, two, three = shard_files(tmp_path)
    edited(two, lambda data: data.update({merge.KEY: 2}))
    assert refusal([one, two, three]) == (
        f"{two}: a shard file of format 2, and this netns reads format 1; merge with the netns that ran the shards"
    )
    edited(two, lambda data: data.update({merge.KEY: 1}))
    edited(three, lambda data: data["cells"][0].update(theory="what an older netns said"))
    assert refusal([one, two, three]) == (
        f"{three}: its cells are not the ones this netns makes for its flags (another version of netns ran it); "
        "merge with the netns that ran the shards"
    )


def test_a_file_that_is_no_shard_is_refused(tmp_path: Path) -> None:
    one = shard_files(tmp_path)[0]
    give = "give the shard-K-of-N.json files that `python -m netns matrix --shard K/N` writes"
    matrix_json = report.write(results(SMALL), tmp_path / "one", 2, "x")[1]
    assert refusal([matrix_json]) == f"{matrix_json}: not a shard's results (no netns_matrix_shard key); {give}"
    gone = tmp_path / "gone.json"
    assert refusal([gone]) == f"{gone}: cannot read it as JSON (No such file or directory); {give}"
    edited(one, lambda data: data["results"][0].update(paths=["direct"]))
    first = results(SMALL)[0].cell.name
    assert refusal([one]) == f"{one}: damaged (cell {first!r}: paths must be dict); run its shard again"
    assert refusal([]) == f"no shard files given; {give}"


def test_matrix_merge_writes_the_report_and_says_whether_every_trial_succeeded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [str(path) for path in shard_files(tmp_path / "shards")]
    assert cli.main(["matrix-merge", "--output", str(tmp_path / "out"), *files]) == cli.EXIT_FAILURE  # failures
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["matrix.html", "matrix.json", "matrix.md"]
    assert capsys.readouterr().out.startswith("# Connectivity matrix through real kernel NAT\n")
    assert cli.main(["matrix-merge", files[0]]) == cli.EXIT_USAGE
    assert capsys.readouterr().err.count("\n") == 1  # one line: the missing shards and the fix


def test_matrix_merge_of_shards_whose_trials_all_succeeded_exits_0(tmp_path: Path) -> None:
    whole = merge.Matrix(("none",), ("full-cone",), ("pairs",), 1, "", "trial", 1)
    (cell,) = whole.cells()
    done = Result(cell, trials=1, successes=1, paths=Counter(direct=1), ms=[4.0])
    path = merge.write(tmp_path, Shard(1, 1), whole, [done], "")
    assert cli.main(["matrix-merge", "--output", str(tmp_path), str(path)]) == cli.EXIT_OK
    assert json.loads((tmp_path / "matrix.json").read_text())[0]["median_ms"] == 4.0
