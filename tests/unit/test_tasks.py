"""punch.peer.tasks.settle: a task ended, its outcome seen, and no turn of the loop for one that has ended."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from punch.peer.tasks import settle

pytestmark = pytest.mark.unit


def test_a_running_task_is_cancelled_and_awaited() -> None:
    async def scenario() -> None:
        running = asyncio.ensure_future(asyncio.sleep(60))
        await asyncio.sleep(0)
        await settle(running)
        assert running.cancelled()

    asyncio.run(scenario())


def test_an_ended_task_takes_no_turn_and_its_error_counts_as_seen(caplog: pytest.LogCaptureFixture) -> None:
    turns: list[str] = []

    async def fail() -> None:
        raise ValueError("lost answer")

    async def scenario() -> None:
        failed = asyncio.ensure_future(fail())
        await asyncio.wait({failed})  # ended, its error not retrieved
        asyncio.get_running_loop().call_soon(turns.append, "next turn")
        await settle(failed)
        assert turns == []  # settle returned before the loop turned

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        asyncio.run(scenario())
        gc.collect()
    assert "never retrieved" not in caplog.text
