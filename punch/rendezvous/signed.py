"""Signed requests read from their bytes: what the server's fast paths (keepalives, the relay) share.

A message here is exactly: an RFC 8489 §5 header (a type the caller names, the length of the rest, the magic
cookie), attributes tiling the body, then MESSAGE-INTEGRITY-SHA256 with a 32-byte value and FINGERPRINT last
(§14.6, §14.7), 44 bytes together. Anything else gives False or None, and the caller hands the datagram to the
general path, which decodes it with the full codec and drops or answers it there.
"""

from __future__ import annotations

import hmac
import struct
import zlib
from collections.abc import Container

from punch.stun import MAGIC_COOKIE, AttributeType

TRAILER_SIZE = 44  # MESSAGE-INTEGRITY-SHA256 (4 + 32) and FINGERPRINT (4 + 4)
FINGERPRINT_XOR = 0x5354554E  # RFC 8489 §14.7
_HEADER = struct.Struct("!2sHI")  # type, length, cookie
_TLV = struct.Struct("!HH")
_MI_HEAD = struct.Struct("!HH")  # MESSAGE-INTEGRITY-SHA256's type and length


def _framed(data: bytes, types: Container[bytes], trailer: int) -> bool:
    """Header (its 2-byte type in ``types``), its length and cookie right, room for a ``trailer`` of that many bytes,
    and FINGERPRINT last, right."""
    size = len(data)
    if size < 20 + trailer or size % 4:
        return False
    kind, length, cookie = _HEADER.unpack_from(data)
    if kind not in types or length != size - 20 or cookie != MAGIC_COOKIE:
        return False
    fp, fp_length, crc = _FINGERPRINT_TRAILER.unpack_from(data, size - UNSIGNED_TRAILER_SIZE)
    return (fp, fp_length) == (AttributeType.FINGERPRINT, 4) and crc == zlib.crc32(data[:-8]) ^ FINGERPRINT_XOR


def well_formed(data: bytes, types: Container[bytes]) -> bool:
    """Header (its 2-byte type in ``types``), length, cookie, then MESSAGE-INTEGRITY-SHA256 and a right
    FINGERPRINT at the end."""
    if not _framed(data, types, TRAILER_SIZE):
        return False
    mi, mi_length = _MI_HEAD.unpack_from(data, len(data) - TRAILER_SIZE)
    return (mi, mi_length) == (AttributeType.MESSAGE_INTEGRITY_SHA256, 32)


_FINGERPRINT_TRAILER = struct.Struct("!HHI")
UNSIGNED_TRAILER_SIZE = 8  # FINGERPRINT alone


def well_formed_unsigned(data: bytes, types: Container[bytes]) -> bool:
    """As :func:`well_formed`, for a message with FINGERPRINT last and no MESSAGE-INTEGRITY-SHA256 before it (a peer's
    first Register on an open server: it has no token to sign with yet)."""
    return _framed(data, types, UNSIGNED_TRAILER_SIZE)


def attributes(data: bytes, trailer: int = TRAILER_SIZE) -> list[tuple[int, bytes]] | None:
    """The (type, value) attributes before the trailer (``trailer`` bytes: :func:`well_formed`'s, or
    UNSIGNED_TRAILER_SIZE) of a well-formed message, if they tile its body exactly; None otherwise."""
    end = len(data) - trailer
    found = []
    offset = 20
    while offset < end:
        kind, length = _TLV.unpack_from(data, offset)
        start = offset + 4
        offset = start + length + (-length % 4)
        if offset > end:
            return None
        found.append((kind, data[start : start + length]))
    return found


def signed_with(data: bytes, key: bytes) -> bool:
    """Whether the MESSAGE-INTEGRITY-SHA256 of a :func:`well_formed` message is right for ``key`` (RFC 8489
    §14.6: over the message up to the attribute, the header's length pointing past it); constant-time."""
    at = len(data) - TRAILER_SIZE
    covered = data[:2] + (at + 36 - 20).to_bytes(2, "big") + data[4:at]
    return hmac.compare_digest(hmac.digest(key, covered, "sha256"), data[at + 4 : at + 36])
