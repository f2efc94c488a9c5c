"""Endpoints as people write them: ``HOST[:PORT]`` or ``[V6]:PORT``, read strictly (a flag's or an argument's value);
a server may also be a name, resolved to every address it has."""

from __future__ import annotations

import ipaddress
import socket

from punch.errors import UsageError
from punch.stun import Address


def parse_endpoint(text: str, flag: str, default_port: int | None) -> Address:
    """``HOST[:PORT]`` or ``[V6]:PORT`` -> (host, port); UsageError naming the flag and the fix."""
    host, port_text = _split(text)
    if not _is_ip(host):
        raise UsageError(f"{flag} {text!r}: {host!r} is not an IP address; give e.g. 203.0.113.1:3478")
    return (host, _port(text, flag, port_text, default_port))


def resolve_servers(text: str, flag: str, default_port: int) -> tuple[Address, ...]:
    """``HOST[:PORT]``, ``[V6]:PORT`` or ``NAME[:PORT]`` -> its endpoints: the address itself, or each address the
    name resolves to (AAAA and A records, IPv6 first: punch.peer.dualstack offers both families). UsageError naming
    the flag when the name does not resolve."""
    host, port_text = _split(text)
    if text.startswith("[") or _is_ip(host):  # (brackets hold an IPv6 address, never a name)
        return (parse_endpoint(text, flag, default_port),)
    port = _port(text, flag, port_text, default_port)
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as error:
        reason = error.strerror if isinstance(error, socket.gaierror) else str(error)
        raise UsageError(f"{flag} {text!r}: cannot resolve {host!r} ({reason}); give e.g. 203.0.113.1:3478") from None
    addresses = dict.fromkeys(
        (str(sockaddr[0]), port) for family, *_, sockaddr in found if family in (socket.AF_INET6, socket.AF_INET)
    )
    return tuple(sorted(addresses, key=lambda address: ":" not in address[0]))  # IPv6 first, the resolver's order kept


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _split(text: str) -> tuple[str, str | None]:
    """(host, the port's text if there is one)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else None
    if text.count(":") == 1:
        host, port_text = text.split(":")
        return host, port_text
    return text, None


def _port(text: str, flag: str, port_text: str | None, default_port: int | None) -> int:
    if port_text is None:
        if default_port is None:
            raise UsageError(f"{flag} {text!r}: no port; give HOST:PORT, e.g. 0.0.0.0:3478")
        return default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UsageError(f"{flag} {text!r}: port must be a number from 0 to 65535")
    return int(port_text)
