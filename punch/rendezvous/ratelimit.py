"""Per-source rate limits: a token bucket for each source IP, in a table of bounded size."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass(slots=True)
class RateLimiter:
    """``rate`` requests a second per source IP on average, bursts of up to ``burst``.

    At most ``max_sources`` buckets are kept; the one unused longest is forgotten first (a forgotten source
    starts again with a full bucket, which is the generous side to err on).
    """

    rate: float = 200.0
    burst: float = 400.0
    max_sources: int = 65536
    _buckets: OrderedDict[str, tuple[float, float]] = field(default_factory=OrderedDict)  # ip -> (tokens, time)

    def allow(self, source_ip: str, now: float) -> bool:
        """Take one token for ``source_ip``; False when its bucket is empty."""
        tokens, last = self._buckets.pop(source_ip, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[source_ip] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self.max_sources:
            self._buckets.popitem(last=False)
        return allowed

    def take(self, source_ip: str, count: int, now: float) -> int:
        """``count`` requests from ``source_ip`` at once, as ``count`` calls of :meth:`allow` at ``now`` would
        go: how many of them are allowed (the first ones). The C fast path asks once per source and batch."""
        tokens, last = self._buckets.pop(source_ip, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = max(0, min(count, int(tokens)))
        self._buckets[source_ip] = (tokens - allowed, now)
        if len(self._buckets) > self.max_sources:
            self._buckets.popitem(last=False)
        return allowed
