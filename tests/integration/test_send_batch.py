"""The C fast path's batched send (punch._fastpath.send_batch) on loopback sockets: every datagram in order, and
the ones the kernel refuses or the socket cannot address counted, not raised; and the sources drain reports.
Skipped where punch._fastpath is not built."""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator

import pytest

from punch.stun.fastpath import Accelerator, load

pytestmark = pytest.mark.integration

accelerator = load()
if accelerator is None:
    pytest.skip("punch._fastpath is not built here (or PUNCH_NO_FASTPATH is set)", allow_module_level=True)


@pytest.fixture
def fast() -> Accelerator:
    assert accelerator is not None
    return accelerator


def receiver(family: int, host: str) -> socket.socket:
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.settimeout(2)
    return s


@pytest.fixture
def v4() -> Iterator[tuple[socket.socket, socket.socket, socket.socket]]:
    """A non-blocking sender and two receivers, IPv4 loopback."""
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setblocking(False)
    first, second = receiver(socket.AF_INET, "127.0.0.1"), receiver(socket.AF_INET, "127.0.0.1")
    yield sender, first, second
    for s in (sender, first, second):
        s.close()


def address(s: socket.socket) -> tuple[str, int]:
    host, port = s.getsockname()[:2]
    return str(host), int(port)


def test_every_datagram_arrives_in_order(
    fast: Accelerator, v4: tuple[socket.socket, socket.socket, socket.socket]
) -> None:
    sender, first, second = v4
    items = [(f"datagram {i}".encode(), address(first if i % 3 else second)) for i in range(150)]  # 3 sendmmsg
    assert fast.send_batch(sender.fileno(), items) == 0
    assert [first.recv(100) for _ in range(100)] == [d for d, a in items if a == address(first)]
    assert [second.recv(100) for _ in range(50)] == [d for d, a in items if a == address(second)]


def test_refused_and_unaddressable_datagrams_are_counted_and_the_rest_still_go(
    fast: Accelerator, v4: tuple[socket.socket, socket.socket, socket.socket]
) -> None:
    sender, first, _ = v4
    items = [
        (b"one", address(first)),
        (b"to port 0", ("127.0.0.1", 0)),  # the kernel refuses it (EINVAL)
        (b"two", address(first)),
        (b"broadcast", ("255.255.255.255", 9)),  # refused without SO_BROADCAST (EACCES)
        (b"not an address", ("example.invalid", 9)),
        (b"IPv6 on an IPv4 socket", ("::1", 9)),
        (b"port out of range", ("127.0.0.1", 70000)),
        (b"a NUL in the host", ("127.0.0.1\x00junk", 9)),
        (b"three", address(first)),
    ]
    assert fast.send_batch(sender.fileno(), items) == 6
    assert [first.recv(100) for _ in range(3)] == [b"one", b"two", b"three"]


def test_ipv6_with_and_without_flowinfo_and_scope(fast: Accelerator) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    sender = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sender.setblocking(False)
    target = receiver(socket.AF_INET6, "::1")
    try:
        port = target.getsockname()[1]
        items = [(b"a", ("::1", port)), (b"b", ("::1", port, 0, 0)), (b"c", ("127.0.0.1", port))]
        # an IPv4 text has no IPv6 form on this socket: refused, as Python's sendto refuses it
        assert fast.send_batch(sender.fileno(), items) == 1  # type: ignore[arg-type]
        assert [target.recv(10) for _ in range(2)] == [b"a", b"b"]
    finally:
        sender.close()
        target.close()


def test_nothing_to_send_sends_nothing(fast: Accelerator) -> None:
    assert fast.send_batch(-1, []) == 0


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([(b"x", ("127.0.0.1", 9)), "not a pair"], "send_batch() item 1 is not a (bytes, address) pair"),
        ([(bytearray(b"x"), ("127.0.0.1", 9))], "send_batch() item 0 is not a (bytes, address) pair"),
        (42, "send_batch() takes a sequence of (bytes, address)"),
    ],
)
def test_items_of_the_wrong_shape_are_refused_before_anything_is_sent(
    fast: Accelerator, v4: tuple[socket.socket, socket.socket, socket.socket], items: object, message: str
) -> None:
    sender, first, _ = v4
    with pytest.raises(TypeError) as raised:
        fast.send_batch(sender.fileno(), items)  # type: ignore[arg-type]
    assert str(raised.value) == message
    first.setblocking(False)
    with pytest.raises(BlockingIOError):
        first.recv(10)


@pytest.mark.parametrize(("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_drain_names_sources_as_pythons_socket_module_does(fast: Accelerator, family: int, host: str) -> None:
    """The datagrams drain hands to Python carry their source as recvfrom would give it (the inet_ntop shortcut
    for addresses without a scope writes what getnameinfo writes)."""
    if family == socket.AF_INET6 and not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    server, client = socket.socket(family, socket.SOCK_DGRAM), socket.socket(family, socket.SOCK_DGRAM)
    try:
        server.bind((host, 0))
        server.setblocking(False)
        client.bind((host, 0))
        client.sendto(b"not STUN", server.getsockname())
        assert select.select([server], [], [], 2)[0] == [server]
        answered, others, send_errors, error, limited = fast.drain(server.fileno(), b"", 8, None)
        assert (answered, send_errors, error, limited) == (0, 0, 0, 0)
        assert others == [(b"not STUN", client.getsockname())]
    finally:
        server.close()
        client.close()
