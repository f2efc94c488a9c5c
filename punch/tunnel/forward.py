"""Port forwarding through a session: ``--forward [udp:]LOCAL_PORT:HOST:PORT`` on one peer, ``--allow [udp:]HOST:PORT``
on the other (nothing is reachable by default).

TCP: each connection to our LOCAL_PORT opens a stream to the other peer, whose header names the target; the other
connects to it, if allowed, and answers; then the bytes are copied both ways, each direction closed on its own
(:class:`TcpForwarder`, :meth:`ForwardService.serve`). Many connections at once, each its own stream.

UDP: each source address sending to our LOCAL_PORT is a flow. Its stream carries the header and the answer (with the
flow's number) and stays open while the flow lives; the flow's datagrams travel as QUIC datagrams (RFC 9221), each
prefixed with 4 bytes: the flow's number, its top bit set on what the accepting side sends back
(:class:`UdpForwarder`). A flow idle for :data:`UDP_IDLE` seconds ends.

A refused forward is a clear error on both sides: the accepting peer logs why it refused, the forwarding peer logs
the reason it got, and closes the local connection (or drops the flow).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Collection
from typing import Any, Protocol

from punch.tunnel.header import HeaderError, field, read_line_object, write_line_object
from punch.tunnel.pipe import close_all, copy, splice
from punch.tunnel.spec import Forward, Target

log = logging.getLogger(__name__)

ANSWER_TIMEOUT = 15.0  # seconds a forwarder waits for the other peer's answer to a stream's header
CONNECT_TIMEOUT = 10.0  # seconds the accepting side tries to connect to a target
UDP_IDLE = 60.0  # seconds without a datagram after which a UDP flow ends
WAITING_DATAGRAMS = 64  # a UDP flow's datagrams kept while it opens (maybe before the session is up); beyond, dropped
_FLOW = struct.Struct("!I")
_BACK = 0x8000_0000  # set on datagrams the accepting side sends back


class Streams(Protocol):
    async def open_stream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]: ...


class Datagrams(Protocol):
    def send_datagram(self, data: bytes) -> None: ...

    @property
    def max_datagram_size(self) -> int: ...


def _target_header(target: Target) -> dict[str, Any]:
    return {"service": "forward", "protocol": target.protocol, "host": target.host, "port": target.port}


class ForwardRefused(Exception):
    """The other peer refused a forward; the message is its reason."""


async def _ask(
    connection: Streams, target: Target
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, dict[str, Any]]:
    """Open a stream for ``target`` and wait for the other peer's answer; ForwardRefused with its reason."""
    reader, writer = await connection.open_stream()
    write_line_object(writer, _target_header(target))
    await writer.drain()
    return reader, writer, await _answer(reader, writer, target)


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: Target) -> dict[str, Any]:
    """The other peer's answer to our forward to ``target`` on its stream; ForwardRefused (the stream closed) with its
    reason, or if none came."""
    try:
        async with asyncio.timeout(ANSWER_TIMEOUT):
            answer = await read_line_object(reader)
    except (TimeoutError, HeaderError) as error:
        writer.close()
        raise ForwardRefused(f"no answer to our forward to {target}: {error or 'timed out'}") from None
    if answer.get("ok") is not True:
        writer.close()
        raise ForwardRefused(str(answer.get("reason", "refused, no reason given")))
    return answer


class TcpForwarder:
    """Listens on ``bind``:LOCAL_PORT; each connection goes to the forward's target on the other side."""

    def __init__(self, connection: Streams, forward: Forward, bind: str = "127.0.0.1") -> None:
        self._connection = connection
        self._forward = forward
        self._bind = bind
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0
        self.refused = 0

    async def start(self) -> None:
        """Listen (OSError if the port is taken)."""
        self._server = await asyncio.start_server(self._accepted, self._bind, self._forward.local_port)
        log.info(
            "forwarding %s:%d to %s on the other peer's side",
            self._bind,
            self._forward.local_port,
            self._forward.target,
        )

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._carry(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _carry(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One local connection through its own stream. What the local client sends goes on behind the stream's
        header at once, not after the other peer's answer: the first bytes reach the target a round trip sooner (the
        other peer reads them once it has connected, and drops them with its refusal)."""
        target = self._forward.target
        self.connections += 1
        try:
            stream_reader, stream_writer = await self._connection.open_stream()  # (waits for the session to be up)
        except (ConnectionError, OSError) as error:
            self.refused += 1
            log.warning("a connection forwarded to %s closed: no stream to the other peer (%s)", target, error)
            writer.close()
            return
        write_line_object(stream_writer, _target_header(target))
        outbound = asyncio.ensure_future(copy(reader, stream_writer))
        try:
            await _answer(stream_reader, stream_writer, target)
        except ForwardRefused as error:
            outbound.cancel()
            await asyncio.gather(outbound, return_exceptions=True)
            self._refused(target, error, writer)
            return
        try:
            received = await copy(stream_reader, writer)
            sent = await outbound
        finally:
            outbound.cancel()
            await close_all(writer, stream_writer)
        log.debug("forwarded connection to %s ended: %d bytes out, %d back", target, sent, received)

    def _refused(self, target: Target, error: Exception, writer: asyncio.StreamWriter) -> None:
        self.refused += 1
        log.warning("forward to %s refused by the other peer: %s", target, error)
        writer.close()

    async def close(self) -> None:
        """Stop listening and end every connection; idempotent."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class _Flow(asyncio.DatagramProtocol):
    """One UDP flow's socket on the accepting side, connected to the target."""

    def __init__(self, number: int, datagrams: Datagrams) -> None:
        self._number = number
        self._datagrams = datagrams
        self.transport: asyncio.DatagramTransport | None = None
        self.seen = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.seen.set()
        _send(self._datagrams, self._number | _BACK, data)


def _send(datagrams: Datagrams, number: int, payload: bytes) -> None:
    packet = _FLOW.pack(number) + payload
    if len(packet) > datagrams.max_datagram_size:
        log.info("dropped a UDP datagram of %d bytes: a datagram of this path takes at most %d", len(payload),
                 datagrams.max_datagram_size - _FLOW.size)  # fmt: skip
        return
    datagrams.send_datagram(packet)


class ForwardService:
    """The accepting side: streams whose header asks for a forward, connected if ``allowed``."""

    def __init__(self, allowed: Collection[Target], datagrams: Datagrams) -> None:
        self._allowed = allowed
        self._datagrams = datagrams
        self._flows: dict[int, _Flow] = {}
        self._next_flow = 1
        self.refused = 0

    async def serve(self, header: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer one forward stream and carry it until either side ends it."""
        try:
            target = Target(
                field(header, "protocol", str, "forward"),
                field(header, "host", str, "forward"),
                field(header, "port", int, "forward"),
            )
        except HeaderError as error:
            await self._refuse(writer, f"a malformed forward: {error}")
            return
        if target not in self._allowed:
            allow = f"--allow {target}"
            await self._refuse(writer, f"{target} is not allowed here; the other peer may start with `{allow}`")
            return
        if target.protocol == "udp":
            await self._serve_udp(target, reader, writer)
            return
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                connection = await asyncio.open_connection(target.host, target.port)
        except (TimeoutError, OSError) as error:
            why = "timed out" if isinstance(error, TimeoutError) else (error.strerror or str(error))
            await self._refuse(writer, f"cannot connect to {target}: {why}")
            return
        write_line_object(writer, {"ok": True})
        log.info("the other peer's forward to %s: connected", target)
        await splice((reader, writer), connection)

    async def _refuse(self, writer: asyncio.StreamWriter, reason: str) -> None:
        self.refused += 1
        log.warning("refused a forward of the other peer: %s", reason)
        write_line_object(writer, {"ok": False, "reason": reason})
        with contextlib.suppress(ConnectionError, OSError):
            await writer.drain()
        writer.close()

    async def _serve_udp(self, target: Target, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = self._next_flow
        self._next_flow += 1
        flow = _Flow(number, self._datagrams)
        try:
            await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: flow, remote_addr=(target.host, target.port)
            )
        except OSError as error:
            await self._refuse(writer, f"cannot reach {target}: {error.strerror or error}")
            return
        self._flows[number] = flow
        write_line_object(writer, {"ok": True, "flow": number})
        log.info("the other peer's UDP flow %d to %s: open", number, target)
        try:
            await reader.read()  # the flow lives while its stream does
        finally:
            self._flows.pop(number, None)
            if flow.transport is not None:
                flow.transport.close()
            writer.close()

    def on_datagram(self, number: int, payload: bytes) -> bool:
        """A datagram of one of our flows from the other peer: to its target; False if no such flow."""
        flow = self._flows.get(number)
        if flow is None or flow.transport is None:
            return False
        flow.transport.sendto(payload)
        return True


class UdpForwarder(asyncio.DatagramProtocol):
    """Our LOCAL_PORT for UDP: each source address is a flow to the forward's target on the other side."""

    def __init__(self, connection: Streams, datagrams: Datagrams, forward: Forward, bind: str = "127.0.0.1") -> None:
        self._connection = connection
        self._datagrams = datagrams
        self._forward = forward
        self._bind = bind
        self._transport: asyncio.DatagramTransport | None = None
        self._flows: dict[tuple[str | int, ...], int] = {}  # source -> flow number (the accepting side's)
        self._sources: dict[int, tuple[str | int, ...]] = {}
        self._waiting: dict[tuple[str | int, ...], list[bytes]] = {}  # datagrams of a flow being opened
        self._streams: dict[int, asyncio.StreamWriter] = {}
        self._heard: dict[int, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.refused = 0
        self.dropped = 0  # datagrams of a flow being opened beyond WAITING_DATAGRAMS

    async def start(self) -> None:
        await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: self, local_addr=(self._bind, self._forward.local_port)
        )
        log.info(
            "forwarding UDP %s:%d to %s on the other peer's side", self._bind, self._forward.local_port,
            self._forward.target,
        )  # fmt: skip

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        number = self._flows.get(addr)
        if number is not None:
            self._heard[number] = asyncio.get_running_loop().time()
            _send(self._datagrams, number, data)
            return
        if addr in self._waiting:
            if len(self._waiting[addr]) < WAITING_DATAGRAMS:
                self._waiting[addr].append(data)
            else:
                self.dropped += 1  # UDP: the source sends again, or does without
            return
        self._waiting[addr] = [data]
        task = asyncio.get_running_loop().create_task(self._open(addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _open(self, source: tuple[str | int, ...]) -> None:
        target = self._forward.target
        try:
            reader, writer, answer = await _ask(self._connection, target)
            number = field(answer, "flow", int, "the other peer's answer")
        except (ForwardRefused, HeaderError, ConnectionError, OSError) as error:
            self.refused += 1
            log.warning("UDP forward to %s refused by the other peer: %s", target, error)
            self._waiting.pop(source, None)
            return
        self._flows[source], self._sources[number], self._streams[number] = number, source, writer
        self._heard[number] = asyncio.get_running_loop().time()
        for data in self._waiting.pop(source, []):
            _send(self._datagrams, number, data)
        try:
            while True:  # until the flow idles, or the other side ends its stream
                left = self._heard[number] + UDP_IDLE - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await reader.read()
                        break
        finally:
            self._flows.pop(source, None)
            self._sources.pop(number, None)
            self._streams.pop(number, None)
            writer.close()

    def on_datagram(self, number: int, payload: bytes) -> bool:
        """A datagram the accepting side sent back on one of our flows: to its source; False if no such flow."""
        source = self._sources.get(number)
        if source is None or self._transport is None:
            return False
        self._heard[number] = asyncio.get_running_loop().time()
        self._transport.sendto(payload, source)
        return True

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def split_datagram(data: bytes) -> tuple[int, bool, bytes] | None:
    """(flow number, whether the accepting side sent it back, payload) of a forward's datagram; None if too short."""
    if len(data) < _FLOW.size:
        return None
    (value,) = _FLOW.unpack_from(data)
    return value & ~_BACK, bool(value & _BACK), data[_FLOW.size :]
