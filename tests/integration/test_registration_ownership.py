"""First come, first served: an ID belongs to its first registrant until its lease ends or it says goodbye."""

from __future__ import annotations

import asyncio

import pytest

from punch.errors import PeerError
from punch.identity.agreement import OwnShare
from punch.identity.keyfile import Identity
from punch.peer.client import RendezvousClient
from punch.rendezvous.server import RendezvousServer
from punch.stun import AttributeType, MessageClass, Method
from punch.stun.credentials import group_key, request_key
from punch.stun.protocol import StunEndpoint, open_endpoint
from punch.stun.wire import request
from tests.integration.conftest import FAST

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def endpoint() -> StunEndpoint:
    return await open_endpoint(lambda m, s, d: None, ("127.0.0.1", 0))


async def test_a_second_registrant_cannot_take_a_live_id(server: RendezvousServer) -> None:
    owner_socket, thief_socket = await endpoint(), await endpoint()
    owner = RendezvousClient(owner_socket, server.address, "10", (), policy=FAST)
    await owner.register()
    steal = request(Method.REGISTER, (AttributeType.PEER_ID, "10"), (AttributeType.LEASE, 30))
    answer, _ = await thief_socket.request(steal, server.address, FAST)
    error = answer.error_code()
    assert answer.message_class is MessageClass.ERROR
    assert error is not None
    assert error.code == 401
    assert error.reason == "ID 10 is taken for 30 s; choose another"
    forged = request(Method.REGISTER, (AttributeType.PEER_ID, "10"))
    answer, _ = await thief_socket.request(forged, server.address, FAST, integrity_key=b"\x00" * 16)
    assert answer.message_class is MessageClass.ERROR
    ask = request(Method.CONNECT, (AttributeType.PEER_ID, "10"), (AttributeType.TARGET_ID, "14"))
    answer, _ = await thief_socket.request(ask, server.address, FAST)
    error = answer.error_code()
    assert error is not None
    assert error.code == 401
    registration = server.registry.lookup("10", asyncio.get_running_loop().time())
    assert registration is not None
    assert registration.observed == owner_socket.local_address
    assert server.endpoint.counters["unauthorized"] == 3
    # The owner's own refresh, signed with its token, still works.
    assert await owner.register() == owner_socket.local_address
    for socket in (owner_socket, thief_socket):
        await socket.close()


async def test_goodbye_frees_the_id_at_once(server: RendezvousServer) -> None:
    first_socket, second_socket = await endpoint(), await endpoint()
    first = RendezvousClient(first_socket, server.address, "10", (), policy=FAST)
    await first.register()
    await first.unregister()
    assert server.registry.lookup("10", asyncio.get_running_loop().time()) is None
    second = RendezvousClient(second_socket, server.address, "10", (), policy=FAST)
    assert await second.register() == second_socket.local_address
    for socket in (first_socket, second_socket):
        await socket.close()


async def test_a_closed_group_serves_members_only() -> None:
    group = group_key(b"correct horse battery staple")
    async with RendezvousServer(group=group) as closed:
        await closed.start(("127.0.0.1", 0))
        member_socket, stranger_socket = await endpoint(), await endpoint()
        member = RendezvousClient(member_socket, closed.address, "10", (), policy=FAST, group=group)
        assert await member.register() == member_socket.local_address
        assert await member.connect("14") == "waiting for 14 to register"
        stranger = RendezvousClient(stranger_socket, closed.address, "66", (), policy=FAST)
        with pytest.raises(PeerError) as refused:
            await stranger.register()
        assert str(refused.value) == ("the server refused our registration: 401 closed group: sign with --secret-file")
        outsider = RendezvousClient(stranger_socket, closed.address, "67", (), policy=FAST, group=group_key(b"x" * 16))
        with pytest.raises(PeerError, match="401"):
            await outsider.register()
        for socket in (member_socket, stranger_socket):
            await socket.close()


async def test_a_full_table_refuses_new_ids_with_508() -> None:
    async with RendezvousServer(max_registrations=1) as small:
        await small.start(("127.0.0.1", 0))
        first, second = await endpoint(), await endpoint()
        await RendezvousClient(first, small.address, "10", (), policy=FAST).register()
        with pytest.raises(PeerError, match="508 Insufficient Capacity; try again later"):
            await RendezvousClient(second, small.address, "14", (), policy=FAST).register()
        assert small.endpoint.counters["table-full"] == 1
        for socket in (first, second):
            await socket.close()


async def test_asking_for_the_longest_possible_id_gets_a_status_that_fits(server: RendezvousServer) -> None:
    socket = await endpoint()
    client = RendezvousClient(socket, server.address, "10", (), policy=FAST)
    await client.register()
    status = await client.connect("\u00e9" * 64)  # 128 bytes of UTF-8: the longest ID
    assert status.startswith("waiting for \u00e9")
    assert len(status.encode()) <= 128
    await socket.close()


async def test_a_retransmitted_first_register_gets_the_same_answer(server: RendezvousServer) -> None:
    """The first Register's answer was lost, so the client sends the same request again (same transaction ID,
    still unsigned): the server answers it again with the same token, rather than refusing its own owner."""
    owner_socket, thief_socket = await endpoint(), await endpoint()
    first = request(Method.REGISTER, (AttributeType.PEER_ID, "10"), (AttributeType.LEASE, 30))
    answers = [(await owner_socket.request(first, server.address, FAST))[0] for _ in range(2)]
    assert [a.message_class for a in answers] == [MessageClass.SUCCESS] * 2
    tokens = {a.raw(AttributeType.REGISTRATION_TOKEN) for a in answers}
    assert len(tokens) == 1
    assert None not in tokens
    # The same bytes from another source are a second registrant, not a retransmission.
    answer, _ = await thief_socket.request(first, server.address, FAST)
    error = answer.error_code()
    assert error is not None
    assert error.code == 401
    for socket in (owner_socket, thief_socket):
        await socket.close()


async def test_a_retransmitted_connect_after_the_match_is_answered_again_not_matched_again(
    server: RendezvousServer,
) -> None:
    """Both Connects' answers were lost (RFC 8489 §6.3.1): their retransmissions, the same transaction IDs, get
    "introducing" again, and the two peers stay in the one session they were introduced to."""
    sockets, keys = [], []
    identities = {peer_id: Identity.generate() for peer_id in ("10", "14")}
    for peer_id in ("10", "14"):
        socket = await endpoint()
        first = request(
            Method.REGISTER,
            (AttributeType.PEER_ID, peer_id),
            (AttributeType.LEASE, 30),
            (AttributeType.PUBLIC_KEY, identities[peer_id].public_key),
        )
        answer, _ = await socket.request(first, server.address, FAST)
        sockets.append(socket)
        keys.append(request_key(None, answer.raw(AttributeType.REGISTRATION_TOKEN)))
    asks = [
        request(
            Method.CONNECT,
            (AttributeType.PEER_ID, me),
            (AttributeType.TARGET_ID, other),
            *OwnShare(identities[me], me, other).public.attributes(),
        )
        for me, other in (("10", "14"), ("14", "10"))
    ]

    async def connect(index: int) -> str | None:
        answer, _ = await sockets[index].request(asks[index], server.address, FAST, integrity_key=keys[index])
        return answer.text(AttributeType.STATUS)

    assert await connect(0) == "waiting for 14"
    assert await connect(1) == "introducing"
    assert [await connect(1), await connect(0)] == ["introducing", "introducing"]
    assert len(server.registry.sessions) == 1
    # A new Connect (a new transaction: the peer asks again on purpose, e.g. after a rejoin) is a new wish.
    again = request(
        Method.CONNECT,
        (AttributeType.PEER_ID, "10"),
        (AttributeType.TARGET_ID, "14"),
        *OwnShare(identities["10"], "10", "14").public.attributes(),
    )
    answer, _ = await sockets[0].request(again, server.address, FAST, integrity_key=keys[0])
    assert answer.text(AttributeType.STATUS) == "waiting for 14"
    for socket in sockets:
        await socket.close()
