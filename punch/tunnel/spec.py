"""What a user asks to forward (``--forward [udp:]LOCAL_PORT:HOST:PORT``) and allows (``--allow [udp:]HOST:PORT``),
read strictly: a bad one is a one-line error naming the flag, the value and the fix."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from punch.errors import UsageError

PROTOCOLS = ("tcp", "udp")


@dataclass(frozen=True, slots=True)
class Target:
    """Where the other peer connects: a protocol, a host (name or address) and a port on its side."""

    protocol: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.protocol}:{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Forward:
    """A local port whose connections (TCP) or flows (UDP) go to ``target`` on the other peer's side."""

    local_port: int
    target: Target


def _port(text: str, flag: str, value: str, what: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise UsageError(f"{flag} {value!r}: {what} {text!r} is not a port; give a number from 1 to 65535")
    return int(text)


def _protocol(value: str) -> tuple[str, str]:
    head, sep, rest = value.partition(":")
    if sep and head in PROTOCOLS:
        return head, rest
    return "tcp", value


def _host_port(text: str, flag: str, value: str, example: str) -> tuple[str, int]:
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise UsageError(f"{flag} {value!r}: an IPv6 host is written [ADDRESS]:PORT, e.g. {example}")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise UsageError(f"{flag} {value!r}: {host!r} is not an IPv6 address") from None
        return host, _port(rest[1:], flag, value, "port")
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise UsageError(f"{flag} {value!r}: expected HOST:PORT, e.g. {example}")
    if ":" in host:
        raise UsageError(f"{flag} {value!r}: write an IPv6 host in brackets, [ADDRESS]:PORT")
    return host, _port(port, flag, value, "port")


def parse_forward(value: str, flag: str = "--forward") -> Forward:
    """``[udp:]LOCAL_PORT:HOST:PORT``: connections to our LOCAL_PORT go to HOST:PORT on the other side."""
    protocol, rest = _protocol(value)
    local, sep, target = rest.partition(":")
    example = "8080:127.0.0.1:80 or udp:5353:127.0.0.1:53"
    if not sep:
        raise UsageError(f"{flag} {value!r}: expected [udp:]LOCAL_PORT:HOST:PORT, e.g. {example}")
    host, port = _host_port(target, flag, value, "8080:127.0.0.1:80")
    return Forward(_port(local, flag, value, "local port"), Target(protocol, host, port))


def parse_allow(value: str, flag: str = "--allow") -> Target:
    """``[udp:]HOST:PORT``: what the other peer may have us connect to (nothing is reachable by default)."""
    protocol, rest = _protocol(value)
    host, port = _host_port(rest, flag, value, "127.0.0.1:80 or udp:127.0.0.1:53")
    return Target(protocol, host, port)
