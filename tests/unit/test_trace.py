"""The trace writer (punch.stun.trace): what it says of a datagram (QUIC's packets named from their headers,
punch.stun.quicpackets), its lines, and whose tracer is current."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicProtocolVersion

from punch.stun import AttributeType, Message, MessageClass, Method, encode, make_error, trace
from punch.stun.quicpackets import packet_types
from punch.stun.wire import request

pytestmark = pytest.mark.unit


def test_a_register_is_summed_up_by_the_attributes_that_tell_its_story() -> None:
    message = request(
        Method.REGISTER,
        (AttributeType.PEER_ID, "10"),
        (AttributeType.CANDIDATE, ("10.0.10.2", 4000)),
        (AttributeType.LEASE, 30),
        (AttributeType.NAT_MAPPING, 1),
    )
    data = encode(message)
    assert trace.summary(data) == {
        "size": len(data),
        "method": "Register",
        "class": "request",
        "txid": message.transaction_id.hex(),
        "peer": "10",
        "lease": 30,
        "nat_mapping": 1,
        "candidates": ["10.0.10.2:4000"],
    }


def test_an_error_a_check_and_bytes_that_are_not_stun() -> None:
    check = request(Method.BINDING, (AttributeType.SESSION_ID, bytes(range(16))), (AttributeType.USE_CANDIDATE, None))
    assert trace.summary(encode(check)) | {"txid": "-"} == {
        "size": len(encode(check)),
        "method": "Binding",
        "class": "request",
        "txid": "-",
        "session": "00010203",
        "use_candidate": True,
    }
    refused = encode(make_error(request(Method.CONNECT), 401, "taken"))
    assert trace.summary(refused)["error"] == "401 taken"
    neither = trace.summary(bytes([5, 1, 2]))  # 4-63: neither STUN nor QUIC (RFC 9443 §3)
    assert neither == {"size": 3, "stun": False, "digest": neither["digest"]}


def _varint(value: int) -> bytes:
    """RFC 9000 §16, two bytes."""
    return (0x4000 | value).to_bytes(2, "big")


def _long(type_bits: int, body: bytes, *, version: int = 1, token: bytes | None = None) -> bytes:
    """A long-header packet (RFC 9000 §17.2): 8-byte destination and empty source connection IDs, a token for an
    Initial, then the Length and ``body``."""
    header = bytes([0xC0 | type_bits << 4]) + version.to_bytes(4, "big") + bytes([8]) + bytes(range(8)) + bytes([0])
    if token is not None:
        header += _varint(len(token)) + token
    return header + _varint(len(body)) + body


SHORT = bytes([0x41]) + bytes(range(30))  # a short header (RFC 9000 §17.3.1): a 1-RTT packet to the end


@pytest.mark.parametrize(
    ("datagram", "types"),
    [
        (_long(0, bytes(40), token=b"tok") + _long(2, bytes(50)) + SHORT, ["Initial", "Handshake", "1-RTT"]),
        (_long(1, bytes(20)) + _long(2, bytes(5)), ["0-RTT", "Handshake"]),
        (_long(3, bytes(24)), ["Retry"]),
        (_long(1, bytes(9), version=0x6B3343CF, token=b"") + _long(3, bytes(9), version=0x6B3343CF), ["Initial", "Handshake"]),
        (_long(0, bytes(9), version=0x6B3343CF), ["Retry"]),
        (bytes([0x80]) + bytes(4) + bytes([0, 0]) + (1).to_bytes(4, "big"), ["Version Negotiation"]),
        (_long(0, bytes(9), version=0x0A0A0A0A), ["long header of version 0x0a0a0a0a"]),
        (_long(0, bytes(40), token=b"") + bytes(30), ["Initial"]),  # zero bytes after it: padding, no packet
        (_long(2, bytes(40))[:-10], ["Handshake"]),  # its Length runs past the datagram: named, then the end
        (bytes([0xC0, 0, 0]), ["long header, cut short"]),
        (SHORT, ["1-RTT"]),
        (bytes([0x3F, 1, 2]), []),
        (b"", []),
    ],
)  # fmt: skip
def test_the_packets_of_a_quic_datagram_are_named_from_their_headers(datagram: bytes, types: list[str]) -> None:
    assert packet_types(datagram) == types


@pytest.mark.parametrize("version", [QuicProtocolVersion.VERSION_1, QuicProtocolVersion.VERSION_2])
def test_aioquics_first_datagram_is_an_initial(version: QuicProtocolVersion) -> None:
    client = QuicConnection(configuration=QuicConfiguration(is_client=True, supported_versions=[version]))
    client.connect(("peer", 0), now=0.0)
    (first, _), *_ = client.datagrams_to_send(now=0.0)
    assert packet_types(first) == ["Initial"]
    assert trace.summary(first)["quic"] == ["Initial"]


def test_a_quic_datagram_is_known_by_a_digest_and_its_packets_never_by_its_bytes() -> None:
    packet = SHORT
    direct = trace.summary(packet)
    assert direct == {"size": len(packet), "stun": False, "digest": direct["digest"], "quic": ["1-RTT"]}
    assert len(direct["digest"]) == 8
    assert trace.summary(packet)["digest"] == direct["digest"]
    assert trace.summary(packet[:-1] + b"\xff")["digest"] != direct["digest"]
    relayed = Message(
        Method.RELAY,
        MessageClass.INDICATION,
        bytes(12),
        (
            (AttributeType.PEER_ID, "10"),
            (AttributeType.SESSION_ID, bytes(range(16))),
            (AttributeType.DATA_PAYLOAD, packet),
        ),
    )
    facts = trace.summary(encode(relayed))
    assert (facts["method"], facts["class"], facts["quic"], facts["peer"]) == ("Relay", "indication", ["1-RTT"], "10")
    assert packet[1:].hex() not in json.dumps(facts)
    assert packet[1:].hex() not in json.dumps(direct)


def test_a_datagram_is_one_json_line_at_the_time_given() -> None:
    out = io.StringIO()
    tracer = trace.Tracer(out, clock=lambda: 100.5)
    tracer.start("peer 10", "peer", id="10")
    tracer.datagram("send", "0.0.0.0:4000", "192.0.2.14:5000", encode(request(Method.BINDING)), ttl=2, at=99.25)
    start, sent = (json.loads(line) for line in out.getvalue().splitlines())
    assert start == {"t": 100.5, "event": "start", "format": 1, "participant": "peer 10", "role": "peer", "id": "10"}
    assert (sent["t"], sent["event"], sent["local"], sent["remote"], sent["ttl"]) == (
        99.25,
        "send",
        "0.0.0.0:4000",
        "192.0.2.14:5000",
        2,
    )


@pytest.mark.asyncio
async def test_log_lines_go_to_the_tracer_current_where_they_are_logged() -> None:
    """Two tasks, each started under a tracer of its own, and code outside both: each line lands in its own task's
    trace, the outside one in none (peers run in one process trace apart)."""
    outs = {name: io.StringIO() for name in ("a", "b")}
    handler = trace.TraceHandler()
    log = logging.getLogger("punch.test_trace")
    log.addHandler(handler)
    log.setLevel(logging.INFO)

    async def say(text: str) -> None:
        await asyncio.sleep(0)
        log.info("%s speaks", text)

    try:
        tasks = []
        for name, out in outs.items():
            with trace.tracing(trace.Tracer(out)):
                tasks.append(asyncio.ensure_future(say(name)))
        log.info("nobody's")
        await asyncio.gather(*tasks)
    finally:
        log.removeHandler(handler)
    for name, out in outs.items():
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
        assert [(line["event"], line["logger"], line["message"]) for line in lines] == [
            ("log", "punch.test_trace", f"{name} speaks")
        ]
    assert trace.current() is None
