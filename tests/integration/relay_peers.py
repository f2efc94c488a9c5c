"""Peers of the relay tests: a registered peer on its own socket that sends Relay indications by hand and keeps the
indications it gets."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from punch.peer.client import RendezvousClient
from punch.peer.keys import PeerKeys
from punch.stun import Address, AttributeType, Message, MessageClass, Method, new_transaction_id
from punch.stun.protocol import StunEndpoint
from punch.stun.wire import Introduction, request
from tests.integration.conftest import FAST, peer_socket


@dataclass
class Peer:
    """A registered peer on its own socket; the indications it gets go to ``inbox``."""

    endpoint: StunEndpoint
    client: RendezvousClient
    inbox: asyncio.Queue[Message]
    keys: PeerKeys

    async def introduced(self, target: str) -> Introduction:
        await self.client.connect(target)
        return await asyncio.wait_for(asyncio.shield(self.client.introduction), 5)

    def packet(
        self, session_id: bytes, payload: bytes | None, me: str | None = None, ticket: bytes | None = None
    ) -> Message:
        """A Relay indication of ``session_id`` (in ``me``'s name: ours by default), with ``ticket`` if given (a relay
        at another server); without ``payload``, an opening."""
        return Message(
            Method.RELAY,
            MessageClass.INDICATION,
            new_transaction_id(),
            (
                (AttributeType.PEER_ID, me or self.client.peer_id),
                (AttributeType.SESSION_ID, session_id),
                *(((AttributeType.RELAY_TICKET, ticket),) if ticket is not None else ()),
                *(((AttributeType.DATA_PAYLOAD, payload),) if payload is not None else ()),
            ),
        )

    async def synced(self, server: Address) -> None:
        """Once the server answers a Binding sent after them, it has handled everything we sent before."""
        await self.endpoint.request(request(Method.BINDING), server, FAST)


async def peer(server: Address, peer_id: str) -> Peer:
    inbox: asyncio.Queue[Message] = asyncio.Queue()

    def handle(message: Message, source: Address, data: bytes) -> None:
        if message.message_class is MessageClass.REQUEST:
            client.on_request(message, source)
        elif message.message_class is MessageClass.INDICATION:
            inbox.put_nowait(message)

    endpoint, keys = await peer_socket(handle)
    client = RendezvousClient(endpoint, server, peer_id, (), policy=FAST, credentials=keys.request)
    await client.register()
    return Peer(endpoint, client, inbox, keys)
