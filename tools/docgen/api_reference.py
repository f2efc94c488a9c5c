"""docs/api.md's reference and examples from the code itself: punch.api's functions and the members of its
Connection with their signatures and the first sentence of their docstrings, and the example programs as they are
in examples/ (tests/integration/test_examples.py runs them), so the page cannot drift from what runs."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.docgen.markdown import code, table
from tools.docgen.regions import RegionError

EXAMPLES = Path("examples")


def example(root: Path, name: str) -> str:
    path = root / EXAMPLES / name
    if not path.is_file():
        raise RegionError(f"docs/api.md: example {name} is not in {EXAMPLES}/; name a file there")
    return f"`{EXAMPLES / name}`:\n\n```python\n" + path.read_text(encoding="utf-8").strip("\n") + "\n```\n"


_ROLE = re.compile(r":(?:meth|func|attr|class|data):`~?([\w.]+)`")


def _first_sentence(thing: Any) -> str:
    """The first sentence of ``thing``'s docstring, its reST roles and literals as Markdown code spans."""
    doc = inspect.getdoc(thing) or ""
    paragraph = " ".join(doc.split("\n\n")[0].split())
    end = paragraph.find(". ")
    sentence = paragraph if end < 0 else paragraph[: end + 1]
    return _ROLE.sub(r"`\1`", sentence).replace("``", "`")


def _call(owner: str, name: str, function: Callable[..., Any]) -> str:
    """How a program calls it: ``await conn.x(a, b)``, ``async for ... in conn.x()``, ``async with punch.x(...)``."""
    parameters = [p for p in inspect.signature(function).parameters.values() if p.name != "self"]
    shown = ", ".join(p.name if p.kind is not p.VAR_KEYWORD else f"**{p.name}" for p in parameters)
    call = f"{owner}.{name}({shown})"
    if inspect.isasyncgenfunction(function):
        return f"async for ... in {call}"
    if inspect.iscoroutinefunction(function):
        return f"await {call}"
    return call


def reference(root: Path) -> str:
    from punch import api

    rows: list[tuple[str, str]] = []
    for name in ("connect", "accept"):  # async context managers: their generator function holds the signature
        wrapped = getattr(api, name).__wrapped__
        call = _call("punch", name, wrapped).removeprefix("async for ... in ")
        rows.append((code(f"async with {call} as conn"), _first_sentence(wrapped)))
    rows.append((code(_call("punch.api", "run_peer", api.run_peer)), _first_sentence(api.run_peer)))
    for name, member in inspect.getmembers(api.Connection):
        if name.startswith("_") or name == "open":
            continue
        if isinstance(member, property):
            rows.append((code(f"conn.{name}"), _first_sentence(member.fget)))
        elif callable(member):
            rows.append((code(_call("conn", name, member)), _first_sentence(member)))
    rows.append((code("PathInfo(kind, remote)"), _first_sentence(api.PathInfo)))
    return "\n".join(table(("name", "what it does"), rows)) + "\n"
