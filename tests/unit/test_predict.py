"""Port prediction's pure parts: port sampling, the odds, the plan, NAT-MAPPING on the wire, roles at the server,
and how the puncher answers a check that reached one of the many sockets (fake endpoints, no sockets)."""

from __future__ import annotations

import asyncio
import math
import random

import pytest

from punch.peer.predict import PORT_RANGE, hit_probability, sample_ports
from punch.peer.puncher import Puncher, PunchTimings
from punch.peer.strategy import Plan, Strategy, plan
from punch.rendezvous.registry import Registry
from punch.stun import AttributeType, Message, MessageClass, Method, decode, encode
from punch.stun.wire import Introduction, KeyShare, Mapping, Role, mapping_attribute, request
from tests.unit.test_puncher_checks import AnsweringEndpoint, FakeEndpoint
from tests.unit.test_puncher_checks import check as check_from

pytestmark = pytest.mark.unit

HARD, EASY, UNKNOWN = Mapping.ENDPOINT_DEPENDENT, Mapping.ENDPOINT_INDEPENDENT, Mapping.UNKNOWN
SESSION = b"\x07" * 16
THEM = ("192.0.2.14", 5000)

NO_SHARE = KeyShare(bytes(32), bytes(64))  # these tests never derive a session key


# -- sampling and odds -------------------------------------------------------------------------------------------


def test_sampled_ports_are_distinct_and_within_the_range() -> None:
    ports = sample_ports(2000, rng=random.Random(1))
    assert len(ports) == len(set(ports)) == 2000
    assert all(1024 <= p <= 65535 for p in ports)


def test_asking_for_more_ports_than_the_range_holds_gives_each_port_once() -> None:
    assert sorted(sample_ports(100_000, (1024, 65535), random.Random(2))) == list(range(1024, 65536))
    assert sorted(sample_ports(10, (5000, 5002), random.Random(3))) == [5000, 5001, 5002]


def test_sampling_is_uniform_over_the_range() -> None:
    """Every port of 1024-65535 once in 64,512 draws: each eighth of the range gets exactly its share."""
    ports = sample_ports(64512 // 4, rng=random.Random(4))
    eighths = [0] * 8
    for port in ports:
        eighths[(port - 1024) * 8 // 64512] += 1
    expected = len(ports) / 8
    assert all(abs(count - expected) < 5 * math.sqrt(expected) for count in eighths), eighths


def test_a_range_outside_the_port_numbers_is_refused() -> None:
    with pytest.raises(ValueError, match="port range 0-100 is not within 1-65535"):
        sample_ports(1, (0, 100))


def test_the_birthday_odds_of_256_sockets_against_1000_and_2000_probes() -> None:
    assert PORT_RANGE == (1024, 65535)
    with_repeats = [1 - (1 - 256 / 64512) ** n for n in (1000, 2000)]
    without = [hit_probability(256, n) for n in (1000, 2000)]
    assert [round(p, 4) for p in with_repeats] == [0.9812, 0.9996]
    exact = [1 - math.comb(64512 - 256, n) / math.comb(64512, n) for n in (1000, 2000)]  # hypergeometric
    assert without == pytest.approx(exact, rel=1e-9)
    assert [round(p, 4) for p in without] == [0.9818, 0.9997]
    assert all(w >= r for w, r in zip(without, with_repeats, strict=True))  # no repeats: never worse


def test_the_odds_at_the_edges() -> None:
    assert hit_probability(0, 2000) == 0.0
    assert hit_probability(256, 0) == 0.0
    assert hit_probability(256, 64512 - 256 + 1) == 1.0
    assert hit_probability(1, 1, ports=1) == 1.0


# -- the plan ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ours", "theirs", "role", "expected"),
    [
        (HARD, EASY, Role.OPENER, Plan.OPEN),
        (EASY, HARD, Role.PROBER, Plan.SPRAY),
        (HARD, HARD, Role.OPENER, Plan.RELAY),
        (HARD, HARD, Role.PROBER, Plan.RELAY),
        (EASY, EASY, Role.OPENER, Plan.PUNCH),
        (HARD, UNKNOWN, Role.OPENER, Plan.PUNCH),
        (UNKNOWN, HARD, Role.PROBER, Plan.PUNCH),
        (HARD, EASY, Role.PROBER, Plan.PUNCH),  # the hard side must open; a server that did not see to it: punch
        (EASY, HARD, Role.OPENER, Plan.PUNCH),
    ],
)
def test_both_peers_reach_one_plan(ours: Mapping, theirs: Mapping, role: Role, expected: Plan) -> None:
    assert plan(ours, theirs, role) is expected


# -- NAT-MAPPING on the wire -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mapping", list(Mapping))
def test_nat_mapping_round_trips_in_register(mapping: Mapping) -> None:
    message = request(Method.REGISTER, (AttributeType.PEER_ID, "10"), *mapping_attribute(mapping))
    decoded = decode(encode(message))
    assert Mapping.of(decoded) is mapping
    assert decoded.has(AttributeType.NAT_MAPPING) is (mapping is not UNKNOWN)  # unknown: not sent at all


def test_an_unknown_nat_mapping_value_counts_as_unknown() -> None:
    message = request(Method.REGISTER, (AttributeType.NAT_MAPPING, 7))
    assert Mapping.of(decode(encode(message))) is UNKNOWN


def test_nat_mapping_is_comprehension_optional() -> None:
    """A server or peer that does not know it must ignore it (RFC 8489 §14), not answer 420."""
    assert AttributeType.NAT_MAPPING >= 0x8000
    message = decode(encode(request(Method.REGISTER, (AttributeType.NAT_MAPPING, 2))))
    assert message.unknown_comprehension_required() == ()


def test_introduce_carries_the_other_peers_mapping() -> None:
    introduction = Introduction("14", (THEM,), SESSION, Role.OPENER, bytes(32), NO_SHARE, EASY)
    assert Introduction.from_message(decode(encode(introduction.to_message()))) == introduction
    old = Introduction("14", (THEM,), SESSION, Role.OPENER, bytes(32), NO_SHARE)
    assert Introduction.from_message(decode(encode(old.to_message()))).mapping is UNKNOWN


# -- roles at the server -----------------------------------------------------------------------------------------


def match_of(first: Mapping, second: Mapping) -> tuple[str, str, Mapping, Mapping]:
    """Peer a registers and asks first, then b: (opener, prober, mapping told to the opener, to the prober)."""
    registry = Registry()
    registry.register("a", ("198.51.100.10", 1), (), 30, 0, first)
    registry.register("b", ("192.0.2.14", 2), (), 30, 0, second)
    assert registry.want("a", "b", 0, share=NO_SHARE) is None
    match = registry.want("b", "a", 0, share=NO_SHARE)
    assert match is not None
    (to_opener, about_prober), (to_prober, about_opener) = match.introductions()
    assert (to_opener, to_prober) == (match.opener, match.prober)
    return match.opener.peer_id, match.prober.peer_id, about_prober.mapping, about_opener.mapping


def test_the_peer_that_asked_first_opens_as_usual() -> None:
    assert match_of(UNKNOWN, UNKNOWN) == ("a", "b", UNKNOWN, UNKNOWN)
    assert match_of(HARD, EASY) == ("a", "b", EASY, HARD)


def test_the_hard_side_opens_even_when_it_asked_second() -> None:
    assert match_of(EASY, HARD) == ("b", "a", EASY, HARD)


def test_two_hard_sides_keep_the_usual_roles() -> None:
    assert match_of(HARD, HARD)[:2] == ("a", "b")


# -- the puncher, with a check that reached one of the many sockets ----------------------------------------------


def check(*, nominate: bool = False) -> Message:
    return check_from("14", SESSION, nominate=nominate)


def test_a_check_on_a_prediction_socket_is_answered_from_it_and_its_nomination_is_a_predicted_path() -> None:
    async def scenario() -> None:
        main, extra = FakeEndpoint(), AnsweringEndpoint(THEM)  # our triggered check proves the pair
        chosen: list[object] = []
        introduction = Introduction("14", (THEM,), SESSION, Role.OPENER, bytes(32), NO_SHARE, EASY)
        puncher = Puncher(
            main,  # type: ignore[arg-type]
            "10",
            introduction,
            PunchTimings(timeout=1),
            strategy=Strategy(plan=Plan.OPEN),
            on_chosen=chosen.append,
        )
        assert puncher.on_request(check(), THEM, extra)  # type: ignore[arg-type]
        assert main.sent == []
        [(answer, destination)] = extra.sent
        assert (answer.message_class, destination) == (MessageClass.SUCCESS, THEM)
        assert puncher.chosen is None
        puncher.on_request(check(nominate=True), THEM, extra)  # type: ignore[arg-type]
        path = await puncher.run()
        assert (path.remote, path.kind) == (THEM, "predicted")
        assert path.local is extra  # type: ignore[comparison-overlap]
        assert chosen == [path]
        assert puncher.chosen == path

    asyncio.run(scenario())


def test_under_port_prediction_every_path_through_the_nats_is_predicted_on_both_sides() -> None:
    # The matrix once saw one trial in which the side without a NAT, answering the symmetric side's checks from its
    # public candidate, called the path direct while the other side called it predicted.
    async def scenario() -> None:
        main = FakeEndpoint()
        lan = ("10.0.0.14", 40000)
        introduction = Introduction("14", (THEM, lan), SESSION, Role.PROBER, bytes(32), NO_SHARE, HARD)
        puncher = Puncher(main, "10", introduction, PunchTimings(timeout=1), strategy=Strategy(plan=Plan.SPRAY))  # type: ignore[arg-type]
        found = ("192.0.2.14", 48213)
        puncher.found(found)
        kinds = [puncher._kind(found), puncher._kind(THEM), puncher._kind(lan)]
        assert kinds == ["predicted", "predicted", "direct-lan"]
        await puncher.close()
        plain = Puncher(main, "10", introduction, PunchTimings(timeout=1))  # type: ignore[arg-type]
        assert [plain._kind(THEM), plain._kind(lan)] == ["direct", "direct-lan"]
        await plain.close()

    asyncio.run(scenario())
