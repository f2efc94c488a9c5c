"""Texts between two peers on a stream of their own: each text acknowledged before the next, delivered once and in
order, and "done sending" as the end of the stream.

Each peer opens one stream for what it sends (header ``{"service": "texts"}``); a text is a line
``{"n": N, "text": "..."}`` and its acknowledgement a line ``{"ack": N}`` back on the same stream. The session is over
for us once our last text is acknowledged and we ended our stream, and the other ended its own (:meth:`Texts.done`).
The stream is QUIC's: reliable, ordered and encrypted; the acknowledgement says the other peer took the text, not
only its QUIC stack.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from punch.errors import PeerError
from punch.tunnel.forward import Streams
from punch.tunnel.header import HeaderError, decode_line, encode_line, field, read_line_object, write_line_object

log = logging.getLogger(__name__)

MAX_TEXT_BYTES = 32 * 1024  # a text is one JSON line on the stream, escaped: at most twice that and a little
_MAX_LINE = 2 * MAX_TEXT_BYTES + 64


class Texts:
    """Our texts to ``peer`` and theirs to us; :meth:`serve` is the accepting side's service."""

    def __init__(self, connection: Streams, peer: str, on_text: Callable[[str], None]) -> None:
        self._connection = connection
        self.peer = peer
        self._on_text = on_text
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.StreamReader | None = None
        self._next = 0
        self.sent: list[str] = []
        self.received: list[str] = []
        self.remote_closed = asyncio.Event()  # the other peer ended its texts

    async def send(self, text: str) -> None:
        """Send one text and wait for its acknowledgement (PeerError if the stream ends first)."""
        payload = text.encode("utf-8", "surrogatepass")
        if len(payload) > MAX_TEXT_BYTES:
            raise PeerError(f"a message is {len(payload)} bytes; the limit is {MAX_TEXT_BYTES}")
        if self._writer is None:
            self._reader, self._writer = await self._connection.open_stream()
            write_line_object(self._writer, {"service": "texts"})
        number = self._next
        self._next += 1
        log.info("message %d sent to %s (encrypted): %r", number, self.peer, text)
        self._writer.write(encode_line({"n": number, "text": text}, _MAX_LINE))
        await self._writer.drain()
        assert self._reader is not None
        try:
            answer = await read_line_object(self._reader)
            acked = field(answer, "ack", int, "an acknowledgement")
        except HeaderError as error:
            raise PeerError(f"{self.peer} stopped acknowledging (message {number}: {error})") from None
        if acked != number:
            raise PeerError(f"{self.peer} acknowledged message {acked}, not {number}")
        self.sent.append(text)
        log.info("message %d acknowledged by %s", number, self.peer)

    async def close(self) -> None:
        """Tell the other peer we have nothing more to send (the end of our stream)."""
        log.info("telling %s we are done sending", self.peer)
        if self._writer is None:
            self._reader, self._writer = await self._connection.open_stream()
            write_line_object(self._writer, {"service": "texts"})
        self._writer.write_eof()
        await self._writer.drain()

    async def serve(self, header: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The other peer's texts: each delivered once and in order, and acknowledged."""
        expected = 0
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as end:
                if end.partial:
                    log.info("the texts of %s ended in the middle of a line: dropped %d bytes", self.peer,
                             len(end.partial))  # fmt: skip
                break
            except asyncio.LimitOverrunError:
                log.info("a text of %s is longer than the stream's limit: its texts end here", self.peer)
                break
            try:
                entry = decode_line(line, _MAX_LINE)
                number, text = field(entry, "n", int, "a text"), field(entry, "text", str, "a text")
            except HeaderError as error:
                log.info("ignored a malformed text of %s: %s", self.peer, error)
                continue
            if number == expected:
                expected += 1
                self.received.append(text)
                log.info("message %d received from %s: %r", number, self.peer, text)
                self._on_text(text)
            write_line_object(writer, {"ack": number})
            await writer.drain()
        if not self.remote_closed.is_set():
            log.info("%s is done sending", self.peer)
            self.remote_closed.set()
        writer.close()
