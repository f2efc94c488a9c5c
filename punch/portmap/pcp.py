"""PCP, the Port Control Protocol (RFC 6887): the MAP and ANNOUNCE opcodes over UDP to the router's port 5351.

The codec is strict (RFC 6887 §8.3): an answer is at least the 24-byte header, at most 1100 bytes, a multiple of 4,
version 2, with the R bit set; MAP data is 36 bytes; every option is framed within the message (§7.3). Lengths are
checked before any slicing, and every error names its place. An answer for another mapping nonce, protocol,
internal port or opcode is valid but not ours: :class:`Mismatch`, dropped. A NAT-PMP router answers a PCP request
with NAT-PMP's "unsupported version" (RFC 6887 §9, RFC 6886 §3.5): :class:`NotSpoken`, and the mapper asks it in
NAT-PMP.

:class:`PcpClient` asks one router: ANNOUNCE to learn whether it speaks PCP, MAP to make, renew (the same nonce) and
delete (lifetime 0) our mapping.
"""

from __future__ import annotations

import ipaddress
import os
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from punch.portmap.errors import Mismatch, NotSpoken, PortmapDecodeError, RouterRefused
from punch.portmap.exchange import MAX_DATAGRAM, ask_router
from punch.portmap.grant import Grant
from punch.stun import Address
from punch.stun.transaction import RetransmitPolicy

VERSION = 2
PORT = 5351  # RFC 6887 §19.1
OPCODE_ANNOUNCE = 0
OPCODE_MAP = 1
UDP = 17  # IANA protocol number (RFC 6887 §11.1: the MAP's protocol field)
HEADER = 24  # the common request and response header (§7.1, §7.2)
MAP_DATA = 36  # MAP's opcode-specific data (§11.1)
NONCE_BYTES = 12
ANY_IPV4 = ipaddress.IPv6Address("::ffff:0.0.0.0")  # "no preference" for an IPv4 external address (§11.1)
NATPMP_UNSUPPORTED_VERSION = 1  # the NAT-PMP result code a NAT-PMP router answers PCP with (RFC 6886 §3.5)

# Result codes, RFC 6887 §7.4: code -> name
RESULTS = {
    0: "SUCCESS",
    1: "UNSUPP_VERSION",
    2: "NOT_AUTHORIZED",
    3: "MALFORMED_REQUEST",
    4: "UNSUPP_OPCODE",
    5: "UNSUPP_OPTION",
    6: "MALFORMED_OPTION",
    7: "NETWORK_FAILURE",
    8: "NO_RESOURCES",
    9: "UNSUPP_PROTOCOL",
    10: "USER_EX_QUOTA",
    11: "CANNOT_PROVIDE_EXTERNAL",
    12: "ADDRESS_MISMATCH",
    13: "EXCESSIVE_REMOTE_PEERS",
}
SUCCESS = 0
UNSUPP_VERSION = 1


@dataclass(frozen=True, slots=True)
class MapData:
    """MAP's opcode-specific data (RFC 6887 §11.1): in a request the suggestion, in an answer the assignment."""

    nonce: bytes
    protocol: int
    internal_port: int
    external_port: int
    external_address: ipaddress.IPv6Address  # an IPv4 address in its IPv4-mapped form

    @property
    def external_ip(self) -> str:
        """The external address as text (IPv4 unmapped)."""
        mapped = self.external_address.ipv4_mapped
        return str(mapped if mapped is not None else self.external_address)


@dataclass(frozen=True, slots=True)
class Response:
    """A PCP answer (RFC 6887 §7.2): ``result`` a code of :data:`RESULTS`, ``lifetime`` and ``epoch`` in seconds."""

    opcode: int
    result: int
    lifetime: int
    epoch: int
    map: MapData | None = None  # MAP only, absent from an error answer that carries only the header
    options: tuple[tuple[int, bytes], ...] = ()  # (code, data) of each option, none understood by us

    @property
    def result_name(self) -> str:
        return RESULTS.get(self.result, "unknown result")


def _client_address(ip: str) -> bytes:
    """A client or external address field: 16 bytes, IPv4 in its IPv4-mapped form (RFC 6887 §5)."""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv4Address):
        address = ipaddress.IPv6Address(f"::ffff:{address}")
    return address.packed


def _header(opcode: int, lifetime: int, client_ip: str) -> bytes:
    """The request header (RFC 6887 §7.1): version, R=0 and opcode, reserved, lifetime, the client's address."""
    return struct.pack("!BBHI", VERSION, opcode, 0, lifetime) + _client_address(client_ip)


def encode_announce(client_ip: str) -> bytes:
    """An ANNOUNCE request (RFC 6887 §14.1): whether the router speaks PCP, and its epoch."""
    return _header(OPCODE_ANNOUNCE, 0, client_ip)


def encode_map(client_ip: str, data: MapData, lifetime: int) -> bytes:
    """A MAP request (RFC 6887 §11.1) asking for ``data``'s mapping for ``lifetime`` seconds (0: delete it)."""
    return (
        _header(OPCODE_MAP, lifetime, client_ip)
        + data.nonce
        + struct.pack("!B3xHH", data.protocol, data.internal_port, data.external_port)
        + data.external_address.packed
    )


def decode(data: bytes) -> Response:
    """A PCP answer from bytes; PortmapDecodeError naming the place, NotSpoken for NAT-PMP's "unsupported
    version" answer."""
    natpmp = len(data) >= 8 and data[0] == 0 and data[1] & 0x80
    if natpmp and struct.unpack_from("!H", data, 2)[0] == NATPMP_UNSUPPORTED_VERSION:
        raise NotSpoken("the router speaks NAT-PMP, not PCP (it answered: unsupported version)")
    if len(data) >= HEADER and data[0] not in (0, VERSION) and data[1] & 0x80 and data[3] == UNSUPP_VERSION:
        raise NotSpoken(f"the router speaks PCP version {data[0]}, not {VERSION} (it answered UNSUPP_VERSION)")
    if len(data) < HEADER:
        raise PortmapDecodeError("PCP header", f"an answer is {HEADER} bytes at least, got {len(data)}")
    if len(data) > MAX_DATAGRAM:
        raise PortmapDecodeError("PCP header", f"an answer is {MAX_DATAGRAM} bytes at most, got {len(data)}")
    if len(data) % 4:
        raise PortmapDecodeError("PCP header", f"an answer's length is a multiple of 4, got {len(data)}")
    version, r_opcode, _, result, lifetime, epoch = struct.unpack_from("!BBBBII", data)
    if version != VERSION:
        raise PortmapDecodeError("PCP header/version", f"expected {VERSION}, got {version}")
    if not r_opcode & 0x80:
        raise PortmapDecodeError("PCP header/R", "the R bit is 0: a request, not an answer")
    opcode = r_opcode & 0x7F
    offset = HEADER
    map_data = None
    if opcode == OPCODE_MAP and (result == SUCCESS or len(data) > HEADER):
        if len(data) < HEADER + MAP_DATA:
            raise PortmapDecodeError("PCP MAP", f"MAP data is {MAP_DATA} bytes, {len(data) - HEADER} left")
        nonce = data[offset : offset + NONCE_BYTES]
        protocol, internal, external = struct.unpack_from("!B3xHH", data, offset + NONCE_BYTES)
        address = ipaddress.IPv6Address(data[offset + 20 : offset + MAP_DATA])
        map_data = MapData(nonce, protocol, internal, external, address)
        offset += MAP_DATA
    elif opcode not in (OPCODE_MAP, OPCODE_ANNOUNCE):
        raise PortmapDecodeError("PCP header/opcode", f"{opcode} is neither MAP nor ANNOUNCE: not asked by us")
    return Response(opcode, result, lifetime, epoch, map_data, _options(data, offset))


def _options(data: bytes, offset: int) -> tuple[tuple[int, bytes], ...]:
    """The options after the opcode data (RFC 6887 §7.3), each within the message; padded to 4 bytes."""
    found = []
    while offset < len(data):
        if len(data) - offset < 4:
            raise PortmapDecodeError("PCP option", f"an option header is 4 bytes, {len(data) - offset} left")
        code, _, length = struct.unpack_from("!BBH", data, offset)
        padded = (length + 3) // 4 * 4
        if offset + 4 + padded > len(data):
            raise PortmapDecodeError(
                f"PCP option {code}", f"{length} bytes (padded {padded}) declared, {len(data) - offset - 4} left"
            )
        found.append((code, data[offset + 4 : offset + 4 + length]))
        offset += 4 + padded
    return tuple(found)


def read_announce(data: bytes) -> Response:
    """The answer to our ANNOUNCE; Mismatch for an answer to another opcode."""
    response = decode(data)
    if response.opcode != OPCODE_ANNOUNCE:
        raise Mismatch(f"PCP answer for opcode {response.opcode}, we asked ANNOUNCE")
    return response


def read_map(asked: MapData, data: bytes) -> Response:
    """The answer to our MAP request ``asked``; Mismatch for one about another mapping (RFC 6887 §11.3: nonce,
    protocol and internal port must match)."""
    response = decode(data)
    if response.opcode != OPCODE_MAP:
        raise Mismatch(f"PCP answer for opcode {response.opcode}, we asked MAP")
    got = response.map
    if got is None:
        return response  # an error answer with only the header: about our request, the only one outstanding
    if got.nonce != asked.nonce:
        raise Mismatch(f"PCP MAP answer for another mapping nonce ({got.nonce.hex()}, ours {asked.nonce.hex()})")
    if (got.protocol, got.internal_port) != (asked.protocol, asked.internal_port):
        raise Mismatch(
            f"PCP MAP answer for protocol {got.protocol} port {got.internal_port}, "
            f"we asked {asked.protocol} port {asked.internal_port}"
        )
    return response


class PcpClient:
    """Asks one router in PCP (module docstring); the mapping's nonce is chosen at the first MAP and kept."""

    name = "PCP"

    def __init__(self, router: Address, policy: RetransmitPolicy, counters: Counter[str]) -> None:
        self._router = router
        self._policy = policy
        self._counters = counters
        self._nonce = os.urandom(NONCE_BYTES)

    async def _ask(self, request_for: Callable[[str], bytes], read: Callable[[bytes], Response]) -> Response:
        return await ask_router(self.name, self._router, self._counters, self._policy, request_for, read)

    async def probe(self) -> int:
        """ANNOUNCE: the router's epoch if it speaks PCP; NotSpoken if not. An error answer (UNSUPP_OPCODE from a
        router that knows no ANNOUNCE) still says it speaks PCP."""
        return (await self._ask(encode_announce, read_announce)).epoch

    async def map(self, internal_port: int, suggested_port: int, lifetime: int) -> Grant:
        """Make or renew the mapping of our UDP ``internal_port`` (``suggested_port`` outside) for ``lifetime``
        seconds; RouterRefused with the router's result code."""
        asked = MapData(self._nonce, UDP, internal_port, suggested_port, ANY_IPV4)
        response = await self._ask(lambda ip: encode_map(ip, asked, lifetime), lambda data: read_map(asked, data))
        if response.result != SUCCESS or response.map is None:
            raise RouterRefused(self.name, response.result, response.result_name)
        if response.map.external_port == 0 or response.lifetime == 0:
            raise RouterRefused(self.name, response.result, response.result_name, "no port or no lifetime granted")
        return Grant(response.map.external_ip, response.map.external_port, response.lifetime, response.epoch)

    async def unmap(self, internal_port: int, external_port: int) -> None:
        """Delete our mapping (RFC 6887 §15: MAP with lifetime 0 and our nonce)."""
        asked = MapData(self._nonce, UDP, internal_port, 0, ANY_IPV4)
        response = await self._ask(lambda ip: encode_map(ip, asked, 0), lambda data: read_map(asked, data))
        if response.result != SUCCESS:
            raise RouterRefused(self.name, response.result, response.result_name)
