"""Waking at an instant of the event loop's clock, where asyncio's own timers wake up to a millisecond late.

asyncio waits for its next timer in epoll_wait(2), whose timeout is in whole milliseconds, rounded up
(selectors.EpollSelector): a timer due in 1.1 ms fires after 2 ms at the earliest. Where a wait is punch time (the
early checks' wait of about a millisecond, punch.peer.puncher), :func:`sleep_until` arms a timerfd(2) for the
instant instead, and the loop watches its descriptor like a socket's: it wakes when the kernel's timer expires,
which has no such rounding. Where there is no timerfd (not Linux, no C library found, another loop's clock), it is
``asyncio.sleep``.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import sys
import time

CLOCK_MONOTONIC = 1  # <linux/time.h>: time.monotonic()'s clock, which asyncio's loop.time() reads
TFD_TIMER_ABSTIME = 1  # <sys/timerfd.h>: it_value is an instant of the clock, not a delay


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _c_library() -> ctypes.CDLL | None:
    """The process's C library, if it has timerfd_create and timerfd_settime (glibc and musl on Linux) and
    time.monotonic() reads their CLOCK_MONOTONIC."""
    monotonic = time.get_clock_info("monotonic").implementation == "clock_gettime(CLOCK_MONOTONIC)"
    if not sys.platform.startswith("linux") or not monotonic:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.timerfd_create.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.timerfd_settime.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _c_library()


def timer_at(when: float) -> int | None:
    """A non-blocking timerfd that becomes readable at ``when`` (time.monotonic()), or None where there is none."""
    if _LIBC is None:
        return None
    fd: int = _LIBC.timerfd_create(CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        return None
    seconds = int(when)
    value = _Itimerspec(_Timespec(0, 0), _Timespec(seconds, max(1, int((when - seconds) * 1e9))))
    if _LIBC.timerfd_settime(fd, TFD_TIMER_ABSTIME, ctypes.byref(value), None) != 0:
        os.close(fd)
        return None
    return fd


async def sleep_until(when: float) -> None:
    """Return once the running loop's ``time()`` reaches ``when`` (at once if it has)."""
    loop = asyncio.get_running_loop()
    delay = when - loop.time()
    if delay <= 0:
        await asyncio.sleep(0)
        return
    fd = timer_at(when) if type(loop).time is asyncio.BaseEventLoop.time else None  # (its time is time.monotonic())
    if fd is None:
        await asyncio.sleep(delay)
        return
    expired: asyncio.Future[None] = loop.create_future()

    def expire() -> None:
        if not expired.done():
            expired.set_result(None)

    loop.add_reader(fd, expire)
    try:
        await expired
    finally:
        loop.remove_reader(fd)
        os.close(fd)
