"""Markdown that the generated regions share: tables whose cells may hold any text, and code spans."""

from __future__ import annotations

from collections.abc import Sequence

EMPTY = "\N{EN DASH}"  # a cell with nothing to say


def cell(value: object) -> str:
    """One table cell: a pipe would end the cell and a newline the row, so neither survives as itself."""
    return " ".join(str(value).split()).replace("|", "\\|") or EMPTY


def code(text: str) -> str:
    """A code span holding ``text`` (longer fences where the text has backticks)."""
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A GitHub Markdown table, one line per row."""
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return lines
