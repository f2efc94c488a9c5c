"""Inbox: the link's queue of what the application has not taken yet (accepted streams, datagrams)."""

from __future__ import annotations

import asyncio

import pytest

from punch.transport import LinkClosed
from punch.transport.inbox import Inbox

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]


async def test_the_inbox_keeps_order_drops_the_oldest_and_ends_with_its_reason() -> None:
    inbox: Inbox[int] = Inbox(capacity=2)
    assert inbox.put(1)
    assert inbox.put(2)
    assert not inbox.put(3)  # full: 1 goes
    assert inbox.items() == (2, 3)
    waiting = [asyncio.ensure_future(inbox.get()) for _ in range(3)]
    inbox.end(LinkClosed("over"))
    assert [await w for w in waiting[:2]] == [2, 3]
    with pytest.raises(LinkClosed, match="over"):
        await waiting[2]


async def test_every_waiter_is_woken() -> None:
    inbox: Inbox[str] = Inbox()
    first, second = asyncio.ensure_future(inbox.get()), asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)  # one turn of the loop: both start and wait
    assert len(inbox._waiters) == 2
    inbox.put("a")
    inbox.put("b")
    assert sorted([await first, await second]) == ["a", "b"]
