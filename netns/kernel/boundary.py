"""Where errors from below become the lab's: netlink, OS and helper errors turn into one-line KernelErrors that
name what was being done (``translated``), and kernel state is awaited by polling with a timeout, never by
sleeping blindly (``wait_for``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from netns.errors import KernelError

POLL_INTERVAL = 0.02


class DecodeError(ValueError):
    """A netlink message that does not parse; the text says where (message, offset, attribute) and why."""


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Poll ``predicate`` until it holds; raise KernelError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise KernelError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(POLL_INTERVAL)


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Translate netlink and OS errors raised while doing ``what`` into one-line KernelErrors. netlink errors come as
    OSError with the kernel's errno (netns/kernel/netlink.py), or as DecodeError for a reply that does not parse."""
    try:
        yield
    except DecodeError as exc:
        raise KernelError(f"{what}: {exc}") from exc
    except OSError as exc:
        raise KernelError(f"{what}: {exc.strerror or exc}") from exc
