"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest

from punch.stun.fastpath import Accelerator, load


@pytest.fixture(scope="module")
def fast() -> Accelerator:
    """The C accelerator (punch/_fastpath.c); the test is skipped where it is not built or switched off."""
    accelerator = load()
    if accelerator is None:
        pytest.skip("punch._fastpath is not built here (or PUNCH_NO_FASTPATH is set)")
    return accelerator
