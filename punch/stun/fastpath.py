"""The optional C fast path for Binding requests and keepalives (punch/_fastpath.c), and how to switch it off.

``pip install -e .`` builds it where a C compiler exists (setup.py marks it optional); without it, or with
``PUNCH_NO_FASTPATH=1`` in the environment, every datagram goes through the Python codec as before. The C side
answers only a strictly well-formed Binding request (RFC 8489 §12.1) and hands everything else to Python
unchanged; tests/unit/test_fastpath_replies.py holds it to byte-identical replies. It also sends what Python
answers during one batch with one sendmmsg (``send_batch``, punch.stun.protocol), and reads keepalives and builds
their answers for punch.rendezvous.refresh (tests/unit/test_refresh_fastpath.py holds those to the Python versions).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Protocol

from punch.stun.attributes import TABLE
from punch.stun.message import HEADER_LENGTH, Attributes, Message, MessageClass, Method, encode

DISABLE_VARIABLE = "PUNCH_NO_FASTPATH"
API = 5  # FASTPATH_API in punch/_fastpath.c: a module built from another version of the source is not used
# A socket read in batches gets a deeper queue, so that bursts wait instead of being dropped; the kernel caps
# it at net.core.rmem_max (and doubles it for its bookkeeping).
RECEIVE_BUFFER = 4 << 20
Received = list[tuple[bytes, tuple[str, int]]]
Take = Callable[[str, int], int]  # (source IP, requests in this batch) -> how many of them are allowed


class Accelerator(Protocol):
    """What punch/_fastpath.c offers (its docstrings say more)."""

    def drain(
        self, fd: int, tail: bytes, budget: int, take: Take | None = None, /
    ) -> tuple[int, Received, int, int, int]:
        """Answer the Binding requests waiting on ``fd``, as far as ``take`` allows: (answered, the other
        datagrams, send errors, errno, dropped by the rate limit)."""
        ...

    def answer(self, request: bytes, host: str, port: int, tail: bytes, /) -> bytes | None:
        """The reply to one datagram, or None where the datagram would go to Python."""
        ...

    def send_batch(self, fd: int, items: Sequence[tuple[bytes, tuple[str, int]]], /) -> int:
        """Send each (datagram, address) from ``fd`` in order, with sendmmsg: how many could not be sent."""
        ...

    def parse_refresh(self, data: bytes, /) -> tuple[str, bytes, int, int | None, bytes | None] | None:
        """punch.rendezvous.refresh.read_refresh in C."""
        ...

    def signed_with(self, data: bytes, key: bytes, /) -> bool:
        """punch.rendezvous.signed.signed_with in C."""
        ...

    def sha256(self, fast: bool = True, /) -> str:
        """Which SHA-256 signed_with uses: the x86 SHA extensions where there and ``fast`` ("sha-ni"), else
        portable C ("portable")."""
        ...

    def refresh_answer(self, data: bytes, observed: bytes, lease: int, token: bytes, software: bytes, /) -> bytes:
        """punch.rendezvous.refresh.refresh_answer in C."""
        ...


def load() -> Accelerator | None:
    """The accelerator, configured with the codec's attribute table; None if not built or switched off."""
    if os.environ.get(DISABLE_VARIABLE, "") not in ("", "0"):
        return None
    try:
        from punch import _fastpath
    except ImportError:
        return None
    if getattr(_fastpath, "API", None) != API:
        return None
    _fastpath.set_known(TABLE)
    return _fastpath


def unavailable_reason() -> str:
    """Why :func:`load` gives None, for the server's log line."""
    if os.environ.get(DISABLE_VARIABLE, "") not in ("", "0"):
        return f"switched off by {DISABLE_VARIABLE}"
    try:
        from punch import _fastpath
    except ImportError:
        return "punch._fastpath is not built (pip install -e . with a C compiler builds it)"
    return (
        f"punch._fastpath was built from another version of its source (API {getattr(_fastpath, 'API', 1)}, "
        f"this punch wants {API}): pip install -e . builds it again"
    )


def binding_tail(attributes: Attributes) -> bytes:
    """The encoded attributes a Binding success carries after XOR-MAPPED-ADDRESS and before FINGERPRINT."""
    return encode(Message(Method.BINDING, MessageClass.SUCCESS, bytes(12), attributes), fingerprint=False)[
        HEADER_LENGTH:
    ]
