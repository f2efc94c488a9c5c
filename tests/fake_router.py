"""A router's side of PCP (RFC 6887) and NAT-PMP (RFC 6886), written from the RFCs for the tests: the answers' bytes
(for the codec tests) and an asyncio UDP server on loopback that answers both on one port (for the mapper's), told
how to misbehave. It also forwards each mapped port to its internal port, as a NAT would, so that a peer on loopback
can be reached through its mapping.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from punch.stun import Address

MAP, ANNOUNCE = 1, 0


def pcp_header(opcode: int, result: int, lifetime: int, epoch: int) -> bytes:
    """A PCP answer's header (RFC 6887 §7.2)."""
    return struct.pack("!BBBBII", 2, 0x80 | opcode, 0, result, lifetime, epoch) + bytes(12)


def pcp_map_answer(
    nonce: bytes,
    internal: int,
    external: int,
    external_ip: str = "203.0.113.10",
    *,
    result: int = 0,
    lifetime: int = 7200,
    epoch: int = 1000,
    protocol: int = 17,
    options: bytes = b"",
) -> bytes:
    """A PCP MAP answer (RFC 6887 §11.1)."""
    address = ipaddress.IPv6Address(f"::ffff:{external_ip}").packed
    data = nonce + struct.pack("!B3xHH", protocol, internal, external) + address
    return pcp_header(MAP, result, lifetime, epoch) + data + options


def natpmp_address_answer(external_ip: str = "203.0.113.10", *, result: int = 0, epoch: int = 1000) -> bytes:
    """A NAT-PMP external address answer (RFC 6886 §3.2)."""
    return struct.pack("!BBHI", 0, 128, result, epoch) + ipaddress.IPv4Address(external_ip).packed


def natpmp_map_answer(
    internal: int, external: int, *, result: int = 0, lifetime: int = 7200, epoch: int = 1000
) -> bytes:
    """A NAT-PMP UDP mapping answer (RFC 6886 §3.3)."""
    return struct.pack("!BBHIHHI", 0, 129, result, epoch, internal, external, lifetime)


def natpmp_unsupported_version(opcode: int, epoch: int = 1000) -> bytes:
    """What a NAT-PMP router answers a PCP request with (RFC 6886 §3.5)."""
    return struct.pack("!BBHI", 0, 0x80 | opcode, 1, epoch)


@dataclass
class Behaviour:
    """How the fake router answers. ``pcp`` and ``natpmp``: "ok", "silent", "garbage" (a datagram that is not an
    answer, then silence), "other-nonce" (an answer for another mapping, then silence: in NAT-PMP, which has no
    nonce, a mapping of another internal port), or "error N" (result code N). ``pcp`` may also be "natpmp-only"
    (NAT-PMP's unsupported-version answer)."""

    pcp: str = "ok"
    natpmp: str = "ok"
    max_lifetime: int = 7200
    external_ip: str = "127.0.0.1"  # what the router says its public address is; its mapped ports are bound there
    inside: str | None = None  # where mapped ports forward to (None: the address the request came from)
    epoch_start: float = 0.0  # loop time the router's epoch counts from (a restart sets it anew)


@dataclass
class Held:
    """A mapping the fake router holds: its external port (a loopback socket of its own) and lifetime."""

    sock: socket.socket
    lifetime: int
    forwarder: asyncio.DatagramTransport | None = None

    @property
    def external(self) -> int:
        return int(self.sock.getsockname()[1])

    def close(self) -> None:
        if self.forwarder is not None:
            self.forwarder.close()
        else:
            self.sock.close()


class FakeRouter(asyncio.DatagramProtocol):
    """PCP and NAT-PMP on one loopback port; ``requests`` holds every request's bytes, ``mappings`` the mappings by
    internal port; ``asked`` is set at each request."""

    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour or Behaviour()
        self.requests: list[bytes] = []
        self.mappings: dict[int, Held] = {}
        self.asked = asyncio.Event()
        self.transport: asyncio.DatagramTransport | None = None
        self.address: Address = ("127.0.0.1", 0)
        self.inside = "127.0.0.1"  # where the mapped ports forward to: the address of the client that asked
        self._loop = asyncio.get_running_loop()
        self.behaviour.epoch_start = self._loop.time()
        self._forwarding: list[asyncio.BaseTransport] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    async def start(cls, behaviour: Behaviour | None = None) -> FakeRouter:
        router = cls(behaviour)
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: router, local_addr=("127.0.0.1", 0)
        )
        router.transport = transport
        router.address = transport.get_extra_info("sockname")[:2]
        return router

    def close(self) -> None:
        for held in self.mappings.values():
            held.close()
        for transport in self._forwarding:
            transport.close()
        if self.transport is not None:
            self.transport.close()

    @property
    def epoch(self) -> int:
        return int(self._loop.time() - self.behaviour.epoch_start) + 1000

    def restart(self) -> None:
        """Lose every mapping and start the epoch anew (a router that rebooted)."""
        for held in self.mappings.values():
            held.close()
        self.mappings.clear()
        self.behaviour.epoch_start = self._loop.time() + 999  # the epoch goes back to about 1

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.requests.append(data)
        self.inside = self.behaviour.inside or addr[0]
        self.asked.set()
        answer = self._pcp(data) if data[:1] == b"\x02" else self._natpmp(data) if data[:1] == b"\x00" else None
        if answer and self.transport is not None:
            self.transport.sendto(answer, addr)

    def _misbehave(self, how: str) -> bytes | None:
        if how == "silent":
            return None
        if how == "garbage":
            return b"\x02\x81\x00\x00garbage"
        return b""  # "ok", "error N", "other-nonce": the caller builds it

    def _pcp(self, data: bytes) -> bytes | None:
        how = self.behaviour.pcp
        if how == "natpmp-only":
            return natpmp_unsupported_version(data[1])
        answer = self._misbehave(how)
        if answer is None or answer:
            return answer
        opcode, lifetime = data[1], struct.unpack_from("!I", data, 4)[0]
        result = int(how.split()[1]) if how.startswith("error") else 0
        if opcode == ANNOUNCE:
            return pcp_header(ANNOUNCE, result, 0, self.epoch)
        nonce = data[24:36]
        internal, suggested = struct.unpack_from("!HH", data, 40)
        if how == "other-nonce":
            nonce = bytes(12)
        if result:
            return pcp_map_answer(nonce, internal, 0, result=result, lifetime=30, epoch=self.epoch)
        external, granted = self._map(internal, suggested, lifetime)
        ip = self.behaviour.external_ip
        return pcp_map_answer(nonce, internal, external, ip, lifetime=granted, epoch=self.epoch)

    def _natpmp(self, data: bytes) -> bytes | None:
        how = self.behaviour.natpmp
        answer = self._misbehave(how)
        if answer is None or answer:
            return answer
        result = int(how.split()[1]) if how.startswith("error") else 0
        if data[1] == 0:
            return natpmp_address_answer(self.behaviour.external_ip, result=result, epoch=self.epoch)
        internal, suggested, lifetime = struct.unpack_from("!HHI", data, 4)
        if how == "other-nonce":
            return natpmp_map_answer(internal + 1, suggested, lifetime=lifetime, epoch=self.epoch)
        if result:
            return natpmp_map_answer(internal, 0, result=result, lifetime=0, epoch=self.epoch)
        external, granted = self._map(internal, suggested, lifetime)
        return natpmp_map_answer(internal, external, lifetime=granted, epoch=self.epoch)

    def _map(self, internal: int, suggested: int, lifetime: int) -> tuple[int, int]:
        """Map (renew, or delete with lifetime 0) ``internal``; the external port and the lifetime granted (a free
        loopback port: the suggestion is ignored, as a router whose port is taken does)."""
        if lifetime == 0:
            gone = self.mappings.pop(internal, None)
            if gone is not None:
                gone.close()
            return 0, 0
        granted = min(lifetime, self.behaviour.max_lifetime)
        known = self.mappings.get(internal)
        if known is not None:
            known.lifetime = granted
            return known.external, granted
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((self.behaviour.external_ip, 0))  # the mapped port, on the router's "public" loopback address
        held = self.mappings[internal] = Held(sock, granted)
        self._spawn(self._forward(internal, held))
        return held.external, granted

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward(self, internal: int, held: Held) -> None:
        """What arrives at the mapping's port goes to 127.0.0.1:``internal`` from a socket of its sender's own, and
        what comes back to that socket goes out of the mapping's port to the sender (a NAT's DNAT, in user space)."""
        loop = asyncio.get_running_loop()
        outside: dict[Address, asyncio.DatagramTransport] = {}
        forwarding, spawn, inside = self._forwarding, self._spawn, self.inside

        class Back(asyncio.DatagramProtocol):
            def __init__(self, sender: Address) -> None:
                self.sender = sender

            def datagram_received(self, data: bytes, addr: Address) -> None:
                if held.forwarder is not None:
                    held.forwarder.sendto(data, self.sender)

        async def open_back(sender: Address, data: bytes) -> None:
            transport, _ = await loop.create_datagram_endpoint(lambda: Back(sender), remote_addr=(inside, internal))
            forwarding.append(transport)
            outside[sender] = transport
            transport.sendto(data)

        class Front(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Address) -> None:
                back = outside.get(addr)
                if back is None:
                    spawn(open_back(addr, data))
                else:
                    back.sendto(data)

        held.forwarder, _ = await loop.create_datagram_endpoint(Front, sock=held.sock)


@dataclass
class SlowHttp:
    """An HTTP server on loopback that accepts and never answers (a UPnP IGD that answers too slowly)."""

    server: asyncio.Server | None = None
    port: int = 0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def start(self) -> SlowHttp:
        async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.writers.append(writer)

        self.server = await asyncio.start_server(stall, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        for writer in self.writers:
            writer.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


class SsdpResponder(asyncio.DatagramProtocol):
    """Answers every M-SEARCH with ``answer`` (the test decides what it holds)."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0

    @classmethod
    async def start(cls, answer: bytes) -> SsdpResponder:
        responder = cls(answer)
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: responder, local_addr=("127.0.0.1", 0)
        )
        responder.transport = transport
        responder.port = transport.get_extra_info("sockname")[1]
        return responder

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if data.startswith(b"M-SEARCH") and self.transport is not None:
            self.transport.sendto(self.answer, addr)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
