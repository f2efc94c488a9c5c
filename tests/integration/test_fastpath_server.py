"""The server with and without its C fast path, on loopback: byte-identical replies, exact drop counters.

The same datagrams go from the same client socket to a server with the fast path and then to one without it on
the same addresses and ports, so every reply must match byte for byte (RESPONSE-ORIGIN and OTHER-ADDRESS too,
with --alternate). Skipped where punch._fastpath is not built.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Sequence

import pytest
import pytest_asyncio

from punch.rendezvous.ratelimit import RateLimiter
from punch.rendezvous.server import RendezvousServer
from punch.stun import Address, AttributeType, Message, MessageClass, Method, decode, encode, new_transaction_id
from punch.stun.fastpath import DISABLE_VARIABLE, load
from tests.integration.conftest import Client
from tests.unit.test_fastpath_replies import ANSWERED, HANDED_TO_PYTHON

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

if load() is None:
    pytest.skip("punch._fastpath is not built here (or PUNCH_NO_FASTPATH is set)", allow_module_level=True)


@pytest_asyncio.fixture
async def client() -> AsyncIterator[tuple[asyncio.DatagramTransport, Client]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        Client, local_addr=("127.0.0.1", 0), family=socket.AF_INET
    )
    yield transport, protocol
    transport.close()


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def exchange(
    client: tuple[asyncio.DatagramTransport, Client], server: Address, datagrams: Sequence[bytes]
) -> list[list[bytes]]:
    """Each datagram then a marker; what came back before the marker's reply.

    The marker is a Binding request with SOFTWARE, which Python answers: the fast path sends its answers for a
    batch before Python handles the rest, and Python answers in order, so nothing comes after the marker's.
    """
    transport, protocol = client
    answers = []
    for data in datagrams:
        marker = encode(
            Message(Method.BINDING, MessageClass.REQUEST, new_transaction_id(), ((AttributeType.SOFTWARE, "marker"),))
        )
        transport.sendto(data, server)
        transport.sendto(marker, server)
        got = []
        while decode(reply := await asyncio.wait_for(protocol.queue.get(), 2)).transaction_id != marker[8:20]:
            got.append(reply)
        answers.append(got)
    return answers


async def replies_from(
    client: tuple[asyncio.DatagramTransport, Client],
    accelerate: bool,
    listen: Address,
    alternate: Address | None,
    datagrams: Sequence[bytes],
) -> tuple[list[list[bytes]], dict[str, int]]:
    async with RendezvousServer(rate_limit=0, accelerate=accelerate) as server:
        await server.start(listen, alternate)
        answers = await exchange(client, listen, datagrams)
        return answers, dict(server.endpoint.counters)


# A Register's answer carries a fresh random token: it is left out here, see the registration test below.
CORPUS = [*ANSWERED.values(), *(data for name, data in HANDED_TO_PYTHON.items() if name != "Register request")]


@pytest.mark.parametrize("alternate", [False, True], ids=["one address", "with --alternate"])
async def test_fast_and_python_servers_send_the_same_bytes(
    client: tuple[asyncio.DatagramTransport, Client], alternate: bool
) -> None:
    listen = ("127.0.0.1", free_port("127.0.0.1"))
    other = ("127.0.0.2", free_port("127.0.0.2")) if alternate else None
    fast, fast_counters = await replies_from(client, True, listen, other, CORPUS)
    python, python_counters = await replies_from(client, False, listen, other, CORPUS)
    assert fast == python
    assert [len(r) for r in fast] == [1] * len(ANSWERED) + [len(r) for r in python[len(ANSWERED) :]]
    # Every well-formed plain Binding went the fast way; the rest was counted as before.
    assert fast_counters.pop("fastpath") == len(ANSWERED)
    assert "fastpath" not in python_counters
    assert fast_counters == python_counters


async def test_malformed_input_is_still_dropped_and_counted(client: tuple[asyncio.DatagramTransport, Client]) -> None:
    listen = ("127.0.0.1", free_port("127.0.0.1"))
    datagrams = [
        b"hello, not STUN at all!!",
        HANDED_TO_PYTHON["bad FINGERPRINT"],
        HANDED_TO_PYTHON["Binding indication"],
        ANSWERED["plain"],
    ]
    answers, counters = await replies_from(client, True, listen, None, datagrams)
    assert [len(a) for a in answers] == [0, 0, 0, 1]
    assert (counters["not-stun"], counters["malformed"], counters["indication"]) == (1, 1, 1)
    assert (counters["fastpath"], counters["request"]) == (1, 5)  # the plain Binding; it and the four markers


async def test_registrations_work_beside_the_fast_path(client: tuple[asyncio.DatagramTransport, Client]) -> None:
    listen = ("127.0.0.1", free_port("127.0.0.1"))
    register = encode(
        Message(Method.REGISTER, MessageClass.REQUEST, new_transaction_id(), ((AttributeType.PEER_ID, "a"),))
    )
    async with RendezvousServer(rate_limit=0) as server:
        await server.start(listen)
        [[reply]] = await exchange(client, listen, [register])
        assert decode(reply).message_class is MessageClass.SUCCESS
        assert server.stats().startswith("registrations=1 ")
        [[binding]] = await exchange(client, listen, [ANSWERED["plain"]])
        assert decode(binding).address(AttributeType.XOR_MAPPED_ADDRESS) == client[0].get_extra_info("sockname")
        assert server.endpoint.counters["fastpath"] == 1


async def test_the_environment_variable_switches_it_off(
    client: tuple[asyncio.DatagramTransport, Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DISABLE_VARIABLE, "1")
    answers, counters = await replies_from(
        client, True, ("127.0.0.1", free_port("127.0.0.1")), None, [ANSWERED["plain"]]
    )
    assert [len(a) for a in answers] == [1]
    assert (counters["request"], counters.get("fastpath")) == (2, None)  # the Binding and the marker


async def test_the_rate_limit_holds_on_the_fast_path_too(client: tuple[asyncio.DatagramTransport, Client]) -> None:
    listen = ("127.0.0.1", free_port("127.0.0.1"))
    async with RendezvousServer(rate_limit=RateLimiter(rate=0.001, burst=3)) as server:
        await server.start(listen)
        transport, protocol = client
        for _ in range(4):
            transport.sendto(ANSWERED["plain"], listen)
        # A marker from another source IP: once it is answered, the four before it were handled.
        loop = asyncio.get_running_loop()
        other, other_client = await loop.create_datagram_endpoint(
            Client, local_addr=("127.0.0.2", 0), family=socket.AF_INET
        )
        try:
            assert [len(a) for a in await exchange((other, other_client), listen, [ANSWERED["plain"]])] == [1]
        finally:
            other.close()
        assert protocol.queue.qsize() == 3
        counters = server.endpoint.counters
        assert (counters["fastpath"], counters["rate-limited"]) == (4, 1)  # three from us, one from the other


async def test_ipv6_sources_get_the_same_bytes_too() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    loop = asyncio.get_running_loop()
    try:
        transport, protocol = await loop.create_datagram_endpoint(Client, local_addr=("::1", 0), family=socket.AF_INET6)
    except OSError as error:
        pytest.skip(f"no ::1 here: {error}")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
            listen = ("::1", int(s.getsockname()[1]))
        fast, fast_counters = await replies_from((transport, protocol), True, listen, None, [ANSWERED["plain"]])
        python, _ = await replies_from((transport, protocol), False, listen, None, [ANSWERED["plain"]])
        assert fast == python
        assert [len(r) for r in fast] == [1]
        assert fast_counters["fastpath"] == 1
    finally:
        transport.close()
