"""``up --capture DIR``: pcaps of every NAT's WAN that Wireshark's dissectors (tshark) read as STUN and QUIC,
nothing malformed; ``status`` lists them and ``down`` stops the captures."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from netns.testing import LabFactory
from tests.e2e.punch_in_lab import WAN, finish, start_peer, start_server

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed (Debian package tcpdump)"),
    pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (Debian package tshark)"),
]

# What Wireshark may remark on in punch's traffic: punch's own attributes (private range, unknown to it); the low
# TTLs of the opener's probe and of the route discovery (--open-ttl auto sends one Binding request per TTL 1..6
# toward the server), both on purpose; and its UDP dissector's guess from the port alone: an ephemeral port that
# happens to fall in 33435-33464, traceroute's classic range, is called "Possible traceroute". In QUIC: the padding
# of a datagram that carries an Initial packet, which RFC 9000 §14.1 requires (at least 1200 bytes), and a resent
# Initial's CRYPTO frame at the offset it had before.
EXPECTED_REMARKS = (
    r"Unknown attribute 0x(4c0[1-9a-f]|cc0[1-9])|\"Time To Live\" only [1-6]"
    r"|Possible traceroute: hop #\d+, attempt #[1-3]|\(Random\) padding data appended to the datagram"
    r"|This QUIC frame has a reused stream offset \(retransmission\?\)"
)
# Wireshark's QUIC dissector claims a flow once it has seen an Initial on it and does not tell STUN apart by the first
# byte as punch does (RFC 7983), so a connectivity check that follows the Initial on the same ports is read as a QUIC
# packet it cannot place. Those remarks are expected exactly on datagrams that are STUN: first byte 0-3, magic cookie.
STUN_READ_AS_QUIC = (
    r"Unknown QUIC connection\. Missing Initial Packet or migrated connection\?|Failed to create decryption.*"
)


def tshark(pcap: Path, keylog: Path, *args: str) -> str:
    """tshark's reading of ``pcap``, QUIC decrypted with the secrets a peer wrote to ``keylog`` (--keylog)."""
    return subprocess.run(
        ["tshark", "-o", f"tls.keylog_file:{keylog}", "-r", str(pcap), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def test_pcaps_of_a_punch_decode_as_stun_and_quic_without_malformed_packets(
    lab_factory: LabFactory, tmp_path: Path
) -> None:
    captures = tmp_path / "pcaps"
    lab = lab_factory(args=["--capture", str(captures)])
    status = json.loads(lab.cli("status", "--name", lab.name, "--json").stdout)
    assert [(c["node"], c["interface"]) for c in status["captures"]] == [("nat10", "wan10"), ("nat14", "wan14")]
    start_server(lab)
    keylog = tmp_path / "keys.log"
    peer10 = start_peer(lab, "10", "14", "--send", "hello from 10", "--keylog", str(keylog))
    peer14 = start_peer(lab, "14", "10", "--send", "hello from 14")
    (code10, result10, log10), (code14, _, log14) = finish(peer10), finish(peer14)
    assert (code10, code14, result10["path"]) == (0, 0, "direct"), log10 + log14
    lab.down()  # stops tcpdump, which has written every packet as it came (-U)

    for pcap, me in ((captures / "nat10-wan10.pcap", "10"), (captures / "nat14-wan14.pcap", "14")):
        # Remarks joined by "|", not tshark's default ",": "Possible traceroute: hop #4, attempt #1" has a comma.
        fields = (
            "-T",
            "fields",
            "-E",
            "aggregator=|",
            "-e",
            "frame.protocols",
            "-e",
            "_ws.expert.message",
            "-e",
            "udp.payload",
        )
        lines = tshark(pcap, keylog, *fields).splitlines()
        udp = [line for line in lines if ":udp" in line.split("\t")[0]]
        assert udp, f"no UDP in {pcap}"
        for line in udp:
            protocols, remarks, payload = line.split("\t")
            assert re.search(r":udp:(stun|quic)", protocols), (pcap.name, line)  # every datagram: STUN or QUIC
            for remark in filter(None, remarks.split("|")):
                if re.fullmatch(STUN_READ_AS_QUIC, remark):
                    assert re.match("0[0-3].{6}2112a442", payload), (pcap.name, line)
                else:
                    assert re.fullmatch(EXPECTED_REMARKS, remark), (pcap.name, remark)
        assert "Malformed" not in tshark(pcap, keylog, "-V")
        # The peer-to-peer flow is in it: the NAT's public address talks to the other NAT's public address.
        other = WAN["14" if me == "10" else "10"]
        for protocol in ("stun", "quic"):
            pairs = tshark(pcap, keylog, "-Y", protocol, "-T", "fields", "-e", "ip.src", "-e", "ip.dst").split()
            assert WAN[me] in pairs, protocol
            assert other in pairs, protocol
        # Decrypted with the peer's key log, the text is in a QUIC stream: what Wireshark shows is what was sent.
        streams = tshark(pcap, keylog, "-Y", "quic.stream_data", "-T", "fields", "-e", "quic.stream_data")
        assert b"hello from 10".hex() in streams.replace(":", ""), pcap.name
