"""The relay's bookkeeping, with no sockets: what each session may still relay.

- :class:`RelayLedger`: each session's budget (:class:`RelayBudget`): a token bucket of bytes a second and a total
  of bytes over the session's life, both directions together, so that two peers cannot turn the server into a
  free pipe. What does not fit is refused; the caller drops it, counts it, and logs it once per session.
"""

from __future__ import annotations

import enum
from collections.abc import Container
from dataclasses import dataclass, field

DEFAULT_RELAY_RATE = 1024 * 1024  # bytes a second per session: about 8 Mbit/s (QUIC's congestion control adapts)
DEFAULT_RELAY_BYTES = 64 * 1024 * 1024  # bytes per session
MIN_RELAY_RATE = 1500  # a rate below one full-size datagram a second could never relay one


@dataclass(frozen=True, slots=True)
class RelayBudget:
    """What one session may relay: ``rate`` bytes a second (bursts of ``burst``) and ``total`` bytes; 0 = no limit.

    ``burst`` 0 means one second's worth of ``rate``.
    """

    rate: float = DEFAULT_RELAY_RATE
    total: int = DEFAULT_RELAY_BYTES
    burst: float = 0.0

    @property
    def bucket(self) -> float:
        return self.burst or self.rate


class Refusal(enum.Enum):
    """Why a relayed datagram was dropped; the value is its counter's name in the server's stats."""

    RATE = "relay-over-rate"  # the session's bucket is empty for now: the peer's retransmission gets through later
    QUOTA = "relay-over-quota"  # the session has used its total: nothing more is relayed for it


@dataclass(slots=True)
class _Spend:
    tokens: float
    last: float
    used: int = 0
    exhausted: bool = False  # a datagram did not fit in the total: nothing more, however small
    told: set[Refusal] = field(default_factory=set)


@dataclass(slots=True)
class RelayLedger:
    """Per-session spending against one :class:`RelayBudget`."""

    budget: RelayBudget = field(default_factory=RelayBudget)
    _spends: dict[bytes, _Spend] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._spends)

    def charge(self, session_id: bytes, size: int, now: float) -> Refusal | None:
        """Take ``size`` bytes from the session's budget; the refusal if they do not fit (nothing is taken then).

        The first datagram that does not fit in the total ends the session's relaying, so that the peers learn it
        at once rather than after a few more small datagrams.
        """
        budget = self.budget
        spend = self._spends.get(session_id)
        if spend is None:
            spend = self._spends[session_id] = _Spend(budget.bucket, now)
        if spend.exhausted or (budget.total and spend.used + size > budget.total):
            spend.exhausted = True
            return Refusal.QUOTA
        if budget.rate:
            spend.tokens = min(budget.bucket, spend.tokens + (now - spend.last) * budget.rate)
            spend.last = now
            if spend.tokens < size:
                return Refusal.RATE
            spend.tokens -= size
        spend.used += size
        return None

    def first(self, session_id: bytes, refusal: Refusal) -> bool:
        """True the first time a session meets this refusal (so that it is logged once per session)."""
        spend = self._spends.get(session_id)
        if spend is None or refusal in spend.told:
            return False
        spend.told.add(refusal)
        return True

    def used(self, session_id: bytes) -> int:
        """Bytes the session has relayed."""
        spend = self._spends.get(session_id)
        return spend.used if spend else 0

    def keep(self, live: Container[bytes]) -> None:
        """Forget the sessions that are not ``live`` any more."""
        for session_id in [s for s in self._spends if s not in live]:
            del self._spends[session_id]
