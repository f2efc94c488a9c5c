"""Wireshark's dissector (tshark) reads every kind of message punch sends as STUN, with nothing malformed.

Its only remarks are that punch's own attributes (0x4C01-0x4C0A, 0xCC01-0xCC02) are unknown to it, which is
what an extension in the Expert Review ranges looks like to a dissector that predates it.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (Debian package tshark)"),
]

SAMPLES = sorted((Path(__file__).parent.parent / "data" / "stun").glob("punch_*.hex"))


def udp_over_ipv4(payload: bytes, sport: int, dport: int) -> bytes:
    """A raw IPv4 packet (LINKTYPE_RAW) from 198.51.100.10 to 203.0.113.1 carrying ``payload`` over UDP."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, bytes([198, 51, 100, 10]), bytes([203, 0, 113, 1])
    )
    words = struct.unpack("!10H", header)
    total = sum(words)
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    header = header[:10] + struct.pack("!H", ~total & 0xFFFF) + header[12:]
    return header + udp


def pcap(packets: list[bytes]) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)  # LINKTYPE_RAW
    for index, packet in enumerate(packets):
        out += struct.pack("<IIII", index, 0, len(packet), len(packet)) + packet
    return out


def test_tshark_decodes_punch_messages_as_stun_without_warnings(tmp_path: Path) -> None:
    assert len(SAMPLES) >= 6
    messages = [bytes.fromhex(p.read_text().strip()) for p in SAMPLES]
    capture = tmp_path / "punch.pcap"
    capture.write_bytes(pcap([udp_over_ipv4(m, 40000, 3478) for m in messages]))
    fields = subprocess.run(
        ["tshark", "-r", str(capture), "-T", "fields", "-e", "frame.protocols", "-e", "_ws.expert.message"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.splitlines()
    assert len(fields) == len(messages)
    for sample, line in zip(SAMPLES, fields, strict=True):
        protocols, _, remarks = line.partition("\t")
        assert protocols.endswith(":udp:stun"), (sample.name, line)
        for remark in filter(None, remarks.split(",")):
            assert re.fullmatch(r"Unknown attribute 0x(4c0[1-9a-d]|cc0[1-6])", remark), (sample.name, remark)
    verbose = subprocess.run(
        ["tshark", "-r", str(capture), "-V"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "Malformed" not in verbose
    assert verbose.count("[CRC-32 Status: Good]") == len(messages)  # Wireshark checked every FINGERPRINT
