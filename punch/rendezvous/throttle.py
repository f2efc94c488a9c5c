"""One log line per interval for events that can come by the thousand (a flood), with a count of the rest."""

from __future__ import annotations

import logging
from dataclasses import dataclass


@dataclass(slots=True)
class ThrottledLog:
    """Logs the first event, then at most one line per ``interval`` seconds saying how many were not shown.

    ``log`` returns whether the line was written, so callers can keep counting every event elsewhere.
    """

    logger: logging.Logger
    interval: float = 10.0
    level: int = logging.WARNING
    _last: float | None = None
    _quiet: int = 0

    def log(self, now: float, text: str) -> bool:
        if self._last is not None and now - self._last < self.interval:
            self._quiet += 1
            return False
        since = now - self._last if self._last is not None else 0.0
        more = f" (and {self._quiet} more like it in the last {since:.0f} s)" if self._quiet else ""
        self.logger.log(self.level, "%s%s", text, more)
        self._last, self._quiet = now, 0
        return True
