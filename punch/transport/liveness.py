"""Whether the path to the peer carries anything, from QUIC itself: a PING every ``keepalive`` seconds (RFC 9000
§10.1.2; it also keeps the NATs' bindings open), and the path counts as dead once none was acknowledged for
``dead_after`` seconds, alive again at the next acknowledgement. An acknowledgement comes in an authenticated
packet, so nobody but the peer can make a dead path look alive."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Liveness:
    """Sends PINGs through ``ping(uid)`` while running; ``on_change(alive)`` when ``alive`` turns."""

    def __init__(
        self,
        ping: Callable[[int], None],
        on_change: Callable[[bool], None],
        *,
        keepalive: float,
        dead_after: float,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._ping = ping
        self._on_change = on_change
        self._keepalive = keepalive
        self._dead_after = dead_after
        self.alive = False
        self.last_acked: float | None = None  # loop time of the last acknowledged PING
        self._pings = 0
        self._ticker: asyncio.TimerHandle | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    @property
    def running(self) -> bool:
        return self._ticker is not None

    def start(self) -> None:
        """The handshake has just crossed the path: alive without an event, and PINGs from now on."""
        if self._ticker is None:
            self.alive = True
            self.acknowledged()
            self._ticker = self._loop.call_later(self._keepalive, self._tick)

    def stop(self) -> None:
        for handle in (self._ticker, self._watchdog):
            if handle is not None:
                handle.cancel()
        self._ticker = self._watchdog = None
        self.alive = False

    def check_now(self) -> None:
        """A PING at once, not at the next tick: the path has just changed, and its first acknowledgement tells it
        works (``on_change(True)`` if it was dead)."""
        if self._ticker is not None:
            self._pings += 1
            self._ping(self._pings)

    def acknowledged(self) -> None:
        """A PING was acknowledged: the path works both ways now."""
        self.last_acked = self._loop.time()
        if self._watchdog is None:
            self._watchdog = self._loop.call_at(self.last_acked + self._dead_after, self._watch)
        if not self.alive:
            self.alive = True
            self._on_change(True)

    def _tick(self) -> None:
        self._pings += 1
        self._ping(self._pings)
        self._ticker = self._loop.call_later(self._keepalive, self._tick)

    def _watch(self) -> None:
        self._watchdog = None
        assert self.last_acked is not None
        due = self.last_acked + self._dead_after
        if self._loop.time() < due:
            self._watchdog = self._loop.call_at(due, self._watch)
        elif self.alive:
            self.alive = False
            self._on_change(False)
