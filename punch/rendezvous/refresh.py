"""The keepalive fast path: a Register that only renews a registration, read and answered from its bytes.

A million peers refreshing every 20 s send 50,000 Registers a second. The general path decodes each into a
Message, walks it again to check MESSAGE-INTEGRITY-SHA256 and encodes the answer attribute by attribute through
the codec's table. A keepalive needs none of that: :func:`parse_refresh` reads the few attributes a refresh
carries straight from the datagram and :func:`refresh_answer` fills in the answer's bytes (the same bytes the
general path would send; the tests compare them).

punch/_fastpath.c does both again in C where it is built (:func:`codec` picks): these Python functions are the
reference, and the fallback where no compiler exists; the tests hold the two to identical results.

Strict by construction: anything that is not exactly a well-formed, signed Register with a nonzero LEASE
(RFC 8489 §5 header, attributes tiling the body, MESSAGE-INTEGRITY-SHA256 of 32 bytes then a matching
FINGERPRINT last, §14.6-§14.7, and no attribute but PEER-ID, CANDIDATE, LEASE, NAT-MAPPING and PUBLIC-KEY before
them) gives
None, and the caller hands the datagram to the general path, which answers or counts it exactly as before.
"""

from __future__ import annotations

import socket
import struct
import zlib
from collections.abc import Callable
from typing import NamedTuple

from punch.rendezvous.signed import (
    FINGERPRINT_XOR,
    UNSIGNED_TRAILER_SIZE,
    attributes,
    signed_with,
    well_formed,
    well_formed_unsigned,
)
from punch.stun import MAGIC_COOKIE, Address, AttributeType
from punch.stun.fastpath import Accelerator
from punch.stun.wire import Mapping

_REGISTER_REQUEST = 0x0281  # method 0x0C1 (Register), class request, interleaved as in RFC 8489 §5 figure 3
_REGISTER_SUCCESS = 0x0381
_COOKIE = MAGIC_COOKIE.to_bytes(4, "big")
_PORT_MASK = MAGIC_COOKIE >> 16
_MASK_V4 = _PORT_MASK << 32 | MAGIC_COOKIE  # port and IPv4 address, XORed at once
_MAX_CANDIDATES = 8  # the general path keeps the first 8
_PEER_ID = int(AttributeType.PEER_ID)  # plain ints: compared once per attribute
_CANDIDATE = int(AttributeType.CANDIDATE)
_LEASE = int(AttributeType.LEASE)
_NAT_MAPPING = int(AttributeType.NAT_MAPPING)
_PUBLIC_KEY = int(AttributeType.PUBLIC_KEY)
_MI_SHA256 = int(AttributeType.MESSAGE_INTEGRITY_SHA256)
_FINGERPRINT = int(AttributeType.FINGERPRINT)
_TOKEN = int(AttributeType.REGISTRATION_TOKEN)
_FINGERPRINT_HEAD = struct.pack("!HH", _FINGERPRINT, 4)
_MAPPINGS = {int(m): m for m in Mapping}
_REGISTER_TYPES = (_REGISTER_REQUEST.to_bytes(2, "big"),)
# The answer up to SOFTWARE: header; XOR-MAPPED-ADDRESS (IPv4 or IPv6); LEASE; REGISTRATION-TOKEN (16 bytes).
_ANSWER_V4 = struct.Struct("!HHI12s HHBBHI HHI HH16s")
_ANSWER_V6 = struct.Struct("!HHI12s HHBBH16s HHI HH16s")


class Refresh(NamedTuple):
    """What a keepalive Register says (its signature: punch.rendezvous.signed.signed_with)."""

    peer_id: str
    hosts: bytes  # the CANDIDATE addresses as punch.rendezvous.registry.pack_addresses packs them
    lease: int
    mapping: Mapping
    public_key: bytes  # empty without PUBLIC-KEY


def pack_source(source: Address) -> bytes | None:
    """``source`` as pack_addresses packs one address, or None for one it would store as text (scoped IPv6)."""
    host, port = source
    try:
        ip = socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return None
    return (b"\x04" if len(ip) == 4 else b"\x10") + port.to_bytes(2, "big") + ip


def _unxor(value: bytes, transaction_id: bytes) -> bytes | None:
    """A CANDIDATE value (XOR-MAPPED-ADDRESS layout, RFC 8489 §14.2) packed as pack_addresses does, or None:
    the port and address that follow the family byte, XORed with the cookie (and the transaction ID)."""
    if len(value) == 8 and value[1] == 0x01:
        return b"\x04" + (int.from_bytes(value[2:8], "big") ^ _MASK_V4).to_bytes(6, "big")
    if len(value) == 20 and value[1] == 0x02:
        mask = _PORT_MASK << 128 | int.from_bytes(_COOKIE + transaction_id, "big")
        return b"\x10" + (int.from_bytes(value[2:20], "big") ^ mask).to_bytes(18, "big")
    return None


# (peer ID, CANDIDATEs packed, LEASE, NAT-MAPPING's first byte or None, PUBLIC-KEY or None): what read_refresh
# reads, unconverted
Read = tuple[str, bytes, int, int | None, bytes | None]


def read_refresh(data: bytes) -> Read | None:
    """The keepalive in ``data`` as plain values, or None when it is anything else (the general path takes it
    then). punch/_fastpath.c ``parse_refresh`` returns the same for every input."""
    found = attributes(data) if well_formed(data, _REGISTER_TYPES) else None
    return None if found is None else _read(found, data[8:20])


def read_arrival(data: bytes) -> Read | None:
    """A first Register in ``data`` (unsigned: FINGERPRINT last, no MESSAGE-INTEGRITY-SHA256), read as
    :func:`read_refresh` reads a keepalive, or None when it is anything else (the general path takes it then)."""
    if not well_formed_unsigned(data, _REGISTER_TYPES):
        return None
    found = attributes(data, UNSIGNED_TRAILER_SIZE)
    return None if found is None else _read(found, data[8:20])


def _read(found: list[tuple[int, bytes]], transaction_id: bytes) -> Read | None:
    peer_id: bytes | None = None
    lease: int | None = None
    mapping: int | None = None
    public_key: bytes | None = None
    hosts: list[bytes] = []
    for kind, value in found:
        length = len(value)
        if kind == _PEER_ID and peer_id is None and 1 <= length <= 128:
            peer_id = value
        elif kind == _LEASE and lease is None and length == 4:
            lease = int.from_bytes(value, "big")
        elif kind == _NAT_MAPPING and mapping is None and length == 4:
            mapping = value[0]
        elif kind == _PUBLIC_KEY and public_key is None and length == 32:
            public_key = value
        elif kind == _CANDIDATE and len(hosts) < _MAX_CANDIDATES:
            packed = _unxor(value, transaction_id)
            if packed is None:
                return None
            hosts.append(packed)
        else:
            return None
    if peer_id is None or not lease:
        return None
    try:
        text = peer_id.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text, b"".join(hosts), lease, mapping, public_key


def mapping_of(code: int | None) -> Mapping:
    """NAT-MAPPING's first byte (None: no NAT-MAPPING) as the general path reads it: unknown values are UNKNOWN."""
    return Mapping.UNKNOWN if code is None else _MAPPINGS.get(code, Mapping.UNKNOWN)


def parse_refresh(data: bytes) -> Refresh | None:
    """The keepalive in ``data``, or None when it is anything else (the general path takes it then)."""
    read = read_refresh(data)
    if read is None:
        return None
    peer_id, hosts, lease, mapping, public_key = read
    return Refresh(peer_id, hosts, lease, mapping_of(mapping), public_key or b"")


def software_attribute(software: str) -> bytes:
    """SOFTWARE (RFC 8489 §14.14) as the answer carries it, built once."""
    value = software.encode()
    return struct.pack("!HH", AttributeType.SOFTWARE, len(value)) + value + b"\x00" * (-len(value) % 4)


def answer_size(observed: bytes, software: bytes) -> int:
    """How long :func:`refresh_answer` will be, without building it."""
    return 20 + (12 if observed[0] == 4 else 24) + 8 + 20 + len(software) + 8


def refresh_answer(data: bytes, observed: bytes, lease: int, token: bytes, software: bytes) -> bytes:
    """The success response to the Register in ``data``: XOR-MAPPED-ADDRESS (``observed``, packed), LEASE,
    REGISTRATION-TOKEN, ``software`` (:func:`software_attribute`) and FINGERPRINT, as the general path encodes
    them."""
    transaction_id = data[8:20]
    size = observed[0]
    port = int.from_bytes(observed[1:3], "big") ^ _PORT_MASK
    length = (12 if size == 4 else 24) + 8 + 20 + len(software) + 8
    if size == 4:
        ip = int.from_bytes(observed[3:7], "big") ^ MAGIC_COOKIE
        head = _ANSWER_V4.pack(
            _REGISTER_SUCCESS, length, MAGIC_COOKIE, transaction_id,
            0x0020, 8, 0, 1, port, ip,
            _LEASE, 4, lease,
            _TOKEN, 16, token,
        )  # fmt: skip
    else:
        mask = int.from_bytes(_COOKIE + transaction_id, "big")
        xored = (int.from_bytes(observed[3:19], "big") ^ mask).to_bytes(16, "big")
        head = _ANSWER_V6.pack(
            _REGISTER_SUCCESS, length, MAGIC_COOKIE, transaction_id,
            0x0020, 20, 0, 2, port, xored,
            _LEASE, 4, lease,
            _TOKEN, 16, token,
        )  # fmt: skip
    head += software
    return head + _FINGERPRINT_HEAD + (zlib.crc32(head) ^ FINGERPRINT_XOR).to_bytes(4, "big")


class RefreshCodec(NamedTuple):
    """Reading a keepalive, checking its signature and building its answer: :func:`read_refresh`,
    punch.rendezvous.signed.signed_with and :func:`refresh_answer`, or the same in C."""

    read: Callable[[bytes], Read | None]
    signed_with: Callable[[bytes, bytes], bool]
    answer: Callable[[bytes, bytes, int, bytes, bytes], bytes]


PYTHON_CODEC = RefreshCodec(read_refresh, signed_with, refresh_answer)


def codec(accelerator: Accelerator | None) -> RefreshCodec:
    """The C versions where ``accelerator`` (punch.stun.fastpath.load) is there, else the Python ones."""
    if accelerator is None:
        return PYTHON_CODEC
    return RefreshCodec(accelerator.parse_refresh, accelerator.signed_with, accelerator.refresh_answer)
