"""Two QuicLinks joined in memory, as a session joins them over a path: each link's ``send`` puts a datagram on
the pipe's current route, which delivers it to the other link (or drops it, or delays it past later ones).

A route is one path: the punched socket, the relay, a blackhole while a NAT forgets a binding. Switching the pipe
to another route is what the session does when the path changes; the links never hear of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from collections.abc import AsyncIterator, Callable

from punch.identity.keyfile import Identity
from punch.transport import LinkConfig, QuicLink


class Route:
    """Delivers each datagram after a delay in [0, jitter) s (so some overtake others), drops a share ``loss``."""

    def __init__(self, name: str, *, loss: float = 0.0, jitter: float = 0.0, seed: int = 0) -> None:
        self.name = name
        self.loss = loss
        self.jitter = jitter
        self.carried = 0
        self.dropped = 0
        self._random = random.Random(seed)

    def carry(self, data: bytes, deliver: Callable[[bytes], None]) -> None:
        if self._random.random() < self.loss:
            self.dropped += 1
            return
        self.carried += 1
        loop = asyncio.get_running_loop()
        if self.jitter:
            loop.call_later(self._random.random() * self.jitter, deliver, data)
        else:
            loop.call_soon(deliver, data)


class Pipe:
    """The path between a client link and a server link; ``route`` can be replaced at any time."""

    def __init__(self, route: Route | None = None) -> None:
        self.route = route or Route("direct")
        self.links: dict[str, QuicLink] = {}

    def send_to(self, name: str) -> Callable[[bytes], None]:
        def send(data: bytes) -> None:
            self.route.carry(data, lambda d: self.links[name].datagram_received(d))

        return send


@contextlib.asynccontextmanager
async def linked(
    pipe: Pipe | None = None,
    *,
    client_config: LinkConfig | None = None,
    server_config: LinkConfig | None = None,
    client_identity: Identity | None = None,
    server_identity: Identity | None = None,
    client_pins: bytes | None = None,
    server_pins: bytes | None = None,
) -> AsyncIterator[tuple[QuicLink, QuicLink]]:
    """A started (client, server) pair over ``pipe``; each pins the other's key unless told another one."""
    pipe = pipe or Pipe()
    client_id = client_identity or Identity.generate()
    server_id = server_identity or Identity.generate()

    def end(name: str, identity: Identity, pins: bytes, config: LinkConfig | None) -> QuicLink:
        to = "server" if name == "client" else "client"
        return QuicLink(identity, pins, pipe.send_to(to), is_client=name == "client", config=config)

    client = end("client", client_id, client_pins or server_id.public_key, client_config)
    server = end("server", server_id, server_pins or client_id.public_key, server_config)
    pipe.links.update(client=client, server=server)
    async with server, client:
        yield client, server


def payload(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, chunk: int = 64 * 1024) -> None:
    """Send back all that comes, then FIN."""
    while data := await reader.read(chunk):
        writer.write(data)
        await writer.drain()
    writer.write_eof()
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def echo_streams(link: QuicLink, count: int) -> None:
    """Echo the next ``count`` streams the peer opens, all at once."""
    async with asyncio.TaskGroup() as group:
        for _ in range(count):
            reader, writer = await link.accept_stream()
            group.create_task(echo(reader, writer))


async def round_trip(link: QuicLink, data: bytes, chunk: int = 64 * 1024) -> str:
    """Open a stream, send ``data`` and FIN while reading the echo; the SHA-256 of what came back."""
    reader, writer = await link.open_stream()

    async def send() -> None:
        for start in range(0, len(data), chunk):
            writer.write(data[start : start + chunk])
            await writer.drain()
        writer.write_eof()

    async with asyncio.TaskGroup() as group:
        group.create_task(send())
        digest = hashlib.sha256()
        while block := await reader.read(chunk):
            digest.update(block)
    writer.close()
    await writer.wait_closed()
    return digest.hexdigest()
