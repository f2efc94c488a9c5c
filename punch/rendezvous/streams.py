"""The server over TCP and TLS, for peers whose UDP does not get out (RFC 8489 §6.2.2; frames: punch.stun.stream).

``punch server`` listens on TCP at its UDP address and port by default (3478 serves both, RFC 8489 §8) and on TLS
when given a certificate and key (5349 by default; 443 where a firewall lets only the web out). A peer whose UDP gets
no answer connects (punch.peer.reach) and does everything over the connection that it would over UDP: Binding,
Register, Connect, the answers to Introduce and Go, and the relay.

A connection is one more way into the server's primary endpoint, not a server of its own: what it reads goes to that
endpoint as datagrams from the connection's remote address, and what the server sends to that address (answers,
Introduce, Go, Notice, relayed packets) goes back over the connection (punch.stun.protocol.StunEndpoint.carry), its
requests sent once (no retransmissions over TCP). So a peer registered over a connection is registered at the
connection's address, the one its Binding shows it, and the relay forwards to it as to any other peer: a session
with one peer on UDP and the other on TCP, or both on connections, is relayed unchanged, within the same budget and
rate limits. The rest of the server does not know.

After a connection ends, what the server sends to its address is dropped and counted (``stream-gone``) for
``gone_for`` seconds (the longest lease: the registration may outlive its connection): that is a TCP address, and a
datagram to it could reach whoever holds that UDP port behind the peer's NAT. A peer that connects again comes from
another port, and registers there.

Limits, so that connections cost the server a bounded amount: at most ``max_connections`` at once (a new one beyond
is closed at once, ``stream-refused``); a connection silent for ``idle`` seconds (longer than a peer's refresh
interval) is closed, and one that stalls in the middle of a frame after ``frame`` seconds; a TLS handshake must end
within ``handshake`` seconds; and what punch.stun.stream refuses (bad frames, stalls, backlogs) is counted in the
endpoint's counters, so that the server's stats line shows it.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass, field
from types import TracebackType

from punch.stun import Address
from punch.stun.protocol import StunEndpoint, format_address
from punch.stun.stream import FRAME_TIMEOUT, Stream

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """What the server's connections may cost it (module docstring); times in seconds."""

    max_connections: int = 10_000
    idle: float = 120.0  # peers refresh their registration every third of its lease (at most 60 s): at least twice
    frame: float = FRAME_TIMEOUT  # for the rest of a frame once its length came
    handshake: float = 10.0
    gone_for: float = 60.0  # punch.rendezvous.server.MAX_LEASE


@dataclass(frozen=True, slots=True)
class StreamListen:
    """Where the server listens over TCP and over TLS (``punch server --tcp-listen``, ``--tls-listen``)."""

    tcp: Address | None = None  # None: no TCP
    tls: Address | None = None  # None: no TLS
    context: ssl.SSLContext | None = None  # TLS's certificate and key (punch.stun.tls.server_context)
    limits: StreamLimits = field(default_factory=StreamLimits)


class ListenFailed(OSError):
    """A listener could not bind: ``flag`` names the flag that gave ``address``."""

    def __init__(self, error: OSError, address: Address, flag: str) -> None:
        super().__init__(error.errno, error.strerror or str(error))
        self.address = address
        self.flag = flag


async def listen_streams(endpoint: StunEndpoint, listen: StreamListen) -> StreamListener:
    """A listener for ``endpoint`` on ``listen``'s addresses; ListenFailed if one cannot be bound."""
    listener = StreamListener(endpoint, listen.limits)
    for address, context, flag in ((listen.tcp, None, "--tcp-listen"), (listen.tls, listen.context, "--tls-listen")):
        if address is None or (flag == "--tls-listen" and context is None):
            continue
        try:
            await listener.listen(address, context)
        except OSError as error:
            await listener.close()
            raise ListenFailed(error, address, flag) from None
    return listener


class StreamListener:
    """Accepts TCP and TLS connections for ``endpoint`` (the server's primary one; module docstring). Call
    :meth:`listen` for each address; use ``async with`` or call :meth:`close`."""

    def __init__(self, endpoint: StunEndpoint, limits: StreamLimits | None = None) -> None:
        self._endpoint = endpoint
        self._limits = limits or StreamLimits()
        self._servers: list[asyncio.Server] = []
        self._connections: dict[Stream, asyncio.Task[None]] = {}
        self._forgetting: set[asyncio.TimerHandle] = set()  # the ended connections' addresses, dropped for a while
        self._closed = False

    @property
    def addresses(self) -> list[Address]:
        """Where it listens (useful with port 0)."""
        found = []
        for server in self._servers:
            for sock in server.sockets:
                name = sock.getsockname()
                found.append((str(name[0]), int(name[1])))
        return found

    async def listen(self, address: Address, context: ssl.SSLContext | None = None) -> Address:
        """Accept connections on ``address`` (TLS with ``context``); the address bound. OSError if it cannot."""
        server = await asyncio.start_server(
            self._accepted,
            address[0],
            address[1],
            ssl=context,
            ssl_handshake_timeout=self._limits.handshake if context is not None else None,
        )
        self._servers.append(server)
        name = server.sockets[0].getsockname()
        bound = (str(name[0]), int(name[1]))
        kind = "TLS" if context is not None else "TCP"
        log.info("listening on %s over %s too (framed STUN, RFC 4571)", format_address(bound), kind)
        return bound

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counters = self._endpoint.counters
        stream = Stream(reader, writer, counters, idle=self._limits.idle, frame_timeout=self._limits.frame)
        if self._closed or len(self._connections) >= self._limits.max_connections:
            counters["stream-refused"] += 1
            await stream.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections[stream] = task
        remote = stream.remote
        counters["stream-accepted"] += 1
        log.debug("connection from %s", format_address(remote))
        self._endpoint.carry(remote, stream.send)
        try:
            why = await stream.run(lambda message: self._endpoint.datagram_received(message, remote))
            log.debug("connection from %s ended: %s", format_address(remote), why)
        finally:
            del self._connections[stream]
            self._endpoint.carry(remote, self._gone)
            self._forget_later(remote)

    def _gone(self, message: bytes) -> None:
        """What the server sends to a connection that has ended (module docstring)."""
        self._endpoint.counters["stream-gone"] += 1

    def _forget_later(self, remote: Address) -> None:
        """Send to ``remote`` through the socket again after ``gone_for`` (unless another connection carries it)."""

        def forget() -> None:
            self._forgetting.discard(timer)
            self._endpoint.uncarry(remote, self._gone)

        timer = asyncio.get_running_loop().call_later(self._limits.gone_for, forget)
        self._forgetting.add(timer)

    async def close(self) -> None:
        """Stop listening and close every connection; idempotent."""
        self._closed = True
        for server in self._servers:
            server.close()
        tasks = list(self._connections.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        for timer in self._forgetting:
            timer.cancel()
        self._forgetting.clear()

    async def __aenter__(self) -> StreamListener:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
