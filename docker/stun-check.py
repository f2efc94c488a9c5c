#!/usr/bin/env python3
"""stun-check HOST[:PORT] [--timeout S]: one STUN Binding request (RFC 8489 §5), stdlib only.

Exit 0 and print ``HOST:PORT answered: mapped IP:PORT`` (the XOR-MAPPED-ADDRESS, RFC 8489 §14.2: our
address as the server saw it, i.e. after any NAT) when a Binding success response with our transaction ID
arrives; exit 1 with the reason on stderr otherwise. The image's HEALTHCHECK runs it against the server,
and the docker tests use it to show what a container can and cannot reach.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import time

MAGIC_COOKIE = 0x2112A442
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
XOR_MAPPED_ADDRESS = 0x0020
HEADER = struct.Struct("!HHI12s")


def mapped_address(message: bytes) -> str | None:
    """The XOR-MAPPED-ADDRESS (IPv4) of a Binding response, or None; lengths checked before slicing."""
    offset = HEADER.size
    while offset + 4 <= len(message):
        kind, length = struct.unpack_from("!HH", message, offset)
        value = message[offset + 4 : offset + 4 + length]
        if len(value) < length:
            return None
        if kind == XOR_MAPPED_ADDRESS and length == 8 and value[1] == 0x01:
            port = struct.unpack_from("!H", value, 2)[0] ^ (MAGIC_COOKIE >> 16)
            address = struct.unpack_from("!I", value, 4)[0] ^ MAGIC_COOKIE
            return f"{socket.inet_ntoa(struct.pack('!I', address))}:{port}"
        offset += 4 + (length + 3) // 4 * 4
    return None


def check(host: str, port: int, timeout: float) -> str:
    """Send Binding requests (resent every 0.5 s) until a matching success response or ``timeout``."""
    transaction = os.urandom(12)
    request = HEADER.pack(BINDING_REQUEST, 0, MAGIC_COOKIE, transaction)
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        while (left := deadline - time.monotonic()) > 0:
            sock.sendto(request, (host, port))
            sock.settimeout(min(0.5, left))
            try:
                message, _ = sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError as error:  # e.g. ICMP port or network unreachable
                raise SystemExit(f"stun-check: {host}:{port}: {error.strerror or error}") from None
            if len(message) < HEADER.size:
                continue
            kind, _, cookie, answered = HEADER.unpack_from(message)
            if cookie == MAGIC_COOKIE and answered == transaction and kind == BINDING_SUCCESS:
                return mapped_address(message) or "?"
    raise SystemExit(f"stun-check: {host}:{port}: no Binding success response within {timeout:g} s")


def main() -> None:
    parser = argparse.ArgumentParser(prog="stun-check", description=__doc__.splitlines()[0])
    parser.add_argument("server", metavar="HOST[:PORT]", help="a STUN server (port 3478 if not given)")
    parser.add_argument("--timeout", type=float, default=2.0, metavar="S", help="give up after S seconds (2)")
    args = parser.parse_args()
    host, _, port = args.server.partition(":")
    print(f"{host}:{port or 3478} answered: mapped {check(host, int(port or 3478), args.timeout)}")


if __name__ == "__main__":
    main()
