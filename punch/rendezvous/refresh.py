"""The keepalive fast path: a Register that only renews a registration, read and answered from its bytes.

A million peers refreshing every 20 s send 50,000 Registers a second. The general path decodes each into a
Message, walks it again to check MESSAGE-INTEGRITY-SHA256 and encodes the answer attribute by attribute through
the codec's table. A keepalive needs none of that: :func:`parse_refresh` reads the few attributes a refresh
carries straight from the datagram and :func:`refresh_answer` fills in the answer's bytes (the same bytes the
general path would send; the tests compare them).

Strict by construction: anything that is not exactly a well-formed, signed Register with a nonzero LEASE
(RFC 8489 §5 header, attributes tiling the body, MESSAGE-INTEGRITY-SHA256 of 32 bytes then a matching
FINGERPRINT last, §14.6-§14.7, and no attribute but PEER-ID, CANDIDATE, LEASE and NAT-MAPPING before them) gives
None, and the caller hands the datagram to the general path, which answers or counts it exactly as before.
"""

from __future__ import annotations

import hmac
import socket
import struct
import zlib
from typing import NamedTuple

from punch.rendezvous.wire import REGISTRATION_TOKEN_BYTES, Mapping
from punch.stun import MAGIC_COOKIE, Address, AttributeType

_REGISTER_REQUEST = 0x0281  # method 0x0C1 (Register), class request, interleaved as in RFC 8489 §5 figure 3
_REGISTER_SUCCESS = 0x0381
_COOKIE = MAGIC_COOKIE.to_bytes(4, "big")
_PORT_MASK = MAGIC_COOKIE >> 16
_FINGERPRINT_XOR = 0x5354554E
_MAX_CANDIDATES = 8  # the general path keeps the first 8
_PEER_ID = AttributeType.PEER_ID
_CANDIDATE = AttributeType.CANDIDATE
_LEASE = AttributeType.LEASE
_NAT_MAPPING = AttributeType.NAT_MAPPING
_MI_SHA256 = AttributeType.MESSAGE_INTEGRITY_SHA256
_FINGERPRINT = AttributeType.FINGERPRINT
_MAPPINGS = {int(m): m for m in Mapping}
_HEADER = struct.Struct("!HHI")  # type, length, cookie
_TLV = struct.Struct("!HH")
_TRAILER_TYPES = (_MI_SHA256 << 16 | 32, _FINGERPRINT << 16 | 4)


class Refresh(NamedTuple):
    """What a keepalive Register says, and where its MESSAGE-INTEGRITY-SHA256 value starts."""

    peer_id: str
    hosts: bytes  # the CANDIDATE addresses as punch.rendezvous.registry.pack_addresses packs them
    lease: int
    mapping: Mapping
    integrity_at: int


def pack_source(source: Address) -> bytes | None:
    """``source`` as pack_addresses packs one address, or None for one it would store as text (scoped IPv6)."""
    host, port = source
    try:
        ip = socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return None
    return bytes((len(ip),)) + ip + port.to_bytes(2, "big")


def _unxor(value: bytes, transaction_id: bytes) -> bytes | None:
    """A CANDIDATE value (XOR-MAPPED-ADDRESS layout, RFC 8489 §14.2) packed as pack_addresses does, or None."""
    if len(value) == 8 and value[1] == 0x01:
        ip = (int.from_bytes(value[4:8], "big") ^ MAGIC_COOKIE).to_bytes(4, "big")
    elif len(value) == 20 and value[1] == 0x02:
        mask = int.from_bytes(_COOKIE + transaction_id, "big")
        ip = (int.from_bytes(value[4:20], "big") ^ mask).to_bytes(16, "big")
    else:
        return None
    port = int.from_bytes(value[2:4], "big") ^ _PORT_MASK
    return bytes((len(ip),)) + ip + port.to_bytes(2, "big")


def parse_refresh(data: bytes) -> Refresh | None:
    """The keepalive in ``data``, or None when it is anything else (the general path takes it then)."""
    size = len(data)
    if size < 20 + 36 + 8 or size % 4 or _HEADER.unpack_from(data) != (_REGISTER_REQUEST, size - 20, MAGIC_COOKIE):
        return None
    integrity_at = size - 44
    integrity, fingerprint, crc = struct.unpack_from("!I32xII", data, integrity_at)
    if (integrity, fingerprint) != _TRAILER_TYPES or crc != zlib.crc32(data[: size - 8]) ^ _FINGERPRINT_XOR:
        return None
    peer_id: bytes | None = None
    lease: int | None = None
    mapping: int | None = None
    hosts: list[bytes] = []
    offset = 20
    while offset < integrity_at:
        kind, length = _TLV.unpack_from(data, offset)
        start = offset + 4
        offset = start + length + (-length % 4)
        if offset > integrity_at:
            return None
        value = data[start : start + length]
        if kind == _PEER_ID and peer_id is None and 1 <= length <= 128:
            peer_id = value
        elif kind == _LEASE and lease is None and length == 4:
            lease = int.from_bytes(value, "big")
        elif kind == _NAT_MAPPING and mapping is None and length == 4:
            mapping = value[0]
        elif kind == _CANDIDATE and len(hosts) < _MAX_CANDIDATES:
            packed = _unxor(value, data[8:20])
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
    known_mapping = _MAPPINGS.get(mapping, Mapping.UNKNOWN) if mapping is not None else Mapping.UNKNOWN
    return Refresh(text, b"".join(hosts), lease, known_mapping, integrity_at)


def signed_by(data: bytes, refresh: Refresh, key: bytes) -> bool:
    """Whether the MESSAGE-INTEGRITY-SHA256 of ``data`` is right for ``key`` (RFC 8489 §14.6: over the message up
    to the attribute, the header's length pointing past it); constant-time."""
    at = refresh.integrity_at
    covered = data[:2] + (at + 36 - 20).to_bytes(2, "big") + data[4:at]
    return hmac.compare_digest(hmac.digest(key, covered, "sha256"), data[at + 4 : at + 36])


def refresh_answer(data: bytes, observed: bytes, lease: int, token: bytes, software: bytes) -> bytes:
    """The success response to the Register in ``data``: XOR-MAPPED-ADDRESS (``observed``, packed), LEASE,
    REGISTRATION-TOKEN, SOFTWARE (``software``, its value) and FINGERPRINT, as the general path encodes them."""
    transaction_id = data[8:20]
    size = observed[0]
    ip = int.from_bytes(observed[1 : 1 + size], "big")
    port = int.from_bytes(observed[1 + size : 3 + size], "big") ^ _PORT_MASK
    if size == 4:
        mapped = b"\x00\x20\x00\x08\x00\x01" + port.to_bytes(2, "big") + (ip ^ MAGIC_COOKIE).to_bytes(4, "big")
    else:
        mask = int.from_bytes(_COOKIE + transaction_id, "big")
        mapped = b"\x00\x20\x00\x14\x00\x02" + port.to_bytes(2, "big") + (ip ^ mask).to_bytes(16, "big")
    body = (
        mapped
        + b"\x4c\x06\x00\x04"
        + lease.to_bytes(4, "big")
        + b"\x4c\x0a\x00\x10"
        + token[:REGISTRATION_TOKEN_BYTES]
        + b"\x80\x22"
        + len(software).to_bytes(2, "big")
        + software
        + b"\x00" * (-len(software) % 4)
    )
    head = _REGISTER_SUCCESS.to_bytes(2, "big") + (len(body) + 8).to_bytes(2, "big") + _COOKIE + transaction_id
    crc = zlib.crc32(head + body) ^ _FINGERPRINT_XOR
    return head + body + b"\x80\x28\x00\x04" + crc.to_bytes(4, "big")
