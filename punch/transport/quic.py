"""A QUIC connection (RFC 9000) to one pinned peer over whatever path the session has: the link never sees an address.

Like iroh's magicsock, the connection talks to one fixed virtual peer address. The owner (the peer's session) gives
a ``send(datagram)`` callback that puts a QUIC datagram on the current path (the punched socket, or wrapped for the
relay), and calls :meth:`QuicLink.datagram_received` with every QUIC datagram that arrives on any path
(:func:`punch.transport.demux.classify` tells them from STUN on the same socket). A change of path is invisible to
QUIC: nothing migrates, and what was lost during the switch QUIC's loss recovery sends again.

The driver is aioquic's own pattern (``aioquic/asyncio/protocol.py``): datagrams in, events out, datagrams to send,
one timer. The peer that probes (ICE controlling) is the client, the other the server.

Authentication is TLS 1.3 with both sides' identity keys, no certificate authority: each presents a self-signed
certificate of its Ed25519 identity (:mod:`punch.transport.certs`), the server asks for the client's
(connection.PeerConnection), and each side compares the key the peer proved with the one pinned for it. A wrong key
closes the connection with CRYPTO_ERROR bad_certificate (RFC 9001 §4.8, RFC 8446 §6.2) and
:class:`~punch.transport.errors.PeerKeyMismatch` on the side that checked, :class:`~punch.transport.errors.KeyRefused`
on the other. No stream or datagram is taken from or given to the peer before its key has been checked. The link is
up as soon as this side has checked the peer's key: a server once the client's Finished proved it, a client once the
server's did, one round trip sooner than the handshake is confirmed (RFC 9001 §4.1.2), as a TLS 1.3 client sends
its data right behind its Finished. Should the server then refuse the client's key, the client's data is never
delivered (the server reads no 1-RTT packet before the client's Finished, aioquic's read key comes with it, and
checks the key before it takes anything) and the client's link ends with KeyRefused.

Liveness comes from QUIC: a PING every ``keepalive`` seconds; ``path_alive`` turns False (``on_path(False)``) when
none was acknowledged for ``dead_after`` seconds, and True again at the next acknowledgement.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import ssl
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TextIO

from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.packet import QuicErrorCode, QuicFrameType
from aioquic.quic.rangeset import RangeSet

from punch.errors import UsageError
from punch.identity.fingerprint import fingerprint
from punch.identity.keyfile import PUBLIC_KEY_BYTES, Identity
from punch.transport.certs import IdentityKey, certificate_key, self_signed_certificate
from punch.transport.config import LinkConfig
from punch.transport.connection import CONNECTION_ID_LENGTH, PeerConnection, first_initial
from punch.transport.errors import DatagramTooLarge, KeyRefused, LinkClosed, LinkError, PeerKeyMismatch
from punch.transport.inbox import Inbox
from punch.transport.liveness import Liveness
from punch.transport.qlog import QlogDirectory
from punch.transport.streams import LinkStream

log = logging.getLogger(__name__)

VIRTUAL_PEER = ("punch-peer", 0)  # the only address the connection ever sees
BAD_CERTIFICATE = QuicErrorCode.CRYPTO_ERROR + 42  # TLS alert bad_certificate (RFC 8446 §6.2) as QUIC has it
MAX_DATAGRAM_FRAME_SIZE = 65536  # the DATAGRAM frames we accept (RFC 9221 §3); what we send is limited per packet
STREAM_REFUSED = 1  # application error code: the peer opened a unidirectional stream, which punch does not use

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def open_keylog(path: Path) -> TextIO:
    """The TLS key log, appended to (NSS key log format, one line per secret), readable by its owner only: anyone who
    reads it can decrypt the capture."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError as error:
        raise UsageError(f"keylog {path}: cannot open it ({error.strerror}); give a writable path") from None
    return os.fdopen(descriptor, "a", encoding="ascii")


FLUSH_PING = 0.2  # seconds between PINGs while closing waits for the peer's acknowledgements (QuicLink._flush)
CLOSE_REPLAYS = 8  # our CONNECTION_CLOSE sent again at most this often, once per packet the peer sends after it
FLUSH_PING_UID = -1  # their uid: the liveness's own PINGs count up from 0


class QuicLink:
    """One QUIC connection to the peer whose Ed25519 key is ``peer_key``, over the owner's ``send``.

    ``on_stream(reader, writer)`` takes the streams the peer opens (else :meth:`accept_stream`), ``on_datagram``
    the peer's datagrams (else :meth:`receive_datagram`), ``on_path(alive)`` the changes of ``path_alive``.
    Call :meth:`start` (or use ``async with``), then feed it datagrams; :meth:`close` ends it, at most once.
    """

    def __init__(
        self,
        identity: Identity,
        peer_key: bytes,
        send: Callable[[bytes], None],
        *,
        is_client: bool,
        config: LinkConfig | None = None,
        on_stream: Callable[[asyncio.StreamReader, asyncio.StreamWriter], None] | None = None,
        on_datagram: Callable[[bytes], None] | None = None,
        on_path: Callable[[bool], None] | None = None,
    ) -> None:
        if len(peer_key) != PUBLIC_KEY_BYTES:
            raise UsageError(f"peer_key: {len(peer_key)} bytes; an Ed25519 public key (the peer's identity) has 32")
        self._loop = asyncio.get_running_loop()
        self._identity = identity
        self.peer_key = peer_key
        self.is_client = is_client
        self._send = send
        self._config = config or LinkConfig()
        self._on_stream = on_stream
        self._on_datagram = on_datagram
        self._on_path = on_path
        self.counters: Counter[str] = Counter()
        self.close_reason: LinkClosed | None = None
        self._connection: PeerConnection | None = None
        self._started = False
        self._verified = False
        self._ended = False
        self._connected: asyncio.Future[None] = self._loop.create_future()
        self._closed = asyncio.Event()
        self._streams: dict[int, LinkStream] = {}
        self._peer_streams = RangeSet()  # numbers (ID >> 2) of the streams the peer has opened
        self._accepted: Inbox[Streams] = Inbox()
        self._datagrams: Inbox[bytes] = Inbox(self._config.datagram_queue)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._transmit_handle: asyncio.Handle | None = None
        self._liveness = Liveness(
            self._ping, self._path_changed, keepalive=self._config.keepalive, dead_after=self._config.dead_after
        )
        self._keylog: TextIO | None = None
        self._qlog = QlogDirectory(self._config.qlog) if self._config.qlog is not None else None
        self._flushed: asyncio.Event | None = None  # set once all we wrote is acknowledged (close with flush)
        self._close_sent: list[bytes] = []  # the datagrams of our CONNECTION_CLOSE, replayed (RFC 9000 §10.2.1)
        self._replays_left = CLOSE_REPLAYS

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        """The client sends its first flight; the server waits for it. Once only."""
        if self._started:
            return
        if self._config.keylog is not None:
            self._keylog = open_keylog(self._config.keylog)
        self._started = True
        if self.is_client:
            self._connection = self._new_connection(None)
            self._connection.connect(VIRTUAL_PEER, now=self._loop.time())
            self._transmit()

    async def __aenter__(self) -> QuicLink:
        self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()

    async def wait_connected(self) -> None:
        """Until the handshake is done and both keys are checked; the reason if the link ended first."""
        await asyncio.shield(self._connected)

    async def wait_closed(self) -> LinkClosed:
        """Until the link has ended; how it ended."""
        await self._closed.wait()
        assert self.close_reason is not None
        return self.close_reason

    @property
    def path_alive(self) -> bool:
        """A PING was acknowledged within ``dead_after`` seconds (False before the link is up and after it ended)."""
        return self._liveness.alive

    @property
    def last_acked(self) -> float | None:
        """The loop time the peer last acknowledged a PING."""
        return self._liveness.last_acked

    def check_path(self) -> None:
        """Send a PING now (once the link is up): the owner has just changed the path under it, and the PING's
        acknowledgement shows in ``path_alive`` within a round trip rather than a keepalive later."""
        if not self._ended:
            self._liveness.check_now()

    @property
    def connected(self) -> bool:
        return self._connected.done() and self._connected.exception() is None

    async def close(self, reason: str = "closed", flush: float = 0.0) -> None:
        """Send CONNECTION_CLOSE and end the link: its streams end, waiting calls raise :class:`LinkClosed`. With
        ``flush``, first wait up to that many seconds for the peer to acknowledge every stream byte and FIN we wrote
        (QUIC sends them again meanwhile): CONNECTION_CLOSE is sent once and may be lost, what it cuts off is not
        sent again."""
        if self._ended:
            return
        if flush > 0 and self.connected and self._unacknowledged():
            await self._flush(flush)
            if self._ended:
                return
            log.debug("closing with %d bytes unacknowledged", self._unacknowledged())
        if self._connection is not None:
            self._connection.close(error_code=QuicErrorCode.NO_ERROR, reason_phrase=reason)
            self._close_sent = self._transmit()
        self._end(LinkClosed(f"the link was closed here: {reason}"))

    async def _flush(self, seconds: float) -> None:
        """Until the peer acknowledged all we wrote, or ``seconds`` passed. A PING every FLUSH_PING seconds meanwhile:
        their acknowledgements reveal a lost packet (our FIN, say) within about a round trip (RFC 9002 §6.1), where
        waiting for the probe timeout, which doubles after each one, would send it again only once or twice in a few
        seconds on a lossy path."""
        self._flushed = asyncio.Event()
        deadline = self._loop.time() + seconds
        while not self._flushed.is_set() and (left := deadline - self._loop.time()) > 0:
            assert self._connection is not None
            self._connection.send_keepalive(FLUSH_PING_UID)
            self._transmit()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, FLUSH_PING)):
                    await self._flushed.wait()

    # -- datagrams from the owner -----------------------------------------------------------------------------

    def datagram_received(self, data: bytes) -> None:
        """A QUIC datagram from the peer, from whichever path it came. After we closed, a packet of the peer's means
        our CONNECTION_CLOSE was lost: it goes again (CLOSE_REPLAYS times at most), so that a peer still waiting for
        our acknowledgements (its close's flush) learns at once that we are gone."""
        if self._ended and self._close_sent and self._replays_left > 0:
            self._replays_left -= 1
            self.counters["close-replayed"] += 1
            for datagram in self._close_sent:
                self._send_quietly(datagram)
            return
        if self._ended or not self._started:
            self.counters["dropped-not-running"] += 1
            return
        connection = self._connection or self._accept(data)
        if connection is None:
            return
        self.counters["received"] += 1
        connection.receive_datagram(data, VIRTUAL_PEER, now=self._loop.time())
        self._process_events()
        self._transmit()
        if self._flushed is not None and not self._unacknowledged():
            self._flushed.set()

    def _unacknowledged(self) -> int:
        return 0 if self._connection is None else self._connection.unacknowledged()

    def _accept(self, data: bytes) -> PeerConnection | None:
        """The server's connection, made from the client's first Initial (RFC 9000 §7.2, §14.1); else None."""
        destination = first_initial(data)
        if destination is None:
            self.counters["dropped-before-initial"] += 1
            return None
        self._connection = self._new_connection(destination)
        return self._connection

    def _new_connection(self, original_destination: bytes | None) -> PeerConnection:
        config = self._config
        now = datetime.datetime.now(datetime.UTC)
        configuration = QuicConfiguration(
            alpn_protocols=[config.alpn],
            connection_id_length=CONNECTION_ID_LENGTH,
            is_client=self.is_client,
            idle_timeout=config.idle_timeout,
            max_datagram_size=config.max_datagram_size,
            max_datagram_frame_size=MAX_DATAGRAM_FRAME_SIZE,
            max_stream_data=config.stream_window,
            max_data=config.connection_window,
            congestion_control_algorithm=config.congestion_control,
            secrets_log_file=self._keylog,
            quic_logger=self._qlog,
            verify_mode=ssl.CERT_NONE,  # no CA: the peer's key is pinned in _check_peer
            certificate=self_signed_certificate(self._identity, now, config.certificate_lifetime),
            private_key=IdentityKey(self._identity),
        )
        return PeerConnection(
            configuration=configuration,
            receive_window=config.stream_window,
            original_destination_connection_id=original_destination,
        )

    # -- driving aioquic ----------------------------------------------------------------------------------------

    def _transmit_soon(self) -> None:
        if self._transmit_handle is None and not self._ended:
            self._transmit_handle = self._loop.call_soon(self._transmit)

    def _transmit(self) -> list[bytes]:
        """Send what the connection has to send, arm its timer, and let writers waiting in drain() go on; what was
        sent."""
        self._transmit_handle = None
        connection = self._connection
        if connection is None:
            return []
        sent = [data for data, _ in connection.datagrams_to_send(now=self._loop.time())]
        for data in sent:
            self._send_quietly(data)
        if self._ended:
            return sent
        timer_at = connection.get_timer()
        if self._timer is not None and self._timer_at != timer_at:
            self._timer.cancel()
            self._timer = None
        if self._timer is None and timer_at is not None:
            self._timer = self._loop.call_at(timer_at, self._handle_timer)
        self._timer_at = timer_at
        for stream in [s for s in self._streams.values() if s.writing_paused]:
            stream.check_writable()
        return sent

    def _send_quietly(self, data: bytes) -> None:
        try:
            self._send(data)
        except OSError as error:  # the path's socket failed: QUIC sends it again when it counts it lost
            self.counters["send-error"] += 1
            log.debug("sending a %d-byte QUIC datagram failed: %s", len(data), error)
        else:
            self.counters["sent"] += 1

    def _handle_timer(self) -> None:
        connection = self._connection
        assert connection is not None
        assert self._timer_at is not None
        now = max(self._timer_at, self._loop.time())
        self._timer = self._timer_at = None
        connection.handle_timer(now=now)
        self._process_events()
        self._transmit()

    def _process_events(self) -> None:
        connection = self._connection
        assert connection is not None
        while not self._ended and (event := connection.next_event()) is not None:
            if isinstance(event, events.HandshakeCompleted):
                self._check_peer(connection)
            elif isinstance(event, events.PingAcknowledged):
                self._liveness.acknowledged()
            elif isinstance(event, events.ConnectionTerminated):
                self._end(self._termination(event))
            elif not self._verified:  # nothing from a peer whose key is not checked yet reaches the application
                self.counters["dropped-before-verified"] += 1
            elif isinstance(event, events.DatagramFrameReceived):
                self._datagram(event.data)
            elif isinstance(event, events.StreamDataReceived | events.StreamReset | events.StopSendingReceived):
                self._stream_event(event)
        closed = connection.peer_closed()
        if closed is not None:
            self._end(self._termination(closed))
        elif self._verified and not self._connected.done():
            self._up()

    def _stream_event(self, event: events.StreamDataReceived | events.StreamReset | events.StopSendingReceived) -> None:
        if isinstance(event, events.StopSendingReceived):
            stream = self._streams.get(event.stream_id)
        else:
            stream = self._streams.get(event.stream_id) or self._peer_stream(event.stream_id)
        if stream is None:
            return
        if isinstance(event, events.StreamDataReceived):
            stream.data_received(event.data, event.end_stream)
        elif isinstance(event, events.StreamReset):
            stream.reset_received(event.error_code)
        else:
            stream.stop_sending_received(event.error_code)

    # -- the peer's key -----------------------------------------------------------------------------------------

    def _check_peer(self, connection: PeerConnection) -> None:
        certificate = connection.peer_certificate()
        actual = certificate_key(certificate) if certificate is not None else None
        if actual != self.peer_key:
            mismatch = PeerKeyMismatch("server" if self.is_client else "client", self.peer_key, actual)
            connection.close(error_code=BAD_CERTIFICATE, frame_type=QuicFrameType.CRYPTO, reason_phrase=str(mismatch))
            self._transmit()
            self._end(mismatch)
            return
        self._verified = True
        log.debug("QUIC handshake done; the peer proved its key %s", fingerprint(self.peer_key))

    def _up(self) -> None:
        log.info("QUIC link up to %s (%s)", fingerprint(self.peer_key), "client" if self.is_client else "server")
        self._connected.set_result(None)
        self._liveness.start()

    def _termination(self, event: events.ConnectionTerminated) -> LinkClosed:
        reason = event.reason_phrase or "no reason given"
        if event.error_code == BAD_CERTIFICATE:
            return KeyRefused(f"the peer refused our key: {reason}")
        if event.error_code == QuicErrorCode.INTERNAL_ERROR and reason == "Idle timeout":  # aioquic's own, not sent
            return LinkClosed(f"nothing came from the peer for {self._config.idle_timeout:g} s (QUIC idle timeout)")
        return LinkClosed(f"the peer ended the link: {reason} (QUIC error 0x{event.error_code:x})")

    def _path_changed(self, alive: bool) -> None:
        log.info("QUIC path to %s %s", fingerprint(self.peer_key), "alive" if alive else "silent")
        if self._on_path is not None:
            self._call(self._on_path, alive)

    def _ping(self, uid: int) -> None:
        assert self._connection is not None
        self._connection.send_keepalive(uid)
        self._transmit_soon()

    # -- streams ------------------------------------------------------------------------------------------------

    async def open_stream(self) -> Streams:
        """A new bidirectional stream; the peer hears of it with the first data (or FIN) written."""
        connection = await self._running()
        stream_id = connection.get_next_available_stream_id()
        connection.send_stream_data(stream_id, b"")  # makes the stream, so the next ID is another one
        stream = self._new_stream(stream_id)
        return stream.reader, stream.writer

    async def accept_stream(self) -> Streams:
        """The next stream the peer opened (when no ``on_stream`` was given)."""
        return await self._accepted.get()

    def _peer_stream(self, stream_id: int) -> LinkStream | None:
        """A stream the peer opens now, or None for data on one that has ended here (or ours, or refused)."""
        connection = self._connection
        assert connection is not None
        number = stream_id >> 2
        if bool(stream_id & 1) != self.is_client or number in self._peer_streams:
            return None  # ours (the client opens even IDs), or the peer's that we have forgotten
        self._peer_streams.add(number)
        if stream_id & 2:
            self.counters["refused-unidirectional-stream"] += 1
            connection.stop_stream(stream_id, STREAM_REFUSED)
            self._transmit_soon()
            return None
        stream = self._new_stream(stream_id)
        if self._on_stream is not None:
            self._call(self._on_stream, stream.reader, stream.writer)
        else:
            self._accepted.put((stream.reader, stream.writer))
        return stream

    def _new_stream(self, stream_id: int) -> LinkStream:
        assert self._connection is not None
        stream = LinkStream(
            stream_id,
            self._connection,
            wake=self._transmit_soon,
            on_done=self._forget_stream,
            reader_limit=self._config.reader_limit,
            high_water=self._config.write_buffer,
        )
        self._streams[stream_id] = stream
        return stream

    def _forget_stream(self, stream_id: int) -> None:
        self._streams.pop(stream_id, None)

    # -- datagrams (RFC 9221) -----------------------------------------------------------------------------------

    @property
    def max_datagram_payload(self) -> int:
        """The largest datagram :meth:`send_datagram` takes (0 before the link is up)."""
        return self._connection.max_datagram_payload() if self.connected and self._connection is not None else 0

    def send_datagram(self, data: bytes) -> bool:
        """Queue an unreliable datagram; False (and counted) when too many wait to be sent already."""
        if not self.connected or self._ended or self._connection is None:
            raise self.close_reason or LinkError("the link is not up yet: await wait_connected() first")
        limit = self._connection.max_datagram_payload()
        if len(data) > limit:
            raise DatagramTooLarge(f"a datagram of {len(data)} bytes: this link carries at most {limit}")
        if self._connection.datagrams_waiting() >= self._config.datagram_queue:
            self.counters["datagram-not-sent"] += 1
            return False
        self._connection.send_datagram_frame(data)
        self._transmit_soon()
        return True

    async def receive_datagram(self) -> bytes:
        """The next datagram from the peer (when no ``on_datagram`` was given)."""
        return await self._datagrams.get()

    def _datagram(self, data: bytes) -> None:
        self.counters["datagram-received"] += 1
        if self._on_datagram is not None:
            self._call(self._on_datagram, data)
        elif not self._datagrams.put(data):
            self.counters["datagram-dropped"] += 1

    def _call(self, callback: Callable[..., None], *args: object) -> None:
        """An owner's callback; a bug in it must not stop the link from reading its events: counted and shown."""
        try:
            callback(*args)
        except Exception:
            self.counters["callback-error"] += 1
            log.exception("a QUIC link callback failed")

    # -- state --------------------------------------------------------------------------------------------------

    def held_bytes(self) -> int:
        """Bytes of stream data and datagrams held for the peer or the application, in QUIC and in the readers."""
        connection = 0 if self._connection is None else self._connection.held_bytes()
        readers = sum(s.buffered() for s in self._streams.values())
        return connection + readers + sum(len(d) for d in self._datagrams.items())

    async def _running(self) -> PeerConnection:
        await self.wait_connected()
        if self._ended or self._connection is None:
            raise self.close_reason or LinkClosed("the link has ended")
        return self._connection

    def _end(self, reason: LinkClosed) -> None:
        """The link is over: timers stop, streams and waiting calls get ``reason``."""
        if self._ended:
            return
        self._ended = True
        self.close_reason = reason
        for handle in (self._timer, self._transmit_handle):
            if handle is not None:
                handle.cancel()
        self._timer = self._transmit_handle = None
        self._liveness.stop()
        if self._flushed is not None:
            self._flushed.set()
        for stream in list(self._streams.values()):
            stream.end(reason)
        self._streams.clear()
        self._accepted.end(reason)
        self._datagrams.end(reason)
        if not self._connected.done():
            self._connected.set_exception(reason)
            self._connected.exception()  # retrieved: a link that never came up is not an unhandled error
        if self._keylog is not None:
            self._keylog.close()
            self._keylog = None
        if self._qlog is not None:
            self._qlog.flush()
        if isinstance(reason, PeerKeyMismatch | KeyRefused):
            log.warning("QUIC link refused: %s", reason)
        else:
            log.info("QUIC link to %s ended: %s", fingerprint(self.peer_key), reason)
        self._closed.set()
