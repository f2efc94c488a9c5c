"""The two ends of bench/transport.py's throughput runs: one process each, pinned to a core by the benchmark.

    python -m bench.transport_load KIND send|receive [options]

KIND says what carries the bytes:

- ``punch``: punch's Python API (punch.api.Connection) over the path punch finds through a rendezvous server
  (``--server``), as an application uses it: streams from ``open_stream``, datagrams from ``send_datagram``.
- ``aioquic``: aioquic's own asyncio client (``send``) and server (``receive``), as in aioquic's examples, with the
  settings punch's link uses (QUIC packets of 1200 bytes, reno, the same flow-control windows).
- ``tcp``: a plain TCP connection through asyncio's streams (streams only).

Both ends run the same two tests, one after the other, on one connection:

1. Stream: the sender uploads ``--mib`` MiB on one stream, 64 KiB at a time with ``drain()``; the receiver reads to
   FIN and answers with the count (bench/quic_loopback.py's upload); timed from the first write to the answer.
2. Datagrams: the sender sends ``--payload``-byte datagrams for ``--seconds`` as fast as the connection takes them
   (a full queue of datagrams waiting to be sent makes it yield to the event loop until there is room), then says
   how many on a control stream; the receiver has counted every datagram that arrived since the connection came up
   and answers with the count and the times of the first and the last.

Each end prints one JSON line on stdout at the end: the sender its measurements, the receiver the CPU time it used
in each test. A receiver that listens (aioquic, tcp) first prints ``listening PORT``. Nothing here decides what is
fast; bench/transport.py reads these lines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import ssl
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, cast

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import serve
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from bench.quic_loopback import drain_upload, upload
from punch.api import Connection
from punch.identity.keyfile import Identity
from punch.peer.config import PeerConfig
from punch.stun.endpoints import parse_endpoint
from punch.transport.certs import IdentityKey, self_signed_certificate
from punch.transport.config import LinkConfig

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
PAYLOAD = 1150  # datagram payload (bytes): fits a 1200-byte QUIC packet on every path, punch's flow number included
QUEUE = LinkConfig().datagram_queue  # datagrams that may wait to be sent, for aioquic as for punch's link
QUIET = 0.3  # seconds without a datagram after which the receiver counts the burst as over
ALPN = "bench"


class Channel(Protocol):
    """What the tests need of a connection: punch.api.Connection has it; the others are adapted to it."""

    async def open_stream(self) -> Streams: ...

    async def accept_stream(self) -> Streams: ...

    def send_datagram(self, data: bytes) -> bool: ...

    async def receive_datagram(self) -> bytes: ...

    @property
    def max_datagram_size(self) -> int: ...


def cpu() -> float:
    """This process's CPU time so far (user and system), in seconds."""
    return time.process_time()


# -- the tests, either end ----------------------------------------------------------------------------------


async def send(channel: Channel, size: int, seconds: float, payload: int, datagrams: bool) -> dict[str, Any]:
    """Both tests from the sending end; their measurements."""
    reader, writer = await channel.open_stream()
    used = cpu()
    elapsed = await upload(reader, writer, size)
    result: dict[str, Any] = {"stream": {"bytes": size, "seconds": elapsed, "cpu": cpu() - used}}
    if datagrams:
        result["datagram"] = await blast(channel, seconds, min(payload, channel.max_datagram_size))
    return result


async def blast(channel: Channel, seconds: float, payload: int) -> dict[str, Any]:
    """Datagrams as fast as the channel takes them for ``seconds``; then the receiver's count."""
    loop = asyncio.get_running_loop()
    data = bytes(payload)
    sent = 0
    used, started = cpu(), loop.time()
    end = started + seconds
    while loop.time() < end:
        if channel.send_datagram(data):
            sent += 1
        else:
            await asyncio.sleep(0)  # the queue is full: let the connection send and take acknowledgements
    sending = {"payload": payload, "sent": sent, "seconds": loop.time() - started, "cpu": cpu() - used}
    reader, writer = await channel.open_stream()
    writer.write(f"{sent}\n".encode())
    writer.write_eof()
    counted: dict[str, Any] = json.loads(await reader.read())
    return sending | counted


class Counter:
    """Every datagram that arrives on a channel, from the moment the connection is up."""

    def __init__(self) -> None:
        self.count = 0
        self.bytes = 0
        self.first = self.last = 0.0
        self.arrived = asyncio.Event()

    async def run(self, channel: Channel) -> None:
        while True:
            data = await channel.receive_datagram()
            self.last = time.perf_counter()
            self.first = self.first or self.last
            self.count += 1
            self.bytes += len(data)
            self.arrived.set()

    async def until_quiet(self, expected: int) -> None:
        """Until ``expected`` datagrams have come, or none came for QUIET seconds (the rest were lost)."""
        while self.count < expected:
            self.arrived.clear()
            try:
                async with asyncio.timeout(QUIET):
                    await self.arrived.wait()
            except TimeoutError:
                return


async def receive(channel: Channel, datagrams: bool) -> dict[str, Any]:
    """Both tests from the receiving end; the CPU time each took here, and over how long."""
    counter = Counter()
    counting = asyncio.ensure_future(counter.run(channel)) if datagrams else None
    try:
        reader, writer = await channel.accept_stream()
        used, started = cpu(), time.perf_counter()
        await drain_upload(reader, writer)
        result: dict[str, Any] = {"stream": {"cpu": cpu() - used, "seconds": time.perf_counter() - started}}
        if datagrams:
            used, started = cpu(), time.perf_counter()
            reader, writer = await channel.accept_stream()
            expected = int(await reader.read())
            await counter.until_quiet(expected)
            # from the end of the stream test to the last datagram (the quiet wait after it costs next to nothing)
            result["datagram"] = {"cpu": cpu() - used, "seconds": counter.last - started}
            answer = {"received": counter.count, "received_bytes": counter.bytes, "span": counter.last - counter.first}
            writer.write(json.dumps(answer).encode())
            writer.write_eof()
            await writer.drain()
        return result
    finally:
        if counting is not None:
            counting.cancel()


# -- punch ----------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def punch_channel(args: argparse.Namespace) -> AsyncIterator[Connection]:
    """A punch connection between ``--me`` and ``--other`` through ``--server``, on the path punch finds (the relay
    where there is no direct one, staying there: no upgrade during a run)."""
    config = PeerConfig(
        server=parse_endpoint(args.server, "--server", 3478),
        peer_id=args.me,
        target=args.other,
        bind=parse_endpoint(args.bind, "--bind", 0),
        upgrade_interval=0.0,
        linger=1.0,
    )
    connection = await Connection.open(config)
    try:
        await connection.establish()
        yield connection
    finally:
        await connection.close()


async def punch_end(args: argparse.Namespace) -> dict[str, Any]:
    async with punch_channel(args) as connection:
        path = connection.path.kind
        if args.role == "send":
            result = await send(connection, args.mib << 20, args.seconds, args.payload, True)
        else:
            result = await receive(connection, True)
            await connection.wait_closed()  # the sender closes once it has every answer
        return result | {"path": path}


# -- aioquic's own client and server --------------------------------------------------------------------------


def aioquic_configuration(is_client: bool) -> QuicConfiguration:
    """aioquic's settings as punch's link has them (punch.transport.quic), without the pinning."""
    link = LinkConfig()
    configuration = QuicConfiguration(
        is_client=is_client,
        alpn_protocols=[ALPN],
        max_datagram_size=link.max_datagram_size,
        max_datagram_frame_size=65536,
        max_stream_data=link.stream_window,
        max_data=link.connection_window,
        congestion_control_algorithm=link.congestion_control,
        verify_mode=ssl.CERT_NONE,
    )
    if not is_client:
        identity = Identity.generate()
        configuration.certificate = self_signed_certificate(identity, datetime.datetime.now(datetime.UTC))
        configuration.private_key = IdentityKey(identity)
    return configuration


class AioquicChannel(QuicConnectionProtocol):
    """aioquic's protocol with its streams and datagrams as a :class:`Channel`: datagrams go out the way aioquic's
    examples send them (``send_datagram_frame``, then ``transmit``), at most QUEUE waiting."""

    def __init__(self, quic: QuicConnection, stream_handler: object = None) -> None:
        super().__init__(quic, stream_handler=self._stream_created)
        self._datagrams: asyncio.Queue[bytes] = asyncio.Queue()
        self._streams: asyncio.Queue[Streams] = asyncio.Queue()

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.DatagramFrameReceived):
            self._datagrams.put_nowait(event.data)
        else:
            super().quic_event_received(event)

    def _stream_created(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._streams.put_nowait((reader, writer))

    async def open_stream(self) -> Streams:
        return await self.create_stream()

    async def accept_stream(self) -> Streams:
        return await self._streams.get()

    def send_datagram(self, data: bytes) -> bool:
        if len(self._quic._datagrams_pending) >= QUEUE:
            return False
        self._quic.send_datagram_frame(data)
        self.transmit()
        return True

    async def receive_datagram(self) -> bytes:
        return await self._datagrams.get()

    @property
    def max_datagram_size(self) -> int:
        return PAYLOAD


async def aioquic_end(args: argparse.Namespace) -> dict[str, Any]:
    if args.role == "send":
        async with connect(
            args.host, args.port, configuration=aioquic_configuration(True), create_protocol=AioquicChannel
        ) as client:
            return await send(cast(AioquicChannel, client), args.mib << 20, args.seconds, args.payload, True)
    served: asyncio.Future[AioquicChannel] = asyncio.get_running_loop().create_future()

    def made(quic: QuicConnection, stream_handler: object = None) -> AioquicChannel:
        channel = AioquicChannel(quic)
        if not served.done():
            served.set_result(channel)
        return channel

    server = await serve(args.host, args.port, configuration=aioquic_configuration(False), create_protocol=made)
    try:
        listening(cast(asyncio.DatagramTransport, server._transport).get_extra_info("sockname")[1])
        channel = await served
        result = await receive(channel, True)
        await channel.wait_closed()
        return result
    finally:
        server.close()


# -- plain TCP ------------------------------------------------------------------------------------------------


class TcpChannel:
    """A TCP connection per stream (only the stream test runs over TCP)."""

    def __init__(self, host: str, port: int) -> None:
        self._at = (host, port)
        self.streams: asyncio.Queue[Streams] = asyncio.Queue()

    async def open_stream(self) -> Streams:
        return await asyncio.open_connection(*self._at)

    async def accept_stream(self) -> Streams:
        return await self.streams.get()

    def send_datagram(self, data: bytes) -> bool:
        raise NotImplementedError("TCP carries no datagrams")

    async def receive_datagram(self) -> bytes:
        raise NotImplementedError("TCP carries no datagrams")

    @property
    def max_datagram_size(self) -> int:
        return 0


async def tcp_end(args: argparse.Namespace) -> dict[str, Any]:
    channel = TcpChannel(args.host, args.port)
    if args.role == "send":
        return await send(channel, args.mib << 20, args.seconds, args.payload, False)

    def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        channel.streams.put_nowait((reader, writer))

    server = await asyncio.start_server(accepted, args.host, args.port)
    async with server:
        listening(server.sockets[0].getsockname()[1])
        return await receive(channel, False)


def listening(port: int) -> None:
    print(f"listening {port}", flush=True)


ENDS: dict[str, Callable[[argparse.Namespace], Any]] = {"punch": punch_end, "aioquic": aioquic_end, "tcp": tcp_end}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("kind", choices=sorted(ENDS))
    parser.add_argument("role", choices=["send", "receive"])
    parser.add_argument("--host", default="127.0.0.1", help="aioquic, tcp: where the receiver listens")
    parser.add_argument("--port", type=int, default=0, help="aioquic, tcp: the receiver's port (0: any)")
    parser.add_argument("--server", default="127.0.0.1:3478", help="punch: the rendezvous server")
    parser.add_argument("--bind", default="0.0.0.0:0", help="punch: our socket")
    parser.add_argument("--me", default="", help="punch: our peer ID")
    parser.add_argument("--other", default="", help="punch: the other's peer ID")
    parser.add_argument("--mib", type=int, default=32, help="MiB uploaded on the stream")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds of datagrams")
    parser.add_argument("--payload", type=int, default=PAYLOAD, help="bytes of each datagram")
    args = parser.parse_args()
    result = asyncio.run(ENDS[args.kind](args))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
