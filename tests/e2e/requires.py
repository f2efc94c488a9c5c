"""Skips for the lab's network tests whose tools are missing, naming the fix; with ``PUNCH_REQUIRE_NETWORKS=1``
(.ci/run, which installs them) a missing tool fails the module instead, so CI cannot pass them by skipping."""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRE = "PUNCH_REQUIRE_NETWORKS"


def missing(tools: tuple[str, ...], fix: str) -> str | None:
    """Why the tests cannot run (which of ``tools`` is not on PATH, and ``fix``), or None."""
    absent = [tool for tool in tools if shutil.which(tool) is None]
    return f"needs {', '.join(absent)}: {fix}" if absent else None


def marks(reason: str | None) -> list[pytest.MarkDecorator]:
    """A skip with ``reason`` (none if it is None); under PUNCH_REQUIRE_NETWORKS=1 a failure instead."""
    if reason is None:
        return []
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"{REQUIRE}=1, but the test {reason}", pytrace=False)
    return [pytest.mark.skip(reason=reason)]
