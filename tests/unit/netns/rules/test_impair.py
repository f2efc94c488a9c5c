"""Link impairments built by the kernel: which mechanism builds each, the rule text, and the plan's steps."""

from __future__ import annotations

import pytest

from netns.lab import plan
from netns.rules import impair
from netns.topology import model
from netns.topology.impairment import Impairment
from netns.topology.model import DEFAULT_TOPOLOGY

pytestmark = pytest.mark.unit


def test_mechanisms_with_and_without_netem() -> None:
    full = Impairment(50.0, 10.0, 200, 10, 1_000_000)
    assert impair.mechanisms(full, netem=False) == {
        "delay": "nfqueue",
        "loss": "nft numgen",
        "duplicate": "nft dup",
        "rate": "tbf",
    }
    assert set(impair.mechanisms(full, netem=True).values()) == {"netem"}
    assert impair.qdisc(full, netem=True) == (
        "netem",
        (("limit", 10_000), ("delay", 50_000), ("jitter", 10_000), ("loss", 20.0), ("duplicate", 1.0),
         ("rate", "1000000bit")),
    )  # fmt: skip
    assert impair.qdisc(full, netem=False) == ("tbf", (("rate", "1000000bit"), ("burst", 3028), ("latency", "100ms")))
    assert impair.qdisc(Impairment(delay_ms=5.0), netem=False) is None


def _link(spec: Impairment, ifname: str = "wan10", queue: int = 1) -> impair.Link:
    return impair.Link(ifname, "nat10", "punch-nat10", ifname, spec, queue)


def test_rules() -> None:
    links = [_link(Impairment(delay_ms=50.0, loss=200)), _link(Impairment(duplicate=10), "lan10", 3)]
    assert impair.iptables_ruleset(links).splitlines()[-2:] == [
        "-A PREROUTING -i wan10 -j NFQUEUE --queue-num 1",
        "COMMIT",
    ]
    nft = impair.nft_ruleset(links)
    assert '\t\ttype filter hook egress device "wan10" priority 0; policy accept;\n' in nft
    assert "\t\tnumgen random mod 1000 < 200 drop\n" in nft
    assert 'oifname "lan10" numgen random mod 1000 < 10 dup to rt ip nexthop device "lan10"' in nft
    assert "--queue-bypass" not in impair.iptables_ruleset(links)
    assert impair.nft_ruleset([]) == (
        "table ip netns_impair\ndelete table ip netns_impair\ntable netdev netns_impair\ndelete table netdev netns_impair\n"
    )


def test_plan_adds_impairment_steps_after_nat() -> None:
    topo = model.load(DEFAULT_TOPOLOGY).with_impairs(["wan10:delay=50ms,jitter=10ms,loss=20%,rate=1mbit"])
    steps = plan.plan(topo, "punch", netem=False, python="py")
    names = [s.describe() for s in steps]
    first = next(i for i, s in enumerate(steps) if isinstance(s, plan.StartDelayd))
    assert all(not isinstance(s, (plan.LoadNat, plan.LoadNft)) for s in steps[first:])
    assert names[first:] == [
        "delay daemon punch-core:wan10 on queue 1",
        "qdisc punch-core:wan10: tbf rate=1000000bit burst=3028 latency=100ms",
        "impairment rules punch-core",
        "delay daemon punch-nat10:wan10 on queue 1",
        "qdisc punch-nat10:wan10: tbf rate=1000000bit burst=3028 latency=100ms",
        "impairment rules punch-nat10",
    ]
    start = steps[first]
    assert isinstance(start, plan.StartDelayd)
    assert start.argv == ("py", "-m", "netns.kernel.delayd", "--queue", "1", "--delay", "50", "--jitter", "10")
    assert start.log == "/run/netns-lab/punch/delayd-core-wan10.log"
    with_netem = [s.describe() for s in plan.plan(topo, "punch", netem=True)]
    assert next(n for n in with_netem if "qdisc" in n).startswith(
        "qdisc punch-core:wan10: netem limit=10000 delay=50000"
    )
    assert not any("daemon" in n or "rules" in n for n in with_netem)


def test_runtime_change_starts_the_new_daemon_before_stopping_the_old() -> None:
    old = [_link(Impairment(delay_ms=50.0))]
    new = [_link(Impairment(delay_ms=10.0), queue=1 | 1 << 15)]
    steps = plan.impair_steps(new, old, False, "punch", "py")
    assert [type(s).__name__ for s in steps] == ["StartDelayd", "LoadImpair", "StopDelayd"]
    same_delay = plan.impair_steps([_link(Impairment(delay_ms=50.0, loss=10))], old, False, "punch", "py")
    assert [type(s).__name__ for s in same_delay] == ["LoadImpair"]
    cleared = plan.impair_steps([], [_link(Impairment(delay_ms=5.0, rate=1_000_000))], False, "punch", "py")
    assert [s.describe() for s in cleared] == [
        "qdisc punch-nat10:wan10: default",
        "impairment rules punch-nat10",
        "stop delay daemon punch-nat10 queue 1",
    ]
