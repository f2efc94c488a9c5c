"""Property tests (hypothesis) of punch.portmap's codecs, as tests/unit/test_stun_properties.py does for STUN: each
answer a router may send decodes to the fields it was built with, and reading is total: whatever bytes come from the
router (random, or a valid answer mutated), the reader gives an answer or raises one of its own errors (dropped and
counted by the exchange), nothing else."""

from __future__ import annotations

import contextlib
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from punch.portmap import natpmp, pcp, upnp
from punch.portmap.errors import Mismatch, NotSpoken, PortmapDecodeError
from tests.fake_router import natpmp_address_answer, natpmp_map_answer, pcp_header, pcp_map_answer

pytestmark = pytest.mark.unit

FUZZ = settings(max_examples=2000, deadline=None)
ROUND_TRIP = settings(max_examples=300, deadline=None)
REFUSALS = (PortmapDecodeError, Mismatch, NotSpoken)

ports = st.integers(0, 0xFFFF)
u32 = st.integers(0, 2**32 - 1)
nonces = st.binary(min_size=12, max_size=12)
ipv4 = st.ip_addresses(v=4).map(str)
options = st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), max_size=3)


def framed(found: list[tuple[int, bytes]]) -> bytes:
    return b"".join(
        bytes([code, 0]) + len(data).to_bytes(2, "big") + data + bytes(-len(data) % 4) for code, data in found
    )


@ROUND_TRIP
@given(nonces, ports, ports, ipv4, st.integers(0, 13), u32, u32, options)
def test_a_pcp_map_answer_decodes_to_what_it_was_built_with(
    nonce: bytes,
    internal: int,
    external: int,
    ip: str,
    result: int,
    lifetime: int,
    epoch: int,
    found: list[tuple[int, bytes]],
) -> None:
    data = pcp_map_answer(
        nonce, internal, external, ip, result=result, lifetime=lifetime, epoch=epoch, options=framed(found)
    )
    if len(data) > 1100:
        return
    answer = pcp.read_map(pcp.MapData(nonce, pcp.UDP, internal, 0, pcp.ANY_IPV4), data)
    assert (answer.result, answer.lifetime, answer.epoch, answer.options) == (result, lifetime, epoch, tuple(found))
    assert answer.map is not None
    assert (answer.map.nonce, answer.map.internal_port, answer.map.external_port) == (nonce, internal, external)
    assert answer.map.external_ip == str(ipaddress.IPv4Address(ip))


@ROUND_TRIP
@given(u32, ipv4, ports, ports, u32)
def test_nat_pmp_answers_decode_to_what_they_were_built_with(
    epoch: int, ip: str, internal: int, external: int, lifetime: int
) -> None:
    assert natpmp.read_address(natpmp_address_answer(ip, epoch=epoch)).external_ip == ip
    mapped = natpmp.read_map(internal, natpmp_map_answer(internal, external, lifetime=lifetime, epoch=epoch))
    assert (mapped.external_port, mapped.lifetime, mapped.epoch) == (external, lifetime, epoch)


def total(read: object, data: bytes) -> None:
    assert callable(read)
    with contextlib.suppress(*REFUSALS):
        read(data)


READERS = [
    pcp.decode,
    pcp.read_announce,
    lambda data: pcp.read_map(pcp.MapData(bytes(12), pcp.UDP, 5000, 0, pcp.ANY_IPV4), data),
    natpmp.decode,
    natpmp.read_address,
    lambda data: natpmp.read_map(5000, data),
    lambda data: upnp.read_location("10.0.10.1", data),
]
SEEDS = [
    pcp_map_answer(bytes(12), 5000, 40000),
    pcp_header(0, 0, 0, 7),
    natpmp_address_answer(),
    natpmp_map_answer(5000, 40000),
    b"HTTP/1.1 200 OK\r\nLOCATION: http://10.0.10.1:2189/rootDesc.xml\r\n\r\n",
]


@FUZZ
@given(st.binary(max_size=1200), st.sampled_from(READERS))
def test_reading_any_bytes_gives_an_answer_or_a_refusal(data: bytes, read: object) -> None:
    total(read, data)


@FUZZ
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 1199), st.integers(0, 255)), max_size=6),
    st.integers(0, 1200),
    st.sampled_from(READERS),
)
def test_reading_a_mutated_answer_gives_an_answer_or_a_refusal(
    seed: bytes, flips: list[tuple[int, int]], cut: int, read: object
) -> None:
    data = bytearray(seed)
    for where, value in flips:
        if where < len(data):
            data[where] = value
    total(read, bytes(data[:cut]))
    total(read, bytes(data) + bytes(cut % 9))
