"""How a peer punches, from what it knows at its introduction (punch.peer.strategy.decide): one row per case."""

from __future__ import annotations

import dataclasses

import pytest

from punch.peer.strategy import NotEarly, Plan, Situation, Strategy, decide, mapped_candidates, mapped_plan, plan
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
]


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


@pytest.mark.parametrize(
    ("ours", "theirs", "role", "expected"),
    [
        (Mapping.ENDPOINT_DEPENDENT, Mapping.ENDPOINT_DEPENDENT, Role.OPENER, Plan.RELAY),
        (Mapping.ENDPOINT_DEPENDENT, Mapping.ENDPOINT_INDEPENDENT, Role.OPENER, Plan.OPEN),
        (Mapping.ENDPOINT_INDEPENDENT, Mapping.ENDPOINT_DEPENDENT, Role.PROBER, Plan.SPRAY),
        (Mapping.ENDPOINT_INDEPENDENT, Mapping.ENDPOINT_INDEPENDENT, Role.OPENER, Plan.PUNCH),
        (Mapping.UNKNOWN, Mapping.ENDPOINT_DEPENDENT, Role.PROBER, Plan.PUNCH),
        (Mapping.ENDPOINT_DEPENDENT, Mapping.UNKNOWN, Role.OPENER, Plan.PUNCH),
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


def test_a_mapped_port_is_one_on_the_public_address_after_it() -> None:
    """punch.portmap: a peer offers the port its router maps on the address the server sees it at."""
    candidates = (("198.51.100.10", 22731), ("198.51.100.10", 54172), ("10.0.10.2", 54172))
    assert mapped_candidates(candidates) == (("198.51.100.10", 54172),)
    assert mapped_candidates(candidates[:1] + candidates[2:]) == ()  # the server's view and a LAN address: none
    assert mapped_candidates((("203.0.113.7", 4000),)) == ()


@pytest.mark.parametrize("otherwise", list(Plan))
def test_a_mapped_port_on_either_side_beats_every_other_plan(otherwise: Plan) -> None:
    assert mapped_plan(True, False, otherwise) is mapped_plan(False, True, otherwise) is Plan.MAPPED
    assert mapped_plan(False, False, otherwise) is otherwise


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
