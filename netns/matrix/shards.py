"""Which cells of the connectivity matrix a shard runs (``python -m netns matrix --shard K/N``).

Cells go to shards in turn, in the matrix's own order: cell i (from 0) is shard (i mod N) + 1's. The order is the
code's (netns/matrix/cells.py), so the assignment is the same on every run and every machine, every cell is in
exactly one shard, and shards differ by at most one cell. Shards are balanced by count: what a cell costs is the
time its trials take, and that belongs to the software under test, which the lab does not know. Taking cells in
turn still spreads the costly ones, which sit side by side (a symmetric row, the networks that fail), over the
shards. netns/matrix/merge.py joins the shards' results into one report.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from netns.errors import ShardError
from netns.matrix.cells import Cell

_FORM = re.compile(r"(\d+)/(\d+)")
_FIX = "write --shard K/N with 1 <= K <= N, e.g. --shard 1/4 for the first of four shards"


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` of ``count`` (both from 1): ``--shard 2/4`` is Shard(2, 4)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ShardError(f"--shard {self}: N must be at least 1; {_FIX}")
        if not 1 <= self.index <= self.count:
            raise ShardError(f"--shard {self}: K must be from 1 to {self.count}; {_FIX}")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``K/N`` as given to ``--shard``; ShardError naming the flag and the fix if it is not one."""
        form = _FORM.fullmatch(text.strip())
        if form is None:
            raise ShardError(f"--shard {text}: not K/N; {_FIX}")
        return cls(int(form[1]), int(form[2]))

    @property
    def file_name(self) -> str:
        """The file the shard's results go to: ``shard-2-of-4.json``."""
        return f"shard-{self.index}-of-{self.count}.json"

    def share(self, cells: Sequence[Cell]) -> list[Cell]:
        """The cells of ``cells`` (the whole matrix, in its order) this shard runs."""
        return [cell for number, cell in enumerate(cells) if number % self.count == self.index - 1]

    @classmethod
    def every(cls, count: int) -> list[Shard]:
        """The ``count`` shards of a matrix split in ``count``: 1/N to N/N."""
        return [cls(index, count) for index in range(1, count + 1)]
