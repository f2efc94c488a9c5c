"""Stream throughput of punch's QUIC link against aioquic's own ceiling, one process, real loopback UDP sockets.

    python -m bench.quic_loopback [--mib 32] [--rounds 5]

Each round uploads MIB MiB on one stream from a client to a server and times it from the first byte written to
the server's answer that it has read every byte (after FIN), twice, in alternating order:

- ``punch``: two punch.transport.QuicLinks on two UDP sockets of 127.0.0.1, each socket demultiplexing its datagrams
  (punch.transport.demux) as the punched socket does, pinned Ed25519 identities and mutual TLS.
- ``aioquic``: aioquic's own asyncio client and server (``aioquic.asyncio.connect`` and ``serve``, as in aioquic's
  tests/test_asyncio.py), an Ed25519 certificate on the server and none on the client.

Both write 64 KiB at a time with ``drain()`` and send QUIC packets of 1200 bytes (aioquic's default
max_datagram_size), with reno congestion control; both ends share this process's one core, as they would not in
use. The ratio punch/aioquic is what issue 26 asks to stay at 0.8 or above. Loopback only: nothing leaves the
machine. Not run by the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ssl
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import cast

from aioquic.asyncio.client import connect
from aioquic.asyncio.server import serve
from aioquic.quic.configuration import QuicConfiguration

from punch.identity.keyfile import Identity
from punch.transport import Carried, QuicLink, classify
from punch.transport.certs import IdentityKey, self_signed_certificate

CHUNK = 64 * 1024
Address = tuple[str, int]


async def drain_upload(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The server's side: read to FIN, answer with the byte count."""
    count = 0
    while block := await reader.read(CHUNK):
        count += len(block)
    writer.write(str(count).encode())
    writer.write_eof()


async def upload(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, size: int) -> float:
    block = bytes(CHUNK)
    started = time.perf_counter()
    for _ in range(size // CHUNK):
        writer.write(block)
        await writer.drain()
    writer.write_eof()
    answer = await reader.read()
    elapsed = time.perf_counter() - started
    if int(answer) != size:
        raise RuntimeError(f"the server read {answer.decode()} bytes of {size}")
    return elapsed


class Socket(asyncio.DatagramProtocol):
    """A loopback UDP socket whose QUIC datagrams go to its link (STUN would go elsewhere; none is sent here)."""

    def __init__(self) -> None:
        self.link: QuicLink | None = None
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if self.link is not None and classify(data) is Carried.QUIC:
            self.link.datagram_received(data)


async def punch_round(size: int) -> float:
    loop = asyncio.get_running_loop()
    sockets = [(await loop.create_datagram_endpoint(Socket, local_addr=("127.0.0.1", 0)))[1] for _ in range(2)]
    client_transport, server_transport = transports = [cast(asyncio.DatagramTransport, s.transport) for s in sockets]
    client_at, server_at = (t.get_extra_info("sockname") for t in transports)
    client_id, server_id = Identity.generate(), Identity.generate()
    client = QuicLink(client_id, server_id.public_key, lambda d: client_transport.sendto(d, server_at), is_client=True)
    server = QuicLink(server_id, client_id.public_key, lambda d: server_transport.sendto(d, client_at), is_client=False)
    sockets[0].link, sockets[1].link = client, server
    try:
        async with server, client:
            await client.wait_connected()
            await server.wait_connected()
            reader, writer = await client.open_stream()
            upload_task = asyncio.create_task(upload(reader, writer, size))
            peer_reader, peer_writer = await server.accept_stream()
            await drain_upload(peer_reader, peer_writer)
            return await upload_task
    finally:
        for transport in transports:
            transport.close()


async def aioquic_round(size: int) -> float:
    identity = Identity.generate()
    server_configuration = QuicConfiguration(is_client=False, alpn_protocols=["bench"])
    server_configuration.certificate = self_signed_certificate(identity, datetime.datetime.now(datetime.UTC))
    server_configuration.private_key = IdentityKey(identity)
    tasks: set[asyncio.Task[None]] = set()

    def on_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(drain_upload(reader, writer))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    server = await serve("127.0.0.1", 0, configuration=server_configuration, stream_handler=on_stream)
    try:
        port = cast(asyncio.DatagramTransport, server._transport).get_extra_info("sockname")[1]
        client_configuration = QuicConfiguration(is_client=True, alpn_protocols=["bench"], verify_mode=ssl.CERT_NONE)
        async with connect("127.0.0.1", port, configuration=client_configuration) as client:
            reader, writer = await client.create_stream()
            return await upload(reader, writer, size)
    finally:
        server.close()


async def run(kind: Callable[[int], Awaitable[float]], size: int) -> float:
    return await kind(size)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=32, help="MiB uploaded per round (default 32)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, each timing both (default 5)")
    args = parser.parse_args()
    size = args.mib * 1024 * 1024
    kinds: dict[str, Callable[[int], Awaitable[float]]] = {"punch": punch_round, "aioquic": aioquic_round}
    rates: dict[str, list[float]] = {name: [] for name in kinds}
    for round_ in range(args.rounds):
        order = list(kinds) if round_ % 2 == 0 else list(reversed(kinds))
        for name in order:
            elapsed = asyncio.run(run(kinds[name], size))
            rates[name].append(size / elapsed / 1e6)
            print(f"round {round_ + 1} {name:8} {rates[name][-1]:7.1f} MB/s", file=sys.stderr)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    print(f"upload of {args.mib} MiB on one stream, {args.rounds} rounds, median MB/s:")
    for name, value in medians.items():
        print(f"  {name:8} {value:7.1f}   (min {min(rates[name]):.1f}, max {max(rates[name]):.1f})")
    print(f"  punch/aioquic ratio {medians['punch'] / medians['aioquic']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
