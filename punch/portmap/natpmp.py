"""NAT-PMP (RFC 6886): the external address request and UDP mappings, over UDP to the router's port 5351.

The formats are fixed (§3.2, §3.3): a successful answer is exactly 12 bytes (the external address) or 16 (a
mapping); an error answer is at least 8 (version, opcode, result code, epoch: §3.5). The version must be 0 and the
opcode ours plus 128; a mapping's answer must name our internal port. Anything else is dropped (counted by the
exchange). A PCP router that does not speak NAT-PMP answers with PCP's UNSUPP_VERSION: :class:`NotSpoken`.

The maintained Python clients of NAT-PMP on PyPI are none (the two there were last released in 2021 and before,
blocking, without PCP); the protocol is two messages, so it is here, beside PCP, sharing its exchange.
"""

from __future__ import annotations

import ipaddress
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from punch.portmap.errors import Mismatch, NotSpoken, PortmapDecodeError, RouterRefused
from punch.portmap.exchange import ask_router
from punch.portmap.grant import Grant
from punch.stun import Address
from punch.stun.transaction import RetransmitPolicy

VERSION = 0
PORT = 5351  # RFC 6886 §3.1
OPCODE_ADDRESS = 0
OPCODE_MAP_UDP = 1
ANSWER = 0x80  # an answer's opcode is the request's plus 128
PCP_VERSION = 2
PCP_UNSUPP_VERSION = 1

# Result codes, RFC 6886 §3.5: code -> name
RESULTS = {
    0: "Success",
    1: "Unsupported Version",
    2: "Not Authorized/Refused",
    3: "Network Failure",
    4: "Out of resources",
    5: "Unsupported opcode",
}
SUCCESS = 0
SIZES = {OPCODE_ADDRESS: 12, OPCODE_MAP_UDP: 16}  # a successful answer's size, by the request's opcode
ERROR_SIZE = 8


@dataclass(frozen=True, slots=True)
class Response:
    """A NAT-PMP answer: ``result`` a code of :data:`RESULTS`, ``epoch`` the router's seconds since its start of
    epoch; for the address request ``external_ip``, for a mapping the ports and lifetime (all 0 in an error)."""

    opcode: int  # the request's opcode (the answer's minus 128)
    result: int
    epoch: int
    external_ip: str | None = None
    internal_port: int = 0
    external_port: int = 0
    lifetime: int = 0

    @property
    def result_name(self) -> str:
        return RESULTS.get(self.result, "unknown result")


def encode_address_request() -> bytes:
    """The external address request (RFC 6886 §3.2)."""
    return struct.pack("!BB", VERSION, OPCODE_ADDRESS)


def encode_map(internal_port: int, suggested_port: int, lifetime: int) -> bytes:
    """A UDP mapping request (RFC 6886 §3.3) for ``lifetime`` seconds (0 and suggested port 0: delete it, §3.4)."""
    return struct.pack("!BBHHHI", VERSION, OPCODE_MAP_UDP, 0, internal_port, suggested_port, lifetime)


def decode(data: bytes) -> Response:
    """A NAT-PMP answer from bytes; PortmapDecodeError naming the place, NotSpoken for PCP's UNSUPP_VERSION."""
    if len(data) >= 4 and data[0] == PCP_VERSION and data[1] & ANSWER and data[3] == PCP_UNSUPP_VERSION:
        raise NotSpoken("the router speaks PCP, not NAT-PMP (it answered UNSUPP_VERSION)")
    if len(data) < ERROR_SIZE:
        raise PortmapDecodeError("NAT-PMP header", f"an answer is {ERROR_SIZE} bytes at least, got {len(data)}")
    version, opcode, result, epoch = struct.unpack_from("!BBHI", data)
    if version != VERSION:
        raise PortmapDecodeError("NAT-PMP header/version", f"expected {VERSION}, got {version}")
    if not opcode & ANSWER:
        raise PortmapDecodeError("NAT-PMP header/opcode", f"{opcode} is a request's opcode, not an answer's")
    asked = opcode & ~ANSWER
    size = SIZES.get(asked)
    if size is None:
        raise PortmapDecodeError("NAT-PMP header/opcode", f"{opcode} answers opcode {asked}, never asked by us")
    if result != SUCCESS:
        return Response(asked, result, epoch)  # the other fields are undefined in an error (§3.5)
    if len(data) != size:
        raise PortmapDecodeError(f"NAT-PMP answer to opcode {asked}", f"expected {size} bytes, got {len(data)}")
    if asked == OPCODE_ADDRESS:
        return Response(asked, result, epoch, external_ip=str(ipaddress.IPv4Address(data[8:12])))
    internal, external, lifetime = struct.unpack_from("!HHI", data, 8)
    return Response(asked, result, epoch, internal_port=internal, external_port=external, lifetime=lifetime)


def read_address(data: bytes) -> Response:
    """The answer to our external address request; Mismatch for an answer to another opcode."""
    response = decode(data)
    if response.opcode != OPCODE_ADDRESS:
        raise Mismatch(f"NAT-PMP answer to opcode {response.opcode}, we asked for the external address")
    return response


def read_map(internal_port: int, data: bytes) -> Response:
    """The answer to our mapping request for ``internal_port``; Mismatch for an answer about another."""
    response = decode(data)
    if response.opcode != OPCODE_MAP_UDP:
        raise Mismatch(f"NAT-PMP answer to opcode {response.opcode}, we asked for a UDP mapping")
    if response.result == SUCCESS and response.internal_port != internal_port:
        raise Mismatch(f"NAT-PMP mapping answer for port {response.internal_port}, we asked for {internal_port}")
    return response


class NatPmpClient:
    """Asks one router in NAT-PMP (module docstring): its external address first, then our mapping."""

    name = "NAT-PMP"

    def __init__(self, router: Address, policy: RetransmitPolicy, counters: Counter[str]) -> None:
        self._router = router
        self._policy = policy
        self._counters = counters
        self._external_ip: str | None = None

    async def _ask(self, request: bytes, read: Callable[[bytes], Response]) -> Response:
        return await ask_router(self.name, self._router, self._counters, self._policy, lambda _: request, read)

    async def probe(self) -> int:
        """The external address request: the router's epoch if it speaks NAT-PMP (its address is kept for the
        mapping); NotSpoken if not, RouterRefused for an error answer."""
        response = await self._ask(encode_address_request(), read_address)
        if response.result != SUCCESS:
            raise RouterRefused(self.name, response.result, response.result_name)
        self._external_ip = response.external_ip
        return response.epoch

    async def map(self, internal_port: int, suggested_port: int, lifetime: int) -> Grant:
        """Make or renew the mapping of our UDP ``internal_port`` for ``lifetime`` seconds; RouterRefused with the
        router's result code."""
        request = encode_map(internal_port, suggested_port, lifetime)
        response = await self._ask(request, lambda data: read_map(internal_port, data))
        if response.result != SUCCESS:
            raise RouterRefused(self.name, response.result, response.result_name)
        if response.external_port == 0 or response.lifetime == 0:
            raise RouterRefused(self.name, response.result, response.result_name, "no port or no lifetime granted")
        return Grant(self._external_ip, response.external_port, response.lifetime, response.epoch)

    async def unmap(self, internal_port: int, external_port: int) -> None:
        """Delete our mapping (RFC 6886 §3.4: lifetime 0, suggested external port 0)."""
        response = await self._ask(encode_map(internal_port, 0, 0), lambda data: read_map(internal_port, data))
        if response.result != SUCCESS:
            raise RouterRefused(self.name, response.result, response.result_name)
