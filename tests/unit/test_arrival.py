"""Which of our addresses each source sent to, and the ancillary data that answers from it (punch.stun.arrival)."""

from __future__ import annotations

import socket

import pytest

from punch.stun.arrival import IPV6_PKTINFO, ArrivalAddresses, destination_of

pytestmark = pytest.mark.unit

ONE = socket.inet_pton(socket.AF_INET6, "2001:db8:113::1")
TWO = socket.inet_pton(socket.AF_INET6, "2001:db8:113::2")


def test_the_destination_is_read_from_ipv6_pktinfo_only() -> None:
    pktinfo = (socket.IPPROTO_IPV6, IPV6_PKTINFO, ONE + (3).to_bytes(4, "little"))
    assert destination_of([pktinfo]) == ONE
    assert destination_of([(socket.IPPROTO_IP, IPV6_PKTINFO, ONE + bytes(4))]) is None  # another level
    assert destination_of([(socket.IPPROTO_IPV6, IPV6_PKTINFO, ONE[:10])]) is None  # cut short
    assert destination_of([]) is None


def test_a_source_is_answered_from_the_address_it_last_sent_to() -> None:
    arrivals = ArrivalAddresses()
    assert arrivals.ancillary_for(("2001:db8:10::2", 5000)) == []  # unknown: the kernel chooses
    arrivals.arrived(("2001:db8:10::2", 5000), TWO)
    arrivals.arrived(("192.0.2.14", 7), ONE)
    arrivals.arrived(("2001:db8:10::2", 5000), ONE)
    assert arrivals.ancillary_for(("2001:db8:10::2", 5000)) == [(socket.IPPROTO_IPV6, IPV6_PKTINFO, ONE + bytes(4))]
    assert arrivals.ancillary_for(("2001:db8:10::2", 5001)) == []  # another port is another source


def test_the_least_recently_heard_source_is_forgotten_first() -> None:
    arrivals = ArrivalAddresses(capacity=2)
    for source in (("192.0.2.1", 1), ("192.0.2.2", 2), ("192.0.2.1", 1), ("192.0.2.3", 3)):
        arrivals.arrived(source, ONE)
    assert len(arrivals) == 2
    assert arrivals.ancillary_for(("192.0.2.2", 2)) == []
    assert arrivals.ancillary_for(("192.0.2.1", 1)) != []
