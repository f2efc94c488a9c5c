"""What the link has received for the application and not handed over yet: a queue that can be ended with the link's
reason, and that drops its oldest item when full (for datagrams, where the newest is worth the most)."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Inbox(Generic[T]):
    """Items in arrival order; ``get`` waits for one, or raises the error the inbox was ended with."""

    def __init__(self, capacity: int | None = None) -> None:
        self._items: deque[T] = deque(maxlen=capacity)
        self._waiters: list[asyncio.Future[None]] = []
        self._error: Exception | None = None

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> tuple[T, ...]:
        """What waits to be taken, oldest first."""
        return tuple(self._items)

    def put(self, item: T) -> bool:
        """Add ``item``; False when the inbox was full and its oldest item was dropped to make room."""
        full = self._items.maxlen is not None and len(self._items) == self._items.maxlen
        self._items.append(item)
        self._wake()
        return not full

    def end(self, error: Exception) -> None:
        """No more items will come: ``get`` raises ``error`` once those already here are taken."""
        if self._error is None:
            self._error = error
            self._wake()

    async def get(self) -> T:
        while not self._items:
            if self._error is not None:
                raise self._error
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                self._waiters.remove(waiter)
        return self._items.popleft()

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
