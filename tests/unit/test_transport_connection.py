"""punch.transport.connection, driven by hand without sockets or an event loop: the private parts of aioquic it
relies on (asking for the client's certificate, the peer's certificate, the receive window, sizes) still work in
the pinned aioquic; a change there fails here first."""

from __future__ import annotations

import datetime
import itertools
import ssl

import pytest
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from punch.identity.keyfile import Identity
from punch.transport.certs import IdentityKey, certificate_key, self_signed_certificate
from punch.transport.connection import MAX_PROBE_TIMEOUT, PeerConnection, first_initial

pytestmark = pytest.mark.unit

PEER = ("peer", 0)
WINDOW = 64 * 1024
NOW = datetime.datetime.now(datetime.UTC)


def configuration(identity: Identity, *, is_client: bool) -> QuicConfiguration:
    return QuicConfiguration(
        alpn_protocols=["punch/1"],
        is_client=is_client,
        verify_mode=ssl.CERT_NONE,
        max_datagram_frame_size=65536,
        max_stream_data=WINDOW,
        certificate=self_signed_certificate(identity, NOW),
        private_key=IdentityKey(identity),
    )


class Pair:
    """A client and a server connection that hand each other every datagram until neither has one to send."""

    def __init__(self, client: QuicConfiguration | None = None, server: QuicConfiguration | None = None) -> None:
        self.client_id, self.server_id = Identity.generate(), Identity.generate()
        self.now = 0.0
        self.client = PeerConnection(
            configuration=client or configuration(self.client_id, is_client=True), receive_window=WINDOW
        )
        self.client.connect(PEER, now=self.now)
        first = [data for data, _ in self.client.datagrams_to_send(now=self.now)]
        destination = first_initial(first[0])
        assert destination is not None
        self.server = PeerConnection(
            configuration=server or configuration(self.server_id, is_client=False),
            receive_window=WINDOW,
            original_destination_connection_id=destination,
        )
        self.events: dict[str, list[events.QuicEvent]] = {"client": [], "server": []}
        self._deliver(self.server, "server", first)
        self.exchange()

    def exchange(self) -> None:
        for _ in range(1000):
            self.now += 0.001
            to_server = [d for d, _ in self.client.datagrams_to_send(now=self.now)]
            to_client = [d for d, _ in self.server.datagrams_to_send(now=self.now)]
            if not to_server and not to_client:
                return
            self._deliver(self.server, "server", to_server)
            self._deliver(self.client, "client", to_client)
        raise AssertionError("the connections never went quiet")

    def settle(self) -> None:
        """Let every timer run out (closing and draining periods included), so ends are reported."""
        self.now += 100.0
        for name, connection in (("client", self.client), ("server", self.server)):
            connection.handle_timer(now=self.now)
            self._deliver(connection, name, [])

    def _deliver(self, connection: PeerConnection, name: str, datagrams: list[bytes]) -> None:
        for data in datagrams:
            connection.receive_datagram(data, PEER, now=self.now)
        while (event := connection.next_event()) is not None:
            self.events[name].append(event)


def test_the_server_asks_for_and_gets_the_client_certificate() -> None:
    pair = Pair()
    assert any(isinstance(e, events.HandshakeCompleted) for e in pair.events["server"])
    server_saw, client_saw = pair.server.peer_certificate(), pair.client.peer_certificate()
    assert server_saw is not None
    assert client_saw is not None
    assert certificate_key(server_saw) == pair.client_id.public_key
    assert certificate_key(client_saw) == pair.server_id.public_key
    assert pair.client.handshake_confirmed


def impostor(victim: Identity, *, is_client: bool) -> QuicConfiguration:
    """A TLS endpoint that shows a certificate of ``victim``'s key but signs with a key of its own, as anyone can who
    copied the victim's certificate (or made one: the certificate's own signature is not what is checked)."""
    own = Ed25519PrivateKey.generate()
    name = x509.Name([])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(Ed25519PublicKey.from_public_bytes(victim.public_key))
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .sign(own, None)
    )
    return QuicConfiguration(
        alpn_protocols=["punch/1"],
        is_client=is_client,
        verify_mode=ssl.CERT_NONE,
        certificate=certificate,
        private_key=own,
    )


@pytest.mark.parametrize("who", ["client", "server"])
def test_a_certificate_without_its_private_key_fails_the_handshake(who: str) -> None:
    """The TLS CertificateVerify (RFC 8446 §4.4.3) is checked against the certificate's key whatever verify_mode
    says: showing the pinned key is not enough, the peer must sign with it."""
    victim = Identity.generate()
    pair = Pair(**{who: impostor(victim, is_client=who == "client")})
    pair.settle()
    checker = pair.events["server" if who == "client" else "client"]
    assert not any(isinstance(e, events.HandshakeCompleted) for e in checker)
    ends = [e.error_code for e in checker if isinstance(e, events.ConnectionTerminated)]
    assert ends == [0x100 + 51]  # CRYPTO_ERROR decrypt_error: the signature does not verify (RFC 9001 §4.8)


def test_first_initial_takes_only_a_clients_first_packet() -> None:
    pair = Pair()
    assert first_initial(b"") is None
    assert first_initial(b"\x00\x01" + bytes(1300)) is None  # STUN's first bytes
    assert first_initial(bytes([0xC0]) + bytes(50)) is None  # too short for an Initial (RFC 9000 §14.1)
    pair.client.send_ping(1)
    later = [d for d, _ in pair.client.datagrams_to_send(now=pair.now)]
    assert later
    assert first_initial(later[0]) is None  # a 1-RTT packet


def test_a_paused_reader_gets_no_more_window() -> None:
    pair = Pair()
    stream_id = pair.client.get_next_available_stream_id()
    pair.client.send_stream_data(stream_id, bytes(10 * WINDOW))
    pair.server.pause_reading(stream_id)
    pair.exchange()
    delivered = sum(len(e.data) for e in pair.events["server"] if isinstance(e, events.StreamDataReceived))
    assert delivered == WINDOW  # the first window and not a byte more
    assert pair.client.unsent(stream_id) == 9 * WINDOW

    pair.server.resume_reading(stream_id)
    pair.exchange()
    delivered = sum(len(e.data) for e in pair.events["server"] if isinstance(e, events.StreamDataReceived))
    assert delivered == 10 * WINDOW
    assert pair.client.unsent(stream_id) == 0


def test_max_datagram_payload_is_exactly_what_fits() -> None:
    pair = Pair()
    largest = pair.client.max_datagram_payload()
    assert largest == 1170
    pair.client.send_datagram_frame(bytes(largest))
    pair.exchange()
    received = [e.data for e in pair.events["server"] if isinstance(e, events.DatagramFrameReceived)]
    assert received == [bytes(largest)]
    assert pair.client.datagrams_waiting() == 0


def test_the_peers_close_is_seen_at_once() -> None:
    pair = Pair()
    assert pair.server.peer_closed() is None
    pair.client.close(error_code=0, reason_phrase="bye")
    pair.exchange()
    closed = pair.server.peer_closed()
    assert closed is not None
    assert closed.reason_phrase == "bye"


def handshake_losing_handshake_done() -> tuple[PeerConnection, PeerConnection, float]:
    """A client and a server whose handshake completed on both sides, every datagram the server sent in the round
    it completed lost: the client never got HANDSHAKE_DONE, so it has not confirmed the handshake."""
    client_id, server_id = Identity.generate(), Identity.generate()
    client = PeerConnection(configuration=configuration(client_id, is_client=True), receive_window=WINDOW)
    now = 0.0
    client.connect(PEER, now=now)
    to_server = [d for d, _ in client.datagrams_to_send(now=now)]
    destination = first_initial(to_server[0])
    assert destination is not None
    server = PeerConnection(
        configuration=configuration(server_id, is_client=False),
        receive_window=WINDOW,
        original_destination_connection_id=destination,
    )
    while not server.handshake_confirmed:
        now += 0.001
        for data in to_server:
            server.receive_datagram(data, PEER, now=now)
        to_client = [d for d, _ in server.datagrams_to_send(now=now)]
        if server.handshake_confirmed:
            break  # the round with HANDSHAKE_DONE: lost
        for data in to_client:
            client.receive_datagram(data, PEER, now=now)
        to_server = [d for d, _ in client.datagrams_to_send(now=now)]
    assert not client.handshake_confirmed
    return client, server, now


def test_a_servers_keepalive_carries_handshake_done_again_until_the_client_acknowledges_one() -> None:
    client, server, now = handshake_losing_handshake_done()
    server.send_ping(1)  # a plain PING: HANDSHAKE_DONE is not known lost yet, so it does not go again
    for data, _ in server.datagrams_to_send(now=now):
        client.receive_datagram(data, PEER, now=now)
    assert not client.handshake_confirmed
    server.send_keepalive(2)
    for data, _ in server.datagrams_to_send(now=now):
        client.receive_datagram(data, PEER, now=now)
    assert client.handshake_confirmed
    now += 0.1  # the client's acknowledgement (after its ack delay) tells the server: no more of them
    for data, _ in client.datagrams_to_send(now=now):
        server.receive_datagram(data, PEER, now=now)
    assert server._handshake_done_acknowledged
    server.send_keepalive(3)
    assert not server._handshake_done_pending


def test_a_keepalive_leaves_when_the_congestion_window_is_full() -> None:
    pair = Pair()
    stream_id = pair.server.get_next_available_stream_id()
    pair.server.send_stream_data(stream_id, bytes(1024 * 1024))
    later, loss = pair.now, pair.server._loss
    while loss.bytes_in_flight + 1200 <= loss.congestion_window:  # sent, and all lost: the window fills with them
        later += 0.01  # past the pacer's next slot
        assert pair.server.datagrams_to_send(now=later)
    pair.server.send_ping(1)
    assert pair.server.datagrams_to_send(now=later) == []  # a plain PING waits behind the window
    pair.server.send_keepalive(2)
    assert len(pair.server.datagrams_to_send(now=later)) == 1


def test_the_probe_timeout_doubles_until_it_would_pass_the_cap() -> None:
    """A client whose every datagram is lost: its probes go at growing intervals, never more than MAX_PROBE_TIMEOUT
    apart (RFC 9002's doubling alone would put the tenth 150 s after the ninth)."""
    client = PeerConnection(configuration=configuration(Identity.generate(), is_client=True), receive_window=WINDOW)
    client.connect(PEER, now=0.0)
    sent_at = [0.0]
    assert client.datagrams_to_send(now=0.0)
    for _ in range(10):
        timer = client.get_timer()
        assert timer is not None
        client.handle_timer(now=timer)
        assert client.datagrams_to_send(now=timer)  # a probe, lost too
        sent_at.append(timer)
    gaps = [round(later - earlier, 3) for earlier, later in itertools.pairwise(sent_at)]
    assert gaps[1] == 2 * gaps[0]  # doubling at first
    assert max(gaps) <= MAX_PROBE_TIMEOUT
    assert (
        gaps[-1] == gaps[-2] == max(gaps) > MAX_PROBE_TIMEOUT / 2
    )  # then steady, as close to the cap as doubling gets
