"""A stranger on the lab's internet: sends the datagrams it is given from its own socket and reports the answers.

Run inside the lab's ``attacker`` node (``python -m tests.e2e.attacker --to IP:PORT HEX...``): it sends each
datagram (hex) to ``IP:PORT`` from one UDP socket, then listens until ``--expect`` answers came or ``--listen``
seconds passed (the window in which a victim could answer; silence is the expected outcome of most attacks),
and prints one JSON object: ``{"local": "IP:PORT", "received": [{"from", "message", "error"}]}``.

The datagrams are built by the test with punch's own codec (forged, unsigned, or replayed from a capture);
:func:`udp_in_pcap` and :func:`stun_in_pcap` read the captures ``up --capture DIR`` writes (libpcap, Ethernet,
IPv4, UDP).
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from punch.errors import StunDecodeError
from punch.stun import Address, Message, decode, describe, is_stun

_PCAP_MAGIC = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">"}  # microsecond timestamps
_LINKTYPE_ETHERNET = 1


@dataclass(frozen=True, slots=True)
class Datagram:
    """A UDP datagram seen in a capture: the endpoints it went between and its payload as it was."""

    source: Address
    destination: Address
    data: bytes


@dataclass(frozen=True, slots=True)
class Captured:
    """A STUN message seen in a capture, with the endpoints it went between and its bytes as they were."""

    source: Address
    destination: Address
    data: bytes
    message: Message


def stun_in_pcap(path: Path) -> Iterator[Captured]:
    """The STUN messages in an Ethernet pcap, in capture order (other datagrams are skipped)."""
    for datagram in udp_in_pcap(path):
        if not is_stun(datagram.data):
            continue
        try:
            message = decode(datagram.data)
        except StunDecodeError:
            continue
        yield Captured(datagram.source, datagram.destination, datagram.data, message)


def udp_in_pcap(path: Path) -> Iterator[Datagram]:
    """The UDP datagrams over IPv4 in an Ethernet pcap, in capture order (other packets are skipped)."""
    data = path.read_bytes()
    order = _PCAP_MAGIC.get(data[:4])
    if order is None or len(data) < 24:
        raise ValueError(f"{path}: not a libpcap file with microsecond timestamps")
    (linktype,) = struct.unpack(order + "I", data[20:24])
    if linktype != _LINKTYPE_ETHERNET:
        raise ValueError(f"{path}: link type {linktype}, expected Ethernet ({_LINKTYPE_ETHERNET})")
    offset = 24
    while offset + 16 <= len(data):
        _, _, captured, _ = struct.unpack(order + "IIII", data[offset : offset + 16])
        frame = data[offset + 16 : offset + 16 + captured]
        offset += 16 + captured
        if len(frame) < 14 + 20 or frame[12:14] != b"\x08\x00":
            continue  # not IPv4
        ip = frame[14:]
        header = (ip[0] & 0x0F) * 4
        if ip[9] != socket.IPPROTO_UDP or len(ip) < header + 8:
            continue
        udp = ip[header:]
        sport, dport, length = struct.unpack("!HHH", udp[:6])
        source = (socket.inet_ntoa(ip[12:16]), sport)
        destination = (socket.inet_ntoa(ip[16:20]), dport)
        yield Datagram(source, destination, udp[8:length])


def _endpoint(text: str) -> Address:
    host, _, port = text.rpartition(":")
    return host, int(port)


def _answer(data: bytes, source: Address) -> dict[str, object]:
    entry: dict[str, object] = {"from": f"{source[0]}:{source[1]}"}
    try:
        message = decode(data)
    except StunDecodeError as error:
        entry["message"] = f"not STUN: {error}"
        return entry
    entry["message"] = describe(message)
    error_code = message.error_code()
    if error_code is not None:
        entry["error"] = f"{error_code.code} {error_code.reason}"
    return entry


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="attacker", description=__doc__)
    parser.add_argument("--to", required=True, type=_endpoint, metavar="IP:PORT", help="where the datagrams go")
    parser.add_argument("--listen", type=float, default=2.0, metavar="S", help="listen this long for answers")
    parser.add_argument("--expect", type=int, default=0, metavar="N", help="stop listening after N answers")
    parser.add_argument("datagrams", nargs="+", metavar="HEX", help="each datagram, in hex")
    args = parser.parse_args(argv)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(args.to)  # our source address is then the one the route gives; answers come from there
        for datagram in args.datagrams:
            sock.send(bytes.fromhex(datagram))
        received: list[dict[str, object]] = []
        deadline = time.monotonic() + args.listen
        while args.expect == 0 or len(received) < args.expect:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                data, source = sock.recvfrom(65536)
            except TimeoutError:
                break
            received.append(_answer(data, (str(source[0]), int(source[1]))))
        local = sock.getsockname()
        print(json.dumps({"local": f"{local[0]}:{local[1]}", "received": received}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
