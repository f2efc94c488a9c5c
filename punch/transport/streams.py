"""One bidirectional QUIC stream as asyncio's own StreamReader and StreamWriter (RFC 9000 §2-§3).

The stream's transport is what asyncio's streams expect of a TCP socket's, so their flow control works unchanged:

- Writing: ``write`` hands the bytes to the QUIC connection at once; once more than the high-water mark of them
  waits to be sent (the peer's window is full, or congestion control holds them), the protocol is paused and
  ``await writer.drain()`` waits until the link has sent them down to the low-water mark.
- Reading: the StreamReader pauses its transport when it holds more than twice its limit, which stops the
  connection from granting the peer more of the stream (PeerConnection's receive window) until the application
  has read it down: a slow reader holds at most that plus one window.
- ``write_eof`` sends FIN (half-close); ``close`` sends FIN and STOP_SENDING for what the peer has not sent yet;
  ``abort`` and :meth:`StreamTransport.reset` reset both directions (RESET_STREAM and STOP_SENDING, RFC 9000 §3.5).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from punch.transport.connection import PeerConnection
from punch.transport.errors import LinkError

NO_ERROR = 0  # the application error code of a stream closed or aborted without a reason of its own


class StreamReset(LinkError):
    """The peer reset its side of a stream (RESET_STREAM) or asked us to stop sending on it (STOP_SENDING)."""

    def __init__(self, stream_id: int, error_code: int, what: str) -> None:
        super().__init__(f"stream {stream_id}: {what} (application error code {error_code})")
        self.stream_id = stream_id
        self.error_code = error_code


class StreamTransport(asyncio.Transport):
    """The asyncio transport of one QUIC stream: writes go to the connection, the reader's pauses to its window."""

    def __init__(self, stream: LinkStream, high_water: int) -> None:
        super().__init__()
        self._stream = stream
        self._high = high_water
        self._low = high_water // 4

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._stream.stream_id if name == "stream_id" else default

    # -- writing ----------------------------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._stream.send(bytes(data))

    def write_eof(self) -> None:
        self._stream.send_eof()

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return self._stream.unsent()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._high = self._high if high is None else high
        self._low = self._high // 4 if low is None else low
        self._stream.check_writable()

    # -- reading ----------------------------------------------------------------------------------------------

    def pause_reading(self) -> None:
        self._stream.pause_reading()

    def resume_reading(self) -> None:
        self._stream.resume_reading()

    def is_reading(self) -> bool:
        return not self._stream.reading_paused

    # -- ending -----------------------------------------------------------------------------------------------

    def close(self) -> None:
        self._stream.close()

    def is_closing(self) -> bool:
        return self._stream.closing

    def abort(self) -> None:
        self.reset(NO_ERROR)

    def reset(self, error_code: int) -> None:
        """End both directions at once with ``error_code``: what was written and not delivered is dropped."""
        self._stream.reset(error_code)


class LinkStream:
    """A bidirectional stream's state on our side: its reader, writer and transport, and which halves are done.

    The link feeds it the connection's stream events and calls :meth:`check_writable` after each transmission;
    ``on_done`` tells the link when both halves have ended, so it can forget the stream."""

    def __init__(
        self,
        stream_id: int,
        connection: PeerConnection,
        *,
        wake: Callable[[], None],
        on_done: Callable[[int], None],
        reader_limit: int,
        high_water: int,
    ) -> None:
        loop = asyncio.get_running_loop()
        self.stream_id = stream_id
        self._connection = connection
        self._wake = wake
        self._on_done = on_done
        self.reader = asyncio.StreamReader(limit=reader_limit, loop=loop)
        self._protocol = asyncio.StreamReaderProtocol(self.reader, loop=loop)
        self.transport = StreamTransport(self, high_water)
        self._protocol.connection_made(self.transport)
        self.writer = asyncio.StreamWriter(self.transport, self._protocol, self.reader, loop)
        self.closing = False
        self.reading_paused = False
        self._read_done = False  # FIN or RESET_STREAM received, or we sent STOP_SENDING
        self._write_done = False  # FIN or RESET_STREAM sent
        self._write_error: Exception | None = None  # StreamReset, or why the link ended
        self.writing_paused = False
        self._lost = False
        self._forgotten = False

    # -- from the application ---------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        if self._write_error is not None:
            raise self._write_error
        if self._write_done:
            raise RuntimeError("Cannot call write() after write_eof() or close()")
        if data:
            self._connection.send_stream_data(self.stream_id, data)
            self._wake()
            self.check_writable()

    def send_eof(self) -> None:
        if self._write_done or self._write_error is not None:
            return
        self._write_done = True
        self._connection.send_stream_data(self.stream_id, b"", end_stream=True)
        self._wake()
        self._check_done()

    def unsent(self) -> int:
        return self._connection.unsent(self.stream_id)

    def buffered(self) -> int:
        """Bytes the StreamReader holds that the application has not read (asyncio keeps them in ``_buffer``)."""
        buffer: bytearray = self.reader._buffer  # type: ignore[attr-defined]
        return len(buffer)

    def pause_reading(self) -> None:
        self.reading_paused = True
        self._connection.pause_reading(self.stream_id)

    def resume_reading(self) -> None:
        self.reading_paused = False
        self._connection.resume_reading(self.stream_id)
        self._wake()  # the raised MAX_STREAM_DATA goes out now

    def close(self) -> None:
        """FIN for our half; STOP_SENDING for the peer's if it has not ended; the streams see the end at once."""
        if self.closing:
            return
        self.closing = True
        self.send_eof()
        self._stop_reading(NO_ERROR)
        self.end(None)

    def reset(self, error_code: int) -> None:
        if not self._write_done and self._write_error is None:
            self._write_done = True
            self._connection.reset_stream(self.stream_id, error_code)
        self._stop_reading(error_code)
        self.closing = True
        self._wake()
        self.end(None)
        self._check_done()

    def _stop_reading(self, error_code: int) -> None:
        if not self._read_done:
            self._read_done = True
            self._connection.stop_stream(self.stream_id, error_code)
            self._wake()
        self._check_done()

    # -- from the connection ----------------------------------------------------------------------------------

    def data_received(self, data: bytes, end_stream: bool) -> None:
        if self._read_done:
            return  # after our STOP_SENDING, what was already on its way
        if data:
            self.reader.feed_data(data)
        if end_stream:
            self._read_done = True
            self.reader.feed_eof()
            self._check_done()

    def reset_received(self, error_code: int) -> None:
        if not self._read_done:
            self._read_done = True
            self.reader.set_exception(StreamReset(self.stream_id, error_code, "the peer reset it"))
        self._check_done()

    def stop_sending_received(self, error_code: int) -> None:
        """aioquic has reset our half already (RFC 9000 §3.5); writes from now on raise, a waiting drain returns."""
        if self._write_error is None and not self._write_done:
            self._write_error = StreamReset(self.stream_id, error_code, "the peer stopped reading it")
        self._write_done = True
        self._resume_writing()
        self._check_done()

    def check_writable(self) -> None:
        """Pause the writer above the high-water mark of unsent bytes, resume it at the low one."""
        low, high = self.transport.get_write_buffer_limits()
        unsent = self.unsent()
        if not self.writing_paused and unsent > high and not self._lost:
            self.writing_paused = True
            self._protocol.pause_writing()
        elif self.writing_paused and unsent <= low:
            self._resume_writing()

    def end(self, error: Exception | None) -> None:
        """The stream is over for the application (closed, reset, or the link ended with ``error``)."""
        if self._lost:
            return
        self._lost = True
        if error is not None and self._write_error is None and not self._write_done:
            self._write_error = error
        self._write_done = True
        # a reader that has had its FIN keeps what it has not read yet; any other learns why the stream ended
        self._protocol.connection_lost(None if self._read_done else error)
        self._read_done = True
        self._forget()

    def _resume_writing(self) -> None:
        if self.writing_paused:
            self.writing_paused = False
            self._protocol.resume_writing()
            self._check_done()

    def _check_done(self) -> None:
        """Both halves have ended and no drain() waits: the link may forget the stream."""
        if self._read_done and self._write_done and not self.writing_paused:
            self._forget()

    def _forget(self) -> None:
        if not self._forgotten:
            self._forgotten = True
            self._connection.forget_stream(self.stream_id)
            self._on_done(self.stream_id)
