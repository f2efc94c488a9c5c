"""When leases end, without a timer per lease: a timing wheel with one-second slots.

A lease ending at time ``t`` is filed under slot ``ceil(t)``; once the clock reaches a slot, everything filed
there may have ended. A refresh files the ID again under its new slot and leaves the old entry behind: the
caller checks each ID it is handed against the lease it really holds, so a stale entry costs a dict lookup
when its slot comes round, never a search. Adding is an append; sweeping touches only the slots that are due.

The wheel holds at most one entry per ID and slot, so its size is bounded by the registrations plus the
refreshes of the last ``max_lease`` seconds (8 bytes each).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(slots=True)
class LeaseWheel:
    """IDs filed under the whole second their lease ends in; :meth:`due` hands out the slots the clock passed."""

    _slots: dict[int, list[str]] = field(default_factory=dict)
    _swept: int | None = None  # every slot up to and including this one has been handed out

    def add(self, peer_id: str, expires: float, previous: float | None = None) -> None:
        """File ``peer_id`` under the slot of ``expires``; nothing to do when ``previous`` (the lease it replaces,
        still filed) ends in the same slot."""
        slot = math.ceil(expires)
        if previous is not None and math.ceil(previous) == slot:
            return
        if self._swept is not None and slot <= self._swept:
            slot = self._swept + 1  # a clock that went back: hand it out with the next sweep
        entries = self._slots.get(slot)
        if entries is None:
            self._slots[slot] = [peer_id]
        else:
            entries.append(peer_id)

    def due(self, now: float) -> list[str]:
        """The IDs filed under every slot the clock has reached (``slot <= now``), oldest slot first; each
        slot is handed out once. Some may have been refreshed since: the caller checks."""
        last = math.floor(now)
        if self._swept is not None and last <= self._swept:
            return []
        if self._swept is not None and last - self._swept <= len(self._slots):
            slots = [s for s in range(self._swept + 1, last + 1) if s in self._slots]
        else:  # the first sweep, or a long quiet spell: fewer slots are filed than seconds went by
            slots = sorted(s for s in self._slots if s <= last)
        self._swept = last
        found: list[str] = []
        for slot in slots:
            found += self._slots.pop(slot)
        return found

    def __len__(self) -> int:
        """Entries filed (current and stale)."""
        return sum(len(entries) for entries in self._slots.values())
