"""What every benchmark report shares: the machine line, percentiles and Markdown tables.

New benchmarks use these; each writes its own ``bench/<name>.md``, and ``just bench`` gathers them into
``bench/results.md``.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path


def machine() -> str:
    """``<date> on <host> (<arch>, <n> cores, Linux <release>, Python <version>)``, for a report's first line."""
    return (
        f"{time.strftime('%Y-%m-%d')} on {platform.node()} ({platform.machine()}, {os.cpu_count()} cores, "
        f"Linux {platform.release()}, Python {platform.python_version()})"
    )


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile: the smallest value with at least ``share`` of the values at or below it."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * share) - 1)]


def median_p95(values: Sequence[float], digits: int = 1) -> tuple[str, str]:
    """Median and p95 formatted with ``digits`` decimals, or ``-`` for no values."""
    if not values:
        return "-", "-"
    return f"{statistics.median(values):.{digits}f}", f"{percentile(values, 0.95):.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A Markdown table, one line per row."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def write_report(path: Path, lines: Sequence[str]) -> str:
    """Write the report (creating its directory) and return its text, which the caller usually prints."""
    text = "\n".join(lines).rstrip("\n") + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text
