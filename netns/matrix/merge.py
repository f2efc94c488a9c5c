"""A shard's results (``shard-K-of-N.json``, written by ``python -m netns matrix --shard K/N``) and their merge
into one matrix (``python -m netns matrix-merge``): the Results one unsharded run of the same cells would have,
for netns/matrix/report.py to write.

A shard file holds what makes it part of one matrix (the flags every shard must share, the whole matrix's cells),
when and where it ran, and its own cells' trials with every trial's time, so that the merged medians are the
unsharded run's. The merge refuses, in one line naming the file and the fix, what would not make that matrix:
a file that is no shard, another format, another matrix, cells this netns would not give that shard, a shard
given twice or missing.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from netns.errors import LabError, ShardError
from netns.matrix import cells as matrix_cells
from netns.matrix.runner import Result
from netns.matrix.shards import Shard

KEY = "netns_matrix_shard"  # its value is the file's format
FORMAT = 1
_GIVE = "give the shard-K-of-N.json files that `python -m netns matrix --shard K/N` writes"


@dataclass(frozen=True, slots=True)
class Matrix:
    """What makes shards parts of one matrix: the flags every shard of it runs with."""

    firewalls: tuple[str, ...]
    presets: tuple[str, ...]
    groups: tuple[str, ...]
    trials: int
    setup: str
    trial: str
    shards: int

    def cells(self) -> list[matrix_cells.Cell]:
        return matrix_cells.select(self.firewalls, self.presets, self.groups)


FLAGS = {  # Matrix field -> the flag that sets it
    "firewalls": "--firewall",
    "presets": "--preset",
    "groups": "--group",
    "trials": "--trials",
    "setup": "--setup",
    "trial": "--trial",
    "shards": "--shard's N",
}
_CHOICES = {
    "firewalls": matrix_cells.FIREWALL_KINDS,
    "presets": matrix_cells.PAIR_PRESETS,
    "groups": matrix_cells.GROUPS,
}
_TRIALS = {"trials": int, "successes": int, "paths": dict, "ms": list, "failures": list, "error": str}


@dataclass(frozen=True, slots=True)
class ShardResults:
    """One shard file, read and checked for its form."""

    path: Path
    shard: Shard
    matrix: Matrix
    cells: list[dict[str, Any]]  # the whole matrix's cells (Cell.describe), as the shard's netns made them
    where: str  # when and where it ran (report.measured)
    results: list[dict[str, Any]]  # its own cells: Result.as_dict and every trial's time ("ms")


def write(directory: Path, shard: Shard, matrix: Matrix, results: Sequence[Result], where: str) -> Path:
    """Write the shard's file into ``directory``; its path."""
    directory.mkdir(parents=True, exist_ok=True)
    data = {
        KEY: FORMAT,
        "shard": str(shard),
        "matrix": dataclasses.asdict(matrix),
        "cells": [cell.describe() for cell in matrix.cells()],
        "where": where,
        "results": [{**result.as_dict(), "ms": result.ms} for result in results],
    }
    path = directory / shard.file_name
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def read(path: Path) -> ShardResults:
    """One shard file; ShardError naming it and the fix if it is none."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ShardError(
            f"{path}: cannot read it as JSON ({getattr(error, 'strerror', None) or error}); {_GIVE}"
        ) from None
    if not isinstance(data, dict) or KEY not in data:
        raise ShardError(f"{path}: not a shard's results (no {KEY} key); {_GIVE}")
    if data[KEY] != FORMAT:
        raise ShardError(
            f"{path}: a shard file of format {data[KEY]!r}, and this netns reads format {FORMAT}; "
            "merge with the netns that ran the shards"
        )
    damaged = f"{path}: damaged ({{}}); run its shard again"
    try:
        shard = Shard.parse(str(data["shard"]))
        matrix = _matrix(data["matrix"])
    except (KeyError, TypeError, ValueError, LabError) as error:
        raise ShardError(damaged.format(f"shard or matrix: {error}")) from None
    if shard.count != matrix.shards:
        raise ShardError(damaged.format(f"shard {shard} of a matrix in {matrix.shards}"))
    where, cells, results = data.get("where"), data.get("cells"), data.get("results")
    if not isinstance(where, str) or not _dicts(cells) or not _dicts(results):
        raise ShardError(damaged.format("where, cells or results missing"))
    for result in results:
        problem = _trials_problem(result)
        if problem:
            raise ShardError(damaged.format(f"cell {result.get('cell')!r}: {problem}"))
    return ShardResults(path, shard, matrix, cells, where, results)


def _dicts(value: object) -> TypeGuard[list[dict[str, Any]]]:
    return isinstance(value, list) and all(isinstance(item, dict) for item in value)


def _matrix(data: Mapping[str, Any]) -> Matrix:
    fields = {}
    for name, choices in _CHOICES.items():
        values = data[name]
        if not isinstance(values, list) or not set(values) <= set(choices):
            raise ValueError(f"{name} must be some of {', '.join(choices)}")
        fields[name] = tuple(values)
    for name, kind in (("trials", int), ("setup", str), ("trial", str), ("shards", int)):
        if not isinstance(data[name], kind):
            raise TypeError(f"{name} must be {kind.__name__}")
    return Matrix(**fields, trials=data["trials"], setup=data["setup"], trial=data["trial"], shards=data["shards"])


def _trials_problem(result: Mapping[str, Any]) -> str:
    """What is wrong with one cell's trials in a shard file ("" if nothing)."""
    for name, kind in _TRIALS.items():
        if not isinstance(result.get(name), kind):
            return f"{name} must be {kind.__name__}"
    if not all(isinstance(n, int) for n in result["paths"].values()):
        return "paths must count trials"
    if not all(isinstance(ms, int | float) for ms in result["ms"]):
        return "ms must be numbers"
    if not all(isinstance(failure, str) for failure in result["failures"]):
        return "failures must be text"
    return ""


@dataclass(frozen=True, slots=True)
class Merged:
    """The matrix the shards make: every cell's Result in the matrix's order, its flags, where its shards ran."""

    results: list[Result]
    matrix: Matrix
    where: str


def merge(paths: Sequence[Path]) -> Merged:
    """The shards' results as one matrix; ShardError (one line: the file, what is wrong, the fix) if they are not
    exactly the shards of one matrix."""
    if not paths:
        raise ShardError(f"no shard files given; {_GIVE}")
    files = [read(path) for path in paths]
    first = files[0]
    for other in files[1:]:
        _same_matrix(first, other)
    whole = first.matrix.cells()
    described = json.loads(json.dumps([cell.describe() for cell in whole]))  # as a shard's file holds them
    by_shard: dict[Shard, ShardResults] = {}
    for file in files:
        if file.cells != described:
            raise ShardError(
                f"{file.path}: its cells are not the ones this netns makes for its flags (another version of netns "
                "ran it); merge with the netns that ran the shards"
            )
        _check_share(file, [cell.name for cell in file.shard.share(whole)])
        if file.shard in by_shard:
            seen = by_shard[file.shard].path
            twice = "is given twice" if seen == file.path else f"is shard {file.shard} again, as {seen} is"
            raise ShardError(
                f"{file.path} {twice}: its cells would be in the matrix twice; give each shard's file once"
            )
        by_shard[file.shard] = file
    missing = [shard for shard in Shard.every(first.matrix.shards) if shard not in by_shard]
    if missing:
        cells = sum(len(shard.share(whole)) for shard in missing)
        raise ShardError(
            f"shard {', '.join(map(str, missing))} {'is' if len(missing) == 1 else 'are'} missing ({cells} of the "
            f"matrix's {len(whole)} cells are in no file given); add {', '.join(s.file_name for s in missing)}, "
            "which `python -m netns matrix --shard K/N` writes"
        )
    found = {result["cell"]: result for file in by_shard.values() for result in file.results}
    results = [_result(cell, found[cell.name]) for cell in whole]
    where = " and ".join(dict.fromkeys(by_shard[shard].where for shard in sorted(by_shard, key=lambda s: s.index)))
    return Merged(results, first.matrix, where)


def _same_matrix(first: ShardResults, other: ShardResults) -> None:
    for field in dataclasses.fields(Matrix):
        mine, theirs = getattr(first.matrix, field.name), getattr(other.matrix, field.name)
        if mine != theirs:
            raise ShardError(
                f"{other.path}: a shard of another matrix than {first.path} (its {FLAGS[field.name]} is "
                f"{_shown(theirs)}, not {_shown(mine)}); merge the shards of one run, each run with the same flags"
            )


def _shown(value: object) -> str:
    return " ".join(value) if isinstance(value, tuple) else repr(value) if isinstance(value, str) else str(value)


def _check_share(file: ShardResults, share: list[str]) -> None:
    """The file holds each cell of its shard once, and no other."""
    names = [str(result.get("cell")) for result in file.results]
    again = f"run shard {file.shard} again"
    for name, count in Counter(names).items():
        if count > 1:
            raise ShardError(f"{file.path}: cell {name!r} is in it {count} times; {again}")
        if name not in share:
            raise ShardError(f"{file.path}: cell {name!r} is not shard {file.shard}'s; {again}")
    lacking = [name for name in share if name not in names]
    if lacking:
        more = f" and {len(lacking) - 1} more" if len(lacking) > 1 else ""
        raise ShardError(f"{file.path}: cell {lacking[0]!r}{more} of shard {file.shard} missing; {again}")


def _result(cell: matrix_cells.Cell, data: Mapping[str, Any]) -> Result:
    return Result(
        cell,
        trials=data["trials"],
        successes=data["successes"],
        paths=Counter(data["paths"]),
        ms=[float(ms) for ms in data["ms"]],
        failures=list(data["failures"]),
        error=data["error"],
    )
