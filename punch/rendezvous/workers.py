"""`punch server --workers N`: N processes on one UDP port (SO_REUSEPORT), one registry.

The kernel spreads datagrams over the N sockets of a SO_REUSEPORT group by a hash of the source address and
port, so one peer's datagrams all land in one process, but two peers that must meet usually land in two. So
state is not split: worker 0 is the whole server (registry, sessions, relay, pushes, rate-limit-free
Binding). Workers 1..N-1 answer well-formed Binding requests with the C fast path and forward every other
datagram, with its source address, to worker 0 over a Unix SOCK_SEQPACKET pair; worker 0 handles it exactly
as if it had read it itself, and answers from its own socket, which has the same address and port. Each
second they also send worker 0 how many Bindings they answered, so its stats line counts them all.

A frame from a worker is ``b"D" + family (4 or 6) + port (2 bytes) + address (4 or 16 bytes) + datagram``
or ``b"C" + answered (8 bytes) + send errors (8 bytes)``. A worker stops when worker 0 closes its end.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import select
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable

from punch import SOFTWARE
from punch.stun import Address, AttributeType
from punch.stun.families import dual_stack_socket, takes_both
from punch.stun.fastpath import RECEIVE_BUFFER, binding_tail, load
from punch.stun.protocol import StunEndpoint

log = logging.getLogger(__name__)

_COUNTS = struct.Struct("!QQ")
_FRAME_LIMIT = 65536 + 32


def reuseport_socket(listen: Address) -> socket.socket:
    """A non-blocking UDP socket bound to ``listen`` in its SO_REUSEPORT group (on ``::``: IPv4 too, as worker 0's)."""
    if takes_both(listen[0]):
        sock = dual_stack_socket(listen, reuse_port=True)
    else:
        family = socket.AF_INET6 if ":" in listen[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(listen)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    sock.setblocking(False)
    return sock


def frame(data: bytes, source: tuple[str, int] | tuple[str, int, int, int]) -> bytes:
    """A datagram and its source, for worker 0."""
    ip = ipaddress.ip_address(source[0].split("%")[0])
    return b"D" + bytes([ip.version]) + source[1].to_bytes(2, "big") + ip.packed + data


def unframe(message: bytes) -> tuple[bytes, Address] | tuple[int, int]:
    """(datagram, source) for a D frame, (answered, send errors) for a C frame; ValueError for anything else."""
    if message[:1] == b"C" and len(message) == 1 + _COUNTS.size:
        answered, errors = _COUNTS.unpack_from(message, 1)
        return int(answered), int(errors)
    if message[:1] == b"D" and len(message) >= 4 and message[1] in (4, 6):
        size = 4 if message[1] == 4 else 16
        if len(message) >= 4 + size:
            host = str(ipaddress.ip_address(message[4 : 4 + size]))
            return message[4 + size :], (host, int.from_bytes(message[2:4], "big"))
    raise ValueError(f"a {len(message)}-byte frame that is neither D nor C")


class Workers:
    """Worker 0's side: start the other workers, take what they forward, stop them; ``async with``."""

    def __init__(self, endpoint: StunEndpoint, listen: Address, count: int) -> None:
        self._endpoint = endpoint
        self._listen = listen
        self._count = count
        self._children: list[tuple[asyncio.subprocess.Process, socket.socket]] = []

    async def __aenter__(self) -> Workers:
        loop = asyncio.get_running_loop()
        for index in range(1, self._count):
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "punch.rendezvous.workers", self._listen[0], str(self._listen[1]),
                str(theirs.fileno()), pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
            )  # fmt: skip
            theirs.close()
            ours.setblocking(False)
            self._children.append((child, ours))
            loop.add_reader(ours.fileno(), self._forwarded, ours, index)
            log.info("worker %d (pid %d) answers Binding on the same port", index, child.pid)
        return self

    def _forwarded(self, channel: socket.socket, index: int) -> None:
        while True:
            try:
                message = channel.recv(_FRAME_LIMIT)
            except BlockingIOError:
                return
            if not message:  # the worker is gone
                asyncio.get_running_loop().remove_reader(channel.fileno())
                log.warning("worker %d stopped; its share of the port goes to the others", index)
                return
            try:
                item = unframe(message)
            except ValueError as error:
                log.warning("worker %d: %s", index, error)
                continue
            if isinstance(item[0], bytes):
                data, source = item
                self._endpoint.datagram_received(data, source)
            else:
                answered, errors = item
                self._endpoint.counters["request"] += answered
                self._endpoint.counters["fastpath"] += answered
                if errors:
                    self._endpoint.counters["send-error"] += errors

    async def __aexit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        for _, channel in self._children:
            loop.remove_reader(channel.fileno())
            channel.close()  # the worker sees the end of its channel and exits
        for child, _ in self._children:
            try:
                async with asyncio.timeout(5):
                    await child.wait()
            except TimeoutError:
                child.kill()
                await child.wait()
        self._children.clear()


def run_binding_worker(listen: Address, channel: socket.socket, clock: Callable[[], float] = time.monotonic) -> int:
    """Answer Binding requests on ``listen`` with the fast path; forward everything else on ``channel``."""
    accelerator = load()
    if accelerator is None:
        log.error("a Binding worker needs punch._fastpath")
        return 1
    sock = reuseport_socket(listen)
    tail = binding_tail(((AttributeType.SOFTWARE, SOFTWARE),))  # what worker 0 answers without --alternate
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    poller.register(channel.fileno(), select.POLLIN)
    answered = errors = 0
    last_report = clock()
    while True:
        events = dict(poller.poll(1000))
        if channel.fileno() in events:
            return 0  # worker 0 closed its end (or died)
        if sock.fileno() in events:
            got, others, failed, _, _ = accelerator.drain(sock.fileno(), tail, 4096)
            answered += got
            errors += failed
            for data, source in others:
                channel.send(frame(data, source))
        if (answered or errors) and clock() - last_report >= 1.0:
            channel.send(b"C" + _COUNTS.pack(answered, errors))
            answered = errors = 0
            last_report = clock()


if __name__ == "__main__":
    host, port, fd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    try:
        sys.exit(run_binding_worker((host, port), socket.socket(fileno=fd)))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; worker 0 reports it
        sys.exit(130)
