"""Peers know each other by their keys, through the lab's real NAT (punch.identity): the issue's story of an impostor,
trusted on first use and pinned, and a capture at the server that shows it never sends key material."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from netns.testing import Lab
from punch.identity.keyfile import Identity
from punch.stun import AttributeType, MessageClass, Method, decode
from tests.e2e.punch_in_lab import SERVER, finish, start_peer, start_server, wait_for_line

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed (Debian package tcpdump)"),
]

RETIRED_SESSION_KEY = 0x4C09  # the attribute that carried a key the server minted, in clear


def identity_file(directory: Path, name: str) -> tuple[Path, Identity]:
    identity = Identity.generate()
    path = directory / name
    path.write_bytes(identity.pem())
    path.chmod(0o600)
    return path, identity


def peer(lab: Lab, me: str, other: str, identity: Path, known: Path, *extra: str) -> subprocess.Popen[Any]:
    return start_peer(
        lab, me, other, "--send", f"hello from {me}", "--identity", str(identity), "--known-peers", str(known), *extra
    )


def udp_payloads_from(pcap: Path, source: str, port: int) -> list[bytes]:
    """The payloads of the UDP datagrams from ``source``:``port`` in a pcap of an Ethernet link (tcpdump -w)."""
    data = pcap.read_bytes()
    magic, linktype = struct.unpack("<I", data[:4])[0], struct.unpack("<I", data[20:24])[0]
    assert (magic, linktype) == (0xA1B2C3D4, 1), "expected a microsecond pcap of an Ethernet link"
    found, offset = [], 24
    while offset + 16 <= len(data):
        captured = struct.unpack("<I", data[offset + 8 : offset + 12])[0]
        frame = data[offset + 16 : offset + 16 + captured]
        offset += 16 + captured
        if frame[12:14] != b"\x08\x00" or frame[23] != 17:  # IPv4, UDP
            continue
        header = (frame[14] & 0x0F) * 4
        ip, udp = frame[14:], frame[14 + header :]
        if ".".join(str(b) for b in ip[12:16]) == source and int.from_bytes(udp[0:2], "big") == port:
            found.append(udp[8 : int.from_bytes(udp[4:6], "big")])
    return found


@pytest.mark.parametrize("lab", ["home", "none"], indirect=True)
def test_an_impostor_of_a_known_peer_is_refused_and_the_server_sends_no_key(lab: Lab, tmp_path: Path) -> None:
    """10 and 14 meet; 14 leaves; another machine registers as 14 (its ID is free again) and 10, asking for 14
    again, refuses it with the keys in its message and takes nothing of it. Meanwhile the server's own datagrams,
    captured on its link, carry no key: the session's keys (as the peers logged them) appear in none of them."""
    id10, ten = identity_file(tmp_path, "id10")
    id14, real = identity_file(tmp_path, "id14")
    fake_file, fake = identity_file(tmp_path, "fake")
    known10, keylog = tmp_path / "known10", tmp_path / "keylog"
    pcap = tmp_path / "server.pcap"
    capture = lab.spawn(
        "server", "tcpdump", "-n", "-i", "net-server", "-U", "--immediate-mode", "-w", str(pcap), "udp", text=True
    )
    wait_for_line(capture, r"listening on net-server")
    server = start_server(lab)
    first10 = peer(lab, "10", "14", id10, known10, "--keylog", str(keylog))
    wait_for_line(server, r"10 asks for 14: waiting for 14 to register")
    first14 = peer(lab, "14", "10", id14, tmp_path / "known14", "--keylog", str(keylog))
    (code10, result10, log10), (code14, result14, log14) = finish(first10), finish(first14)
    assert (code10, code14) == (0, 0), log10 + log14
    assert (result10["received"], result10["peer_key"]) == (["hello from 14"], real.fingerprint)
    assert result14["peer_key"] == ten.fingerprint
    capture.terminate()
    capture.communicate(timeout=10)

    # The server's own datagrams: STUN, no SESSION-KEY, and no session key's bytes anywhere in them.
    # The key log (NSS format): each peer's session key, and QUIC's TLS secrets of both ends
    logged = [line.split() for line in keylog.read_text().splitlines() if line and not line.startswith("#")]
    session_keys = [bytes.fromhex(fields[2]) for fields in logged if fields[0] == "PUNCH_SESSION_KEY"]
    assert len(session_keys) == 2
    assert session_keys[0] == session_keys[1]  # both peers derived the same key; the server never sent it
    assert {fields[0] for fields in logged} >= {"CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"}
    keys = {bytes.fromhex(fields[2]) for fields in logged}
    sent = udp_payloads_from(pcap, SERVER, 3478)
    introduces = [
        m for m in map(decode, sent) if (m.method, m.message_class) == (Method.INTRODUCE, MessageClass.REQUEST)
    ]
    assert len(introduces) >= 2
    assert {m.raw(AttributeType.PUBLIC_KEY) for m in introduces} == {ten.public_key, real.public_key}
    for datagram in sent:
        assert RETIRED_SESSION_KEY not in [t for t, _ in decode(datagram).attributes]
        assert not any(key in datagram for key in keys)

    # The impostor: 14's ID is free again; 10 asks for 14 and meets another key
    again10 = peer(lab, "10", "14", id10, known10)
    wait_for_line(server, r"10 asks for 14: waiting for 14 to register")
    impostor = peer(lab, "14", "10", fake_file, tmp_path / "known-fake", "--timeout", "10", "--punch-timeout", "3")
    code, result, log = finish(again10)
    assert code == 1, log
    assert result["error"] == (
        f"14 presented the key {fake.fingerprint}, but we know 14 by {real.fingerprint} ({known10} line 2): it may "
        f"be an impostor. If 14 really has a new key, accept it with `--to-key {fake.fingerprint}` (that replaces "
        "the line), or delete that line"
    )
    assert (result["received"], result["path"]) == ([], None)
    impostor_code, impostor_result, _ = finish(impostor)
    assert impostor_code == 1
    assert impostor_result["received"] == []
    assert known10.read_text().splitlines()[1:] == [f"{real.fingerprint} 14"]  # unchanged


@pytest.mark.parametrize("lab", ["home", "none"], indirect=True)
def test_a_pinned_peer_is_accepted_and_an_impostor_refused_on_first_contact(lab: Lab, tmp_path: Path) -> None:
    id10, _ = identity_file(tmp_path, "id10")
    id14, real = identity_file(tmp_path, "id14")
    fake_file, fake = identity_file(tmp_path, "fake")
    server = start_server(lab)
    pinned = peer(lab, "10", "14", id10, tmp_path / "known-a", "--to-key", real.fingerprint)
    wait_for_line(server, r"10 asks for 14: waiting for 14 to register")
    real14 = peer(lab, "14", "10", id14, tmp_path / "known14")
    (code10, result10, log10), (code14, _, log14) = finish(pinned), finish(real14)
    assert (code10, code14, result10["received"]) == (0, 0, ["hello from 14"]), log10 + log14

    fresh = tmp_path / "known-b"  # no memory of 14 at all: only the pin speaks
    pinned = peer(lab, "10", "14", id10, fresh, "--to-key", real.fingerprint)
    wait_for_line(server, r"10 asks for 14: waiting for 14 to register")
    impostor = peer(lab, "14", "10", fake_file, tmp_path / "known-fake", "--timeout", "10", "--punch-timeout", "3")
    code, result, log = finish(pinned)
    assert code == 1, log
    assert result["error"] == f"14 presented the key {fake.fingerprint}, not the pinned {real.fingerprint}: refused"
    assert result["received"] == []
    assert finish(impostor)[0] == 1
    assert not fresh.exists() or "14" not in fresh.read_text()
