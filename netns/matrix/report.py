"""Writing the connectivity matrix: ``matrix.md`` (tables for people), ``matrix.json`` (one object per cell) and
``matrix.html`` (coloured grids, netns/html.py)."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path

from netns.matrix import html
from netns.matrix.cells import PAIR_PRESETS, behaviour_of
from netns.matrix.runner import Result

# The tables after the preset pairs: (title, groups of cells)
OTHER_TABLES = (
    ("Same NAT and double NAT (CGNAT)", ("same-nat", "cgnat")),
    ("Networks where traversal fails in the wild (blocked UDP, port mapping, mobile carrier, IPv6)", ("networks",)),
)


def _cell_text(result: Result) -> str:
    if result.error:
        return "error"
    median = f" · {result.median_ms:.0f} ms" if result.median_ms is not None else ""
    others = ", ".join(f"{n} {path}" for path, n in result.paths.most_common()[1:])
    return f"{result.path} {result.successes}/{result.trials}{f' ({others})' if others else ''}{median}"


def _pair_table(results: Sequence[Result], firewall: str) -> list[str]:
    by_pair = {(dict(r.cell.nat)["nat10"], dict(r.cell.nat)["nat14"]): r for r in results}
    presets = [p for p in PAIR_PRESETS if any(p == a for a, _ in by_pair)]
    lines = [
        f"### Router firewall `{firewall}`",
        "",
        "| nat10 \\ nat14 | " + " | ".join(presets) + " |",
        "|---|" + "---|" * len(presets),
    ]
    for a in presets:
        row = [_cell_text(by_pair[(a, b)]) if (a, b) in by_pair else "" for b in presets]
        lines.append(f"| **{a}** | " + " | ".join(row) + " |")
    return [*lines, ""]


def measured() -> str:
    """When and where the cells run: today, this machine."""
    return (
        f"{time.strftime('%Y-%m-%d')} on {platform.node()} ({platform.machine()}, {os.cpu_count()} cores, "
        f"Linux {platform.release()})"
    )


def markdown(results: Sequence[Result], trials: int, command: str, where: str | None = None) -> str:
    """The report: one table per firewall kind for the preset pairs, one for same-NAT and CGNAT, the theory.

    ``where`` says when and where the cells ran (``measured()``: today, this machine; the merge of a sharded run
    names each runner's).
    """
    lines = [
        "# Connectivity matrix through real kernel NAT",
        "",
        f"Measured {where or measured()} by `{command}`: {trials} trial(s) per cell, each cell a lab of its own.",
        "A cell reads: the path most trials took, successful trials / trials (in brackets, the trials that took "
        "another path), median punch time.",
        "Rows are peer10's NAT (nat10), columns peer14's NAT (nat14). Presets in RFC 4787 terms:",
        "",
    ]
    lines += [f"- `{p}`: {behaviour_of(p)}" for p in PAIR_PRESETS]
    lines.append("")
    pairs = [r for r in results if r.cell.group == "pairs"]
    for firewall in dict.fromkeys(r.cell.firewall for r in pairs):
        lines += _pair_table([r for r in pairs if r.cell.firewall == firewall], firewall)
    for title, groups in OTHER_TABLES:
        others = [r for r in results if r.cell.group in groups]
        if not others:
            continue
        lines += [f"### {title}", "", "| cell | peers | result | theory |", "|---|---|---|---|"]
        lines += [f"| {r.cell.name} | {' ↔ '.join(r.cell.peers)} | {_cell_text(r)} | {r.cell.theory} |" for r in others]
        lines.append("")
    theories = dict.fromkeys(r.cell.theory for r in pairs)
    if theories:
        lines += ["### What theory allows, per preset pair", ""]
        for text in theories:
            names = [r.cell.name.split(",")[0] for r in pairs if r.cell.theory == text]
            lines.append(f"- {text}. Cells: {', '.join(dict.fromkeys(names))}.")
        lines.append("")
    failed = [r for r in results if r.error or r.failures]
    if failed:
        lines += ["### Failures (first of each cell)", ""]
        lines += [f"- {r.cell.name}: {r.error or r.failures[0]}" for r in failed]
        lines.append("")
    return "\n".join(lines)


def write(
    results: Sequence[Result], directory: Path, trials: int, command: str, where: str | None = None
) -> tuple[Path, Path, Path]:
    """Write ``matrix.md``, ``matrix.json`` and ``matrix.html`` into ``directory``; their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    md, js = directory / "matrix.md", directory / "matrix.json"
    md.write_text(markdown(results, trials, command, where), encoding="utf-8")
    cells = [r.as_dict() for r in results]
    js.write_text(json.dumps(cells, indent=2) + "\n", encoding="utf-8")
    return md, js, html.write(cells, directory / "matrix.html")
