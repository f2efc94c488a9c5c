"""One request to the router and its answer, over a UDP socket connected to the router's port (PCP and NAT-PMP).

The socket is connected, so the kernel hands us only datagrams from the router's address and port (RFC 6887 §8.3
and RFC 6886 §3.1 ask the client to check that). Each datagram that comes is given to ``read``: it returns the
answer, or raises :class:`PortmapDecodeError` (not a valid answer: dropped, counted ``portmap-malformed``) or
:class:`Mismatch` (a valid answer to another request, such as another nonce: dropped, counted ``portmap-mismatch``);
the request goes on being sent on its policy's timer meanwhile. ICMP port unreachable (nothing listens there) ends
the exchange at once with :class:`NotSpoken`, and so does silence once the policy's sends have run out.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import Generic, TypeVar

from punch.portmap.errors import Mismatch, NotSpoken, PortmapDecodeError, PortmapError
from punch.stun import Address
from punch.stun.transaction import RetransmitPolicy

log = logging.getLogger(__name__)

T = TypeVar("T")

MALFORMED = "portmap-malformed"
MISMATCH = "portmap-mismatch"
MAX_DATAGRAM = 1100  # RFC 6887 §7: a PCP message is at most 1100 bytes; NAT-PMP's are smaller


class _RouterProtocol(asyncio.DatagramProtocol, Generic[T]):
    """Parses each datagram with the current exchange's ``read`` and resolves its future with the first answer."""

    def __init__(self, what: str, router: Address, counters: Counter[str]) -> None:
        self._what = what
        self._router = router
        self._counters = counters
        self._answer: asyncio.Future[T] | None = None
        self._read: Callable[[bytes], T] | None = None

    def expect(self, read: Callable[[bytes], T]) -> asyncio.Future[T]:
        self._read = read
        self._answer = asyncio.get_running_loop().create_future()
        return self._answer

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._answer is None or self._answer.done() or self._read is None:
            self._drop(MISMATCH, "an answer to no request of ours now")
            return
        try:
            answer = self._read(data)
        except PortmapDecodeError as error:
            self._drop(MALFORMED, str(error))
            return
        except Mismatch as error:
            self._drop(MISMATCH, str(error))
            return
        except NotSpoken as error:  # an answer that says the router does not speak the protocol
            self._answer.set_exception(error)
            return
        self._answer.set_result(answer)

    def _drop(self, reason: str, why: str) -> None:
        self._counters[reason] += 1
        log.info("dropped a datagram from router %s:%d (%s): %s", *self._router, self._what, why)

    def error_received(self, exc: Exception) -> None:
        if self._answer is not None and not self._answer.done():
            if isinstance(exc, ConnectionRefusedError):
                error = NotSpoken(f"nothing answers on {self._router[0]}:{self._router[1]} (ICMP port unreachable)")
            else:
                error = NotSpoken(f"sending to {self._router[0]}:{self._router[1]} failed: {exc}")
            self._answer.set_exception(error)


class RouterSocket(Generic[T]):
    """A UDP socket connected to ``router`` for ``what`` ("PCP", "NAT-PMP"); make it with :meth:`open`, ask with
    :meth:`ask`, :meth:`close` in the end (idempotent). ``counters`` counts the datagrams it dropped, by reason."""

    def __init__(self, what: str, router: Address, protocol: _RouterProtocol[T], transport: asyncio.DatagramTransport):
        self._what = what
        self._router = router
        self._protocol = protocol
        self._transport = transport

    @classmethod
    async def open(cls, what: str, router: Address, counters: Counter[str]) -> RouterSocket[T]:
        loop = asyncio.get_running_loop()
        protocol: _RouterProtocol[T] = _RouterProtocol(what, router, counters)
        try:
            transport, _ = await loop.create_datagram_endpoint(lambda: protocol, remote_addr=router)
        except OSError as error:
            raise PortmapError(f"cannot reach router {router[0]}:{router[1]}: {error.strerror or error}") from None
        return cls(what, router, protocol, transport)

    @property
    def local_address(self) -> Address:
        """Our address and port toward the router (the address is the one the router sees us at)."""
        host, port = self._transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    async def ask(self, request: bytes, read: Callable[[bytes], T], policy: RetransmitPolicy) -> T:
        """Send ``request`` on ``policy``'s timer until ``read`` accepts a datagram; NotSpoken on ICMP port
        unreachable or once the sends ran out."""
        answer = self._protocol.expect(read)
        sends = 0
        try:
            for wait in policy.iter_waits():
                self._transport.sendto(request)
                sends += 1
                done, _ = await asyncio.wait((answer,), timeout=wait)
                if done:
                    return answer.result()
        finally:
            if not answer.done():
                answer.cancel()
            elif not answer.cancelled():
                # Retrieved, so that asyncio does not log it at exit: an answer or error that came just as we were
                # cancelled (the session ended while we asked: a refused registration) is nobody's news.
                answer.exception()
        seconds = policy.total()
        raise NotSpoken(f"no answer from {self._router[0]}:{self._router[1]} to {sends} requests in {seconds:g} s")

    def close(self) -> None:
        self._transport.close()


async def ask_router(
    what: str,
    router: Address,
    counters: Counter[str],
    policy: RetransmitPolicy,
    request_for: Callable[[str], bytes],
    read: Callable[[bytes], T],
) -> T:
    """One exchange with ``router`` from a fresh socket: ``request_for`` is given our address toward the router
    (PCP's client address field, which the router checks against the datagram's source: RFC 6887 §8.1)."""
    sock: RouterSocket[T] = await RouterSocket.open(what, router, counters)
    try:
        return await sock.ask(request_for(sock.local_address[0]), read, policy)
    finally:
        sock.close()
