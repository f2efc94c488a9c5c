"""Who may use the rendezvous: the keys that sign requests (MESSAGE-INTEGRITY-SHA256, RFC 8489 §14.6).

- Open server (no secret): a first Register is unsigned; from then on the ID's registration token signs every
  Register and Connect for it (first come, first served).
- Closed group (``--secret-file``): a first Register is signed with the group key; later requests with a key
  bound to both the group and the token, so neither a stranger nor another member can act for the ID.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from punch.errors import UsageError

MIN_SECRET_BYTES = 16
_GROUP_LABEL = b"punch/1 rendezvous group"


def group_key(secret: bytes) -> bytes:
    """The key a group's secret gives (a label keeps it apart from any other use of the secret)."""
    return hmac.new(secret, _GROUP_LABEL, hashlib.sha256).digest()


def request_key(group: bytes | None, token: bytes | None) -> bytes | None:
    """The key that signs a rendezvous request, or None where requests go unsigned (open server, new ID)."""
    if token is None:
        return group
    return token if group is None else hmac.new(group, token, hashlib.sha256).digest()


def read_secret(path: str, flag: str = "--secret-file") -> bytes:
    """The group key from a secret file; UsageError naming the flag and the fix."""
    try:
        secret = Path(path).read_bytes().strip()
    except OSError as error:
        make = f"head -c 32 /dev/urandom | base64 > {path}"
        raise UsageError(f"{flag} {path}: cannot read it ({error.strerror}); make one with `{make}`") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise UsageError(f"{flag} {path}: the secret is {len(secret)} bytes; use at least {MIN_SECRET_BYTES}")
    return group_key(secret)
