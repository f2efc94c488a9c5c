"""Bookkeeping for relayed requests: which requester waits for the answer to which transaction."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from punch.stun import Address


@dataclass(slots=True)
class RelayTable:
    """Transaction ID -> requester, bounded in size and age (oldest forgotten first).

    ``remember`` tells whether the requester is new to the table, so the server can log a relay once per peer
    rather than once per message.
    """

    max_entries: int = 4096
    max_age: float = 30.0
    _waiting: OrderedDict[bytes, tuple[Address, float]] = field(default_factory=OrderedDict)
    _requesters: set[Address] = field(default_factory=set)

    def remember(self, transaction_id: bytes, requester: Address, now: float) -> bool:
        """Record who asked; True the first time this requester is seen."""
        while self._waiting and (
            len(self._waiting) >= self.max_entries or next(iter(self._waiting.values()))[1] < now - self.max_age
        ):
            self._waiting.popitem(last=False)
        self._waiting[transaction_id] = (requester, now)
        first = requester not in self._requesters
        if len(self._requesters) >= self.max_entries:
            self._requesters.clear()
        self._requesters.add(requester)
        return first

    def pop(self, transaction_id: bytes) -> Address | None:
        """The requester waiting for this transaction's answer (once), or None."""
        entry = self._waiting.pop(transaction_id, None)
        return entry[0] if entry else None
