"""A peer's fingerprint: its public key in a form people can read out, compare and paste.

The first 20 bytes (160 bits) of SHA-256 over the raw Ed25519 public key (RFC 8032 §5.1.5), in base32 (RFC 4648 §6,
lower case: a-z and 2-7, no 0/1/8/9 to confuse), as 8 groups of 4 characters joined by dashes::

    k4pz-2q7m-ba3x-9... (39 characters)

Read back case-insensitively, with or without the dashes or spaces. 160 bits make a second key with the same
fingerprint as unreachable as a second preimage of SHA-256 truncated there (2^160 work). A fingerprint also serves
as a peer ID: a peer started without ``--id`` registers under its own (``--to FINGERPRINT`` then names and pins it).
"""

from __future__ import annotations

import base64
import hashlib
import re

FINGERPRINT_BYTES = 20
_CHARS = 32  # base32 of 20 bytes, no padding
_GROUP = 4
_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
_SEPARATORS = re.compile(r"[-\s]")
_SHAPE = re.compile(r"^[a-z2-7]{4}(-[a-z2-7]{4}){7}$")


class FingerprintError(ValueError):
    """Text that is not a fingerprint; the message says what is wrong and what one looks like."""


def fingerprint(public_key: bytes) -> str:
    """The fingerprint of a raw 32-byte Ed25519 public key."""
    digest = hashlib.sha256(public_key).digest()[:FINGERPRINT_BYTES]
    plain = base64.b32encode(digest).decode("ascii").lower()
    return "-".join(plain[i : i + _GROUP] for i in range(0, _CHARS, _GROUP))


def looks_like_fingerprint(text: str) -> bool:
    """Whether ``text`` is a fingerprint as :func:`fingerprint` writes it (a peer ID of that shape is one)."""
    return _SHAPE.match(text) is not None


def parse_fingerprint(text: str) -> str:
    """``text`` as a fingerprint in its canonical form; FingerprintError saying what is wrong."""
    plain = _SEPARATORS.sub("", text).lower()
    wrong = sorted({c for c in plain if c not in _ALPHABET})
    if wrong:
        shown = ", ".join(repr(c) for c in wrong[:5])
        raise FingerprintError(
            f"{text!r} is not a fingerprint: {shown} cannot appear in one (only a-z and 2-7); "
            "`punch id` prints one, e.g. abcd-efgh-ijkl-mnop-qrst-uvwx-yz23-4567"
        )
    if len(plain) != _CHARS:
        raise FingerprintError(
            f"{text!r} is not a fingerprint: it has {len(plain)} letters and digits, a fingerprint has {_CHARS} "
            "(8 groups of 4); was it cut short when copied?"
        )
    return "-".join(plain[i : i + _GROUP] for i in range(0, _CHARS, _GROUP))
