"""STUN over TCP and TLS on loopback: the server's listeners (punch.rendezvous.streams) and a peer that reaches its
server over them (punch.peer.reach): Binding and the rendezvous over a connection, the relay between a connection
and UDP or two connections, the fall back from a silent UDP to TCP and then TLS, the move from the relay to a direct
path, certificates refused, and bad streams dropped, counted and closed without anything waiting on them."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from punch.api import Connection, run_peer
from punch.errors import PeerError
from punch.peer.client import RendezvousClient
from punch.peer.config import PeerConfig, PeerResult
from punch.peer.reach import Reach, ServerLink, TlsServer, Via, reach_server
from punch.rendezvous.server import RendezvousServer
from punch.rendezvous.streams import StreamLimits, StreamListen, StreamListener, listen_streams
from punch.stun import Address, AttributeType, Message, MessageClass, Method, decode, encode, new_transaction_id
from punch.stun.protocol import StunEndpoint, open_endpoint
from punch.stun.stream import frame, open_stream
from punch.stun.tls import format_sha256, server_context
from punch.stun.transaction import RetransmitPolicy, TransactionTimeout
from punch.stun.wire import request
from tests.certificates import Authority, Issued
from tests.integration.conftest import FAST, keyed, peer_socket, texts
from tests.integration.conftest import peer_config as config

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

QUICK_TRIAL = RetransmitPolicy(rto=0.05, backoff=1.0, max_sends=3, last_wait=2.0)  # UDP's chance: 0.2 s
LIMITS = StreamLimits(idle=2.0, frame=0.2, gone_for=5.0)


@dataclass
class Served:
    """A server on loopback over UDP, TCP and TLS (a certificate of ``authority`` for 127.0.0.1)."""

    server: RendezvousServer
    listener: StreamListener
    tcp: Address
    tls: Address
    authority: Authority
    issued: Issued

    def over_tls(self, *, ca: bool = True, pin: bytes | None = None) -> Reach:
        """Over TLS, verifying the server's certificate against our CA (``ca``), pinning it (``pin``), or both."""
        return Reach(via=Via.TLS, tls=TlsServer("127.0.0.1", self.tls[1], self.authority.pem if ca else None, pin))


@pytest_asyncio.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    authority = Authority(tmp_path)
    issued = authority.issue("server", "127.0.0.1")
    async with RendezvousServer(push_policy=FAST) as server:
        await server.start(("127.0.0.1", 0))
        listen = StreamListen(("127.0.0.1", 0), ("127.0.0.1", 0), server_context(issued.cert, issued.key), LIMITS)
        async with await listen_streams(server.endpoint, listen) as listener:
            tcp, tls = listener.addresses
            yield Served(server, listener, tcp, tls, authority, issued)
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not [t for t in leftover if "StreamListener" in repr(t) or "reach" in repr(t)], leftover


@pytest_asyncio.fixture
async def silent() -> AsyncIterator[Address]:
    """A UDP port where nothing answers (a firewall that drops our UDP, as seen from the peer)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()


def at(server: Address, peer: PeerConfig) -> PeerConfig:
    """``peer`` with ``server`` as its server's (UDP) address."""
    return dataclasses.replace(peer, server=server)


def closed_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def on_loopback(
    serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[Address]:
    """A TCP service of ``serve`` on a free loopback port: its address."""
    listening = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        name = listening.sockets[0].getsockname()
        yield (str(name[0]), int(name[1]))
    finally:
        listening.close()
        await listening.wait_closed()


async def exchange(*pair: PeerConfig) -> list[PeerResult]:
    """Both peers at once, each sending the other its ID."""
    return list(await asyncio.gather(*(run_peer(c, texts(f"from {c.peer_id}"), lambda _: None) for c in pair)))


async def binding_over(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Message:
    writer.write(frame(encode(request(Method.BINDING))))
    length = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), 5), "big")
    return decode(await reader.readexactly(length))


async def test_binding_over_tcp_shows_the_connections_own_address(served: Served) -> None:
    reader, writer = await asyncio.open_connection(*served.tcp)
    answer = await binding_over(reader, writer)
    assert answer.message_class is MessageClass.SUCCESS
    assert answer.address(AttributeType.XOR_MAPPED_ADDRESS) == writer.get_extra_info("sockname")
    writer.close()
    await writer.wait_closed()


async def test_a_peer_over_tcp_and_a_peer_over_udp_talk_through_the_relay(served: Served) -> None:
    server = served.server
    over_tcp = config(server, "10", "14", reach=Reach(via=Via.TCP, tcp_at=served.tcp), upgrade_interval=0)
    results = await exchange(over_tcp, config(server, "14", "10", upgrade_interval=0))
    assert [r.received for r in results] == [["from 14"], ["from 10"]]
    assert [(r.path, r.server_via, r.error) for r in results] == [("relay", "tcp", None), ("relay", "udp", None)]
    counters = server.endpoint.counters
    assert counters["relayed"] > 0
    assert counters["stream-accepted"] == 1
    assert results[0].mapped is not None


async def one_port_for_both() -> tuple[socket.socket, StunEndpoint]:
    """A TCP socket bound to a free loopback port, and a peer's UDP socket at the same port (other runs' sockets may
    hold a port for one of them: tried until one is free for both)."""
    for _ in range(20):
        tcp = socket.socket()
        tcp.bind(("127.0.0.1", 0))
        try:
            return tcp, await open_endpoint(lambda *_: None, tcp.getsockname())
        except OSError:
            tcp.close()
    raise AssertionError("no loopback port free for both TCP and UDP")


async def test_the_connection_leaves_from_our_udp_sockets_address_and_port(served: Served) -> None:
    """So that a NAT that keeps ports gives it the public port it gives our UDP."""
    reserved, endpoint = await one_port_for_both()
    reserved.close()  # (held until just before we connect)
    link = await reach_server(Reach(via=Via.TCP, tcp_at=served.tcp), served.server.address, endpoint, relay=True)
    try:
        assert link.stream is not None
        assert link.stream.local == endpoint.local_address
    finally:
        await link.close()
        await endpoint.close()


async def test_where_our_udp_port_is_taken_for_tcp_the_connection_leaves_from_another(served: Served) -> None:
    taken, endpoint = await one_port_for_both()
    with taken:
        taken.listen()
        link = await reach_server(Reach(via=Via.TCP, tcp_at=served.tcp), served.server.address, endpoint, relay=True)
        try:
            assert link.stream is not None
            assert link.stream.local[1] not in (0, endpoint.local_address[1])
        finally:
            await link.close()
            await endpoint.close()


async def test_two_peers_over_tls_talk_through_the_relay_between_their_connections(served: Served) -> None:
    server = served.server
    pair = (
        config(server, me, other, reach=served.over_tls(), upgrade_interval=0) for me, other in (("a", "b"), ("b", "a"))
    )
    results = await exchange(*pair)
    assert [r.received for r in results] == [["from b"], ["from a"]]
    assert [(r.path, r.server_via) for r in results] == [("relay", "tls"), ("relay", "tls")]
    assert server.endpoint.counters["stream-accepted"] == 2


async def test_a_peer_whose_udp_gets_no_answer_reaches_the_server_over_tcp(served: Served, silent: Address) -> None:
    # The peer's "server" is a UDP port that never answers, and the server's TCP listener: as through a firewall
    # that drops UDP. The other peer reaches the server over UDP.
    blocked = at(silent, config(served.server, "10", "14", reach=Reach(tcp_at=served.tcp, trial=QUICK_TRIAL)))
    results = await exchange(blocked, config(served.server, "14", "10"))
    assert [(r.received, r.server_via, r.path) for r in results] == [
        (["from 14"], "tcp", "relay"),
        (["from 10"], "udp", "relay"),
    ]


async def test_where_tcp_does_not_connect_either_tls_does(served: Served, silent: Address) -> None:
    reach = dataclasses.replace(
        served.over_tls(), via=Via.AUTO, tcp_at=("127.0.0.1", closed_tcp_port()), trial=QUICK_TRIAL
    )
    endpoint = await open_endpoint(lambda *_: None, ("127.0.0.1", 0))
    link = await reach_server(reach, silent, endpoint, relay=True)
    try:
        assert link.via == "tls"
        answer, source = await endpoint.request(request(Method.BINDING), silent, FAST)  # over the connection
        assert (answer.message_class, source) == (MessageClass.SUCCESS, silent)
    finally:
        await link.close()
        await endpoint.close()


IMPOSTOR_TIMEOUT = 1.5  # seconds for a connection and its Binding (a TLS handshake on a busy machine takes some)
# What answers a peer's TCP connection where punch server does not listen: a web server (HTTP's first two bytes read
# as a 18,516-byte frame), a service that cuts its answer short, one that says nothing.
IMPOSTORS = {
    "http": (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", "stream-long",
             "a frame of 18516 bytes, longer than 4096"),
    "cut": (frame(encode(request(Method.BINDING)))[:10], "stream-cut",
            "cut in the middle of a frame (10 bytes of it came)"),
    "silent": (b"", None, f"no answer to a Binding within {IMPOSTOR_TIMEOUT:g} s"),
}  # fmt: skip


@contextlib.asynccontextmanager
async def impostor(answer: bytes) -> AsyncIterator[Address]:
    """A TCP service on loopback that reads a frame, writes ``answer`` and closes (an empty one: stays silent)."""
    done = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await reader.readexactly(int.from_bytes(await reader.readexactly(2), "big"))
            if answer:
                writer.write(answer)
                await writer.drain()
            else:
                await done.wait()
        writer.close()

    async with on_loopback(serve) as address:
        try:
            yield address
        finally:
            done.set()


@pytest.mark.parametrize(("answer", "counter", "why"), IMPOSTORS.values(), ids=IMPOSTORS.keys())
async def test_where_something_else_answers_over_tcp_the_peer_goes_on_to_tls(
    served: Served, silent: Address, answer: bytes, counter: str | None, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "punch.peer.reach")
    async with impostor(answer) as tcp:
        reach = dataclasses.replace(
            served.over_tls(), via=Via.AUTO, tcp_at=tcp, trial=QUICK_TRIAL, connect_timeout=IMPOSTOR_TIMEOUT
        )
        endpoint = await open_endpoint(lambda *_: None, ("127.0.0.1", 0))
        link = await asyncio.wait_for(reach_server(reach, silent, endpoint, relay=True), 5)
        try:
            assert link.via == "tls"
            answer_, source = await endpoint.request(request(Method.BINDING), silent, FAST)  # over TLS
            assert (answer_.message_class, source) == (MessageClass.SUCCESS, silent)
            if counter is not None:
                assert endpoint.counters[counter] == 1
            assert f"the server at 127.0.0.1:{silent[1]} did not answer over TCP ({why})" in caplog.messages
        finally:
            await link.close()
            await endpoint.close()


async def test_where_something_else_answers_over_tcp_and_there_is_no_tls_the_error_says_what(
    silent: Address,
) -> None:
    answer, _, why = IMPOSTORS["cut"]
    async with impostor(answer) as tcp:
        reach = Reach(tcp_at=tcp, trial=QUICK_TRIAL, connect_timeout=IMPOSTOR_TIMEOUT)
        endpoint = await open_endpoint(lambda *_: None, ("127.0.0.1", 0))
        with pytest.raises(PeerError) as caught:
            await asyncio.wait_for(reach_server(reach, silent, endpoint, relay=True), 5)
        await endpoint.close()
    assert str(caught.value) == (
        f"the server at 127.0.0.1:{silent[1]} cannot be reached: no answer over UDP (3 sends in 0.2 s); no answer "
        f"over TCP from 127.0.0.1:{tcp[1]} ({why}); is `punch server` running there, and does this network let TCP "
        "out to it (--server-tls HOST:443 where only the web gets out)?"
    )


async def test_a_server_reached_by_nothing_is_one_clear_error(silent: Address) -> None:
    tcp = ("127.0.0.1", closed_tcp_port())
    reach = Reach(tcp_at=tcp, tls=TlsServer("127.0.0.1", tcp[1]), trial=QUICK_TRIAL)
    endpoint = await open_endpoint(lambda *_: None, ("127.0.0.1", 0))
    with pytest.raises(PeerError) as caught:
        await reach_server(reach, silent, endpoint, relay=True)
    await endpoint.close()
    assert str(caught.value) == (
        f"the server at 127.0.0.1:{silent[1]} cannot be reached: no answer over UDP (3 sends in 0.2 s); no connection "
        f"over TCP to 127.0.0.1:{tcp[1]} (Connection refused); no connection over TLS to 127.0.0.1:{tcp[1]} "
        "(Connection refused); is `punch server` running there, and does this network let TCP out to it "
        "(--server-tls HOST:443 where only the web gets out)?"
    )


async def test_a_peer_that_may_not_relay_never_connects(served: Served, silent: Address) -> None:
    quick = RetransmitPolicy(rto=0.05, max_sends=2, last_wait=2.0)
    no_relay = at(
        silent, config(served.server, "10", "14", relay=False, reach=Reach(tcp_at=served.tcp), rendezvous=quick)
    )
    with pytest.raises(PeerError, match=r"did not answer our registration"):
        await run_peer(no_relay, texts(), lambda _: None)
    assert served.server.endpoint.counters["stream-accepted"] == 0


@contextlib.asynccontextmanager
async def cutter(target: Address, cut: asyncio.Event) -> AsyncIterator[Address]:
    """A TCP proxy on loopback to ``target``; once ``cut`` is set, it sends the client the first 3 bytes of a
    64-byte frame and ends the connection (a middlebox cutting it in the middle of a frame)."""
    tasks: set[asyncio.Task[None]] = set()

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Whole frames only, so that the cut's 3 bytes follow a frame's end."""
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                header = await reader.readexactly(2)
                writer.write(header + await reader.readexactly(int.from_bytes(header, "big")))

    async def serve(client_reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        server_reader, server = await asyncio.open_connection(*target)
        up = asyncio.ensure_future(pump(client_reader, server))
        down = asyncio.ensure_future(pump(server_reader, client))
        tasks.update((up, down))
        await cut.wait()
        down.cancel()
        client.write((64).to_bytes(2, "big") + b"\x00")
        client.write_eof()  # (a FIN after them: a cut, not a reset)
        await asyncio.wait((up,))  # reading what the client still sends until it closes, lest the kernel reset
        for writer in (client, server):
            writer.close()

    async with on_loopback(serve) as address:
        try:
            yield address
        finally:
            cut.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_connection_cut_in_the_middle_of_a_frame_ends_the_session_on_its_relay_at_once(served: Served) -> None:
    server, cut = served.server, asyncio.Event()
    async with cutter(served.tcp, cut) as through:
        over_tcp = config(server, "10", "14", reach=Reach(via=Via.TCP, tcp_at=through), upgrade_interval=60)
        over_udp = config(server, "14", "10", upgrade_interval=60)
        async with await Connection.open(over_tcp) as ten, await Connection.open(over_udp) as fourteen:
            await asyncio.gather(ten.establish(), fourteen.establish())
            assert (ten.path.kind, fourteen.path.kind) == ("relay", "relay")
            cut.set()
            with pytest.raises(PeerError) as caught:
                await asyncio.wait_for(ten.wait_closed(), 5)  # not the 7.5 s of unanswered keepalives
            assert ten.result.error == str(caught.value)
    assert str(caught.value) == (
        "the TCP connection to the server ended (cut in the middle of a frame (3 bytes of it came)): the relay "
        "through it is gone"
    )


async def test_from_the_relay_over_tcp_the_session_moves_to_a_direct_path(served: Served) -> None:
    server = served.server
    over_tcp = config(server, "10", "14", bind=("127.0.0.2", 0), reach=Reach(via=Via.TCP, tcp_at=served.tcp),
                      upgrade_interval=0.5)  # fmt: skip
    over_udp = config(server, "14", "10", bind=("127.0.0.3", 0), upgrade_interval=0.5)
    async with await Connection.open(over_tcp) as ten, await Connection.open(over_udp) as fourteen:
        await asyncio.gather(ten.establish(), fourteen.establish())
        assert (ten.path.kind, fourteen.path.kind) == ("relay", "relay")

        async def direct(connection: Connection) -> str:
            async for path in connection.path_changes():
                if path.kind != "relay":
                    return path.kind
            raise AssertionError("no more paths")

        kinds = await asyncio.wait_for(asyncio.gather(direct(ten), direct(fourteen)), 15)
        assert all(kind.startswith("direct") for kind in kinds)
        await ten.send_text("over the direct path")
        assert await asyncio.wait_for(anext(fourteen.texts()), 5) == "over the direct path"
        assert (ten.result.upgraded, ten.result.server_via) == (True, "tcp")


@pytest.mark.parametrize(
    ("host", "stranger", "why"),
    [
        ("127.0.0.1", True, "a certificate we do not trust (unable to get local issuer certificate)"),
        ("localhost", False, "a certificate we do not trust (Hostname mismatch, certificate is not valid for 'localhost'.)"),
    ],
    ids=["unknown-ca", "wrong-name"],
)  # fmt: skip
async def test_a_tls_server_whose_certificate_we_do_not_trust_is_refused(
    served: Served, tmp_path: Path, host: str, stranger: bool, why: str
) -> None:
    ca = Authority(tmp_path, "another CA").pem if stranger else served.authority.pem  # (another: did not sign it)
    reach = Reach(via=Via.TLS, tls=TlsServer(host, served.tls[1], ca))
    endpoint = await open_endpoint(lambda *_: None, ("127.0.0.1", 0))
    with pytest.raises(PeerError) as caught:
        await reach_server(reach, served.server.address, endpoint, relay=True)
    await endpoint.close()
    assert str(caught.value) == (
        f"the server at {reach.tls} presented {why}: refused; give --server-ca with the CA that signed it, or "
        "--server-pin with its SHA-256"
    )


async def test_a_pinned_certificate_is_all_a_peer_needs_and_another_is_refused(served: Served) -> None:
    endpoint = await open_endpoint(lambda *_: None, ("127.0.0.1", 0))
    try:
        link = await reach_server(served.over_tls(ca=False, pin=served.issued.sha256), served.server.address,
                                  endpoint, relay=True)  # fmt: skip
        assert link.via == "tls"
        await link.close()
        other = bytes(32)
        with pytest.raises(PeerError) as caught:
            await reach_server(served.over_tls(pin=other), served.server.address, endpoint, relay=True)
    finally:
        await endpoint.close()
    assert str(caught.value) == (
        f"the server at 127.0.0.1:{served.tls[1]} is refused: its certificate's SHA-256 is "
        f"{format_sha256(served.issued.sha256)}, not the pinned {format_sha256(other)} (--server-pin)"
    )


@pytest.mark.parametrize(
    ("sent", "counter"),
    [
        (b"\x00\x04abcd", "stream-short"),
        (b"\x7f\xff", "stream-long"),
        (frame(b"\x16\x03\x01" + bytes(40)), "stream-not-stun"),  # a TLS ClientHello's start, on the TCP port
        (frame(encode(request(Method.BINDING)))[:10], "stream-cut"),
    ],
    ids=["short", "long", "not-stun", "cut"],
)
async def test_a_bad_stream_is_counted_and_closed_and_the_server_serves_on(
    served: Served, sent: bytes, counter: str
) -> None:
    reader, writer = await asyncio.open_connection(*served.tcp)
    writer.write(sent)
    if counter == "stream-cut":
        writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the server closed it
    writer.close()
    await writer.wait_closed()
    assert served.server.endpoint.counters[counter] == 1
    reader, writer = await asyncio.open_connection(*served.tcp)
    assert (await binding_over(reader, writer)).message_class is MessageClass.SUCCESS
    writer.close()
    await writer.wait_closed()


async def test_a_stream_that_stalls_or_stays_silent_is_closed_in_time(served: Served) -> None:
    stalled_reader, stalled = await asyncio.open_connection(*served.tcp)
    stalled.write(frame(encode(request(Method.BINDING)))[:10])  # and nothing more
    silent_reader, silent_writer = await asyncio.open_connection(*served.tcp)
    assert await asyncio.wait_for(stalled_reader.read(), LIMITS.frame + 5) == b""
    assert await asyncio.wait_for(silent_reader.read(), LIMITS.idle + 5) == b""
    counters = served.server.endpoint.counters
    assert (counters["stream-stalled"], counters["stream-idle"]) == (1, 1)
    for writer in (stalled, silent_writer):
        writer.close()
        await writer.wait_closed()


async def test_beyond_its_connections_the_server_closes_a_new_one_at_once(served: Served) -> None:
    async with await listen_streams(
        served.server.endpoint, StreamListen(("127.0.0.1", 0), limits=StreamLimits(max_connections=1))
    ) as one:
        (address,) = one.addresses
        first = await asyncio.open_connection(*address)
        assert (await binding_over(*first)).message_class is MessageClass.SUCCESS
        second_reader, second = await asyncio.open_connection(*address)
        assert await asyncio.wait_for(second_reader.read(), 5) == b""
        assert served.server.endpoint.counters["stream-refused"] == 1
        for writer in (first[1], second):
            writer.close()
            await writer.wait_closed()


async def test_over_a_connection_a_request_is_sent_once(served: Served) -> None:
    frames: asyncio.Queue[bytes] = asyncio.Queue()

    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:  # reads, never answers
        with contextlib.suppress(asyncio.IncompleteReadError):
            while True:
                length = int.from_bytes(await reader.readexactly(2), "big")
                frames.put_nowait(await reader.readexactly(length))
        writer.close()

    endpoint = await open_endpoint(lambda *_: None, ("127.0.0.1", 0))
    policy = RetransmitPolicy(rto=0.05, backoff=1.0, max_sends=4, last_wait=2.0)  # over UDP: 4 sends in 0.25 s
    try:
        async with on_loopback(deaf) as address:
            stream = await open_stream(*address, Counter())
            endpoint.carry(("127.0.0.1", 9), stream.send)
            started = asyncio.get_running_loop().time()
            with pytest.raises(TransactionTimeout, match=r"after 1 sends$"):
                await endpoint.request(request(Method.BINDING), ("127.0.0.1", 9), policy)
            assert asyncio.get_running_loop().time() - started >= policy.total() - 0.01  # the same deadline
            await stream.close()
    finally:
        await endpoint.close()
    assert frames.qsize() == 1


async def test_after_a_connection_ends_nothing_for_it_leaves_over_udp(served: Served) -> None:
    """The relay's packets for a peer whose connection ended are dropped and counted, not sent as datagrams to its
    TCP address."""
    server = served.server

    def to_ten(message: Message, source: Address, data: bytes) -> None:
        ten.on_request(message, source)

    def to_fourteen(message: Message, source: Address, data: bytes) -> None:
        fourteen.on_request(message, source)

    ten_endpoint, ten_keys = await peer_socket(to_ten)
    link: ServerLink = await reach_server(
        Reach(via=Via.TCP, tcp_at=served.tcp), server.address, ten_endpoint, relay=True
    )
    ten = RendezvousClient(ten_endpoint, server.address, "10", (), policy=FAST, credentials=ten_keys.request)
    fourteen_endpoint, fourteen_keys = await peer_socket(to_fourteen)
    fourteen = RendezvousClient(
        fourteen_endpoint, server.address, "14", (), policy=FAST, credentials=fourteen_keys.request
    )
    await ten.register()
    await fourteen.register()
    await ten.connect("14")
    await fourteen.connect("10")
    session = await asyncio.wait_for(asyncio.shield(fourteen.introduction), 5)
    keyed(fourteen_keys, fourteen, session)
    await link.close()  # 10's connection ends; its registration lives on until its lease ends
    packet = Message(Method.RELAY, MessageClass.INDICATION, new_transaction_id(), (
        (AttributeType.PEER_ID, "14"), (AttributeType.SESSION_ID, session.session_id),
        (AttributeType.DATA_PAYLOAD, b"\xc0for 10"),
    ))  # fmt: skip
    gone = server.endpoint.counters["stream-gone"]
    fourteen_endpoint.send(packet, server.address)
    await fourteen_endpoint.request(request(Method.BINDING), server.address, FAST)  # the server has handled it
    assert server.endpoint.counters["relayed"] == 1
    assert server.endpoint.counters["stream-gone"] == gone + 1
    for endpoint in (ten_endpoint, fourteen_endpoint):
        await endpoint.close()
