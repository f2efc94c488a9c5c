"""Link impairments in a topology: every unit, every problem with its YAML path and fix, --impair overrides."""

from __future__ import annotations

from typing import Any

import pytest

from netns.errors import TopologyError
from netns.topology import model
from netns.topology.impairment import Impairment
from netns.topology.model import DEFAULT_TOPOLOGY

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
