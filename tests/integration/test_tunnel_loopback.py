"""Port forwarding's streams and datagrams (punch.tunnel), over a stand-in for the session: each stream a loopback
TCP connection, each datagram handed over in memory. The same objects run over QUIC in a real session."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from punch.errors import PeerError
from punch.tunnel.files import FileReceiver, send_file
from punch.tunnel.forward import WAITING_DATAGRAMS, ForwardService, TcpForwarder, UdpForwarder
from punch.tunnel.header import write_line_object
from punch.tunnel.services import Services
from punch.tunnel.spec import Forward, Target
from punch.tunnel.texts import Texts
from tests.integration.conftest import LogLine, free_port

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


class Side:
    """One peer's end: its services, and a way to open streams to the other side's and send it datagrams."""

    def __init__(self) -> None:
        self.services = Services(service_wait=0.2)
        self.other: Side | None = None
        self._listener: asyncio.Server | None = None
        self.max_datagram_size = 1200

    async def listen(self) -> None:
        self._listener = await asyncio.start_server(self.services.on_stream, "127.0.0.1", 0)

    async def open_stream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        assert self.other is not None
        assert self.other._listener is not None
        port = self.other._listener.sockets[0].getsockname()[1]
        return await asyncio.open_connection("127.0.0.1", port)

    def send_datagram(self, data: bytes) -> None:
        assert self.other is not None
        self.other.services.on_datagram(data)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        await self.services.close()


@pytest_asyncio.fixture
async def sides() -> AsyncIterator[tuple[Side, Side]]:
    a, b = Side(), Side()
    a.other, b.other = b, a
    await a.listen()
    await b.listen()
    yield a, b
    await a.close()
    await b.close()


async def echo_server() -> tuple[asyncio.Server, int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def through(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    writer.write_eof()
    back = await reader.read()
    writer.close()
    return back


async def test_tcp_connections_go_through_to_an_allowed_target_intact_many_at_once(sides: tuple[Side, Side]) -> None:
    a, b = sides
    server, port = await echo_server()
    b.services.serve("forward", ForwardService({Target("tcp", "127.0.0.1", port)}, b).serve)
    local = free_port("127.0.0.1")
    forwarder = TcpForwarder(a, Forward(local, Target("tcp", "127.0.0.1", port)))
    await forwarder.start()
    payloads = [os.urandom(size) for size in [1 << 20, *[4096 + n for n in range(49)]]]  # 1 MiB, then 49 small
    echoed = await asyncio.gather(*(through(local, p) for p in payloads))
    assert [hashlib.sha256(e).digest() for e in echoed] == [hashlib.sha256(p).digest() for p in payloads]
    assert (forwarder.connections, forwarder.refused) == (50, 0)
    await forwarder.close()
    server.close()


async def test_a_forward_the_other_side_did_not_allow_is_refused_on_both_sides(
    sides: tuple[Side, Side], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = sides
    server, port = await echo_server()
    service = ForwardService({Target("tcp", "127.0.0.1", port + 1)}, b)
    b.services.serve("forward", service.serve)
    local = free_port("127.0.0.1")
    forwarder = TcpForwarder(a, Forward(local, Target("tcp", "127.0.0.1", port)))
    await forwarder.start()
    assert await through(local, b"hello?") == b""  # the local connection is closed, nothing came back
    assert (forwarder.refused, service.refused) == (1, 1)
    why = f"tcp:127.0.0.1:{port} is not allowed here; the other peer may start with `--allow tcp:127.0.0.1:{port}`"
    assert f"forward to tcp:127.0.0.1:{port} refused by the other peer: {why}" in caplog.text
    assert f"refused a forward of the other peer: {why}" in caplog.text
    await forwarder.close()
    server.close()


async def test_a_target_that_does_not_answer_is_a_clear_refusal(sides: tuple[Side, Side]) -> None:
    a, b = sides
    closed = free_port("127.0.0.1")  # nothing listens there
    b.services.serve("forward", ForwardService({Target("tcp", "127.0.0.1", closed)}, b).serve)
    forwarder = TcpForwarder(a, Forward(free_port("127.0.0.1"), Target("tcp", "127.0.0.1", closed)))
    await forwarder.start()
    assert await through(forwarder_port(forwarder), b"x") == b""
    assert forwarder.refused == 1
    await forwarder.close()


def forwarder_port(forwarder: TcpForwarder) -> int:
    return forwarder._forward.local_port


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.transport.sendto(data.upper(), addr)


class Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.queue.put_nowait(data)


async def allowed_udp_echo(side: Side) -> tuple[asyncio.DatagramTransport, int]:
    """A UDP echo on loopback (its transport and port) that ``side`` lets the other side forward to."""
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    service = ForwardService({Target("udp", "127.0.0.1", port)}, side)
    side.services.serve("forward", service.serve)
    side.services.route_flows(accepting=service.on_datagram)
    return transport, port


async def test_a_udp_flow_carries_datagrams_both_ways(sides: tuple[Side, Side]) -> None:
    a, b = sides
    loop = asyncio.get_running_loop()
    echo_transport, port = await allowed_udp_echo(b)
    local = free_port("127.0.0.1")
    forwarder = UdpForwarder(a, a, Forward(local, Target("udp", "127.0.0.1", port)))
    a.services.route_flows(forwarding=forwarder.on_datagram)
    await forwarder.start()
    inbox = Inbox()
    client, _ = await loop.create_datagram_endpoint(lambda: inbox, remote_addr=("127.0.0.1", local))
    for word in (b"one", b"two", b"three"):
        client.sendto(word)
    got = {await asyncio.wait_for(inbox.queue.get(), 5) for _ in range(3)}
    assert got == {b"ONE", b"TWO", b"THREE"}
    client.close()
    echo_transport.close()
    await forwarder.close()


async def test_a_udp_flow_keeps_its_first_datagrams_while_it_opens_and_drops_beyond(sides: tuple[Side, Side]) -> None:
    """The session is not up yet (the stream waits): the flow keeps WAITING_DATAGRAMS and drops the rest, counted;
    those kept go once the flow is open."""
    a, b = sides
    loop = asyncio.get_running_loop()
    echo_transport, port = await allowed_udp_echo(b)
    up = asyncio.Event()

    class NotYetUp:
        async def open_stream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            await up.wait()
            return await a.open_stream()

    local = free_port("127.0.0.1")
    forwarder = UdpForwarder(NotYetUp(), a, Forward(local, Target("udp", "127.0.0.1", port)))
    a.services.route_flows(forwarding=forwarder.on_datagram)
    await forwarder.start()
    inbox = Inbox()
    client, _ = await loop.create_datagram_endpoint(lambda: inbox, remote_addr=("127.0.0.1", local))
    source = client.get_extra_info("sockname")
    for number in range(WAITING_DATAGRAMS + 10):  # as the socket hands them over, all before the session is up
        forwarder.datagram_received(b"d%d" % number, source)
    assert forwarder.dropped == 10
    up.set()
    got = {await asyncio.wait_for(inbox.queue.get(), 5) for _ in range(WAITING_DATAGRAMS)}
    assert got == {b"D%d" % number for number in range(WAITING_DATAGRAMS)}
    assert forwarder.dropped == 10
    client.close()
    echo_transport.close()
    await forwarder.close()


async def test_the_other_peers_bad_streams_and_datagrams_are_dropped_and_counted(sides: tuple[Side, Side]) -> None:
    a, b = sides
    reader, writer = await a.open_stream()
    writer.write(b"not json\n")
    await writer.drain()
    assert await reader.read() == b""
    reader, writer = await a.open_stream()
    write_line_object(writer, {"service": "shell"})
    await writer.drain()
    assert await reader.readline() == b'{"ok":false,"reason":"no service \'shell\' here"}\n'
    a.send_datagram(b"\x00")
    a.send_datagram(b"\x00\x00\x00\x07hello")
    assert dict(b.services.dropped) == {
        "bad-stream-header": 1,
        "unknown-service": 1,
        "short-datagram": 1,
        "no-such-flow": 1,
    }
    with contextlib.suppress(Exception):
        writer.close()


async def test_texts_are_acknowledged_one_by_one_and_the_end_of_the_stream_says_done(sides: tuple[Side, Side]) -> None:
    a, b = sides
    shown: list[str] = []
    ours, theirs = Texts(a, "b", lambda _: None), Texts(b, "a", shown.append)
    b.services.serve("texts", theirs.serve)
    for text in ("hello", 'ünïcödé and a "quote"', "x" * 30000):
        await ours.send(text)
    await ours.close()
    await asyncio.wait_for(theirs.remote_closed.wait(), 5)
    assert shown == theirs.received == ours.sent
    assert len(ours.sent) == 3


async def test_a_text_over_the_limit_is_refused_before_it_leaves(sides: tuple[Side, Side]) -> None:
    a, _ = sides
    with pytest.raises(PeerError, match=r"^a message is 40000 bytes; the limit is 32768$"):
        await Texts(a, "b", lambda _: None).send("y" * 40000)


async def test_a_file_arrives_whole_under_its_name_or_is_refused(sides: tuple[Side, Side], tmp_path: Path) -> None:
    a, b = sides
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(3 << 20))
    receiver = FileReceiver(inbox, "a")
    b.services.serve("file", receiver.serve)
    digest = await send_file(a, source, "b")
    assert (await asyncio.wait_for(receiver.received, 5)).read_bytes() == source.read_bytes()
    assert digest == hashlib.sha256(source.read_bytes()).hexdigest()
    with pytest.raises(
        PeerError, match=rf"^b refused our file: {re.escape(str(inbox / 'data.bin'))} exists; it is not overwritten$"
    ):
        await send_file(a, source, "b")
    assert sorted(p.name for p in inbox.iterdir()) == ["data.bin"]  # nothing half-received left beside it


async def test_a_stream_for_a_service_set_up_a_moment_later_waits_for_it(
    sides: tuple[Side, Side], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = sides
    caplog.set_level(logging.INFO, logger="punch.tunnel.services")
    waiting = LogLine("for 'late' waits for that service")
    logging.getLogger("punch.tunnel.services").addHandler(waiting)
    try:
        reader, writer = await a.open_stream()
        write_line_object(writer, {"service": "late"})
        await writer.drain()

        async def late(
            header: dict[str, Any], their_reader: asyncio.StreamReader, their_writer: asyncio.StreamWriter
        ) -> None:
            their_writer.write(b"here now\n")
            await their_writer.drain()

        await asyncio.wait_for(waiting.seen.wait(), 5)  # the stream has reached b, which waits for the service
        b.services.serve("late", late)
        assert await asyncio.wait_for(reader.readline(), 5) == b"here now\n"
        writer.close()
    finally:
        logging.getLogger("punch.tunnel.services").removeHandler(waiting)


class Unanswering:
    """The other side of a forward's stream as a raw listener: what reaches it is read, and it answers only when
    told (the first bytes must not wait for the answer)."""

    def __init__(self) -> None:
        self.arrived: asyncio.Queue[tuple[bytes, bytes, asyncio.StreamWriter]] = asyncio.Queue()
        self._listener: asyncio.Server | None = None

    async def listen(self) -> None:
        async def on_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            header = await reader.readuntil(b"\n")
            first = await reader.read(100)
            await self.arrived.put((header, first, writer))

        self._listener = await asyncio.start_server(on_stream, "127.0.0.1", 0)

    async def open_stream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        assert self._listener is not None
        return await asyncio.open_connection("127.0.0.1", self._listener.sockets[0].getsockname()[1])

    def send_datagram(self, data: bytes) -> None:
        raise AssertionError("no datagrams in a TCP forward")

    max_datagram_size = 1200


async def test_a_forwards_first_bytes_leave_with_its_header_before_the_answer() -> None:
    other = Unanswering()
    await other.listen()
    target = Target("tcp", "127.0.0.1", 8080)
    forwarder = TcpForwarder(other, Forward(free_port("127.0.0.1"), target))
    await forwarder.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", forwarder_port(forwarder))
    writer.write(b"GET / HTTP/1.0\r\n\r\n")
    async with asyncio.timeout(5):
        header, first, stream = await other.arrived.get()  # nobody answered the header yet
    assert b'"service": "forward"' in header or b'"service":"forward"' in header
    assert first == b"GET / HTTP/1.0\r\n\r\n"
    write_line_object(stream, {"ok": True})
    stream.write(b"HTTP/1.0 200 OK\r\n\r\n")
    stream.close()
    async with asyncio.timeout(5):
        assert await reader.read() == b"HTTP/1.0 200 OK\r\n\r\n"
    writer.close()
    await forwarder.close()
