"""Generated regions of a Markdown page: find them by their markers and fill them from their renderers."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

COMMAND = "python -m tools.docgen"
_BEGIN = re.compile(r"^<!-- BEGIN GENERATED: (?P<name>[\w:.-]+) \(python -m tools\.docgen\) -->$", re.MULTILINE)


class RegionError(Exception):
    """A page whose markers are broken, or a region nobody can render; the message names the page and the fix."""


@dataclass(frozen=True, slots=True)
class Region:
    name: str
    start: int  # offset of the first character after the BEGIN line's newline
    end: int  # offset of the END marker


def begin(name: str) -> str:
    return f"<!-- BEGIN GENERATED: {name} ({COMMAND}) -->"


def end(name: str) -> str:
    return f"<!-- END GENERATED: {name} -->"


def find(text: str, page: str) -> list[Region]:
    """Every region of ``text``, in order; RegionError if a BEGIN has no END or regions nest."""
    found: list[Region] = []
    position = 0
    for match in _BEGIN.finditer(text):
        if match.start() < position:
            raise RegionError(f"{page}: region {match['name']} begins inside another region; close that one first")
        name = match["name"]
        start = match.end() + 1
        closing = text.find(f"\n{end(name)}", match.end())
        if closing < 0:
            raise RegionError(f"{page}: region {name} has no `{end(name)}` line; add it after the region")
        found.append(Region(name, start, closing + 1))
        position = closing + 1
    return found


def fill(text: str, page: str, render: Callable[[str], str]) -> str:
    """``text`` with every region's body replaced by ``render(name)``, and a blank line before the END marker (a
    table would otherwise take the marker for one more row)."""
    parts: list[str] = []
    done = 0
    for region in find(text, page):
        body = render(region.name).strip("\n")
        parts += [text[done : region.start], f"{body}\n\n" if body else ""]
        done = region.end
    parts.append(text[done:])
    return "".join(parts)


def check_described(where: str, what: str, known: Sequence[str], described: Collection[str]) -> None:
    """RegionError unless the names ``where`` describes are exactly the ``known`` ones the code has."""
    missing = [name for name in known if name not in described]
    gone = [name for name in described if name not in known]
    if missing or gone:
        raise RegionError(
            f"{where}: {what} and its descriptions differ (undescribed: {', '.join(missing) or 'none'}; "
            f"described but gone: {', '.join(gone) or 'none'}); describe each one there"
        )
