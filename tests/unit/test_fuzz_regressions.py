"""The fuzz targets (tests/fuzz/harness.py) over the seed corpus, every crash ever kept, and hypothesis' inputs.

The server target is a real RendezvousServer on loopback fed datagrams as asyncio would deliver them: any bytes
in, no exception out and no handler failure; and a datagram that is not a Register request never adds a
registration (only Register creates state without a credential, by design: first come, first served).

The QUIC targets get the same seeds and crashes, plus the datagrams a pair of links exchanged, mutated: the demux
answers once for anything, and nothing that is not from the peer ends or disturbs a connected link.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from punch.errors import StunDecodeError
from punch.stun import MessageClass, Method, decode
from tests.fuzz.harness import LinkTarget, ServerTarget, quic_demux, stun_decode

pytestmark = pytest.mark.unit

DATA = Path(__file__).parents[1] / "data"
SEEDS = [bytes.fromhex(p.read_text().strip()) for p in sorted((DATA / "stun").glob("*.hex"))]
CRASHES = sorted((DATA / "fuzz").glob("crash-*"))


@pytest.fixture(scope="module")
def server() -> Iterator[ServerTarget]:
    target = ServerTarget()
    yield target
    target.close()


def is_register(data: bytes) -> bool:
    try:
        message = decode(data)
    except StunDecodeError:
        return False
    return message.method == Method.REGISTER and message.message_class is MessageClass.REQUEST


def deliver(server: ServerTarget, data: bytes) -> None:
    before = len(server.server.registry.registrations)
    server(data)
    if not is_register(data):
        assert len(server.server.registry.registrations) == before, data.hex()


@pytest.mark.parametrize("data", SEEDS + [p.read_bytes() for p in CRASHES], ids=lambda d: d[:4].hex())
def test_seeds_and_kept_crashes_pass_both_targets(data: bytes, server: ServerTarget) -> None:
    stun_decode(data)
    deliver(server, data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.sampled_from(SEEDS), flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), max_size=6))
def test_mutated_seeds_never_break_the_server(seed: bytes, flips: list[tuple[int, int]], server: ServerTarget) -> None:
    data = bytearray(seed)
    for position, xor in flips:
        data[position % len(data)] ^= xor
    stun_decode(bytes(data))
    deliver(server, bytes(data))


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=600))
def test_random_bytes_never_break_the_server(data: bytes, server: ServerTarget) -> None:
    deliver(server, data)


@pytest.fixture(scope="module")
def links() -> Iterator[LinkTarget]:
    target = LinkTarget()
    yield target
    target.close()


@pytest.mark.parametrize("data", SEEDS + [p.read_bytes() for p in CRASHES], ids=lambda d: d[:4].hex())
def test_seeds_and_kept_crashes_pass_the_quic_targets(data: bytes, links: LinkTarget) -> None:
    quic_demux(data)
    links(data)


def test_the_links_own_datagrams_again_change_nothing(links: LinkTarget) -> None:
    """Replayed Initial, Handshake and 1-RTT packets (what an on-path attacker can copy) are dropped."""
    assert len(links.seeds) >= 4
    for data in links.seeds:
        links(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), max_size=6))
def test_mutated_quic_datagrams_never_disturb_the_links(
    data: st.DataObject, flips: list[tuple[int, int]], links: LinkTarget
) -> None:
    packet = bytearray(data.draw(st.sampled_from(links.seeds)))
    for position, xor in flips:
        packet[position % len(packet)] ^= xor
    quic_demux(bytes(packet))
    links(bytes(packet))


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=1500))
def test_random_bytes_never_disturb_the_links(data: bytes, links: LinkTarget) -> None:
    quic_demux(data)
    links(data)
