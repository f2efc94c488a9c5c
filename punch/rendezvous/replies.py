"""Answers that never amplify: no reply is larger than the request it answers plus a Binding reply's allowance.

Any STUN server answers a 20-byte Binding request with a larger reply (XOR-MAPPED-ADDRESS, SOFTWARE, FINGERPRINT,
RFC 8489 §12.1), and anyone can make it send that to a forged source address: that excess is the floor every
public STUN server accepts. The rendezvous server holds every other answer to it (errors with their reason
phrases, 420 with UNKNOWN-ATTRIBUTES, Register's answer with its token): an answer is sent as it is when it fits in
``len(request) + binding_allowance``; otherwise it loses SOFTWARE, then (an error) the end of its reason phrase;
what still does not fit is not sent. The allowance is the excess of the server's own Binding reply to a
header-only request, for the source's address family (an IPv6 XOR-MAPPED-ADDRESS is 12 bytes longer).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

from punch import SOFTWARE
from punch.stun import HEADER_LENGTH, AttributeType, ErrorCode, Message, MessageClass, Method, encode, make_success


@functools.cache
def binding_allowance(ipv6: bool) -> int:
    """Bytes the server's Binding reply (XOR-MAPPED-ADDRESS, SOFTWARE, FINGERPRINT) adds to a header-only request."""
    request = Message(Method.BINDING, MessageClass.REQUEST, bytes(12))
    mapped = ("::", 0) if ipv6 else ("0.0.0.0", 0)
    reply = make_success(request, ((AttributeType.XOR_MAPPED_ADDRESS, mapped), (AttributeType.SOFTWARE, SOFTWARE)))
    return len(encode(reply)) - HEADER_LENGTH


def limit_for(request_size: int, source_host: str) -> int:
    """The largest answer a request of ``request_size`` bytes from ``source_host`` may get."""
    return request_size + binding_allowance(":" in source_host)


def fit(answer: Message, limit: int, wire: Callable[[Message], bytes]) -> bytes | None:
    """``answer``'s bytes (``wire`` encodes, signing as the endpoint would) cut to ``limit``; None if it cannot be.

    What goes, in order: SOFTWARE (informational, RFC 8489 §14.14), then the end of an error's reason phrase
    (meant for diagnostics, §14.8; cut on a character boundary). Nothing else is touched.
    """
    data = wire(answer)
    if len(data) <= limit:
        return data
    answer = dataclasses.replace(
        answer, attributes=tuple(a for a in answer.attributes if a[0] != AttributeType.SOFTWARE)
    )
    data = wire(answer)
    error = answer.error_code()
    if len(data) <= limit or error is None:
        return data if len(data) <= limit else None
    reason = error.reason.encode("utf-8")
    longest = min(len(reason), len(reason) - (len(data) - limit) + 3)  # padding: the cut saves within 3 bytes of it
    for keep in range(longest, -1, -1):
        shorter = ErrorCode(error.code, reason[:keep].decode("utf-8", "ignore"))
        attributes = tuple(
            (kind, shorter if kind == AttributeType.ERROR_CODE else value) for kind, value in answer.attributes
        )
        data = wire(dataclasses.replace(answer, attributes=attributes))
        if len(data) <= limit:
            return data
    return None
