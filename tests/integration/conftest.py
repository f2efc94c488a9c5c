"""Loopback fixtures: a rendezvous server started in-process on an ephemeral port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest_asyncio

from punch.rendezvous.server import RendezvousServer
from punch.stun.transaction import RetransmitPolicy

FAST = RetransmitPolicy(rto=0.05, backoff=2.0, max_rto=0.4, max_sends=7, last_wait=4.0)


@pytest_asyncio.fixture
async def server() -> AsyncIterator[RendezvousServer]:
    async with RendezvousServer(push_policy=FAST) as running:
        await running.start(("127.0.0.1", 0))
        yield running
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not [t for t in leftover if "RendezvousServer" in repr(t)], leftover
