"""The Python API (punch.api) on loopback, the server in-process: two programs connect and use streams, datagrams,
texts, files and forwards; one waits for any peer it allows and refuses the others."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

import punch
from punch.api import Connection, PathInfo
from punch.errors import PeerError, UsageError
from punch.identity.keyfile import Identity
from punch.peer.config import PeerConfig
from punch.peer.puncher import PunchTimings
from punch.rendezvous.server import RendezvousServer
from punch.tunnel.spec import Forward, Target
from tests.integration.conftest import FAST

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

LOOPBACK: dict[str, Any] = {
    "bind": ("127.0.0.1", 0),
    "rendezvous": FAST,
    "punch": PunchTimings(timeout=3.0),
    "timeout": 5.0,
}


@asynccontextmanager
async def pair(
    server: RendezvousServer, **extra: Any
) -> AsyncIterator[tuple[Connection, Connection, Identity, Identity]]:
    """alice and bob connected to each other through ``server``; ``extra`` for bob."""
    alice, bob = Identity.generate(), Identity.generate()
    async with AsyncExitStack() as stack:
        connections = await asyncio.gather(
            stack.enter_async_context(
                punch.connect(server.address, "bob", me="alice", identity=alice, pin=bob.fingerprint, **LOOPBACK)
            ),
            stack.enter_async_context(
                punch.connect(
                    server.address, "alice", me="bob", identity=bob, pin=alice.fingerprint, **LOOPBACK, **extra
                )
            ),
        )
        yield connections[0], connections[1], alice, bob


async def test_two_programs_connect_and_know_each_other_by_key(server: RendezvousServer) -> None:
    async with pair(server) as (alice, bob, alice_key, bob_key):
        assert (alice.peer, bob.peer) == ("bob", "alice")
        assert (alice.peer_key, bob.peer_key) == (bob_key.fingerprint, alice_key.fingerprint)
        assert alice.path.kind in ("direct", "direct-lan")
        assert alice.path == PathInfo(alice.path.kind, f"127.0.0.1:{str(bob.result.local).rsplit(':', 1)[1]}")


async def test_streams_either_way_carry_bytes_in_order_with_their_ends(server: RendezvousServer) -> None:
    async with pair(server) as (alice, bob, _, _):
        reader, writer = await alice.open_stream()
        payload = os.urandom(3 << 20)
        writer.write(payload)
        writer.write_eof()
        their_reader, their_writer = await asyncio.wait_for(bob.accept_stream(), 5)
        got = await asyncio.wait_for(their_reader.read(), 10)
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
        their_writer.write(b"thanks")
        their_writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b"thanks"
        # the other way, opened by bob
        _, back = await bob.open_stream()
        back.write(b"from bob")
        back.write_eof()
        incoming, _ = await asyncio.wait_for(alice.accept_stream(), 5)
        assert await asyncio.wait_for(incoming.read(), 5) == b"from bob"


async def test_datagrams_arrive_as_sent_and_a_too_large_one_is_refused_here(server: RendezvousServer) -> None:
    async with pair(server) as (alice, bob, _, _):
        assert 1000 <= alice.max_datagram_size < 1500
        assert alice.send_datagram(b"ping") is True
        assert await asyncio.wait_for(bob.receive_datagram(), 5) == b"ping"
        bob.send_datagram(b"\x00" * bob.max_datagram_size)
        assert await asyncio.wait_for(alice.receive_datagram(), 5) == b"\x00" * bob.max_datagram_size
        with pytest.raises(ValueError, match="at most"):
            alice.send_datagram(bytes(alice.max_datagram_size + 1))


async def test_texts_are_acknowledged_and_end_when_the_other_is_done(server: RendezvousServer) -> None:
    async with pair(server) as (alice, bob, _, _):
        await alice.send_text("hello")
        await alice.send_text("bye")
        await alice.done_sending()
        assert [text async for text in bob.texts()] == ["hello", "bye"]
        assert bob.result.received == ["hello", "bye"]


async def test_a_file_arrives_whole_under_its_name(server: RendezvousServer, tmp_path: Path) -> None:
    source, inbox = tmp_path / "out" / "data.bin", tmp_path / "in"
    source.parent.mkdir()
    inbox.mkdir()
    source.write_bytes(os.urandom(1 << 20))
    async with pair(server) as (alice, bob, _, _):
        received = bob.receive_files(inbox)
        digest = await asyncio.wait_for(alice.send_file(source), 10)
        assert await asyncio.wait_for(received, 5) == inbox / "data.bin"
        assert hashlib.sha256((inbox / "data.bin").read_bytes()).hexdigest() == digest
        with pytest.raises(PeerError, match="exists; it is not overwritten"):
            await alice.send_file(source)


async def test_a_forward_reaches_only_what_the_other_side_allows(server: RendezvousServer) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read())
        await writer.drain()
        writer.close()

    target = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = target.sockets[0].getsockname()[1]
    allowed = Target("tcp", "127.0.0.1", port)
    async with target, pair(server, allow=[allowed]) as (alice, _, _, _):
        local = free_tcp_port()
        await alice.forward(Forward(local, allowed))
        reader, writer = await asyncio.open_connection("127.0.0.1", local)
        writer.write(b"through the tunnel")
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b"through the tunnel"
        writer.close()
        refused = free_tcp_port()
        await alice.forward(Forward(refused, Target("tcp", "127.0.0.1", port + 1)))
        reader, writer = await asyncio.open_connection("127.0.0.1", refused)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed: the other side refused it
        writer.close()


async def test_a_forward_listens_before_the_session_and_carries_what_connected_meanwhile(
    server: RendezvousServer,
) -> None:
    """alice's forward listens before she even registers; a client connects and writes at once; its bytes wait and
    go as soon as the session is up (bob, the target's side, starts only after the client has written)."""
    target = await asyncio.start_server(echo_all, "127.0.0.1", 0)
    allowed = Target("tcp", "127.0.0.1", target.sockets[0].getsockname()[1])
    alice_key, bob_key = Identity.generate(), Identity.generate()

    def config(me: Identity, other: Identity, name: str, target_name: str) -> PeerConfig:
        return PeerConfig(server.address, name, target_name, identity=me, pin=other.fingerprint, **LOOPBACK)

    local = free_tcp_port()
    async with target, AsyncExitStack() as stack:
        alice = await Connection.open(config(alice_key, bob_key, "alice", "bob"))
        stack.push_async_callback(alice.close)
        await alice.forward(Forward(local, allowed))
        reader, writer = await asyncio.open_connection("127.0.0.1", local)  # listening, before any session
        writer.write(b"written before the punch")
        writer.write_eof()
        bob = await Connection.open(config(bob_key, alice_key, "bob", "alice"), [allowed])
        stack.push_async_callback(bob.close)
        await asyncio.gather(alice.establish(), bob.establish())
        assert await asyncio.wait_for(reader.read(), 5) == b"written before the punch"
        writer.close()


async def test_a_forwards_connection_ends_when_the_session_never_comes_up(server: RendezvousServer) -> None:
    identity = Identity.generate()
    config = PeerConfig(server.address, "alice", "nobody", identity=identity, **{**LOOPBACK, "timeout": 0.5})
    local = free_tcp_port()
    alice = await Connection.open(config)
    try:
        await alice.forward(Forward(local, Target("tcp", "127.0.0.1", 9)))
        reader, writer = await asyncio.open_connection("127.0.0.1", local)
        writer.write(b"in vain")
        with pytest.raises(PeerError, match="nobody"):
            await alice.establish()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed: no session to carry it
        writer.close()
    finally:
        await alice.close()


async def echo_all(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(await reader.read())
    await writer.drain()
    writer.close()


async def test_accept_takes_the_first_allowed_peer_and_refuses_the_others(server: RendezvousServer) -> None:
    me, friend, stranger = Identity.generate(), Identity.generate(), Identity.generate()
    ready = asyncio.Event()

    async def listen() -> tuple[str, str, list[str]]:
        async with punch.accept(server.address, allow_keys=[friend.fingerprint], me="home", identity=me,
                                **LOOPBACK | {"timeout": 15.0}) as conn:  # fmt: skip
            ready.set()
            return conn.peer, conn.peer_key, [text async for text in conn.texts()]

    async def call(identity: Identity, me_as: str) -> None:
        async with punch.connect(server.address, "home", me=me_as, identity=identity, **LOOPBACK) as conn:
            await conn.send_text(f"hello from {me_as}")
            await conn.done_sending()
            await conn.wait_closed()

    listening = asyncio.create_task(listen())
    with pytest.raises(PeerError):  # the stranger's key is not allowed: home never answers it
        await call(stranger, "stranger")
    assert not ready.is_set()
    calling = asyncio.create_task(call(friend, "friend"))
    assert await asyncio.wait_for(listening, 20) == ("friend", friend.fingerprint, ["hello from friend"])
    await asyncio.wait_for(calling, 10)


async def test_accept_without_allowed_keys_is_a_usage_error(server: RendezvousServer) -> None:
    with pytest.raises(UsageError, match="allow_keys"):
        async with punch.accept(server.address, allow_keys=[]):
            pass


async def test_an_unknown_option_names_itself(server: RendezvousServer) -> None:
    with pytest.raises(UsageError, match="no_such_thing"):
        async with punch.connect(server.address, "bob", me="alice", identity=Identity.generate(), no_such_thing=1):
            pass


def free_tcp_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
