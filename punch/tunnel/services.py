"""The accepting side of a session's streams and datagrams: each stream the other peer opens goes to the service its
header names (punch.tunnel.header); each datagram to the forward whose flow it belongs to (punch.tunnel.forward).
Bad input from the other peer is answered where it can be, counted, and never raised further."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from punch.tunnel.forward import split_datagram
from punch.tunnel.header import HeaderError, read_line_object, write_line_object

log = logging.getLogger(__name__)

HEADER_TIMEOUT = 15.0  # seconds a stream of the other peer may take to say what it is for
SERVICE_WAIT = 5.0  # seconds a stream for a service not served yet waits for it (one set up just after connecting)
Service = Callable[[dict[str, Any], asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
FlowRoute = Callable[[int, bytes], bool]  # a flow's datagram, by number: True if a flow took it


class Services:
    """Routes what the other peer opens: ``serve(name, handler)`` for streams, ``flows(forward, back)`` for
    datagrams (the accepting side's flows, and the datagrams sent back on our own forwards' flows)."""

    def __init__(self, service_wait: float = SERVICE_WAIT) -> None:
        self._service_wait = service_wait
        self._services: dict[str, Service] = {}
        self._served = asyncio.Event()  # set (and cleared) each time a service is added
        self._forward: list[FlowRoute] = []  # flows we accept: datagrams the other's forwarders send
        self._back: list[FlowRoute] = []  # flows we opened: datagrams the other's accepting side sends back
        self._tasks: set[asyncio.Task[None]] = set()
        self.dropped: Counter[str] = Counter()

    def serve(self, name: str, handler: Service) -> None:
        """Hand the other peer's streams for ``name`` to ``handler`` from now on (those waiting for it too)."""
        self._services[name] = handler
        self._served.set()
        self._served = asyncio.Event()

    async def _handler(self, name: str) -> Service | None:
        """The handler of ``name``, waiting a while (:data:`SERVICE_WAIT`) for it to be served: the other peer may open
        a stream the moment the connection is up, before our program has set up its service."""
        if name not in self._services:
            log.info("a stream of the other peer for %r waits for that service", name)
        try:
            async with asyncio.timeout(self._service_wait):
                while (handler := self._services.get(name)) is None:
                    await self._served.wait()
        except TimeoutError:
            return None
        return handler

    def route_flows(self, accepting: FlowRoute | None = None, forwarding: FlowRoute | None = None) -> None:
        if accepting is not None:
            self._forward.append(accepting)
        if forwarding is not None:
            self._back.append(forwarding)

    def on_stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A stream the other peer opened: served in a task of its own."""
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(HEADER_TIMEOUT):
                header = await read_line_object(reader)
        except (TimeoutError, HeaderError) as error:
            self.dropped["bad-stream-header"] += 1
            log.info("dropped a stream of the other peer: %s", error or "no header in time")
            writer.close()
            return
        name = header.get("service")
        handler = await self._handler(name) if isinstance(name, str) else None
        if handler is None:
            self.dropped["unknown-service"] += 1
            log.info("refused a stream of the other peer for %r: no such service here", name)
            write_line_object(writer, {"ok": False, "reason": f"no service {name!r} here"})
            with contextlib.suppress(ConnectionError, OSError):
                await writer.drain()
            writer.close()
            return
        try:
            await handler(header, reader, writer)
        except (ConnectionError, OSError) as error:
            log.info("a %s stream ended: %s", name, error)

    def on_datagram(self, data: bytes) -> None:
        split = split_datagram(data)
        if split is None:
            self.dropped["short-datagram"] += 1
            return
        number, back, payload = split
        if not any(route(number, payload) for route in (self._back if back else self._forward)):
            self.dropped["no-such-flow"] += 1

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
