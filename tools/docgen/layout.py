"""The layout of the code (docs/layout.md) from the tree itself: every package, and every module with the first
sentence of its own docstring, so the page names exactly the modules that exist and says what each one does in
the module's own words. A module without a docstring stops the generator."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

from tools.docgen.markdown import table
from tools.docgen.regions import RegionError

TOWERS = ("punch", "netns", "bench", "tools")
SOURCES = (".py", ".c", ".h")
SKIPPED = ("__init__.py", "__main__.py")
_SENTENCE_END = re.compile(r"(?<=[.])\s+(?=[A-Z`(*])")
_ROLE = re.compile(r":\w+:`~?([^`]+)`")


def _first_sentence(text: str) -> str:
    paragraph = " ".join(text.strip().split("\n\n")[0].split())
    sentence = _SENTENCE_END.split(paragraph)[0]
    return _ROLE.sub(r"`\1`", sentence).replace("``", "`")


def describe(path: Path, root: Path) -> str:
    """What ``path`` does, in the first sentence of its docstring (Python) or its first comment (C)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".py":
        docstring = ast.get_docstring(ast.parse(text))
    else:
        match = re.match(r"\s*/\*(.*?)\*/", text, flags=re.DOTALL)
        docstring = None if match is None else re.sub(r"^\s*\* ?", "", match[1], flags=re.MULTILINE)
    if not docstring:
        raise RegionError(f"{path.relative_to(root)} has no docstring; its first sentence should say what it does")
    return _first_sentence(docstring)


def _modules(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in SOURCES and p.name not in SKIPPED)


def _packages(root: Path) -> list[Path]:
    found = []
    for tower in TOWERS:
        for directory, subdirectories, _ in os.walk(root / tower):
            subdirectories[:] = sorted(d for d in subdirectories if not d.startswith((".", "__")))
            if (Path(directory) / "__init__.py").exists():
                found.append(Path(directory))
    return found


def layout(root: Path, page: Path) -> str:
    lines: list[str] = []
    for package in _packages(root):
        where = package.relative_to(root)
        init = package / "__init__.py"
        about = describe(init, root) if init.read_text(encoding="utf-8").strip() else ""
        lines += [f"### `{where}/`", ""]
        if about:
            lines += [about, ""]
        rows = []
        for module in _modules(package):
            link = os.path.relpath(module, page.parent)
            rows.append([f"[{module.name}]({link})", describe(module, root)])
        for data in sorted(d for d in package.iterdir() if d.is_dir() and not (d / "__init__.py").exists()):
            files = sorted(p.name for p in data.iterdir() if p.is_file())
            if data.name.startswith(("_", ".")) or not files:
                continue
            rows.append([f"[{data.name}/]({os.path.relpath(data, page.parent)})", "files: " + ", ".join(files)])
        if rows:
            lines += [*table(["module", "what it does"], rows), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def modules(root: Path) -> list[str]:
    """Every module the layout must name, as a path from the root (what tests compare the page with)."""
    return [str(m.relative_to(root)) for package in _packages(root) for m in _modules(package)]
