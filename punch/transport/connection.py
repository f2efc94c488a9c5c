"""aioquic's QuicConnection with the four things punch needs that aioquic 1.7 has only inside: the only module that
reaches into aioquic's private state, so a change of aioquic breaks here (and in tests/unit/test_transport_connection)
and nowhere else. aioquic is pinned in requirements.txt for that reason.

- Mutual TLS: the server asks for the client's certificate (CertificateRequest, RFC 8446 §4.3.2). aioquic's TLS
  implements the whole exchange (the client's Certificate and CertificateVerify, checked like the server's) but has
  no setting to ask for it (aiortc/aioquic#541), so :meth:`_initialize` sets the switch on the TLS context it makes.
- The peer's certificate after the handshake, to pin its key (aioquic verifies only against a CA; aiortc/aioquic#586),
  and the peer's CONNECTION_CLOSE when it comes rather than three PTOs later.
- A receive window that follows the application (RFC 9000 §4.2): aioquic raises a stream's limit whenever the peer
  has sent half of it, whether or not anyone reads, so a slow reader's buffer grows without bound
  (aiortc/aioquic#589). Here a stream's limit is what was delivered in order plus the window, and is not raised at
  all while the reader is paused (its StreamReader is full).
- How much of a stream's written data waits to be sent, so a writer's ``drain()`` can wait (aiortc/aioquic#328), and
  how large a DATAGRAM frame fits in one packet (aioquic queues a larger one, which then never leaves).
- Keepalives that get through a lossy path: a keepalive PING leaves even when the congestion window is full of
  packets not yet known lost (as a probe does, RFC 9002 §6.2.4), and a server sends HANDSHAKE_DONE again with each
  one until it is acknowledged. Without them, once a few packets are lost, a server sends only at its probe
  timeouts, which double each time (RFC 9002 §6.2.1): four or five datagrams in 20 s, each lost with a chance of
  a third on tests/e2e/test_faults.py's lossy path. A client there went 20 s without HANDSHAKE_DONE (so it never
  counted the handshake confirmed) in one of about a hundred trials in CI; its keepalives alone were held back too.
- A probe timeout that stops doubling at MAX_PROBE_TIMEOUT. RFC 9002 §6.2.1 doubles it without end; until the
  handshake is done nothing else goes, so on that lossy path a lost client Finished was sent again four times in 20 s
  and the server never completed (a test_faults trial here). One probe every 2 s at most is nothing to a path
  punched for one connection, and each gets through twice as often in the same time.
"""

from __future__ import annotations

from aioquic._buffer import Buffer
from aioquic.buffer import size_uint_var
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import MAX_STREAM_DATA_FRAME_CAPACITY, QuicConnection, QuicConnectionState
from aioquic.quic.packet import QuicFrameType, QuicPacketType, pull_quic_header
from aioquic.quic.packet_builder import PACKET_NUMBER_SEND_SIZE, QuicDeliveryState, QuicPacketBuilder
from aioquic.quic.recovery import QuicPacketSpace
from aioquic.quic.stream import QuicStream
from cryptography import x509

CONNECTION_ID_LENGTH = 8  # bytes, on both sides (aioquic's default), so a server can read a client's first packet
SMALLEST_INITIAL = 1200  # a client's Initial is padded to this at least (RFC 9000 §14.1)
AEAD_TAG = 16  # AES-GCM and ChaCha20-Poly1305 (RFC 9001 §5.3)
SHORT_HEADER_FLAGS = 1  # the first byte of a 1-RTT packet (RFC 9000 §17.3.1), before its connection ID
DATAGRAM_FRAME_TYPE = 1  # DATAGRAM with a length field, 0x31 (RFC 9221 §4)
MAX_PROBE_TIMEOUT = 2.0  # seconds: the probe timeout doubles (RFC 9002 §6.2.1) only while it stays below this


def first_initial(data: bytes) -> bytes | None:
    """The Destination Connection ID of a client's first Initial packet, which a server's connection starts from
    (RFC 9000 §7.2); None for any other datagram."""
    try:
        header = pull_quic_header(Buffer(data=data), host_cid_length=CONNECTION_ID_LENGTH)
    except ValueError:
        return None
    if header.packet_type != QuicPacketType.INITIAL or len(data) < SMALLEST_INITIAL:
        return None
    return header.destination_cid


class PeerConnection(QuicConnection):
    """A QuicConnection to one peer, with pinning, an application-paced receive window and buffer sizes."""

    def __init__(
        self,
        *,
        configuration: QuicConfiguration,
        receive_window: int,
        original_destination_connection_id: bytes | None = None,
    ) -> None:
        super().__init__(
            configuration=configuration, original_destination_connection_id=original_destination_connection_id
        )
        self._receive_window = receive_window
        self._window_step = max(receive_window // 8, 1)
        self._paused: set[int] = set()
        self._handshake_done_acknowledged = False

    # -- TLS --------------------------------------------------------------------------------------------------

    def _initialize(self, peer_cid: bytes) -> None:
        super()._initialize(peer_cid)
        if not self._is_client:
            self.tls._request_client_certificate = True

    def peer_certificate(self) -> x509.Certificate | None:
        """The certificate whose key signed the peer's CertificateVerify, once the handshake has completed."""
        tls = getattr(self, "tls", None)  # made by _initialize, at connect() or at the client's first packet
        return None if tls is None else tls._peer_certificate

    @property
    def handshake_confirmed(self) -> bool:
        """The handshake is confirmed (RFC 9001 §4.1.2): for a client, the server has sent HANDSHAKE_DONE, so it
        accepted our certificate."""
        return self._handshake_confirmed

    def peer_closed(self) -> events.ConnectionTerminated | None:
        """The peer's CONNECTION_CLOSE as soon as it has come. aioquic reports it only at the end of the draining
        period (RFC 9000 §10.2.2, three PTOs later), in which nothing is sent or received any more."""
        return self._close_event if self._state == QuicConnectionState.DRAINING else None

    # -- probes and keepalives -----------------------------------------------------------------------------------

    def handle_timer(self, now: float) -> None:
        super().handle_timer(now)
        loss = self._loss  # a probe timeout that fired doubled the next one: not past MAX_PROBE_TIMEOUT
        while loss._pto_count > 0 and loss.get_probe_timeout() * 2**loss._pto_count > MAX_PROBE_TIMEOUT:
            loss._pto_count -= 1

    def send_keepalive(self, uid: int) -> None:
        """A PING (acknowledged as ``uid``) that leaves at the next transmit even when the congestion window is full;
        from a server, with HANDSHAKE_DONE again until the client has acknowledged one."""
        self.send_ping(uid)
        self._probe_pending = True  # aioquic lets one datagram past the congestion window for it
        if not self._is_client and self._handshake_complete and not self._handshake_done_acknowledged:
            self._handshake_done_pending = True

    def _on_handshake_done_delivery(self, delivery: QuicDeliveryState) -> None:
        """aioquic's, except that a copy lost after another was acknowledged is not sent again."""
        if delivery == QuicDeliveryState.ACKED:
            self._handshake_done_acknowledged = True
        elif not self._handshake_done_acknowledged:
            super()._on_handshake_done_delivery(delivery)

    # -- receive window (RFC 9000 §4.2) -------------------------------------------------------------------------

    def pause_reading(self, stream_id: int) -> None:
        """Grant the peer no more data on this stream until :meth:`resume_reading`."""
        self._paused.add(stream_id)

    def resume_reading(self, stream_id: int) -> None:
        self._paused.discard(stream_id)

    def forget_stream(self, stream_id: int) -> None:
        self._paused.discard(stream_id)

    def _write_stream_limits(self, builder: QuicPacketBuilder, space: QuicPacketSpace, stream: QuicStream) -> None:
        """Raise MAX_STREAM_DATA to what was delivered plus the window, in steps of an eighth of it, unless the
        reader is paused; resend it when lost (aioquic's ``_on_max_stream_data_delivery`` clears ``_sent``)."""
        if not stream.max_stream_data_local or stream.stream_id is None:  # a stream we only send on
            return
        receiver = stream.receiver
        if stream.stream_id not in self._paused and not receiver.is_finished:
            wanted = receiver.starting_offset() + self._receive_window
            if wanted - stream.max_stream_data_local >= self._window_step:
                stream.max_stream_data_local = wanted
        if stream.max_stream_data_local_sent != stream.max_stream_data_local:
            buf = builder.start_frame(
                QuicFrameType.MAX_STREAM_DATA,
                capacity=MAX_STREAM_DATA_FRAME_CAPACITY,
                handler=self._on_max_stream_data_delivery,
                handler_args=(stream,),
            )
            buf.push_uint_var(stream.stream_id)
            buf.push_uint_var(stream.max_stream_data_local)
            stream.max_stream_data_local_sent = stream.max_stream_data_local

    # -- sizes --------------------------------------------------------------------------------------------------

    def unsent(self, stream_id: int) -> int:
        """Bytes written to the stream that have not been sent once (0 once it is reset or gone)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.sender.reset_pending or stream.sender.is_finished:
            return 0
        return max(stream.sender._buffer_stop - stream.sender.highest_offset, 0)

    def unacknowledged(self) -> int:
        """Stream bytes written that the peer has not acknowledged yet, and one for each FIN not acknowledged yet
        (a reset stream counts nothing: its data is given up)."""
        total = 0
        for stream in self._streams.values():
            sender = stream.sender
            if sender.is_finished or sender._reset_error_code is not None:
                continue
            total += len(sender._buffer) + (sender._buffer_fin is not None)
        return total

    def held_bytes(self) -> int:
        """The bytes of stream data and datagrams this connection holds: unacknowledged or unsent, out of order."""
        streams = sum(len(s.sender._buffer) + len(s.receiver._buffer) for s in self._streams.values())
        return streams + sum(len(d) for d in self._datagrams_pending)

    def datagrams_waiting(self) -> int:
        """DATAGRAM frames queued and not sent yet."""
        return len(self._datagrams_pending)

    def max_datagram_payload(self) -> int:
        """The largest DATAGRAM payload that fits one packet of ``max_datagram_size`` (RFC 9221 §5) and the peer's
        max_datagram_frame_size; 0 before the peer's transport parameters are known or when it takes none."""
        remote = self._remote_max_datagram_frame_size
        if not remote:
            return 0
        room = (
            self._max_datagram_size
            - SHORT_HEADER_FLAGS
            - len(self._peer_cid.cid)
            - PACKET_NUMBER_SEND_SIZE
            - AEAD_TAG
            - DATAGRAM_FRAME_TYPE
        )
        room = min(room, remote - DATAGRAM_FRAME_TYPE)
        return room - size_uint_var(room)
