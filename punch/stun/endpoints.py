"""Endpoints as people write them: ``HOST[:PORT]`` or ``[V6]:PORT``, read strictly (a flag's or an argument's value)."""

from __future__ import annotations

import ipaddress

from punch.errors import UsageError
from punch.stun import Address


def parse_endpoint(text: str, flag: str, default_port: int | None) -> Address:
    """``HOST[:PORT]`` or ``[V6]:PORT`` -> (host, port); UsageError naming the flag and the fix."""
    host, port_text = text, None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise UsageError(f"{flag} {text!r}: {host!r} is not an IP address; give e.g. 203.0.113.1:3478") from None
    if port_text is None:
        if default_port is None:
            raise UsageError(f"{flag} {text!r}: no port; give HOST:PORT, e.g. 0.0.0.0:3478")
        return (host, default_port)
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UsageError(f"{flag} {text!r}: port must be a number from 0 to 65535")
    return (host, int(port_text))
