"""The candidate pairs of one punch and their states, named as RFC 8445 names them (§6.1.2).

A pair is a remote candidate of the other peer and the local socket we check it from (``via``: the session's socket,
or one of port prediction's or a move's). punch has one component and one foundation per candidate, so no pair is
ever Frozen (§6.1.2.6): a pair starts Waiting, is In-Progress while our check to it runs, and ends Succeeded (the
other peer answered from where we sent it: a valid pair, §7.2.5.3) or Failed (our checks ran out).

Beside its state a pair records what the other peer did on it: checked us there (the check that triggers ours back,
§7.3.1.4) and nominated it (USE-CANDIDATE, §7.3.1.5: the controlled side takes a nominated pair only once its own
check proved it). The controlling side marks the one pair it nominates (§8.1.1: one at a time, so both sides
settle on the same path).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Generic, TypeVar

from punch.stun import Address

Via = TypeVar("Via")  # the local side of a pair: a socket (punch.stun.protocol.StunEndpoint)


class PairState(enum.Enum):
    """RFC 8445 §6.1.2.6 (Frozen never occurs here: module docstring)."""

    WAITING = "Waiting"
    IN_PROGRESS = "In-Progress"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class CheckListState(enum.Enum):
    """RFC 8445 §6.1.2.1: Running until a pair is chosen (Completed) or the punch ends without one (Failed)."""

    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"


@dataclass(slots=True)
class CandidatePair(Generic[Via]):
    """One pair (module docstring)."""

    remote: Address
    via: Via
    state: PairState = PairState.WAITING
    checked_by_peer: bool = False  # a check of the other peer's arrived on it (our triggered check answers it)
    nominated_by_peer: bool = False  # that check carried USE-CANDIDATE (we are the controlled side)
    nominated_by_us: bool = False  # we nominated it (we are the controlling side)

    def start(self) -> None:
        """Our check to it leaves (a pair that Succeeded stays so: a later check of it changes nothing proven)."""
        if self.state is not PairState.SUCCEEDED:
            self.state = PairState.IN_PROGRESS

    def succeed(self) -> None:
        """The other peer answered our check from the remote we sent it to (§7.2.5.3)."""
        self.state = PairState.SUCCEEDED

    def fail(self) -> None:
        """Our checks ran out unanswered (a pair another check of ours proved stays Succeeded)."""
        if self.state is not PairState.SUCCEEDED:
            self.state = PairState.FAILED


class CheckList(Generic[Via]):
    """The pairs of one punch, by (remote, via), and the list's own state."""

    def __init__(self) -> None:
        self._pairs: dict[tuple[Address, Via], CandidatePair[Via]] = {}
        self.state = CheckListState.RUNNING

    def pair(self, remote: Address, via: Via) -> CandidatePair[Via]:
        """The pair of ``remote`` and ``via``, made Waiting on first use."""
        key = (remote, via)
        found = self._pairs.get(key)
        if found is None:
            found = self._pairs[key] = CandidatePair(remote, via)
        return found

    def find(self, remote: Address, via: Via) -> CandidatePair[Via] | None:
        return self._pairs.get((remote, via))

    @property
    def heard(self) -> bool:
        """Whether a check of the other peer's reached us on any pair."""
        return any(p.checked_by_peer for p in self._pairs.values())

    @property
    def nominating(self) -> CandidatePair[Via] | None:
        """The pair we nominated, if any (we are the controlling side)."""
        return next((p for p in self._pairs.values() if p.nominated_by_us), None)

    @property
    def running(self) -> bool:
        return self.state is CheckListState.RUNNING

    def complete(self) -> None:
        self.state = CheckListState.COMPLETED

    def end(self) -> None:
        """The punch is over: Failed, unless a pair was chosen."""
        if self.state is CheckListState.RUNNING:
            self.state = CheckListState.FAILED
