"""Ending a task the caller no longer needs, without a turn of the event loop when it has ended already."""

from __future__ import annotations

import asyncio
from typing import Any


async def settle(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` if it still runs and wait for its end; either way its outcome counts as seen (asyncio does
    not report a finished task's error as never retrieved). Awaiting a task that has ended still costs a turn of
    the loop, and on the way from an introduction to a chosen path every turn is punch time: then none is taken."""
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    elif not task.cancelled():
        task.exception()
