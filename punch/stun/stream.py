"""STUN over TCP and TLS: one connection carrying framed messages (RFC 8489 §6.2.2, framed as RFC 4571 §2 frames).

Each message travels behind its length, 16 bits in network order (RFC 4571 §2, as ICE-TCP frames STUN, RFC 6544
§3), so that the reader knows where a frame ends however TCP cuts the bytes, and how long it is before reading it.
(Plain STUN over TCP lets each message's own length field delimit it: a client of that kind does not speak to
punch's server over TCP; over UDP any STUN client does.)

:class:`Stream` owns one connection (an asyncio stream pair: TCP, or TLS over it, by asyncio's own ssl support) and
does two things: :meth:`Stream.send` frames one message and writes it, and :meth:`Stream.run` reads the frames and
hands each message to its owner (a StunEndpoint's ``datagram_received``, see punch.stun.protocol.StunEndpoint.carry)
until the connection ends. Over TCP a STUN client sends each request once:
TCP retransmits (RFC 8489 §6.2.2; StunEndpoint.carry sees to it).

Bad input from the network ends the connection: a length shorter than a STUN header or longer than
:data:`MAX_FRAME`, a frame that is not exactly one STUN message (punch.stun.is_stun: the first byte, the magic
cookie, a length field that matches the frame), a connection cut in the middle of a frame, one that stalls there
(``frame_timeout``), one silent for ``idle`` seconds, a reset or a TLS alert. Each is counted by reason in the
owner's counters (:data:`ENDINGS`) and the connection closed, so that nothing waits on it.

A reader that does not read fills the kernel's buffer, then asyncio's: beyond ``backlog`` bytes queued, what is
sent is dropped and counted (``stream-backlog``), as a full socket drops a datagram; QUIC and the STUN transactions
recover what is lost, and no buffer grows without end.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import Counter
from collections.abc import Callable

from punch.stun import Address, is_stun
from punch.stun.message import HEADER_LENGTH

log = logging.getLogger(__name__)

FRAME_HEADER = 2  # RFC 4571 §2: a 16-bit length before each frame
# The longest message taken or sent: every message punch sends also crosses UDP (a relayed QUIC packet is at most a
# path MTU's worth, punch.transport), so more than this is no message of ours.
MAX_FRAME = 4096
FRAME_TIMEOUT = 10.0  # seconds for the rest of a frame once its length came
BACKLOG = 256 * 1024  # bytes queued for the other end, beyond which what is sent is dropped
CLOSE_TIMEOUT = 2.0  # seconds a closing connection may take (a TLS close_notify) before it is cut

# Why a connection ended, as counted (a connection the other end closed between frames is counted as neither).
ENDINGS = {
    "stream-short": "a frame shorter than a STUN header",
    "stream-long": f"a frame longer than {MAX_FRAME} bytes",
    "stream-not-stun": "a frame that is not one STUN message",
    "stream-cut": "cut in the middle of a frame",
    "stream-stalled": "the rest of a frame did not come in time",
    "stream-idle": "no frame for the idle time",
    "stream-error": "a reset or a TLS error",
}
# What was not sent, as counted.
UNSENT = {
    "stream-gone": "the connection has ended",
    "stream-unsendable": f"longer than {MAX_FRAME} bytes",
    "stream-backlog": f"more than {BACKLOG} bytes wait for the other end",
}


def frame(message: bytes) -> bytes:
    """``message`` behind its RFC 4571 length; ValueError if it does not fit in a frame (:data:`MAX_FRAME`)."""
    if len(message) > MAX_FRAME:
        raise ValueError(f"a {len(message)}-byte message does not fit in a {MAX_FRAME}-byte frame")
    return len(message).to_bytes(FRAME_HEADER, "big") + message


class Stream:
    """One TCP or TLS connection carrying framed STUN messages (module docstring). ``counters`` are the owner's:
    what ended the connection and what was not sent are counted there."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        counters: Counter[str],
        *,
        idle: float | None = None,
        frame_timeout: float = FRAME_TIMEOUT,
        backlog: int = BACKLOG,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._counters = counters
        self._idle = idle  # None: a connection may stay silent (a peer's to its server: the server speaks on its own)
        self._frame_timeout = frame_timeout
        self._backlog = backlog
        peer, own = writer.get_extra_info("peername"), writer.get_extra_info("sockname")
        self.remote: Address = (str(peer[0]), int(peer[1])) if peer else ("", 0)
        self.local: Address = (str(own[0]), int(own[1])) if own else ("", 0)
        self.ended_by: str | None = None  # why the connection ended, once it did
        self._closing: asyncio.Task[None] | None = None

    @property
    def tls(self) -> ssl.SSLObject | None:
        """The TLS session, on a TLS connection."""
        found = self._writer.get_extra_info("ssl_object")
        return found if isinstance(found, ssl.SSLObject) else None

    def send(self, message: bytes) -> None:
        """Frame ``message`` and write it; what cannot go is dropped and counted (:data:`UNSENT`)."""
        if self.ended_by is not None or self._writer.is_closing():
            self._counters["stream-gone"] += 1
        elif len(message) > MAX_FRAME:
            self._counters["stream-unsendable"] += 1
        elif self._writer.transport.get_write_buffer_size() > self._backlog:
            self._counters["stream-backlog"] += 1
        else:
            self._writer.write(frame(message))

    async def run(self, deliver: Callable[[bytes], None]) -> str:
        """Hand each message read to ``deliver`` until the connection ends, then close it; why it ended."""
        try:
            while (message := await self._next()) is not None:
                deliver(message)
        finally:
            if self.ended_by is None:  # cancelled
                self.ended_by = "closed by us"
            await self.close()
        return self.ended_by

    async def _next(self) -> bytes | None:
        """The next message; None once the connection ended (why: :attr:`ended_by`, counted)."""
        header = await self._read(FRAME_HEADER, self._idle, "stream-idle")
        if header is None:
            return None
        length = int.from_bytes(header, "big")
        if length < HEADER_LENGTH:
            self._end("stream-short", f"a frame of {length} bytes, shorter than a STUN header")
            return None
        if length > MAX_FRAME:
            self._end("stream-long", f"a frame of {length} bytes, longer than {MAX_FRAME}")
            return None
        message = await self._read(length, self._frame_timeout, "stream-stalled", first=False)
        if message is None:
            return None
        if not is_stun(message):
            self._end("stream-not-stun", f"a {length}-byte frame that is not one STUN message")
            return None
        return message

    async def _read(self, size: int, within: float | None, slow: str, *, first: bool = True) -> bytes | None:
        """``size`` bytes; None if the connection ended first (``first``: at a frame's start, where the other end
        may close it), or ``slow`` if they took longer than ``within`` seconds."""
        try:
            async with asyncio.timeout(within):
                return await self._reader.readexactly(size)
        except asyncio.IncompleteReadError as error:
            if first and not error.partial:
                self._end(None, "closed by the other end")
                return None
            got = len(error.partial) + (0 if first else FRAME_HEADER)
            self._end("stream-cut", f"cut in the middle of a frame ({got} bytes of it came)")
            return None
        except TimeoutError:
            self._end(slow, f"{ENDINGS[slow]} ({within:g} s)")
            return None
        except OSError as error:  # a reset, a TLS alert (ssl.SSLError)
            self._end("stream-error", str(error) or type(error).__name__)
            return None

    def _end(self, counter: str | None, why: str) -> None:
        """The connection ends: ``counter`` counted (if any), ``why`` kept."""
        if counter is not None:
            self._counters[counter] += 1
        self.ended_by = why
        log.debug("connection with %s:%d ends: %s", *self.remote, why)

    async def close(self) -> None:
        """Close the connection (it is cut if closing takes longer than :data:`CLOSE_TIMEOUT`); idempotent, and
        every caller returns once it is closed."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        if self.ended_by is None:
            self.ended_by = "closed by us"
        self._writer.close()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._writer.wait_closed()
        except TimeoutError:
            self._writer.transport.abort()
        except OSError:
            pass  # (a reset while closing) it is closed either way


async def open_stream(
    host: str, port: int, counters: Counter[str], context: ssl.SSLContext | None = None, local: Address | None = None
) -> Stream:
    """A connection to ``host``:``port`` from ``local`` (an address and port of ours; None: the kernel's choice),
    TLS with ``context``, whose certificate must then name ``host``: OSError if refused or unreachable, ssl.SSLError
    if the TLS handshake fails (ssl.SSLCertVerificationError: a certificate ``context`` does not trust)."""
    reader, writer = await asyncio.open_connection(
        host,
        port,
        ssl=context,
        server_hostname=host if context is not None else None,
        local_addr=local,
    )
    return Stream(reader, writer, counters)
