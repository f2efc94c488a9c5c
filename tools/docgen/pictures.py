"""What the pages show of files made elsewhere: the Mermaid diagrams of real lab runs (docs/diagrams/*.mmd, written
by `punch diagram`) and the connectivity matrix as a page (bench/matrix.html). A region for one that does not exist
yet says so in a line (a diagram) or stays empty (the matrix page), so no link ever points nowhere."""

from __future__ import annotations

import os
from pathlib import Path

DIAGRAMS = Path("docs") / "diagrams"
MATRIX_PAGE = Path("bench") / "matrix.html"


def diagram(root: Path, name: str) -> str:
    path = root / DIAGRAMS / f"{name}.mmd"
    if not path.exists():
        return f"*Diagram `{name}` not generated yet: `just docs-diagrams`.*\n"
    return "```mermaid\n" + path.read_text(encoding="utf-8").strip("\n") + "\n```\n"


def diagrams(root: Path) -> list[str]:
    """The names of the diagrams that exist."""
    return sorted(p.stem for p in (root / DIAGRAMS).glob("*.mmd"))


def matrix_page(root: Path, page: Path) -> str:
    if not (root / MATRIX_PAGE).exists():
        return ""
    target = os.path.relpath(root / MATRIX_PAGE, page.parent)
    return f"The matrix as a page of its own, every cell with its trials: [{MATRIX_PAGE}]({target}).\n"
