"""punch.portmap.exchange: an ask cancelled just after the router's error came leaves no unretrieved exception (which
asyncio would print at exit, after a refused registration, as the peer's last line)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections import Counter
from typing import Any, cast

from punch.portmap.exchange import RouterSocket, _RouterProtocol
from punch.stun.transaction import RetransmitPolicy

ROUTER = ("192.0.2.1", 5351)


class RefusingTransport:
    """A transport whose every send is answered at once by ICMP port unreachable, as a router without PCP answers."""

    def __init__(self, protocol: _RouterProtocol[bytes]) -> None:
        self._protocol = protocol
        self.sends = 0
        self.sent = asyncio.Event()

    def sendto(self, data: bytes) -> None:
        self.sends += 1
        self._protocol.error_received(ConnectionRefusedError())
        self.sent.set()

    def close(self) -> None:
        pass


def test_an_ask_cancelled_as_the_routers_error_comes_leaves_nothing_unretrieved() -> None:
    unretrieved: list[dict[str, Any]] = []

    async def scenario() -> int:
        asyncio.get_running_loop().set_exception_handler(lambda _, context: unretrieved.append(context))
        protocol: _RouterProtocol[bytes] = _RouterProtocol("PCP", ROUTER, Counter())
        transport = RefusingTransport(protocol)
        router = RouterSocket("PCP", ROUTER, protocol, cast(asyncio.DatagramTransport, transport))
        asking = asyncio.get_running_loop().create_task(router.ask(b"request", bytes, RetransmitPolicy(rto=5.0)))
        await transport.sent.wait()  # the error is set on the answer; the ask waits for its wake-up
        asking.cancel()  # the session ends before the ask resumes (a refused registration closes everything)
        with contextlib.suppress(asyncio.CancelledError):
            await asking
        del asking, protocol, router
        gc.collect()
        await asyncio.sleep(0)
        return transport.sends

    assert asyncio.run(scenario()) == 1
    gc.collect()
    assert [c.get("message") for c in unretrieved] == []
