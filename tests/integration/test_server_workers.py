"""`--workers 2` on loopback: two processes on one port, Binding answered by both, one registry.

The kernel spreads the 32 client sockets over both workers by a hash of their ports; 16 pairs of peers then
find each other. Were registrations kept per worker, every pair split across the two would fail to meet.
Skipped where punch._fastpath is not built.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from punch.identity.keyfile import Identity
from punch.rendezvous.server import serve
from punch.rendezvous.workers import frame, unframe
from punch.stun import Address, AttributeType, Message, MessageClass, Method, decode, encode, new_transaction_id
from punch.stun.fastpath import load
from tests.integration.conftest import Client, registration_of, wish

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

IDENTITY = Identity.generate()  # one key for every peer here: the server only passes keys on

if load() is None:
    pytest.skip("punch._fastpath is not built here (or PUNCH_NO_FASTPATH is set)", allow_module_level=True)


async def ask(
    transport: asyncio.DatagramTransport, client: Client, message: Message, key: bytes | None = None
) -> Message:
    """Send ``message`` (signed with ``key``); its response (server pushes on the way are skipped)."""
    transport.sendto(encode(message, integrity_sha256_key=key))
    while (reply := decode(await asyncio.wait_for(client.queue.get(), 5))).transaction_id != message.transaction_id:
        continue
    return reply


def worker_children() -> list[int]:
    """Our child processes that run a Binding worker."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == os.getpid() and b"punch.rendezvous.workers" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


@pytest_asyncio.fixture
async def two_workers() -> AsyncIterator[Address]:
    ready: asyncio.Future[Address] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(("127.0.0.1", 0), rate_limit=0, workers=2, ready=ready.set_result))
    address = await asyncio.wait_for(ready, 10)
    assert len(worker_children()) == 1
    yield address
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert worker_children() == []


async def test_two_workers_share_the_port_and_one_registry(two_workers: Address) -> None:
    loop = asyncio.get_running_loop()
    clients = [
        await loop.create_datagram_endpoint(
            Client, local_addr=("127.0.0.1", 0), remote_addr=two_workers, family=socket.AF_INET
        )
        for _ in range(32)
    ]
    try:
        for transport, client in clients:
            reply = await ask(transport, client, Message(Method.BINDING, MessageClass.REQUEST, new_transaction_id()))
            assert reply.address(AttributeType.XOR_MAPPED_ADDRESS) == transport.get_extra_info("sockname")
        tokens = []
        for index, (transport, client) in enumerate(clients):
            register = Message.request(Method.REGISTER, registration_of(f"p{index}", IDENTITY))
            tokens.append((await ask(transport, client, register)).raw(AttributeType.REGISTRATION_TOKEN))
        statuses = []
        for index, (transport, client) in enumerate(clients):
            other = index ^ 1  # p0 <-> p1, p2 <-> p3, ...
            connect = Message.request(Method.CONNECT, wish(f"p{index}", f"p{other}", IDENTITY))
            statuses.append((await ask(transport, client, connect, tokens[index])).text(AttributeType.STATUS))
        assert statuses == [f"waiting for p{i ^ 1}" if i % 2 == 0 else "introducing" for i in range(32)]
    finally:
        for transport, _ in clients:
            transport.close()


@pytest.mark.parametrize(
    ("source", "expected"),
    [(("127.0.0.1", 40000), ("127.0.0.1", 40000)), (("2001:db8::1", 3478, 0, 0), ("2001:db8::1", 3478))],
)
async def test_a_forwarded_datagram_keeps_its_source(source: tuple[str, int], expected: Address) -> None:
    assert unframe(frame(b"\x00\x01 stun", source)) == (b"\x00\x01 stun", expected)


async def test_a_garbled_frame_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^a 3-byte frame that is neither D nor C$"):
        unframe(b"Xyz")
