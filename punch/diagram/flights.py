"""Datagrams' trips: each send in one trace joined to its receipt in another.

Both ends of a trip see the same method, class and transaction ID (the NATs on the way change only the addresses),
or, for QUIC, the same size and digest of the bytes. A retransmission, and a relayed packet (the server forwards the
Relay indication's bytes as they came), share them too: a receipt is
joined to the latest send of another process before it that no receipt has taken yet. What nobody received is a
trip without an end (it was lost, or died on the way); what was received from a process without a trace, one
without a start.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from punch.diagram.traces import Datagram, Trace

# Seconds a receipt may seem to precede its send: both read one clock, the sender before its send, the receiver
# after its receipt, so only a step of the wall clock between them would show.
SLACK = 0.001


@dataclass(frozen=True, slots=True)
class Flight:
    """One datagram: as sent (None if its sender left no trace) and as received (None if nobody received it)."""

    send: Datagram | None
    recv: Datagram | None

    @property
    def t(self) -> float:
        """When it left (when it arrived, if its sender left no trace)."""
        end = self.send or self.recv
        assert end is not None
        return end.t

    @property
    def facts(self) -> dict[str, Any]:
        end = self.send or self.recv
        assert end is not None
        return end.facts


def flights(traces: Sequence[Trace]) -> list[Flight]:
    """Every datagram of the traces once, in the order they left."""
    sends: dict[tuple[str, str, str], list[Datagram]] = defaultdict(list)
    receipts: list[Datagram] = []
    for trace in traces:
        for datagram in trace.datagrams:
            (sends[datagram.key] if datagram.sent else receipts).append(datagram)
    taken: set[int] = set()
    trips: list[Flight] = []
    for receipt in sorted(receipts, key=lambda d: d.t):
        send = _sender(sends[receipt.key], receipt, taken)
        trips.append(Flight(send, receipt))
    trips += [Flight(d, None) for same in sends.values() for d in same if id(d) not in taken]
    return sorted(trips, key=lambda f: f.t)


def _sender(candidates: list[Datagram], receipt: Datagram, taken: set[int]) -> Datagram | None:
    best: Datagram | None = None
    for send in candidates:
        if id(send) in taken or send.trace == receipt.trace or send.t > receipt.t + SLACK:
            continue
        if best is None or send.t > best.t:
            best = send
    if best is not None:
        taken.add(id(best))
    return best
