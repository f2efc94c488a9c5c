"""The rendezvous registry's rules, with an explicit clock (no sockets)."""

from __future__ import annotations

import pytest

from punch.rendezvous.registry import Registry, Wish, pair_up
from punch.stun import AttributeType
from punch.stun.wire import ANYONE, KeyShare, Role

pytestmark = pytest.mark.unit

A = ("198.51.100.10", 40000)
B = ("192.0.2.14", 40001)

SHARE = KeyShare(bytes(32), bytes(64))  # a Connect's key share: the registry only passes it on


def test_asking_for_a_peer_that_does_not_exist_yet_waits_for_it() -> None:
    registry = Registry()
    registry.register("10", A, (("10.0.10.2", 40000),), 30, now=0)
    assert registry.want("10", "14", now=1, share=SHARE) is None
    registry.register("14", B, (("10.0.14.2", 40001),), 30, now=2)
    match = registry.want("14", "10", now=3, share=SHARE)
    assert match is not None
    (opener, to_opener), (prober, to_prober) = match.introductions()
    assert (opener.peer_id, to_opener.peer_id, to_opener.role) == ("10", "14", Role.OPENER)
    assert (prober.peer_id, to_prober.peer_id, to_prober.role) == ("14", "10", Role.PROBER)
    assert to_opener.candidates == (B, ("10.0.14.2", 40001))
    assert to_prober.candidates == (A, ("10.0.10.2", 40000))
    assert to_opener.session_id == to_prober.session_id
    assert len(match.session_id) == 16
    assert registry.session(match.session_id) is match
    assert registry.wants == {}


def test_the_other_order_works_too() -> None:
    registry = Registry()
    registry.register("14", B, (), 30, now=0)
    registry.register("10", A, (), 30, now=0)
    assert registry.want("14", "10", now=1, share=SHARE) is None
    match = registry.want("10", "14", now=2, share=SHARE)
    assert match is not None
    assert match.opener.peer_id == "14"


def test_a_wish_for_someone_else_does_not_match() -> None:
    registry = Registry()
    registry.register("10", A, (), 30, now=0)
    registry.register("14", B, (), 30, now=0)
    assert registry.want("10", "14", now=1, share=SHARE) is None
    assert registry.want("14", "99", now=1, share=SHARE) is None


def test_leases_expire_and_take_wishes_and_sessions_with_them() -> None:
    registry = Registry(max_lease=10)
    registration = registry.register("10", A, (), 3600, now=0)
    assert registration.expires == 10
    registry.register("14", B, (), 5, now=0)
    registry.want("10", "14", now=1, share=SHARE)
    match = registry.want("14", "10", now=1, share=SHARE)
    assert match is not None
    registry.want("10", "99", now=2, share=SHARE)
    assert registry.lookup("14", now=5) is None
    assert registry.expire(now=6) == ["14"]
    assert registry.session(match.session_id) is None
    assert registry.wants == {"10": "99"}
    assert registry.lookup("10", now=6) is not None


def test_server_reflexive_is_not_repeated_among_host_candidates() -> None:
    registry = Registry()
    registration = registry.register("10", A, (A, ("10.0.10.2", 1)), 30, now=0)
    assert registration.candidates() == (A, ("10.0.10.2", 1))


def test_a_refresh_keeps_the_token_a_new_registration_gets_a_new_one() -> None:
    registry = Registry()
    first = registry.register("10", A, (), 30, now=0)
    assert len(first.token) == 16
    assert registry.register("10", A, (), 30, now=10).token == first.token
    registry.unregister("10")
    assert registry.register("10", B, (), 30, now=11).token != first.token


def test_unregister_drops_the_wish_and_later_the_sessions() -> None:
    registry = Registry()
    registry.register("10", A, (), 30, now=0)
    registry.register("14", B, (), 30, now=0)
    registry.want("10", "14", now=0, share=SHARE)
    match = registry.want("14", "10", now=0, share=SHARE)
    assert match is not None
    registry.unregister("10")
    assert registry.session(match.session_id) == match  # the other's last relayed messages still pass
    assert registry.expire(now=1) == []
    assert registry.session(match.session_id) is None


def test_each_introduction_carries_the_other_peers_round_trip_to_the_server() -> None:
    registry = Registry()
    registry.register("10", A, (), 30, now=0)
    registry.register("14", B, (), 30, now=0)
    assert registry.want("10", "14", now=1, rtt_us=40_000, share=SHARE) is None
    match = registry.want("14", "10", now=2, rtt_us=90_000, share=SHARE)
    assert match is not None
    (_, to_opener), (_, to_prober) = match.introductions()
    assert (to_opener.rtt_us, to_prober.rtt_us) == (90_000, 40_000)
    assert to_opener.to_message().integer(AttributeType.SERVER_RTT) == 90_000
    assert registry.rtts == {}


def test_a_peer_that_did_not_say_its_round_trip_gives_none() -> None:
    registry = Registry()
    registry.register("10", A, (), 30, now=0)
    registry.register("14", B, (), 30, now=0)
    registry.want("10", "14", now=1, rtt_us=40_000, share=SHARE)
    match = registry.want("14", "10", now=2, share=SHARE)
    assert match is not None
    (_, to_opener), (_, to_prober) = match.introductions()
    assert (to_opener.rtt_us, to_prober.rtt_us) == (None, 40_000)
    assert not to_opener.to_message().has(AttributeType.SERVER_RTT)


def test_the_connects_that_made_a_match_are_known_by_their_transaction_ids() -> None:
    registry = Registry()
    registry.register("10", A, (), 30, now=0)
    registry.register("14", B, (), 30, now=0)
    assert registry.want("10", "14", now=1, transaction=b"a" * 12, share=SHARE) is None
    match = registry.want("14", "10", now=2, transaction=b"b" * 12, share=SHARE)
    assert match is not None
    assert registry.introduced_by("10", b"a" * 12) is match
    assert registry.introduced_by("14", b"b" * 12) is match
    assert registry.introduced_by("14", b"a" * 12) is None  # another peer's transaction
    assert registry.introduced_by("10", b"c" * 12) is None  # a new Connect
    assert registry.transactions == {}


def test_a_wish_for_anyone_matches_whoever_asks_for_the_wisher_first() -> None:
    registry = Registry()
    for peer_id, address in (("listener", A), ("14", B), ("15", ("192.0.2.15", 40002))):
        registry.register(peer_id, address, (), 30, now=0)
    assert registry.want("listener", ANYONE, now=1, share=SHARE) is None
    assert registry.want("15", "somebody else", now=1, share=SHARE) is None
    match = registry.want("14", "listener", now=2, share=SHARE)
    assert match is not None
    assert (match.opener.peer_id, match.prober.peer_id) == ("listener", "14")  # it asked first
    assert registry.wants == {"15": "somebody else"}
    assert registry.want("15", "listener", now=3, share=SHARE) is None  # the listener is no longer listening


def test_a_wish_for_anyone_takes_the_peer_that_waits_for_us_already() -> None:
    registry = Registry()
    for peer_id, address in (("listener", A), ("14", B), ("15", ("192.0.2.15", 40002))):
        registry.register(peer_id, address, (), 30, now=0)
    registry.want("14", "listener", now=1, share=SHARE)
    registry.want("14", "elsewhere", now=2, share=SHARE)  # 14 changed its mind
    registry.want("15", "listener", now=3, share=SHARE)
    match = registry.want("listener", ANYONE, now=4, share=SHARE)
    assert match is not None
    assert (match.opener.peer_id, match.prober.peer_id) == ("15", "listener")
    assert registry.wants == {"14": "elsewhere"}
    registry.unregister("14")
    assert registry.wants == {}
    assert registry.want("listener", ANYONE, now=5, share=SHARE) is None


def test_a_session_with_a_peer_registered_elsewhere_leaves_nothing_behind() -> None:
    here, elsewhere = Registry(), Registry()  # two servers' tables; 14 is registered at the other one only
    here.register("10", A, (), 30, now=0)
    theirs = elsewhere.register("14", B, (), 30, now=0)
    assert here.want("10", "14", now=1, share=SHARE) is None
    mine = here.registrations["10"]
    match = pair_up(mine, Wish(SHARE, None, b"t"), theirs, Wish(SHARE, None, b"T"), ("east", "west"))
    here.adopt_session(match)
    assert here.session(match.session_id) is match
    assert match.server_of("14") == "west"
    here.unregister("10")
    here.expire(now=2)
    assert here.sessions == {}
    assert here._sessions_of == {}
