"""Links and anchors of Markdown pages, as GitHub renders them: every relative link must reach a file, and every
``#anchor`` a heading (or an ``<a id>``) of the page it points into."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from urllib.parse import unquote

from markdown_it import MarkdownIt
from markdown_it.token import Token

_HTML_ID = re.compile(r"""<a\s+(?:name|id)=["']([^"']+)["']""")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def parser() -> MarkdownIt:
    return MarkdownIt("commonmark").enable("table")


@cache
def _tokens(path: Path) -> tuple[Token, ...]:
    return tuple(parser().parse(path.read_text(encoding="utf-8")))


def _inline_text(token: Token) -> str:
    return "".join(child.content for child in token.children or () if child.type in ("text", "code_inline"))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to dashes."""
    kept = "".join(c for c in heading.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a page offers: its headings' slugs (repeats numbered as GitHub does) and its ``<a id>``s."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    tokens = _tokens(path)
    for i, token in enumerate(tokens):
        if token.type == "heading_open":
            base = slug(_inline_text(tokens[i + 1]))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        elif token.type in ("html_block", "html_inline") or token.type == "inline":
            sources = [token.content] if token.type != "inline" else [c.content for c in token.children or ()]
            for source in sources:
                found.update(_HTML_ID.findall(source))
    return found


def links(path: Path) -> Iterator[str]:
    """The targets of every link and image on the page."""
    for token in _tokens(path):
        for child in token.children or ():
            if child.type == "link_open":
                yield str(child.attrs.get("href", ""))
            elif child.type == "image":
                yield str(child.attrs.get("src", ""))


def broken(path: Path, root: Path) -> list[str]:
    """One line per link of ``path`` that points nowhere."""
    problems = []
    name = path.relative_to(root)
    for target in links(path):
        if _SCHEME.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / unquote(file_part)).resolve() if file_part else path
        if not destination.exists():
            problems.append(f"{name}: link to {target} points nowhere")
        elif anchor and destination.suffix == ".md" and unquote(anchor) not in anchors(destination):
            problems.append(f"{name}: link to {target}: no heading or anchor #{anchor} there")
        elif root.resolve() not in (destination.resolve(), *destination.resolve().parents):
            problems.append(f"{name}: link to {target} leaves the repository")
    return problems
