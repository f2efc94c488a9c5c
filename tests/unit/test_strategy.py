"""How a peer punches, from what it knows at its introduction (punch.peer.strategy.decide): one row per case."""

from __future__ import annotations

import dataclasses

import pytest

from punch.peer.strategy import (
    EARLY_FLOOR,
    REFLEXIVE_FLOOR,
    NotEarly,
    Plan,
    Situation,
    Strategy,
    decide,
    mapped_candidates,
    mapped_plan,
    plan,
    reflexive_window,
)
from punch.stun.wire import Mapping, Role

pytestmark = pytest.mark.unit

MS = 0.001
# Two peers 20 ms from the server (round trips of 40 ms): early checks pay; the delay is the 5% margin of 20 ms.
FAR = Situation(
    plan=Plan.PUNCH,
    role=Role.OPENER,
    early_enabled=True,
    open_ttl=2,
    same_nat=False,
    lan_on_link=False,
    our_rtt=40 * MS,
    told_rtt=40 * MS,
    their_rtt=40 * MS,
)
NEAR = dataclasses.replace(FAR, our_rtt=1 * MS, told_rtt=1 * MS, their_rtt=1 * MS)  # a LAN server: 1 ms each


def row(**changes: object) -> Situation:
    return dataclasses.replace(FAR, **changes)  # type: ignore[arg-type]


# (case, situation, early, lan_first, aggressive, hopeless, may_move, why not early)
CASES = [
    ("a far server: early checks, nominating in every check", FAR, True, False, True, False, True, None),
    ("the prober decides alike", row(role=Role.PROBER), True, False, True, False, True, None),
    ("a near server: Ready/Go is as fast", NEAR, False, False, True, False, True, NotEarly.NEAR),
    ("--no-early-checks", row(early_enabled=False), False, False, True, False, True, None),
    ("no low-TTL probes: nothing opens the NATs first", row(open_ttl=0), False, False, True, False, False, None),
    ("the other's round trip unknown (an old peer)", row(their_rtt=None), False, False, True, False, True, None),
    ("ours never measured", row(our_rtt=None, told_rtt=None), False, False, True, False, True, None),
    ("two homes behind one carrier NAT, no LAN on our link", row(same_nat=True), True, False, True, False, True, None),
    (
        "one LAN behind one NAT: the LAN first",
        row(same_nat=True, lan_on_link=True),
        False,
        True,
        False,
        False,
        False,
        NotEarly.LAN,
    ),
    (
        "a LAN candidate on our link but another public address: no wait",
        row(lan_on_link=True),
        True,
        False,
        True,
        False,
        True,
        None,
    ),
    ("we open many mappings (prediction)", row(plan=Plan.OPEN), False, False, False, False, False, None),
    ("we spray (prediction)", row(plan=Plan.SPRAY, role=Role.PROBER), False, False, False, False, False, None),
    ("both NATs symmetric: the relay, hopeless", row(plan=Plan.RELAY), False, False, False, True, False, None),
    ("a peer's UDP blocked: the relay, retried", row(plan=Plan.RELAY_FIRST), False, False, True, False, False, None),
    # A port a router maps beats the plan of the two NATs (decide applies punch.peer.strategy.mapped_plan): checked
    # at once (early, delay 0), nothing predicted, the first pair proven nominated
    ("a mapped port where we would open many mappings", row(plan=Plan.OPEN, mapped_ours=True), True, False, False,
     False, False, None),
    ("a mapped port where we would spray", row(plan=Plan.SPRAY, role=Role.PROBER, mapped_theirs=True), True, False,
     False, False, False, None),
    ("a mapped port where both NATs are symmetric: not the relay", row(plan=Plan.RELAY, mapped_theirs=True), True,
     False, False, False, False, None),
    ("a mapped port near the server: still no Ready/Go", dataclasses.replace(NEAR, mapped_ours=True), True, False,
     False, False, False, None),
    # but a peer whose UDP does not get out uses no mapped port: the relay first (punch.peer.strategy.mapped_plan)
    ("a peer's UDP blocked beside a mapped port: the relay", row(plan=Plan.RELAY_FIRST, mapped_ours=True,
     mapped_theirs=True), False, False, True, False, False, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("situation", "early", "lan_first", "aggressive", "hopeless", "may_move", "not_early"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_decide(
    situation: Situation,
    early: bool,
    lan_first: bool,
    aggressive: bool,
    hopeless: bool,
    may_move: bool,
    not_early: NotEarly | None,
) -> None:
    strategy = decide(situation)
    got = (strategy.early, strategy.lan_first, strategy.aggressive, strategy.hopeless, strategy.may_move)
    assert got == (early, lan_first, aggressive, hopeless, may_move)
    assert strategy.not_early is not_early


def test_an_early_check_waits_for_the_later_introduce_and_the_margin() -> None:
    # We are 10 ms from the server, the other 30 ms: its Introduce arrives 20 ms after ours; the margin is 5% of 30.
    strategy = decide(row(our_rtt=20 * MS, told_rtt=20 * MS, their_rtt=60 * MS))
    assert strategy.early_delay == pytest.approx(20 * MS + 1.5 * MS)


def test_both_peers_decide_alike_from_what_both_know() -> None:
    """Each side's own round trip may have shrunk since it told the server; both decide from the told ones."""
    for told, theirs in [(3 * MS, 1.5 * MS), (1.5 * MS, 3 * MS), (40 * MS, 1 * MS), (2.1 * MS, 2.1 * MS)]:
        opener = decide(row(role=Role.OPENER, told_rtt=told, their_rtt=theirs, our_rtt=told / 3))
        prober = decide(row(role=Role.PROBER, told_rtt=theirs, their_rtt=told, our_rtt=theirs))
        assert opener.early == prober.early


HARD = row(plan=Plan.OPEN)  # our NAT maps endpoint-dependently, theirs does not: we are the opener
EASY = row(plan=Plan.SPRAY, role=Role.PROBER)

# (case, situation, reflexive first, the hard side's delay and window, our low-TTL probes at the Introduce)
REFLEXIVE = [
    ("the hard side, far server: checks after the early delay", HARD, True, 1 * MS, 160 * MS, False),
    ("the hard side, near server: the floors", row(plan=Plan.OPEN, our_rtt=MS, told_rtt=MS, their_rtt=MS), True,
     EARLY_FLOOR, REFLEXIVE_FLOOR, False),
    ("the hard side, the other's Introduce comes 20 ms later", row(plan=Plan.OPEN, their_rtt=80 * MS), True,
     22 * MS, 240 * MS, False),
    ("the hard side, the round trip we told counts for the window", row(plan=Plan.OPEN, our_rtt=10 * MS), True,
     16 * MS, 160 * MS, False),
    ("the hard side without --early-checks: not early checks, still first", row(plan=Plan.OPEN, early_enabled=False),
     True, 1 * MS, 160 * MS, False),
    ("the hard side without the other's round trip: predicts at once", row(plan=Plan.OPEN, their_rtt=None), False,
     None, 0.0, False),
    ("the easy side: probes at its Introduce, needs no round trip", EASY, True, None, 0.0, True),
    ("the easy side without the other's round trip", row(plan=Plan.SPRAY, role=Role.PROBER, their_rtt=None), True,
     None, 0.0, True),
    ("turned off (PredictConfig.reflexive): the hard side", row(plan=Plan.OPEN, reflexive_enabled=False), False,
     None, 0.0, False),
    ("turned off: the easy side", row(plan=Plan.SPRAY, role=Role.PROBER, reflexive_enabled=False), False, None, 0.0,
     False),
    ("a plain punch: nothing to be first to (early checks open at the Introduce)", FAR, False, None, 0.0, True),
    ("a near plain punch: Ready/Go", NEAR, False, None, 0.0, False),
    ("both NATs symmetric: the relay", row(plan=Plan.RELAY), False, None, 0.0, False),
    # A mapped port lets the other's checks in at once: nothing to be first to, nothing predicted, no low-TTL probes
    ("the hard side, our router maps a port: MAPPED", row(plan=Plan.OPEN, mapped_ours=True), False, None, 0.0, False),
    ("the hard side, the easy side's router maps one", row(plan=Plan.OPEN, mapped_theirs=True), False, None, 0.0,
     False),
    ("the easy side, our router maps a port", row(plan=Plan.SPRAY, role=Role.PROBER, mapped_ours=True), False, None,
     0.0, False),
    ("the easy side, the hard side's router maps one", row(plan=Plan.SPRAY, role=Role.PROBER, mapped_theirs=True),
     False, None, 0.0, False),
    ("the hard side, both routers map ports, near server", dataclasses.replace(NEAR, plan=Plan.OPEN,
     mapped_ours=True, mapped_theirs=True), False, None, 0.0, False),
    ("as punch.peer.situation passes it: plan MAPPED", row(plan=Plan.MAPPED, mapped_theirs=True), False, None, 0.0,
     False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("situation", "first", "delay", "window", "opens"),
    [case[1:] for case in REFLEXIVE],
    ids=[case[0] for case in REFLEXIVE],
)
def test_peer_reflexive_first(
    situation: Situation, first: bool, delay: float | None, window: float, opens: bool
) -> None:
    strategy = decide(situation)
    assert strategy.reflexive_first is first
    assert strategy.reflexive_delay == (None if delay is None else pytest.approx(delay))
    assert strategy.reflexive_window == pytest.approx(window)
    assert strategy.opens_at_introduction is opens
    mapped = situation.mapped_ours or situation.mapped_theirs
    assert strategy.plan is (Plan.MAPPED if mapped else situation.plan)
    assert strategy.predicting is (not mapped and situation.plan is not Plan.PUNCH)  # the fallback stays planned


def test_the_reflexive_window_is_two_round_trips_through_the_server_or_the_floor() -> None:
    assert reflexive_window(40 * MS, 60 * MS) == pytest.approx(200 * MS)
    assert reflexive_window(1 * MS, 2 * MS) == REFLEXIVE_FLOOR
    assert reflexive_window(1 * MS, 2 * MS, floor=0.0) == pytest.approx(6 * MS)


@pytest.mark.parametrize(
    ("ours", "theirs", "role", "expected"),
    [
        (Mapping.ENDPOINT_DEPENDENT, Mapping.ENDPOINT_DEPENDENT, Role.OPENER, Plan.RELAY),
        (Mapping.ENDPOINT_DEPENDENT, Mapping.ENDPOINT_INDEPENDENT, Role.OPENER, Plan.OPEN),
        (Mapping.ENDPOINT_INDEPENDENT, Mapping.ENDPOINT_DEPENDENT, Role.PROBER, Plan.SPRAY),
        (Mapping.ENDPOINT_INDEPENDENT, Mapping.ENDPOINT_INDEPENDENT, Role.OPENER, Plan.PUNCH),
        (Mapping.UNKNOWN, Mapping.ENDPOINT_DEPENDENT, Role.PROBER, Plan.PUNCH),
        (Mapping.ENDPOINT_DEPENDENT, Mapping.UNKNOWN, Role.OPENER, Plan.PUNCH),
        (Mapping.UDP_BLOCKED, Mapping.ENDPOINT_INDEPENDENT, Role.OPENER, Plan.RELAY_FIRST),
        (Mapping.ENDPOINT_DEPENDENT, Mapping.UDP_BLOCKED, Role.PROBER, Plan.RELAY_FIRST),
        (Mapping.UDP_BLOCKED, Mapping.UDP_BLOCKED, Role.PROBER, Plan.RELAY_FIRST),
    ],
)
def test_the_plan_from_both_mappings(ours: Mapping, theirs: Mapping, role: Role, expected: Plan) -> None:
    assert plan(ours, theirs, role) is expected


def test_a_plain_strategy_is_a_plain_punch() -> None:
    plain = Strategy()
    assert (plain.early, plain.lan_first, plain.aggressive, plain.predicting, plain.hopeless) == (
        False,
        False,
        True,
        False,
        False,
    )


def test_where_udp_is_blocked_the_relay_comes_at_once_and_a_direct_path_is_retried_from_it() -> None:
    blocked, hopeless = Strategy(plan=Plan.RELAY_FIRST), Strategy(plan=Plan.RELAY)
    assert (blocked.relay_at_once, blocked.hopeless) == (True, False)
    assert (hopeless.relay_at_once, hopeless.hopeless) == (True, True)
    assert not Strategy().relay_at_once


def test_a_mapped_port_is_one_on_the_public_address_after_it() -> None:
    """punch.portmap: a peer offers the port its router maps on the address the server sees it at."""
    candidates = (("198.51.100.10", 22731), ("198.51.100.10", 54172), ("10.0.10.2", 54172))
    assert mapped_candidates(candidates) == (("198.51.100.10", 54172),)
    assert mapped_candidates(candidates[:1] + candidates[2:]) == ()  # the server's view and a LAN address: none
    assert mapped_candidates((("203.0.113.7", 4000),)) == ()


@pytest.mark.parametrize("otherwise", [p for p in Plan if p is not Plan.RELAY_FIRST])
def test_a_mapped_port_on_either_side_beats_every_other_plan_but_relay_first(otherwise: Plan) -> None:
    assert mapped_plan(True, False, otherwise) is mapped_plan(False, True, otherwise) is Plan.MAPPED
    assert mapped_plan(False, False, otherwise) is otherwise


EI, ED, BLOCKED = Mapping.ENDPOINT_INDEPENDENT, Mapping.ENDPOINT_DEPENDENT, Mapping.UDP_BLOCKED
# (case, our mapping, theirs, our router maps a port, theirs does, the plan): both peers' plans, from what both know
MAPPED_OR_BLOCKED = [
    ("their mapped port, both NATs symmetric: checked", ED, ED, False, True, Plan.MAPPED),
    ("our mapped port, both NATs cones: checked", EI, EI, True, False, Plan.MAPPED),
    ("our UDP blocked, their mapped port: the relay first", BLOCKED, EI, False, True, Plan.RELAY_FIRST),
    ("their UDP blocked, our mapped port: the relay first", ED, BLOCKED, True, False, Plan.RELAY_FIRST),
    ("our UDP blocked, our own mapped port: the relay first", BLOCKED, ED, True, False, Plan.RELAY_FIRST),
    ("both blocked, both mapped: the relay first", BLOCKED, BLOCKED, True, True, Plan.RELAY_FIRST),
    ("our UDP blocked, nothing mapped: the relay first", BLOCKED, EI, False, False, Plan.RELAY_FIRST),
]


@pytest.mark.parametrize(
    ("case", "ours", "theirs", "mapped_ours", "mapped_theirs", "expected"),
    MAPPED_OR_BLOCKED,
    ids=[c[0] for c in MAPPED_OR_BLOCKED],
)
def test_where_a_peers_udp_does_not_get_out_the_relay_first_wins_over_a_mapped_port(
    case: str, ours: Mapping, theirs: Mapping, mapped_ours: bool, mapped_theirs: bool, expected: Plan
) -> None:
    """A mapped port takes UDP in, but a peer whose UDP does not get out neither checks it nor answers through it;
    the other peer decides the same from its side (the roles and mappings swapped)."""
    for role in Role:
        assert mapped_plan(mapped_ours, mapped_theirs, plan(ours, theirs, role)) is expected
        assert mapped_plan(mapped_theirs, mapped_ours, plan(theirs, ours, role)) is expected


# (case, ours, theirs, role, we wait)
MAPPED_CASES = [
    ("only we map: the other checks us", True, False, Role.PROBER, True),
    ("only we map, as the opener", True, False, Role.OPENER, True),
    ("only they map: we check", False, True, Role.OPENER, False),
    ("both map: the prober checks the opener's", True, True, Role.PROBER, False),
    ("both map: the opener waits", True, True, Role.OPENER, True),
]


@pytest.mark.parametrize(("case", "ours", "theirs", "role", "waits"), MAPPED_CASES, ids=[c[0] for c in MAPPED_CASES])
def test_with_a_mapped_port_one_side_checks_at_once_and_nothing_else_is_needed(
    case: str, ours: bool, theirs: bool, role: Role, waits: bool
) -> None:
    strategy = decide(row(plan=Plan.MAPPED, role=role, mapped_ours=ours, mapped_theirs=theirs))
    assert strategy.waits is waits
    assert strategy.early_delay == 0.0  # no Ready/Go: the mapped port is open already
    assert (strategy.may_move, strategy.predicting, strategy.hopeless, strategy.aggressive) == (
        False,
        False,
        False,
        False,
    )
    # the same from a near server, where a plain punch would wait for Go
    assert (
        decide(dataclasses.replace(NEAR, plan=Plan.MAPPED, role=role, mapped_ours=ours, mapped_theirs=theirs))
        == strategy
    )
    # and whatever the two NATs' plan was: no peer-reflexive first, no prediction, not the relay (all but a peer's UDP
    # blocked, RELAY_FIRST: test_where_a_peers_udp_does_not_get_out_the_relay_first_wins_over_a_mapped_port)
    for nats in [p for p in Plan if p is not Plan.RELAY_FIRST]:
        assert decide(row(plan=nats, role=role, mapped_ours=ours, mapped_theirs=theirs)) == strategy
