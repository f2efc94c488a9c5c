"""The code a page names, checked: a dotted name in a code span (``punch.peer.client.RendezvousClient.register``)
must import, a repository path (``netns/topologies/cgnat.yaml``) must exist, a test file (``test_punch_move.py``)
or test (``test_the_lan_path_beats_the_nats_hairpin``) must be found under tests/. When code moves, the page
fails here, loudly, instead of sending readers to a name that is gone."""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from tools.docgen.links import parser

DOTTED = re.compile(r"^(?:punch|netns|bench|tools)(?:\.[A-Za-z_]\w*)+$")
REPO_PATH = re.compile(r"^(?:punch|netns|bench|tools|tests|docs|docker|\.ci|\.github)/[\w./*-]*$")
TEST_FILE = re.compile(r"^test_\w+\.py$")
TEST_NAME = re.compile(r"^test_\w+$")


def code_spans(path: Path) -> Iterator[str]:
    for token in parser().parse(path.read_text(encoding="utf-8")):
        for child in token.children or ():
            if child.type == "code_inline":
                yield child.content.strip()


def resolve(dotted: str) -> str | None:
    """None if ``dotted`` names a module or an attribute reachable from one; else why not."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            found: object = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name is not None and not f"{module_name}.".startswith(f"{error.name}."):
                return f"importing {module_name} failed: {error}"  # a module it imports is missing
            continue
        except Exception as error:  # an import that fails for another reason is a finding too
            return f"importing {module_name} failed: {error}"
        for depth, attribute in enumerate(parts[cut:], start=cut):
            if not hasattr(found, attribute):
                return f"{'.'.join(parts[:depth])} has no {attribute}"
            found = getattr(found, attribute)
        return None
    return f"no module {parts[0]}"


@cache
def _tests(root: Path) -> tuple[frozenset[str], str]:
    files = sorted((root / "tests").rglob("test_*.py"))
    return frozenset(f.name for f in files), "\n".join(f.read_text(encoding="utf-8") for f in files)


def problems(path: Path, root: Path) -> list[str]:
    """One line per name on ``path`` that points at no code."""
    found = []
    name = path.relative_to(root)
    test_files, test_source = _tests(root)
    for span in sorted(set(code_spans(path))):
        if DOTTED.match(span):
            why = resolve(span)
            if why is not None:
                found.append(f"{name}: `{span}`: {why}")
        elif REPO_PATH.match(span):
            if not (any(root.glob(span)) if "*" in span else (root / span).exists()):
                found.append(f"{name}: `{span}` does not exist")
        elif TEST_FILE.match(span):
            if span not in test_files:
                found.append(f"{name}: `{span}` is no file under tests/")
        elif TEST_NAME.match(span) and not re.search(rf"def {span}\(", test_source):
            found.append(f"{name}: `{span}` is no test under tests/")
    return found
