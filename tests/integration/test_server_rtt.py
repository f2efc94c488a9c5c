"""The round trip to the server each peer measures, keeps the shortest of, and tells the server in Connect: the
other peer reads it in its Introduce, and both decide from the same two numbers whether to check early."""

from __future__ import annotations

import asyncio

import pytest

from punch.rendezvous.server import RendezvousServer
from tests.integration.conftest import free_port, rendezvous_client

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def test_the_shortest_sample_is_told_and_reaches_the_other_peer(server: RendezvousServer) -> None:
    ten = await rendezvous_client(server.address, "10")
    assert ten.rtt is None
    await ten.sample_rtt()
    assert ten.rtt is not None
    ten.observe_rtt(ten.rtt + 1.0)  # a longer sample changes nothing
    # A shorter one is kept: 3 us, shorter than any round trip through the kernel, also than the registration's
    # below (123 us was not always: loopback answered in 116 us once).
    ten.observe_rtt(0.000003)
    assert ten.rtt == 0.000003
    fourteen = await rendezvous_client(server.address, "14")
    fourteen.observe_rtt(0.000006)
    await ten.register()
    await fourteen.register()
    await ten.connect("14")
    assert ten.told_rtt_us == 3
    introduction, _ = await asyncio.wait_for(asyncio.gather(fourteen.introduced_to("10"), ten.introduction), 5)
    assert introduction.rtt_us == 3


async def test_no_answer_is_no_sample() -> None:
    silent = await rendezvous_client(("127.0.0.1", free_port("127.0.0.1")), "10")
    await silent.sample_rtt()
    assert silent.rtt is None
