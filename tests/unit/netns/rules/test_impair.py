"""Link impairments without root: parsing (every message), mechanisms, rules, plan steps, the NFQUEUE codec."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from netns.errors import TopologyError
from netns.kernel import delayd
from netns.lab import plan
from netns.lab.lifecycle import DEFAULT_TOPOLOGY
from netns.rules import impair
from netns.rules.impair import Impairment
from netns.topology import model

pytestmark = pytest.mark.unit

HOSTS = {
    "a": {"kind": "host", "interfaces": {"link": "10.9.0.1"}},
    "b": {"kind": "host", "interfaces": {"link": "10.9.0.2"}},
}


def topology(impair_spec: Any) -> dict[str, Any]:
    return {"version": 1, "networks": {"link": {"subnet": "10.9.0.0/24", "impair": impair_spec}}, "nodes": HOSTS}


def problems(impair_spec: Any) -> list[str]:
    with pytest.raises(TopologyError) as info:
        model.parse(topology(impair_spec), "t.yaml")
    return info.value.problems


def test_full_impairment_parses() -> None:
    spec = {"delay": "50ms", "jitter": "10ms", "loss": "20%", "duplicate": "1%", "rate": "1mbit"}
    net = model.parse(topology(spec)).network("link")
    assert net.impair == Impairment(50.0, 10.0, 200, 10, 1_000_000)
    assert net.impair.as_dict() == spec
    assert net.impair.describe() == "delay 50ms ±10ms, loss 20%, duplicate 1%, rate 1mbit"


@pytest.mark.parametrize(
    ("key", "text", "value"),
    [
        ("delay", "1s", 1000.0),
        ("delay", "500us", 0.5),
        ("delay", "0.5ms", 0.5),
        ("loss", "0.1%", 1),
        ("loss", "100%", 1000),
        ("loss", "0%", 0),
        ("rate", "500kbit", 500_000),
        ("rate", "10mbit", 10_000_000),
    ],
)
def test_units(key: str, text: str, value: object) -> None:
    parsed = model.parse(topology({key: text})).network("link").impair
    assert parsed is not None
    assert getattr(parsed, {"delay": "delay_ms", "loss": "loss", "rate": "rate"}[key]) == value


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"delay": 50}, "networks.link.impair.delay: 50 has no unit; write it like 50ms or 1s"),
        ({"delay": "fast"}, "networks.link.impair.delay: fast is not a duration; write it like 50ms or 1s"),
        ({"delay": "-5ms"}, "networks.link.impair.delay: -5ms is not a duration; write it like 50ms or 1s"),
        ({"delay": "2min"}, "networks.link.impair.delay: 2min is not a duration; write it like 50ms or 1s"),
        ({"delay": "61s"}, "networks.link.impair.delay: 61s is more than 60s; give at most 60s"),
        (
            {"loss": "120%"},
            "networks.link.impair.loss: 120% is more than 100%; give a percentage from 0% to 100%",
        ),
        (
            {"loss": 20},
            "networks.link.impair.loss: 20 has no percent sign; write a percentage from 0% to 100% like 20%",
        ),
        (
            {"loss": "-1%"},
            "networks.link.impair.loss: -1% is not a percentage; write one from 0% to 100% like 20% or 0.5%",
        ),
        (
            {"duplicate": "12.34%"},
            "networks.link.impair.duplicate: 12.34% is finer than the 0.1% resolution; round it to 12.3%",
        ),
        (
            {"rate": 1000},
            "networks.link.impair.rate: 1000 has no unit; write it in bits per second like 1mbit or 500kbit",
        ),
        (
            {"rate": "1mbps"},
            "networks.link.impair.rate: 1mbps would be bytes per second in tc; write bits per second like 1mbit "
            "or 500kbit",
        ),
        (
            {"rate": "1m"},
            "networks.link.impair.rate: 1m is not a rate; write it in bits per second like 1mbit or 500kbit",
        ),
        (
            {"rate": "1bit"},
            "networks.link.impair.rate: 1bit is outside 8kbit to 10gbit; give a rate in that range",
        ),
        (
            {"jitter": "5ms"},
            "networks.link.impair.jitter: jitter varies the delay around its mean, so it needs a delay; add delay "
            "(e.g. 50ms) or remove jitter",
        ),
        (
            {"lag": "5ms"},
            "networks.link.impair.lag: unknown key; allowed keys are delay, jitter, loss, duplicate, rate",
        ),
        (
            {},
            "networks.link.impair: empty; give at least one of delay, jitter, loss, duplicate, rate, or remove impair",
        ),
        (
            "50ms",
            "networks.link.impair: must be a mapping of delay, jitter, loss, duplicate, rate, not str",
        ),
    ],
)
def test_each_problem_is_reported_with_its_path_and_fix(spec: Any, message: str) -> None:
    assert problems(spec) == [f"t.yaml: {message}"]


def test_every_problem_is_reported_at_once() -> None:
    found = problems({"delay": 50, "loss": "120%", "rate": "1mbps", "bogus": 1})
    assert [p.split(": ")[1] for p in found] == [
        "networks.link.impair.bogus",
        "networks.link.impair.delay",
        "networks.link.impair.loss",
        "networks.link.impair.rate",
    ]


def test_cli_override_merges_and_reports_in_file_terms() -> None:
    topo = model.load(DEFAULT_TOPOLOGY).with_impairs(["wan10:delay=50ms", "wan10:loss=20%", "lan14:rate=1mbit"])
    assert topo.network("wan10").impair == Impairment(delay_ms=50.0, loss=200)
    assert topo.network("lan14").impair == Impairment(rate=1_000_000)
    assert topo.network("lan10").impair is None
    with pytest.raises(TopologyError) as info:
        model.load(DEFAULT_TOPOLOGY).with_impairs(["wan10:loss=120%", "nope:delay=1ms", "wan10", "wan10:delay"])
    assert info.value.problems == [
        "default.yaml: networks.wan10.impair.loss: 120% is more than 100%; give a percentage from 0% to 100% "
        "(from --impair wan10:loss=120%)",
        "default.yaml: networks.nope: no such network; the networks are net-server, wan10, wan14, lan10, lan14 "
        "(from --impair nope:delay=1ms)",
        "default.yaml: --impair: write it as NETWORK:KEY=VALUE[,KEY=VALUE...], e.g. wan10:delay=50ms,loss=20% "
        "(from --impair wan10)",
        "default.yaml: --impair: 'delay' is not KEY=VALUE; write it like delay=50ms (from --impair wan10:delay)",
    ]


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


def test_nfqueue_messages() -> None:
    bind = delayd.config_bind(7, seq=1)
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", bind)
    assert (length, kind, flags, seq) == (len(bind), 0x0302, 0x5, 1)
    assert bind[16:20] == bytes([0, 0, 0, 7])  # AF_UNSPEC, version 0, queue 7 big-endian
    assert bind[20:28] == struct.pack("=HH", 8, 1) + bytes([1, 0, 0, 2])  # NFQA_CFG_CMD: BIND, AF_INET
    v = delayd.verdict(7, 0x01020304)
    assert v[-12:] == struct.pack("=HH", 12, 2) + struct.pack("!II", 1, 0x01020304)
    packet = struct.pack("=HH", 11, 1) + struct.pack("!IHB", 42, 0x0800, 4) + b"\0"
    body = struct.pack("!BBH", 2, 0, 7) + packet
    msg = struct.pack("=IHHII", 16 + len(body), 0x0300, 0, 0, 0) + body
    error = struct.pack("=IHHII", 36, 2, 0, 1, 0) + struct.pack("=i", -16) + b"\0" * 16
    assert delayd.parse(msg + error) == ([(42, None)], [16])
    with pytest.raises(delayd.QueueError, match="claims 99 bytes"):
        delayd.parse(struct.pack("=IHHII", 99, 0, 0, 0, 0))
    stamp = struct.pack("=HH", 20, 4) + struct.pack("!QQ", 1_764_000_000, 250_000)  # NFQA_TIMESTAMP, then the header
    body = struct.pack("!BBH", 2, 0, 7) + stamp + packet
    msg = struct.pack("=IHHII", 16 + len(body), 0x0300, 0, 0, 0) + body
    assert delayd.parse(msg) == ([(42, 1_764_000_000.25)], [])


def test_a_pause_between_reading_the_two_clocks_never_makes_an_arrival_earlier(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    elapsed = [0.0]

    def reading(base: float) -> Callable[[], float]:
        def read() -> float:
            value = base + elapsed[0]
            elapsed[0] += 0.020  # the process is paused for 20 ms after every read
            return value

        return read

    monkeypatch.setattr(delayd, "time", SimpleNamespace(monotonic=reading(100.0), time=reading(5000.0)))
    now, wall_now = delayd.clocks()
    stamped = 4999.9997  # the kernel stamped it 0.3 ms before the first read: it arrived at monotonic 99.9997
    assert delayd.arrival(stamped, now, wall_now) >= 99.9997


def test_a_hold_counts_from_the_kernels_stamp_of_the_arrival() -> None:
    # read at monotonic 100.0, wall clock 5000.0: a packet stamped 0.3 ms before the read arrived at 99.9997
    assert delayd.arrival(4999.9997, now=100.0, wall_now=5000.0) == pytest.approx(99.9997)
    assert delayd.arrival(None, now=100.0, wall_now=5000.0) == 100.0  # no stamp: from the read
    assert delayd.arrival(5000.5, now=100.0, wall_now=5000.0) == 100.0  # from the future: the clock was set back
    assert delayd.arrival(4990.0, now=100.0, wall_now=5000.0) == 100.0  # older than a second: set forward
    d = delayd.Delayer(0, delay=5, jitter=0, distribution="uniform", rng=random.Random(1))
    d.add(1, delayd.arrival(4999.9997, now=100.0, wall_now=5000.0))
    assert d.due(100.0047) == []
    assert d.due(100.0048) == [1]  # 5 ms after it reached the interface, 4.7 ms after the read


def test_delayer_holds_each_packet_for_delay_plus_minus_jitter_and_reorders() -> None:
    d = delayd.Delayer(0, delay=50, jitter=10, distribution="uniform", rng=random.Random(1))
    for i in range(100):
        d.add(i, arrived=i * 0.001)
    assert d.due(0.039) == []
    assert d.timeout(0.0) == pytest.approx(min(t for t, _, _ in d.held))
    order = d.due(10.0)
    assert sorted(order) == list(range(100))
    assert order != list(range(100))
