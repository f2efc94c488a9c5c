"""A stranger on the lab's internet attacks a live session (needs root): it tries to take peer 14's ID at the
server, injects checks, relayed packets and QUIC packets into the session with a forged key, and replays what it
captured of an earlier session and of this one.

The lab is netns/topologies/attacker.yaml (the default lab plus ``attacker`` on core) with both NATs full cones
(endpoint-independent filtering), so the attacker's datagrams to a peer's public endpoint do reach the peer:
punch itself must refuse them, not the NAT. It knows the endpoints and what crossed nat14's WAN (the lab's
capture); it never knows the session key. Every attempt must fail where it lands (the server answers 401, the
peer drops or ignores it, with a log line and a counter), and the session goes on as if nothing happened.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest

import netns
from netns.testing import Lab, LabFactory
from punch.stun import AttributeType, Message, MessageClass, Method, encode, is_stun, new_transaction_id
from punch.stun.wire import request
from punch.transport.demux import Carried, classify
from tests.e2e.attacker import stun_in_pcap, udp_in_pcap
from tests.e2e.punch_in_lab import PY, SERVER, WAN, chat_peer, end_chat, finish, start_peer, start_server, wait_for_line

pytestmark = pytest.mark.e2e

TOPOLOGY = Path(netns.__file__).parent / "topologies" / "attacker.yaml"
ATTACKER = "203.0.113.166"
SERVER_ENDPOINT = f"{SERVER}:3478"
TAKEN = r"ID 14 is taken for \d+ s; choose another"
CLOSED = "closed group: sign with --secret-file"


def attack(lab: Lab, to: str, *datagrams: bytes, expect: int = 0) -> dict[str, Any]:
    """Send ``datagrams`` from the attacker node to ``to``; what came back (see tests/e2e/attacker.py)."""
    command = [PY, "-m", "tests.e2e.attacker", "--to", to, "--expect", str(expect), *(d.hex() for d in datagrams)]
    done = lab.exec("attacker", *command, check=True)
    answer: dict[str, Any] = json.loads(done.stdout)
    assert answer["local"].startswith(f"{ATTACKER}:")
    return answer


def hijack_with_punch(lab: Lab, peer_id: str, *extra: str) -> str:
    """``punch peer --id PEER_ID`` run by the attacker: it must fail; its error line."""
    command = [PY, "-m", "punch", "peer", "--server", SERVER, "--id", peer_id, "--to", "10", "--json", *extra]
    done = lab.exec("attacker", *command, "--send", "hello", timeout=60)
    assert done.returncode == 1, done.stderr
    return done.stderr.strip().splitlines()[-1]


def session_traffic(pcap: Path, source: str, destination: str) -> dict[bytes, list[Message]]:
    """Requests from IP ``source`` to IP ``destination`` by SESSION-ID, sessions in capture order."""
    sessions: dict[bytes, list[Message]] = {}
    for packet in stun_in_pcap(pcap):
        session = packet.message.raw(AttributeType.SESSION_ID)
        ends = (packet.source[0], packet.destination[0])
        if ends == (source, destination) and session and packet.message.message_class is MessageClass.REQUEST:
            sessions.setdefault(session, []).append(packet.message)
    return sessions


def raw_of(pcap: Path, message: Message) -> bytes:
    """The captured bytes of ``message`` (a replay sends them exactly as they were)."""
    return next(p.data for p in stun_in_pcap(pcap) if p.message.transaction_id == message.transaction_id)


def quic_in_pcap(pcap: Path, source: str, destination: str) -> list[bytes]:
    """The QUIC packets from IP ``source`` to IP ``destination``, in capture order."""
    return [
        d.data
        for d in udp_in_pcap(pcap)
        if (d.source[0], d.destination[0]) == (source, destination)
        and not is_stun(d.data)
        and classify(d.data) is Carried.QUIC
    ]


def forged_check(session: bytes, key: bytes | None) -> bytes:
    """A check from "10" in ``session`` that nominates the attacker's address, signed with ``key`` (a guess) or not."""
    check = request(
        Method.BINDING,
        (AttributeType.PEER_ID, "10"),
        (AttributeType.SESSION_ID, session),
        (AttributeType.USE_CANDIDATE, None),
    )
    return encode(check, fingerprint=True, integrity_sha256_key=key)


def forged_relay(session: bytes, key: bytes) -> bytes:
    """A Relay indication from "10" in ``session`` with a made-up QUIC packet, signed with ``key`` (a guess)."""
    attributes = (
        (AttributeType.PEER_ID, "10"),
        (AttributeType.SESSION_ID, session),
        (AttributeType.DATA_PAYLOAD, b"\x40" + os.urandom(60)),
    )
    relayed = Message(Method.RELAY, MessageClass.INDICATION, new_transaction_id(), attributes)
    return encode(relayed, fingerprint=True, integrity_sha256_key=key)


@pytest.mark.parametrize("group", [False, True], ids=["open-server", "closed-group"])
def test_an_attacker_on_the_internet_can_neither_hijack_nor_inject_nor_replay(
    lab_factory: LabFactory, tmp_path: Path, group: bool
) -> None:
    captures = tmp_path / "pcaps"
    lab = lab_factory(topology=TOPOLOGY, nat="full-cone", args=["--capture", str(captures)])
    secret = tmp_path / "secret"
    secret.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    members = ("--secret-file", str(secret)) if group else ()
    server = start_server(lab, *members)

    # An earlier session between the same peers, whose traffic the attacker captured.
    old10 = start_peer(lab, "10", "14", "--send", "earlier, from 10", *members)
    old14 = start_peer(lab, "14", "10", "--send", "earlier, from 14", *members)
    (code10, _, log10), (code14, _, log14) = finish(old10), finish(old14)
    assert (code10, code14) == (0, 0), log10 + log14

    peer10 = chat_peer(lab, "10", "14", "--keepalive", "1", *members)
    peer14 = chat_peer(lab, "14", "10", "--keepalive", "1", *members)
    via10 = wait_for_line(peer10, r"using the direct path to 14 via").split(" via ")[1].split()[0]
    via14 = wait_for_line(peer14, r"using the direct path to 10 via").split(" via ")[1].split()[0]
    assert peer10.stdin is not None
    peer10.stdin.write("before the attacks\n")
    peer10.stdin.flush()
    wait_for_line(peer14, r"message 0 received from 10: 'before the attacks'")

    # (a) Take peer 14's ID at the server: with punch itself, with a guessed token, and asking as 14.
    assert re.fullmatch(rf"punch: the server refused our registration: 401 {TAKEN}", hijack_with_punch(lab, "14"))
    guessed = request(Method.REGISTER, (AttributeType.PEER_ID, "14"), (AttributeType.LEASE, 60))
    asking = request(Method.CONNECT, (AttributeType.PEER_ID, "14"), (AttributeType.TARGET_ID, "66"))
    answers = attack(
        lab,
        SERVER_ENDPOINT,
        encode(guessed, fingerprint=True, integrity_sha256_key=os.urandom(16)),
        encode(asking, fingerprint=True),
        expect=2,
    )["received"]
    assert len(answers) == 2, answers
    for answer in answers:
        assert re.fullmatch(f"401 {TAKEN}", answer["error"]), answers
        assert answer["from"] == SERVER_ENDPOINT
    hijacks = 3
    if group:  # a new ID in a closed group, without the secret and with a secret of its own
        assert hijack_with_punch(lab, "66") == f"punch: the server refused our registration: 401 {CLOSED}"
        own = tmp_path / "own-secret"
        own.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
        assert hijack_with_punch(lab, "66", "--secret-file", str(own)) == (
            f"punch: the server refused our registration: 401 {CLOSED}"
        )
        hijacks += 2
    for _ in range(hijacks):
        wait_for_line(server, rf"401 to {ATTACKER}:\d+: ({TAKEN}|{re.escape(CLOSED)})")

    # What the attacker read off nat14's WAN: both sessions' checks and messages between the public addresses.
    pcap = captures / "nat14-wan14.pcap"
    (old, old_from10), (current, _) = session_traffic(pcap, WAN["10"], WAN["14"]).items()
    [(old_again, old_from14), _] = session_traffic(pcap, WAN["14"], WAN["10"]).items()
    assert old_again == old

    # (b) Inject into the live session: checks (nominating the attacker) and a relayed packet under a forged key or
    # none, a made-up QUIC packet, a check of the old session.
    injected = attack(
        lab,
        via10,
        forged_check(current, os.urandom(32)),
        forged_check(current, None),
        forged_relay(current, os.urandom(32)),
        b"\x40" + os.urandom(60),
        forged_check(old, os.urandom(32)),
    )
    assert injected["received"] == []
    for what in ("Binding request", "Binding request", "Relay indication"):
        wait_for_line(
            peer14,
            rf"dropped {what} txid=\w+, .* from {ATTACKER}:\d+: its MESSAGE-INTEGRITY-SHA256 is missing or wrong",
        )
    stranger = rf"dropped a QUIC packet from {ATTACKER}:\d+: the path's other end is elsewhere"
    wait_for_line(peer14, stranger)
    wait_for_line(peer14, rf"ignored a probe from {ATTACKER}:\d+: not our session")

    # (c) Replay, exactly as captured, to each peer: the old session's checks (with its nomination) and its first
    # QUIC packets (its handshake), then the live session's QUIC packets so far.
    nominations = [m for m in old_from10 + old_from14 if m.has(AttributeType.USE_CANDIDATE)]
    assert nominations, "the capture holds the old session's nomination"
    replayed = (
        (peer14, via10, old_from10, (WAN["10"], WAN["14"])),
        (peer10, via14, old_from14, (WAN["14"], WAN["10"])),
    )
    for victim, to, traffic, ends in replayed:
        checks = [m for m in traffic if m.method == Method.BINDING]
        replays = [*checks[:2], *(m for m in checks if m.has(AttributeType.USE_CANDIDATE))][:3]
        quic = quic_in_pcap(pcap, *ends)
        assert len(quic) >= 8, "the capture holds both sessions' QUIC packets"
        packets = [*quic[:3], *quic[-3:]]  # six
        assert attack(lab, to, *(raw_of(pcap, m) for m in replays), *packets)["received"] == []
        for _ in replays:
            wait_for_line(victim, rf"ignored a probe from {ATTACKER}:\d+: not our session")
        for _ in packets:
            wait_for_line(victim, stranger)

    # The session goes on: the next message arrives once, on the same path, and the peers close normally.
    end_chat((peer10, "after the attacks\n"), (peer14, "bye\n"))
    (code10, result10, log10), (code14, result14, log14) = finish(peer10), finish(peer14)
    assert (code10, code14) == (0, 0), log10 + log14
    assert result14["received"] == ["before the attacks", "after the attacks"]
    assert result10["received"] == ["bye"]
    assert (result10["path"], result10["remote"]) == ("direct", via10)
    assert (result14["path"], result14["remote"]) == ("direct", via14)
    assert "lost contact" not in log10 + log14
    assert result14["dropped"] == {"bad-integrity": 3, "stranger": 1 + 6}
    assert result10["dropped"] == {"stranger": 6}
    server.send_signal(signal.SIGTERM)  # as the lab's `down` and `docker stop` do (a Ctrl-C may be ignored here)
    _, server_log = server.communicate(timeout=30)
    assert re.search(rf"stopped; .* unauthorized={hijacks}\b", server_log), server_log
