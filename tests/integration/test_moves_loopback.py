"""The pieces of a move (punch.peer.moving) on loopback: a refused datagram seen on the socket, Move and the moved
Ready through a real server, and a Go or Move that comes before its Introduce."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest

from punch.errors import PeerError, PeerGone
from punch.peer.client import RendezvousClient
from punch.peer.dispatch import Dispatcher
from punch.peer.moving import Moves
from punch.peer.puncher import Puncher, PunchTimings
from punch.rendezvous.server import RendezvousServer
from punch.stun import Address, AttributeType, Message, MessageClass, Method, decode, encode
from punch.stun.protocol import Handler, StunEndpoint, open_endpoint
from punch.stun.wire import Introduction, KeyShare, Role, request
from tests.integration.conftest import FAST, free_port, peer_socket

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

NO_SHARE = KeyShare(bytes(32), bytes(64))  # these tests never derive a session key


def binding() -> Message:
    return request(Method.BINDING)


async def test_a_datagram_to_a_closed_port_is_reported_refused_and_the_next_send_still_leaves() -> None:
    refused: asyncio.Queue[tuple[Address, str]] = asyncio.Queue()
    received: asyncio.Queue[Address] = asyncio.Queue()
    endpoint = await open_endpoint(lambda m, s, d: None, ("127.0.0.1", 0))
    listener = await open_endpoint(lambda m, s, d: received.put_nowait(s), ("127.0.0.1", 0))
    closed = ("127.0.0.1", free_port("127.0.0.1"))
    assert endpoint.watch_refusals(lambda destination, offender: refused.put_nowait((destination, offender)))
    for _ in range(3):  # loopback answers at once: each send after the first finds the last refusal pending
        endpoint.send(binding(), closed)
        endpoint.send(binding(), listener.local_address)
    for _ in range(3):
        assert await asyncio.wait_for(refused.get(), 2) == (closed, "127.0.0.1")
        assert await asyncio.wait_for(received.get(), 2) == endpoint.local_address
    assert endpoint.counters["refused"] == 3
    endpoint.unwatch_refusals()
    endpoint.send(binding(), closed)
    endpoint.send(binding(), listener.local_address)
    assert await asyncio.wait_for(received.get(), 2) == endpoint.local_address  # after the one sent to `closed`
    assert refused.empty()
    assert endpoint.counters["refused"] == 3
    await endpoint.close()
    await listener.close()


def to_client(clients: list[RendezvousClient]) -> Handler:
    """An endpoint's handler that hands what comes to the client that ``clients`` holds by then."""

    def handle(message: Message, source: Address, data: bytes) -> None:
        clients[0].on_request(message, source)

    return handle


async def registered(server: RendezvousServer, me: str) -> tuple[RendezvousClient, StunEndpoint]:
    clients: list[RendezvousClient] = []
    endpoint, keys = await peer_socket(to_client(clients))
    client = RendezvousClient(
        endpoint, server.address, me, (endpoint.local_address,), policy=FAST, credentials=keys.request
    )
    clients.append(client)
    await clients[0].register()
    return clients[0], endpoint


Introduced = tuple[RendezvousClient, StunEndpoint, Introduction]


async def introduced_pair(server: RendezvousServer) -> tuple[Introduced, Introduced]:
    """Two clients registered with ``server`` and introduced to each other ("10" asks first: the opener)."""
    (client10, endpoint10), (client14, endpoint14) = [await registered(server, me) for me in ("10", "14")]
    await client10.connect("14")
    intro14, intro10 = await asyncio.gather(client14.introduced_to("10"), client10.introduction)
    assert (intro10.role, intro14.role) == (Role.OPENER, Role.PROBER)
    return (client10, endpoint10, intro10), (client14, endpoint14, intro14)


async def test_move_goes_to_the_other_peer_once_and_a_moved_ready_tells_it_where(server: RendezvousServer) -> None:
    (client10, endpoint10, intro10), (client14, endpoint14, intro14) = await introduced_pair(server)
    await client10.ask_to_move(intro10.session_id)  # 14's NAT refused 10's check: 14 must move
    await asyncio.wait_for(client14.move, 2)
    await client14.ask_to_move(intro14.session_id)  # both were refused: the first one asked about moves
    assert server.registry.session(intro10.session_id).mover == "14"  # type: ignore[union-attr]
    assert not client10.move.done()
    fresh = await open_endpoint(lambda m, s, d: None, ("127.0.0.1", 0), keys=endpoint14.keys)
    await client14.ready(intro14.session_id, via=fresh)  # from the fresh socket: probe 14 there
    assert await asyncio.wait_for(client10.moved, 2) == fresh.local_address
    assert not client14.moved.done()
    for endpoint in (fresh, endpoint10, endpoint14):
        await endpoint.close()


async def test_the_prober_says_ready_only_from_a_fresh_socket(server: RendezvousServer) -> None:
    (_client10, endpoint10, _intro10), (client14, endpoint14, intro14) = await introduced_pair(server)
    with pytest.raises(PeerError, match=r"^the server refused Ready: 400 the prober waits for Go$"):
        await client14.ready(intro14.session_id)
    for endpoint in (endpoint10, endpoint14):
        await endpoint.close()


async def test_move_comes_only_from_the_registered_socket(server: RendezvousServer) -> None:
    (client10, endpoint10, intro10), (_client14, endpoint14, _intro14) = await introduced_pair(server)
    other = await open_endpoint(lambda m, s, d: None, ("127.0.0.1", 0), keys=endpoint10.keys)
    move = request(Method.MOVE, (AttributeType.PEER_ID, "10"), (AttributeType.SESSION_ID, intro10.session_id))
    answer, _ = await other.request(move, server.address, FAST)
    error = answer.error_code()
    assert error is not None
    assert (error.code, error.reason) == (400, "not the registered socket")
    assert not client10.move.done()
    for endpoint in (other, endpoint10, endpoint14):
        await endpoint.close()


async def test_move_of_a_peer_that_has_left_is_refused_at_once(server: RendezvousServer) -> None:
    # A peer that exited leaves its NAT's mapping behind, and its closed socket refuses our check like a lost race.
    (client10, endpoint10, intro10), (client14, endpoint14, _intro14) = await introduced_pair(server)
    await client14.unregister()
    with pytest.raises(PeerGone, match=r"^the server refused Move: 404 the other peer has left$"):
        await client10.ask_to_move(intro10.session_id)
    assert server.registry.session(intro10.session_id).mover is None  # type: ignore[union-attr]
    for endpoint in (endpoint10, endpoint14):
        await endpoint.close()


class Server(asyncio.DatagramProtocol):
    """A stand-in server: what the client answers, in order."""

    def __init__(self) -> None:
        self.answers: asyncio.Queue[Message] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.answers.put_nowait(decode(data))


@pytest.mark.parametrize("method", [Method.GO, Method.MOVE])
async def test_a_go_or_move_before_the_introduce_is_left_for_its_retransmission(method: Method) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    transport, fake = await asyncio.get_running_loop().create_datagram_endpoint(Server, sock=sock)
    server: Address = sock.getsockname()
    clients: list[RendezvousClient] = []
    endpoint, keys = await peer_socket(to_client(clients))
    client = RendezvousClient(endpoint, server, "14", (endpoint.local_address,), credentials=keys.request)
    clients.append(client)
    session = b"\x07" * 16
    introduce = Introduction("10", (("127.0.0.1", 9),), session, Role.PROBER, bytes(32), NO_SHARE).to_message()
    early = request(method, (AttributeType.PEER_ID, "10"), (AttributeType.SESSION_ID, session))
    again = Message(early.method, early.message_class, early.transaction_id, early.attributes)
    for message, key in ((early, b"k" * 32), (introduce, None), (again, b"k" * 32)):  # the server signs Go, Move
        transport.sendto(encode(message, integrity_sha256_key=key), endpoint.local_address)
    first = await asyncio.wait_for(fake.answers.get(), 2)
    second = await asyncio.wait_for(fake.answers.get(), 2)
    assert (first.transaction_id, first.message_class) == (introduce.transaction_id, MessageClass.SUCCESS)
    assert (second.transaction_id, second.message_class) == (early.transaction_id, MessageClass.SUCCESS)
    assert (client.go.is_set(), client.move.done()) == (method == Method.GO, method == Method.MOVE)
    transport.close()
    await endpoint.close()


class Told:
    """What a RendezvousClient holds after the server said where the other peer moved (Go with CANDIDATE)."""

    def __init__(self, fresh: Address) -> None:
        loop = asyncio.get_running_loop()
        self.move: asyncio.Future[None] = loop.create_future()
        self.moved: asyncio.Future[Address] = loop.create_future()
        self.moved.set_result(fresh)


async def test_a_follower_whose_checks_are_refused_again_ends_the_punch_at_once() -> None:
    """After a move, a refusal says the race came again (two NATs next to each other): the punch ends there and
    then, with why, not after its timeout of 60 s here."""
    endpoint = await open_endpoint(lambda m, s, d: None, ("127.0.0.1", 0))
    fresh = ("127.0.0.1", free_port("127.0.0.1"))  # the mover's fresh endpoint, as its NAT refuses us there
    introduction = Introduction(
        "14", (("127.0.0.1", free_port("127.0.0.1")),), b"\x07" * 16, Role.PROBER, bytes(32), NO_SHARE
    )
    puncher = Puncher(endpoint, "10", introduction, PunchTimings(timeout=60.0))
    dispatcher = Dispatcher()
    dispatcher.add(puncher.on_request)
    async with contextlib.AsyncExitStack() as sockets:
        moves = Moves(puncher, introduction, Told(fresh), dispatcher, endpoint.keys, sockets, 60.0)  # type: ignore[arg-type]
        with pytest.raises(PeerError, match=r"14's NAT refused our checks at its fresh socket too"):
            await asyncio.wait_for(moves.run(), 10)
    assert moves.outcome == "followed"
    assert dispatcher.routes == (puncher.on_request,)  # the session's puncher answers again
    assert endpoint.counters["refused"] >= 1
    await endpoint.close()
