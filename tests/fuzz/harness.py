"""Fuzz targets: the STUN codec, the rendezvous server's datagram handler, and the punched socket's QUIC side (any
bytes in).

Each target is a plain function of one ``bytes`` argument that raises only on a bug, so the same targets run
under atheris (coverage-guided, ``just fuzz``; tests/fuzz/run.py) and as regression tests over the seed
corpus and every crash ever found (tests/unit/test_fuzz_regressions.py).

- ``stun_decode``: ``decode`` gives a Message or a StunDecodeError, never anything else; what it accepts can be
  described for a log line and encoded again (without its integrity and fingerprint trailers, which encode
  computes), and that encoding decodes to the same attributes.
- ``server_datagram``: a datagram from the network reaches a running RendezvousServer's endpoint exactly as
  asyncio would deliver it; whatever it is, no exception escapes, and no handler fails (the endpoint counts
  handler failures in ``handler-error``; a nonzero count is a bug).
- ``quic_demux``: punch.transport.demux.classify gives exactly one answer for any bytes, and never sends a datagram
  that the STUN endpoint would take to QUIC.
- ``quic_datagram``: a connected pair of QuicLinks (in memory) each get the datagram as if it came on the punched
  socket; whatever it is, no exception escapes, no callback fails, and both stay connected: nobody without the
  session's keys can end or disturb it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable

from punch.errors import StunDecodeError, StunEncodeError
from punch.identity.keyfile import Identity
from punch.rendezvous.server import RendezvousServer
from punch.stun import AttributeType, decode, describe, encode, is_stun
from punch.transport import Carried, LinkConfig, QuicLink, classify

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


def quic_demux(data: bytes) -> None:
    carried = classify(data)
    assert isinstance(carried, Carried), data.hex()
    assert not (is_stun(data) and carried is Carried.QUIC), data.hex()


class LinkTarget:
    """A client and a server QuicLink, joined in memory and connected; ``__call__`` is the fuzz target. ``seeds``
    holds the first datagrams they exchanged (real Initial, Handshake and 1-RTT packets), to mutate: those of the
    handshake only, fixed once connected (Hypothesis replays a failing example only if the list it samples stays
    the same, and the links' acknowledgements and PINGs after it would grow it)."""

    TURNS = 8  # loop turns after each input: enough for a PING and its acknowledgement to cross

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.seeds: list[bytes] = []
        config = LinkConfig(keepalive=1.0, dead_after=10.0, idle_timeout=3600.0)
        client_id, server_id = Identity.generate(), Identity.generate()
        self.links: dict[str, QuicLink] = {}
        handshaken = asyncio.Event()

        def to(name: str) -> Callable[[bytes], None]:
            def send(data: bytes) -> None:
                if not handshaken.is_set() and len(self.seeds) < 32:
                    self.seeds.append(data)
                self.loop.call_soon(self.links[name].datagram_received, data)

            return send

        async def connect() -> None:
            client = QuicLink(client_id, server_id.public_key, to("server"), is_client=True, config=config)
            server = QuicLink(server_id, client_id.public_key, to("client"), is_client=False, config=config)
            self.links.update(client=client, server=server)
            server.start()
            client.start()
            async with asyncio.timeout(10):
                await client.wait_connected()
                await server.wait_connected()
            handshaken.set()

        self.loop.run_until_complete(connect())

    def __call__(self, data: bytes) -> None:
        async def deliver() -> None:
            for link in self.links.values():
                link.datagram_received(data)
            for _ in range(self.TURNS):
                await asyncio.sleep(0)

        self.loop.run_until_complete(deliver())
        for name, link in self.links.items():
            assert link.connected, f"{name} ended after {data.hex()}: {link.close_reason}"
            assert link.counters["callback-error"] == 0, data.hex()

    def close(self) -> None:
        async def close() -> None:
            for link in self.links.values():
                await link.close()

        self.loop.run_until_complete(close())
        self.loop.close()
