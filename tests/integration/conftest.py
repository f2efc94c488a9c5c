"""Loopback fixtures: a rendezvous server started in-process on an ephemeral port, and what peer tests share."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from bench import redis_nodes
from punch.identity.agreement import OwnShare
from punch.identity.keyfile import Identity
from punch.peer.client import RendezvousClient
from punch.peer.config import PeerConfig
from punch.peer.keys import PeerKeys, RequestKey
from punch.peer.puncher import PunchTimings
from punch.rendezvous.server import RendezvousServer
from punch.stun import Address, AttributeType, Message
from punch.stun.protocol import Handler, StunEndpoint, open_endpoint
from punch.stun.transaction import RetransmitPolicy
from punch.stun.wire import Introduction

FAST = RetransmitPolicy(rto=0.05, backoff=2.0, max_rto=0.4, max_sends=7, last_wait=4.0)


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def peer_socket(handler: Handler) -> tuple[StunEndpoint, PeerKeys]:
    """A loopback socket signing and checking as a peer's does (punch.peer.keys): give ``keys.request`` to its
    client, and each session's key (:func:`keyed`) once introduced."""
    keys = PeerKeys(RequestKey())
    return await open_endpoint(handler, ("127.0.0.1", 0), keys=keys), keys


def keyed(keys: PeerKeys, client: RendezvousClient, introduction: Introduction) -> bytes:
    """The session's key, as the peer derives it, added to ``keys``."""
    key = client.session_key(introduction)
    assert key is not None, "the other's key share does not check out"
    keys.add(introduction.session_id, key)
    return key


async def rendezvous_client(server: tuple[str, int], me: str) -> RendezvousClient:
    """A peer's client to ``server`` alone (no session): on its own loopback socket, the server's requests to it."""
    clients: list[RendezvousClient] = []

    def to_client(message: Message, source: Address, data: bytes) -> None:
        clients[0].on_request(message, source)

    endpoint, keys = await peer_socket(to_client)
    clients.append(
        RendezvousClient(endpoint, server, me, (endpoint.local_address,), policy=FAST, credentials=keys.request)
    )
    return clients[0]


async def texts(*items: str) -> AsyncIterator[str]:
    for item in items:
        yield item


def peer_config(server: RendezvousServer, me: str, other: str, **overrides: object) -> PeerConfig:
    """A peer on loopback that talks to ``server`` with fast retransmissions; ``overrides`` replace fields."""
    base = PeerConfig(
        server=server.address,
        peer_id=me,
        target=other,
        bind=("127.0.0.1", 0),
        timeout=5.0,
        punch=PunchTimings(timeout=3.0),
        linger=0.1,
        rendezvous=FAST,
    )
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


class Client(asyncio.DatagramProtocol):
    """A plain UDP socket's protocol: every datagram it receives goes into ``queue``."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.queue.put_nowait(data)


class LogLine(logging.Handler):
    """An event set when the server logs a line containing ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


@pytest_asyncio.fixture
async def server() -> AsyncIterator[RendezvousServer]:
    async with RendezvousServer(push_policy=FAST) as running:
        await running.start(("127.0.0.1", 0))
        yield running
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not [t for t in leftover if "RendezvousServer" in repr(t)], leftover


def registration_of(peer_id: str, identity: Identity, *attributes: tuple[int, object]) -> list[tuple[int, object]]:
    """A Register's attributes for ``peer_id`` with ``identity``'s public key (a peer that can be introduced)."""
    return [(AttributeType.PEER_ID, peer_id), *attributes, (AttributeType.PUBLIC_KEY, identity.public_key)]


def wish(me: str, target: str, identity: Identity) -> list[tuple[int, object]]:
    """A Connect's attributes: ``me`` asks for ``target``, with a fresh key share signed by ``identity``."""
    share = OwnShare(identity, me, target).public
    return [(AttributeType.PEER_ID, me), (AttributeType.TARGET_ID, target), *share.attributes()]


# -- servers sharing a registry in Redis (punch server --registry) -----------------------------------------


def need_redis() -> None:
    """Skip where redis-server is not installed (fail instead with PUNCH_REQUIRE_REDIS=1)."""
    reason = redis_nodes.missing()
    if reason is None:
        return
    if os.environ.get("PUNCH_REQUIRE_REDIS") == "1":
        pytest.fail(f"PUNCH_REQUIRE_REDIS=1, but {reason}")
    pytest.skip(reason)


@pytest.fixture
def redis_url() -> Iterator[str]:
    need_redis()
    with redis_nodes.single() as node:
        yield node.url


@pytest.fixture
def redis_node() -> Iterator[redis_nodes.RedisNode]:
    need_redis()
    with redis_nodes.single() as node:
        yield node


async def shared_server(url: str, name: str) -> RendezvousServer:
    server = RendezvousServer(push_policy=FAST, shared_registry=url, name=name)
    await server.start(("127.0.0.1", 0))
    return server


@pytest_asyncio.fixture
async def two_servers(redis_url: str) -> AsyncIterator[tuple[RendezvousServer, RendezvousServer]]:
    first, second = await shared_server(redis_url, "A"), await shared_server(redis_url, "B")
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()
