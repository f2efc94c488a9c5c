"""QuicLink pairs joined in memory (tests/integration/quic_links.py): the handshake and both pins, wrong keys,
streams (many at once, half-close, reset), datagrams, loss and reordering, a change of path mid-transfer, liveness,
backpressure, keylog and close."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from punch.errors import UsageError
from punch.identity.fingerprint import fingerprint
from punch.identity.keyfile import Identity
from punch.transport import (
    DatagramTooLarge,
    KeyRefused,
    LinkClosed,
    LinkConfig,
    PeerKeyMismatch,
    QuicLink,
    StreamReset,
)
from punch.transport.certs import certificate_key
from tests.integration.quic_links import Pipe, Route, echo_streams, linked, payload, round_trip

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

KIB = 1024
MIB = 1024 * KIB
UP = 5.0  # seconds for a handshake on loopback, generously


async def both_up(client: QuicLink, server: QuicLink) -> None:
    async with asyncio.timeout(UP):
        await client.wait_connected()
        await server.wait_connected()


async def test_handshake_authenticates_both_keys() -> None:
    client_id, server_id = Identity.generate(), Identity.generate()
    async with linked(client_identity=client_id, server_identity=server_id) as (client, server):
        await both_up(client, server)
        # each side holds the certificate the other proved in TLS, and it carries the other's identity key
        for link, other in ((client, server_id), (server, client_id)):
            assert link._connection is not None
            certificate = link._connection.peer_certificate()
            assert certificate is not None
            assert certificate_key(certificate) == other.public_key
        assert client.path_alive
        assert server.path_alive


@pytest.mark.parametrize("wrong", ["server", "client"])
async def test_a_wrong_key_is_refused_on_both_sides(wrong: str) -> None:
    client_id, server_id, stranger = Identity.generate(), Identity.generate(), Identity.generate()
    # the side that checks the wrong peer pins the stranger's key instead of the one the peer proves
    client_pins = stranger.public_key if wrong == "server" else None
    server_pins = stranger.public_key if wrong == "client" else None
    async with linked(
        client_identity=client_id, server_identity=server_id, client_pins=client_pins, server_pins=server_pins
    ) as (client, server):
        checker, checked = (client, server) if wrong == "server" else (server, client)
        actual = server_id if wrong == "server" else client_id
        message = f"the {wrong}'s key is {fingerprint(actual.public_key)}, not the pinned {stranger.fingerprint}: link refused"
        with pytest.raises(PeerKeyMismatch) as mismatch:
            async with asyncio.timeout(UP):
                await checker.wait_connected()
        assert str(mismatch.value) == message
        if wrong == "server":  # the server is checked by the client before the server's link is up
            with pytest.raises(KeyRefused) as refused:
                async with asyncio.timeout(UP):
                    await checked.wait_connected()
            reason: LinkClosed = refused.value
        else:  # a client is up once it checked the server's key; the server's refusal ends its link
            async with asyncio.timeout(UP):
                reason = await checked.wait_closed()
        assert isinstance(reason, KeyRefused)
        assert str(reason) == f"the peer refused our key: {message}"
        with pytest.raises(LinkClosed):
            await checked.open_stream()
        with pytest.raises(LinkClosed):  # whatever the refused client sent, nothing reached the server's application
            await server.accept_stream()


async def test_fifty_streams_echo_256_kib_each_intact() -> None:
    async with linked() as (client, server):
        await both_up(client, server)
        blobs = [payload(seed, 256 * KIB) for seed in range(50)]
        async with asyncio.TaskGroup() as group:
            group.create_task(echo_streams(server, len(blobs)))
            trips = [group.create_task(round_trip(client, blob)) for blob in blobs]
        assert [t.result() for t in trips] == [hashlib.sha256(b).hexdigest() for b in blobs]
        assert client.held_bytes() == 0


async def test_datagrams_both_ways_up_to_the_largest() -> None:
    async with linked() as (client, server):
        await both_up(client, server)
        largest = client.max_datagram_payload
        assert largest == server.max_datagram_payload == 1170  # 1200 less header, CID, packet number, tag, frame
        sent = [payload(n, size) for n, size in enumerate((1, 100, largest))]
        for data in sent:
            assert client.send_datagram(data)
            assert server.send_datagram(data[::-1])
        async with asyncio.timeout(UP):
            assert [await server.receive_datagram() for _ in sent] == sent
            assert [await client.receive_datagram() for _ in sent] == [d[::-1] for d in sent]
        with pytest.raises(
            DatagramTooLarge, match=f"a datagram of {largest + 1} bytes: this link carries at most 1170"
        ):
            client.send_datagram(bytes(largest + 1))


async def test_streams_survive_loss_and_reordering() -> None:
    lossy = Route("lossy", loss=0.10, jitter=0.004, seed=7)
    async with linked(Pipe(lossy)) as (client, server):
        await both_up(client, server)
        blobs = [payload(100 + seed, 256 * KIB) for seed in range(8)]
        async with asyncio.timeout(60), asyncio.TaskGroup() as group:
            group.create_task(echo_streams(server, len(blobs)))
            trips = [group.create_task(round_trip(client, blob)) for blob in blobs]
        assert [t.result() for t in trips] == [hashlib.sha256(b).hexdigest() for b in blobs]
        assert lossy.dropped > 50  # the loss really happened


async def test_a_stream_survives_a_change_of_path() -> None:
    """The first route carries part of a transfer, then nothing gets through for a second (a NAT rebinding, a
    relay -> direct upgrade), then another route object carries the rest: the same stream completes intact."""
    first, blackhole, second = Route("relay"), Route("nowhere", loss=1.0), Route("direct")
    pipe = Pipe(first)
    data = payload(1, 4 * MIB)
    async with linked(pipe) as (client, server):
        await both_up(client, server)
        _, writer = await client.open_stream()
        switched = asyncio.Event()

        def second_route() -> None:
            pipe.route = second
            switched.set()

        async def send() -> None:
            for start in range(0, len(data), 64 * KIB):
                writer.write(data[start : start + 64 * KIB])
                await writer.drain()
            writer.write_eof()

        async def receive() -> bytes:
            peer_reader, _ = await server.accept_stream()
            got = bytearray()
            while block := await peer_reader.read(64 * KIB):
                got += block
                if len(got) >= MIB and pipe.route is first:
                    pipe.route = blackhole  # the outage starts mid-transfer ...
                    asyncio.get_running_loop().call_later(1.0, second_route)  # ... and lasts a second
            return bytes(got)

        async with asyncio.timeout(60), asyncio.TaskGroup() as group:
            group.create_task(send())
            received = group.create_task(receive())
        assert switched.is_set()
        assert received.result() == data
        assert blackhole.dropped > 0
        assert second.carried > 0
        writer.close()


async def test_liveness_turns_off_when_the_path_dies_and_on_when_it_returns() -> None:
    config = LinkConfig(keepalive=0.05, dead_after=0.3, idle_timeout=10.0)
    working, dead = Route("working"), Route("dead", loss=1.0)
    pipe = Pipe(working)
    changes: dict[str, asyncio.Queue[bool]] = {"client": asyncio.Queue(), "server": asyncio.Queue()}
    async with linked(pipe, client_config=config, server_config=config) as (client, server):
        client._on_path = changes["client"].put_nowait
        server._on_path = changes["server"].put_nowait
        await both_up(client, server)
        pipe.route = dead
        async with asyncio.timeout(UP):
            assert await changes["client"].get() is False
            assert await changes["server"].get() is False
        assert not client.path_alive
        pipe.route = working
        async with asyncio.timeout(UP):
            assert await changes["client"].get() is True
            assert await changes["server"].get() is True
        assert client.connected


async def test_a_slow_reader_holds_back_a_64_mib_writer() -> None:
    """The reader reads nothing at first: the writer must stop in drain() with a few MiB at most held anywhere
    (its unsent bytes, QUIC's buffers on both sides, the reader's StreamReader), though 64 MiB are to be sent. Then
    the reader takes everything, and what it took is what was written."""
    total, chunk = 64 * MIB, 64 * KIB
    config = LinkConfig(stream_window=MIB, write_buffer=256 * KIB, reader_limit=64 * KIB)
    bound = 3 * MIB  # window + write buffer + twice the reader's limit + in-flight slack
    async with linked(client_config=config, server_config=config) as (client, server):
        await both_up(client, server)
        _, writer = await client.open_stream()
        written = 0
        blocked = asyncio.Event()
        sent = hashlib.sha256()

        async def write() -> None:
            nonlocal written
            for n in range(total // chunk):
                block = payload(n, chunk)
                sent.update(block)
                writer.write(block)
                written += chunk
                if writer.transport.get_write_buffer_size() > config.write_buffer:
                    blocked.set()  # the next drain() waits
                await writer.drain()
            writer.write_eof()

        async with asyncio.TaskGroup() as group:
            writing = group.create_task(write())
            async with asyncio.timeout(UP):
                await blocked.wait()
                # the connection goes on working (50 datagram round trips) while the writer stays stopped
                for n in range(50):
                    client.send_datagram(n.to_bytes(2, "big"))
                    server.send_datagram(await server.receive_datagram())
                    assert await client.receive_datagram() == n.to_bytes(2, "big")
            held = client.held_bytes() + server.held_bytes()
            assert not writing.done()
            assert written < 4 * MIB, written
            assert held < bound, held

            peer_reader, _ = await server.accept_stream()
            received = hashlib.sha256()
            most = held
            async with asyncio.timeout(120):
                while block := await peer_reader.read(chunk):
                    received.update(block)
                    most = max(most, client.held_bytes() + server.held_bytes())
        assert received.hexdigest() == sent.hexdigest()
        assert most < bound, most


async def test_half_close_reset_and_stop_sending() -> None:
    async with linked() as (client, server):
        await both_up(client, server)
        # half-close: our FIN, then the peer still answers on the same stream
        reader, writer = await client.open_stream()
        writer.write(b"question")
        writer.write_eof()
        peer_reader, peer_writer = await server.accept_stream()
        assert await peer_reader.read() == b"question"
        peer_writer.write(b"answer")
        peer_writer.write_eof()
        assert await reader.read() == b"answer"

        # RESET_STREAM: the peer's reader fails with our code
        reader, writer = await client.open_stream()
        writer.write(b"partial")
        await writer.drain()
        peer_reader, peer_writer = await server.accept_stream()
        assert await peer_reader.readexactly(7) == b"partial"
        writer.transport.reset(42)  # type: ignore[attr-defined]
        with pytest.raises(StreamReset, match=r"the peer reset it \(application error code 42\)"):
            async with asyncio.timeout(UP):
                await peer_reader.read()

        # STOP_SENDING: the peer closes before reading all; our next write says so
        _, writer = await client.open_stream()
        writer.write(b"x")
        await writer.drain()
        _, peer_writer = await server.accept_stream()
        peer_writer.close()
        async with asyncio.timeout(UP):  # a datagram's round trip: what the server sent before it has arrived
            client.send_datagram(b"ping")
            server.send_datagram(await server.receive_datagram())
            await client.receive_datagram()
        with pytest.raises(StreamReset, match=r"the peer stopped reading it \(application error code 0\)"):
            writer.write(b"more")


async def test_keylog_holds_the_tls_secrets(tmp_path: Path) -> None:
    keylog = tmp_path / "keys.log"
    async with linked(client_config=LinkConfig(keylog=keylog)) as (client, server):
        await both_up(client, server)
    labels = {line.split()[0] for line in keylog.read_text().splitlines()}
    assert {"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0"} <= labels
    assert keylog.stat().st_mode & 0o777 == 0o600  # secrets: its owner's only


def qlogs_in(directory: Path) -> dict[str, Any]:
    """The qlog documents in ``directory`` by the end of their names (``client.qlog``, ``server.qlog``)."""
    return {path.name.rsplit("-", 1)[1]: json.loads(path.read_text()) for path in directory.glob("*.qlog")}


async def test_qlog_writes_each_sides_trace_into_one_directory(tmp_path: Path) -> None:
    config = LinkConfig(qlog=tmp_path)
    async with linked(client_config=config, server_config=config) as (client, server):
        await both_up(client, server)
        await client.close()
        async with asyncio.timeout(UP):
            await server.wait_closed()
    traces = qlogs_in(tmp_path)
    assert set(traces) == {"client.qlog", "server.qlog"}  # one connection: one ODCID, told apart by the role
    for name, document in traces.items():
        (trace,) = document["traces"]
        assert trace["vantage_point"]["type"] == name.removesuffix(".qlog")
        names = {event["name"] for event in trace["events"]}
        assert {"transport:packet_sent", "transport:packet_received"} <= names


async def test_a_keylog_that_cannot_be_opened_is_a_usage_error(tmp_path: Path) -> None:
    where = tmp_path / "missing" / "keys.log"
    link = QuicLink(
        Identity.generate(),
        Identity.generate().public_key,
        lambda d: None,
        is_client=True,
        config=LinkConfig(keylog=where),
    )
    with pytest.raises(UsageError) as error:
        link.start()
    assert str(error.value) == f"keylog {where}: cannot open it (No such file or directory); give a writable path"


async def test_close_is_idempotent_ends_the_peer_and_leaves_nothing_running() -> None:
    before = asyncio.all_tasks()
    async with linked() as (client, server):
        await both_up(client, server)
        _, writer = await client.open_stream()
        writer.write(b"hello")
        await writer.drain()
        peer_reader, _ = await server.accept_stream()
        accepting = asyncio.create_task(client.accept_stream())
        await client.close()
        await client.close()
        assert str(await client.wait_closed()) == "the link was closed here: closed"
        with pytest.raises(LinkClosed, match="the link was closed here"):
            await accepting
        with pytest.raises(LinkClosed):
            await client.open_stream()
        with pytest.raises(LinkClosed, match="the link was closed here"):
            writer.write(b"after")
        async with asyncio.timeout(UP):
            reason = await server.wait_closed()
        assert str(reason) == "the peer ended the link: closed (QUIC error 0x0)"
        with pytest.raises(LinkClosed):
            await peer_reader.read()
    await server.close()
    assert asyncio.all_tasks() == before
    for link in (client, server):
        assert link._timer is None
        assert not link._liveness.running
        assert not link._streams


async def test_the_idle_timeout_ends_a_link_whose_peer_fell_silent() -> None:
    config = LinkConfig(keepalive=0.05, dead_after=0.2, idle_timeout=0.5)
    pipe = Pipe()
    async with linked(pipe, client_config=config, server_config=config) as (client, server):
        await both_up(client, server)
        pipe.route = Route("gone", loss=1.0)
        async with asyncio.timeout(UP):
            reason = await client.wait_closed()
        assert str(reason) == "nothing came from the peer for 0.5 s (QUIC idle timeout)"


async def test_a_failing_callback_is_counted_and_the_link_goes_on() -> None:
    def broken(data: bytes) -> None:
        raise RuntimeError("a bug in the owner")

    async with linked() as (client, server):
        server._on_datagram = broken
        await both_up(client, server)
        client.send_datagram(b"first")
        async with asyncio.timeout(UP), asyncio.TaskGroup() as group:  # a stream's round trip comes after it
            group.create_task(echo_streams(server, 1))
            digest = await round_trip(client, b"second")
        assert digest == hashlib.sha256(b"second").hexdigest()
        assert server.counters["callback-error"] == 1
        assert server.connected


class LoseNext(Route):
    """Loses the next ``count`` datagrams (whichever way they go), then carries every one."""

    def __init__(self, count: int) -> None:
        super().__init__("lose-next")
        self.left = count

    def carry(self, data: bytes, deliver: Callable[[bytes], None]) -> None:
        if self.left > 0:
            self.left -= 1
            self.dropped += 1
            return
        super().carry(data, deliver)


class FinishedLate(Pipe):
    """Holds the client's long-header datagrams after its first (its Finished goes in one, maybe behind an Initial
    ACK) until a datagram of 1-RTT packets from it has reached the server: the server gets the client's first data
    before the Finished that proves the client's key."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[bytes] = []
        self.first_sent = False
        self.short_first = False

    def send_to(self, name: str) -> Callable[[bytes], None]:
        deliver = super().send_to(name)
        if name != "server":
            return deliver

        def send(data: bytes) -> None:
            if data[0] & 0x80 and self.first_sent:  # a long header (RFC 9000 §17.2), after the client's first Initial
                self.held.append(data)
                return
            self.first_sent = True
            deliver(data)
            if not data[0] & 0x80 and self.held:  # a short header: 1-RTT
                self.short_first = True
                for late in self.held:
                    deliver(late)
                self.held.clear()

        return send


async def test_a_clients_data_that_comes_before_its_finished_waits_for_the_key_check_and_is_delivered() -> None:
    pipe = FinishedLate()
    async with linked(pipe) as (client, server):
        async with asyncio.timeout(UP):
            await client.wait_connected()  # up once it checked the server: its Finished is on its way, held
        _, writer = await client.open_stream()
        writer.write(b"right behind the Finished")
        writer.write_eof()
        async with asyncio.timeout(UP):
            reader, _ = await server.accept_stream()
            assert await reader.read() == b"right behind the Finished"
        assert pipe.short_first


async def test_a_lost_connection_close_goes_again_when_the_peer_sends_after_it() -> None:
    """The server closes and its CONNECTION_CLOSE is lost; the client, closing with a flush of what it wrote last,
    would wait its whole flush for acknowledgements. Its first PING reaches the closed server, which sends its
    CONNECTION_CLOSE again: the client learns the peer ended the link, not that its own flush ran out."""
    pipe = Pipe()
    async with linked(pipe) as (client, server):
        await both_up(client, server)
        pipe.route = LoseNext(1)
        await server.close()
        assert pipe.route.dropped == 1
        _, writer = await client.open_stream()
        writer.write(b"nobody reads this")
        writer.write_eof()
        await client.close(flush=30.0)
        assert str(client.close_reason) == "the peer ended the link: closed (QUIC error 0x0)"
        assert server.counters["close-replayed"] >= 1


@pytest.mark.parametrize("seed", range(5))
async def test_a_close_that_flushes_delivers_the_last_bytes_and_fin_over_a_lossy_path(seed: int) -> None:
    """40% of the datagrams lost each way and a RTT of up to 0.4 s: the probe timeout would resend our FIN once or
    twice in a few seconds; the flush's PINGs reveal each loss within a round trip, so the FIN gets through."""
    pipe, lossy = Pipe(Route("clean")), Route("lossy", loss=0.4, jitter=0.2, seed=seed)
    async with linked(pipe) as (client, server):
        await both_up(client, server)
        _, writer = await client.open_stream()
        writer.write(b"the last words")
        peer_reader, _ = await server.accept_stream()
        pipe.route = lossy  # both ways, from now on
        writer.write_eof()
        await client.close(flush=3.0)
        assert client._unacknowledged() == 0, "closed before the peer acknowledged everything"
        async with asyncio.timeout(UP):
            assert await peer_reader.read() == b"the last words"
        assert lossy.dropped > 0
