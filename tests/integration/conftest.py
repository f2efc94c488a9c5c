"""Loopback fixtures: a rendezvous server started in-process on an ephemeral port, and what peer tests share."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from collections.abc import AsyncIterator

import pytest_asyncio

from punch.peer.client import RendezvousClient
from punch.peer.config import PeerConfig
from punch.peer.keys import SessionKeys
from punch.peer.puncher import PunchTimings
from punch.rendezvous.server import RendezvousServer
from punch.stun import Address, Message
from punch.stun.protocol import open_endpoint
from punch.stun.transaction import RetransmitPolicy

FAST = RetransmitPolicy(rto=0.05, backoff=2.0, max_rto=0.4, max_sends=7, last_wait=4.0)


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def rendezvous_client(server: tuple[str, int], me: str) -> RendezvousClient:
    """A peer's client to ``server`` alone (no session): on its own loopback socket, the server's requests to it."""
    clients: list[RendezvousClient] = []

    def to_client(message: Message, source: Address, data: bytes) -> None:
        clients[0].on_request(message, source)

    keys = SessionKeys()
    endpoint = await open_endpoint(to_client, ("127.0.0.1", 0), keys=keys.get)
    clients.append(RendezvousClient(endpoint, server, me, (endpoint.local_address,), policy=FAST, keys=keys))
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
