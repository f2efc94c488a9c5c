"""Client transactions: send a request, retransmit on a timer, resolve a Future with the response.

RFC 8489 §6.2.1: over UDP a client retransmits a request, starting with an RTO (500 ms by default) and
doubling it after each send, for at most Rc sends (7); after the last send it waits Rm times the RTO (16)
before giving up. The policy is a parameter so that peer-to-peer probes can use a faster, constant pace.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from punch.errors import PunchError
from punch.stun import Address, Message


class TransactionTimeout(PunchError):
    """No response arrived before the transaction's retransmissions ran out."""


@dataclass(frozen=True, slots=True)
class RetransmitPolicy:
    """How a request is retransmitted (RFC 8489 §6.2.1 defaults).

    ``rto``: wait after the first send; ``backoff``: factor applied after each send (2 = doubling, 1 = constant
    pace); ``max_rto``: cap on the wait (the RFC sets none); ``max_sends``: Rc; ``last_wait``: Rm, multiple of
    the initial RTO that the client waits after its last send.
    """

    rto: float = 0.5
    backoff: float = 2.0
    max_rto: float = float("inf")
    max_sends: int = 7
    last_wait: float = 16.0

    def iter_waits(self) -> Iterator[float]:
        """The wait after each send, in order, one at a time; the last is the final wait before timing out.

        A transaction takes them as it sends: a connectivity check's policy allows hundreds of sends (one per
        check interval for the whole punch timeout), and most checks are answered after the first.
        """
        wait = self.rto
        for _ in range(self.max_sends - 1):
            yield wait
            wait = min(wait * self.backoff, self.max_rto)
        yield self.rto * self.last_wait if self.max_sends > 1 else self.rto

    def waits(self) -> list[float]:
        """Every wait of :meth:`iter_waits`."""
        return list(self.iter_waits())

    def total(self) -> float:
        """The longest the transaction can take, in seconds."""
        return sum(self.waits())

    def once(self) -> RetransmitPolicy:
        """One send and the same deadline: over TCP or TLS the transport retransmits, the STUN client does not
        (RFC 8489 §6.2.2), and gives up when ``total`` has passed (its Ti)."""
        return RetransmitPolicy(rto=self.total(), backoff=1.0, max_sends=1, last_wait=1.0)


RFC_POLICY = RetransmitPolicy()

Sender = Callable[[bytes, Address], None]


class Transaction:
    """One outstanding request: owns its retransmission timer and resolves a Future with the response.

    The endpoint that received the response calls :meth:`response_received`; the owner awaits :meth:`wait`.
    """

    def __init__(self, data: bytes, remote: Address, sender: Sender, policy: RetransmitPolicy) -> None:
        self._data = data
        self.remote = remote
        self._sender = sender
        self._waits = policy.iter_waits()
        self._sends = 0
        self._loop = asyncio.get_running_loop()
        self._future: asyncio.Future[tuple[Message, Address]] = self._loop.create_future()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def sends(self) -> int:
        """How many times the request has been sent so far."""
        return self._sends

    def start(self) -> None:
        """Send the request for the first time and arm the retransmission timer."""
        self._send()

    def _send(self) -> None:
        if self._future.done():
            return
        wait = next(self._waits, None)
        if wait is None:
            self._future.set_exception(
                TransactionTimeout(f"no response from {self.remote[0]}:{self.remote[1]} after {self._sends} sends")
            )
            return
        self._sender(self._data, self.remote)
        self._sends += 1
        self._timer = self._loop.call_later(wait, self._send)

    def response_received(self, message: Message, source: Address) -> None:
        """Resolve the transaction with a response (the endpoint matched its transaction ID)."""
        if not self._future.done():
            self._future.set_result((message, source))
        self.cancel()

    def cancel(self) -> None:
        """Stop retransmitting; a pending :meth:`wait` raises CancelledError if not yet resolved."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._future.done():
            self._future.cancel()

    async def wait(self) -> tuple[Message, Address]:
        """The response and the address it came from; raises TransactionTimeout."""
        try:
            return await self._future
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
