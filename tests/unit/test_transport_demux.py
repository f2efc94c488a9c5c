"""punch.transport.demux: STUN or QUIC by the first byte (RFC 7983 §7, RFC 9443 §3), for any bytes at all."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from punch.stun import Message, Method, encode
from punch.transport import Carried, classify

pytestmark = pytest.mark.unit

SEEDS = [
    bytes.fromhex(p.read_text().strip()) for p in sorted((Path(__file__).parents[1] / "data" / "stun").glob("*.hex"))
]


@pytest.mark.parametrize(
    ("first", "carried"),
    [
        (0x00, Carried.STUN),  # Binding request, and every method below 0x080
        (0x01, Carried.STUN),  # Binding success / error response
        (0x03, Carried.STUN),  # the last STUN byte (methods up to 0x0FF, RFC 7983 reserves the rest)
        (0x04, Carried.NEITHER),
        (0x10, Carried.NEITHER),  # ZRTP's range: never on this socket
        (0x16, Carried.NEITHER),  # a DTLS handshake: never on this socket
        (0x3F, Carried.NEITHER),
        (0x40, Carried.QUIC),  # short header, Fixed Bit set (RFC 9000 §17.3.1)
        (0x5A, Carried.QUIC),
        (0x7F, Carried.QUIC),
        (0x80, Carried.QUIC),  # long header, Fixed Bit clear: a Version Negotiation packet may be this
        (0xC0, Carried.QUIC),  # Initial
        (0xE0, Carried.QUIC),  # Handshake
        (0xF0, Carried.QUIC),  # Retry
        (0xFF, Carried.QUIC),
    ],
)
def test_first_byte_table(first: int, carried: Carried) -> None:
    assert classify(bytes([first]) + b"\x00" * 40) is carried
    assert classify(bytes([first])) is carried


def test_an_empty_datagram_is_neither() -> None:
    assert classify(b"") is Carried.NEITHER


@pytest.mark.parametrize("seed", SEEDS, ids=lambda d: d[:4].hex())
def test_every_stun_seed_is_stun(seed: bytes) -> None:
    assert classify(seed) is Carried.STUN


@pytest.mark.parametrize("method", list(Method))
def test_every_punch_method_is_stun(method: Method) -> None:
    assert classify(encode(Message.request(method))) is Carried.STUN


@given(st.binary(max_size=64))
def test_any_bytes_get_exactly_one_answer(data: bytes) -> None:
    carried = classify(data)
    assert isinstance(carried, Carried)
    if data:
        assert (carried is Carried.STUN) == (data[0] <= 3)
        assert (carried is Carried.QUIC) == (data[0] >= 0x40)
    else:
        assert carried is Carried.NEITHER
