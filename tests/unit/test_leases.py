"""The lease wheel and the registry's expiry through it, with an explicit clock (no sockets)."""

from __future__ import annotations

import pytest

from punch.rendezvous.leases import LeaseWheel
from punch.rendezvous.registry import Registry, TableFull, pack_addresses, unpack_addresses
from punch.stun.wire import KeyShare

pytestmark = pytest.mark.unit

A = ("198.51.100.10", 40000)

SHARE = KeyShare(bytes(32), bytes(64))  # a Connect's key share: the registry only passes it on


def test_slots_are_handed_out_in_order_once_the_clock_reaches_them() -> None:
    wheel = LeaseWheel()
    wheel.add("late", 12.5)
    wheel.add("early", 10.2)
    wheel.add("exact", 11.0)
    assert wheel.due(10.9) == []  # slot 11 holds leases ending in (10, 11]: not all of it has passed
    assert wheel.due(11.0) == ["early", "exact"]
    assert wheel.due(11.5) == []  # handed out once
    assert wheel.due(20) == ["late"]
    assert len(wheel) == 0


def test_a_refresh_within_the_same_second_files_nothing_new() -> None:
    wheel = LeaseWheel()
    wheel.add("10", 30.2)
    wheel.add("10", 30.7, previous=30.2)
    assert len(wheel) == 1
    wheel.add("10", 50.0, previous=30.7)
    assert len(wheel) == 2  # the old entry stays until its slot comes round


def test_a_long_quiet_spell_hands_out_every_slot_in_order() -> None:
    wheel = LeaseWheel()
    assert wheel.due(1_000) == []
    wheel.add("b", 1_003)
    wheel.add("a", 1_001)
    assert wheel.due(1_000_000) == ["a", "b"]


def test_a_clock_that_went_back_is_handed_out_at_the_next_sweep() -> None:
    wheel = LeaseWheel()
    assert wheel.due(100) == []
    wheel.add("10", 50)
    assert wheel.due(100.5) == []
    assert wheel.due(101) == ["10"]


def test_leases_are_forgotten_in_the_order_they_end() -> None:
    registry = Registry()
    registry.register("30", A, (), 30, now=0)
    registry.register("10", A, (), 10, now=0)
    registry.register("20", A, (), 20, now=0)
    assert registry.expire(now=9.5) == []
    assert registry.expire(now=20) == ["10", "20"]
    assert registry.expire(now=40) == ["30"]
    assert registry.registrations == {}


def test_a_refresh_moves_the_lease() -> None:
    registry = Registry()
    registry.register("10", A, (), 10, now=0)
    registry.register("10", A, (), 10, now=8)  # now ends at 18
    assert registry.expire(now=12) == []
    assert registry.lookup("10", now=12) is not None
    assert registry.expire(now=18) == ["10"]


def test_a_shorter_refresh_moves_the_lease_earlier() -> None:
    registry = Registry()
    registry.register("10", A, (), 60, now=0)
    registry.register("10", A, (), 5, now=1)
    assert registry.expire(now=6) == ["10"]


def test_a_lease_given_up_and_taken_again_is_not_expired_by_its_old_slot() -> None:
    registry = Registry()
    first = registry.register("10", A, (), 10, now=0)
    registry.unregister("10")
    second = registry.register("10", A, (), 30, now=1)
    assert second.token != first.token
    assert registry.expire(now=10) == []
    assert registry.lookup("10", now=10) == second


def test_a_full_table_makes_room_from_ended_leases_only() -> None:
    registry = Registry(max_registrations=2)
    registry.register("10", A, (), 10, now=0)
    registry.register("14", A, (), 30, now=0)
    with pytest.raises(TableFull) as full:
        registry.register("20", A, (), 30, now=5)
    assert str(full.value) == "the table holds its maximum of 2 registrations"
    registry.register("14", A, (), 30, now=5)  # a refresh of a known ID always has room
    assert registry.register("20", A, (), 30, now=10).peer_id == "20"  # "10" ended at 10
    assert sorted(registry.registrations) == ["14", "20"]


def test_sessions_go_with_a_peer_whose_lease_ended_but_not_with_one_that_came_back() -> None:
    registry = Registry()
    for peer_id in ("10", "14", "20"):
        registry.register(peer_id, A, (), 10, now=0)
    registry.want("10", "14", now=0, share=SHARE)
    first = registry.want("14", "10", now=0, share=SHARE)
    registry.want("20", "14", now=0, share=SHARE)
    second = registry.want("14", "20", now=0, share=SHARE)
    assert first is not None
    assert second is not None
    registry.register("14", A, (), 30, now=5)
    registry.register("20", A, (), 30, now=5)
    registry.unregister("20")
    registry.register("20", A, (), 30, now=6)
    assert registry.expire(now=10) == ["10"]
    assert registry.session(first.session_id) is None
    assert registry.session(second.session_id) is second


@pytest.mark.parametrize(
    "addresses",
    [
        (),
        (A,),
        (A, ("10.0.0.2", 0), ("10.0.0.3", 65535)),
        (("2001:db8::1", 3478), ("::ffff:192.0.2.1", 1), A),
        (("fe80::1%eth0", 5000),),
    ],
)
def test_addresses_pack_and_unpack_to_the_same(addresses: tuple[tuple[str, int], ...]) -> None:
    assert unpack_addresses(pack_addresses(addresses)) == addresses


def test_a_registration_gives_back_its_endpoints_and_credentials() -> None:
    registry = Registry()
    registration = registry.register("10", A, (("10.0.10.2", 5000),), 30, now=0, transaction=b"t" * 12)
    assert registration.observed == A
    assert registration.host_candidates == (("10.0.10.2", 5000),)
    assert len(registration.token) == 16
    assert registration.created_by == b"t" * 12


def test_goodbyes_of_peers_without_sessions_leave_nothing_behind() -> None:
    registry = Registry()
    for n in range(100):
        registry.register(str(n), A, (), 30, now=0)
        registry.unregister(str(n))
    assert registry.registrations == {}
    assert registry._departed == []


def test_an_ended_lease_takes_the_round_trip_its_peer_reported() -> None:
    registry = Registry()
    registry.register("10", A, (), 10, now=0)
    registry.want("10", "14", now=0, rtt_us=1500, share=SHARE)
    assert registry.expire(now=10) == ["10"]
    assert (registry.wants, registry.rtts) == ({}, {})
