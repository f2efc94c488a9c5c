"""punch.peer.clock: waking at an instant of the loop's clock, by a timerfd where there is one."""

from __future__ import annotations

import asyncio
import os
import select
import time

import pytest

from punch.peer import clock


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_timerfd_becomes_readable_at_its_instant_and_not_before() -> None:
    if clock._LIBC is None:
        pytest.skip("no timerfd in this C library")
    when = time.monotonic() + 0.05  # the clock of asyncio's loop.time()
    fd = clock.timer_at(when)
    assert fd is not None
    try:
        assert select.select([fd], [], [], 0)[0] == []
        assert select.select([fd], [], [], 5)[0] == [fd]
        assert time.monotonic() >= when
    finally:
        os.close(fd)


@pytest.mark.parametrize("timerfd", [True, False], ids=["timerfd", "asyncio.sleep"])
def test_sleep_until_returns_at_the_instant_or_later_and_leaves_no_descriptor(
    timerfd: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if timerfd and clock._LIBC is None:
        pytest.skip("no timerfd in this C library")
    if not timerfd:
        monkeypatch.setattr(clock, "_LIBC", None)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        before = open_descriptors()
        for delay in (0.0004, 0.0011, 0.02):
            when = loop.time() + delay
            await clock.sleep_until(when)
            assert loop.time() >= when
        assert open_descriptors() == before

    asyncio.run(scenario())


def test_an_instant_already_past_returns_at_once_without_a_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    armed: list[float] = []
    monkeypatch.setattr(clock, "timer_at", lambda when: armed.append(when))

    async def scenario() -> None:
        await clock.sleep_until(asyncio.get_running_loop().time() - 1)

    asyncio.run(scenario())
    assert armed == []


def test_a_cancelled_sleep_closes_its_timer() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        before = open_descriptors()
        sleeping = asyncio.ensure_future(clock.sleep_until(loop.time() + 60))
        await asyncio.sleep(0)
        sleeping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sleeping
        assert open_descriptors() == before

    asyncio.run(scenario())
