"""The server sends the two Introduces while it handles the Connect that made the match, with its answer to that
Connect (in the same batch on the C fast path), not at a later turn of its loop: they are punch time."""

from __future__ import annotations

import asyncio

import pytest

from punch.rendezvous.server import RendezvousServer
from punch.stun import Address, Message, MessageClass, Method
from punch.stun.message import decode
from tests.integration.conftest import FAST, rendezvous_client

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


@pytest.mark.parametrize("fast_path", [True, False], ids=["C fast path", "Python"])
async def test_the_introductions_are_sent_while_the_matching_connect_is_handled(fast_path: bool) -> None:
    async with RendezvousServer(push_policy=FAST, accelerate=fast_path) as server:
        await server.start(("127.0.0.1", 0))
        sent: list[tuple[Method, MessageClass]] = []
        send_bytes = server.endpoint.send_bytes

        def noted(data: bytes, remote: Address) -> None:
            message = decode(data)
            sent.append((Method(message.method), message.message_class))
            send_bytes(data, remote)

        server.endpoint.send_bytes = noted  # type: ignore[method-assign]
        during: list[list[tuple[Method, MessageClass]]] = []
        handle = server._on_connect

        def handled(message: Message, source: Address, data: bytes) -> None:
            before = len(sent)
            handle(message, source, data)
            during.append(sent[before:])

        server._on_connect = handled  # type: ignore[method-assign]
        ten, fourteen = await rendezvous_client(server.address, "10"), await rendezvous_client(server.address, "14")
        await ten.register()
        await fourteen.register()
        await ten.connect("14")
        await asyncio.wait_for(asyncio.gather(fourteen.introduced_to("10"), ten.introduction), 5)
        assert during == [
            [(Method.CONNECT, MessageClass.SUCCESS)],  # "waiting for 14"
            [(Method.CONNECT, MessageClass.SUCCESS), *[(Method.INTRODUCE, MessageClass.REQUEST)] * 2],
        ]
        for peer in (ten, fourteen):
            await peer._endpoint.close()
