"""Fuzz targets: the STUN codec and the rendezvous server's datagram handler (any bytes in).

Each target is a plain function of one ``bytes`` argument that raises only on a bug, so the same targets run
under atheris (coverage-guided, ``just fuzz``; tests/fuzz/run.py) and as regression tests over the seed
corpus and every crash ever found (tests/unit/test_fuzz_regressions.py).

- ``stun_decode``: ``decode`` gives a Message or a StunDecodeError, never anything else; what it accepts can be
  described for a log line and encoded again (without its integrity and fingerprint trailers, which encode
  computes), and that encoding decodes to the same attributes.
- ``server_datagram``: a datagram from the network reaches a running RendezvousServer's endpoint exactly as
  asyncio would deliver it; whatever it is, no exception escapes, and no handler fails (the endpoint counts
  handler failures in ``handler-error``; a nonzero count is a bug).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

from punch.errors import StunDecodeError, StunEncodeError
from punch.rendezvous.server import RendezvousServer
from punch.stun import AttributeType, decode, describe, encode

# computed by encode(), never passed to it
TRAILERS = (AttributeType.MESSAGE_INTEGRITY, AttributeType.MESSAGE_INTEGRITY_SHA256, AttributeType.FINGERPRINT)


def stun_decode(data: bytes) -> None:
    try:
        message = decode(data)
    except StunDecodeError:
        return
    describe(message)
    body = tuple((kind, value) for kind, value in message.attributes if kind not in TRAILERS)
    try:
        again = encode(dataclasses.replace(message, attributes=body), fingerprint=False)
    except StunEncodeError:
        return  # e.g. an attribute value the encoder refuses to write; decoding it was still total
    assert decode(again).attributes == body, (data.hex(), again.hex())


class ServerTarget:
    """A RendezvousServer on loopback, fed datagrams directly; ``__call__`` is the fuzz target."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        # no rate limit (the fuzzer is one source), and a clock that needs no running loop
        self.server = RendezvousServer(rate_limit=0, clock=time.monotonic)
        self.loop.run_until_complete(self.server.start(("127.0.0.1", 0)))
        self.sources = 0

    def __call__(self, data: bytes) -> None:
        self.sources = (self.sources + 1) % 1000
        source = ("127.0.0.1", 40000 + self.sources)  # many senders, all on loopback (replies go nowhere)
        endpoint = self.server.endpoint

        async def deliver() -> None:
            endpoint.datagram_received(data, source)
            await asyncio.sleep(0)  # let any push the message started take its first step

        self.loop.run_until_complete(deliver())
        assert endpoint.counters["handler-error"] == 0, f"handler failed on {data.hex()}"

    def close(self) -> None:
        self.loop.run_until_complete(self.server.close())
        self.loop.close()
