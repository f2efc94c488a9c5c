"""``python -m tools.docgen`` rewrites the generated regions of README.md and docs/*.md; ``--check`` only says which
pages are stale (exit 1), for tests and CI."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from pathlib import Path

from tools.docgen import api_reference, cli_reference, layout, pictures, protocol, regions, results, topology
from tools.docgen.regions import RegionError

ROOT = Path(__file__).resolve().parents[2]
Renderer = Callable[[Path, Path, str], str]  # (root, page, argument) -> the region's Markdown

RENDERERS: dict[str, Renderer] = {
    "cli:punch": lambda root, page, _: cli_reference.punch_reference(root),
    "cli:netns": lambda root, page, _: cli_reference.netns_reference(root),
    "cli:just": lambda root, page, _: cli_reference.just_reference(root),
    "protocol:methods": lambda root, page, _: protocol.methods(),
    "protocol:attributes": lambda root, page, _: protocol.attributes(),
    "topology:keys": lambda root, page, _: topology.keys(),
    "topology:presets": lambda root, page, _: topology.presets(),
    "topology:files": lambda root, page, _: topology.files(root),
    "results:headline": lambda root, page, _: results.headline(root, page),
    "results": results.report_tables,
    "diagram": lambda root, page, name: pictures.diagram(root, name),
    "matrix-page": lambda root, page, _: pictures.matrix_page(root, page),
    "layout": lambda root, page, _: layout.layout(root, page),
    "api": lambda root, page, _: api_reference.reference(root),
    "example": lambda root, page, name: api_reference.example(root, name),
}


def pages(root: Path) -> list[Path]:
    """The pages that may hold generated regions: the front page and every page of docs/."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def render(root: Path, page: Path, name: str) -> str:
    renderer = RENDERERS.get(name)
    argument = ""
    if renderer is None and ":" in name:
        kind, argument = name.split(":", 1)
        renderer = RENDERERS.get(kind)
    if renderer is None:
        raise RegionError(f"{page.relative_to(root)}: no renderer for region {name}; one of {', '.join(RENDERERS)}")
    return renderer(root, page, argument)


def generate(root: Path) -> dict[Path, str]:
    """Every page's text with its regions filled (RegionError if one cannot be)."""
    filled = {}
    embedded: set[str] = set()
    for page in pages(root):
        text = page.read_text(encoding="utf-8")
        name = str(page.relative_to(root))
        embedded.update(r.name for r in regions.find(text, name))
        filled[page] = regions.fill(text, name, functools.partial(render, root, page))
    orphans = [d for d in pictures.diagrams(root) if f"diagram:{d}" not in embedded]
    if orphans:
        raise RegionError(
            f"{', '.join(f'{pictures.DIAGRAMS}/{d}.mmd' for d in orphans)} is shown nowhere; add a region "
            f"`{regions.begin('diagram:NAME')}` for it to docs/design.md"
        )
    return filled


def stale(root: Path) -> list[str]:
    """One line per page whose regions differ from what the generator writes."""
    return [
        f"{page.relative_to(root)} is stale; run `{regions.COMMAND}` (or `just docs`) and commit the result"
        for page, text in generate(root).items()
        if page.read_text(encoding="utf-8") != text
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.docgen", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 naming each stale page")
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = stale(ROOT)
            for problem in problems:
                print(problem, file=sys.stderr)
            return 1 if problems else 0
        for page, text in generate(ROOT).items():
            if page.read_text(encoding="utf-8") != text:
                page.write_text(text, encoding="utf-8")
                print(f"wrote {page.relative_to(ROOT)}")
    except RegionError as error:
        print(f"docgen: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
