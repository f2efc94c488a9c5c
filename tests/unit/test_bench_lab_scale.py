"""bench/lab_scale's arithmetic: the arrival schedule, the capacity, and reading a namespace's UDP counters."""

from __future__ import annotations

import itertools
import random

import pytest

from bench.crowd import udp_in_datagrams
from bench.lab_scale import Size, arrival_times, capacity, step_rows

pytestmark = pytest.mark.unit

SNMP = """Icmp: InMsgs InErrors
Icmp: 0 0
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 2 0 0 3 0 0 0 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 7 0 0 0 0 0 0 0 0
"""


def test_udp_in_datagrams_reads_the_udp_lines_only() -> None:
    assert udp_in_datagrams(SNMP) == 2


def test_arrivals_are_one_per_pair_increasing_and_repeatable() -> None:
    times = arrival_times(50, 20.0, random.Random(7))
    assert len(times) == 50
    assert all(0 < a < b for a, b in itertools.pairwise(times))
    assert times == arrival_times(50, 20.0, random.Random(7))


def test_capacity_is_the_highest_rate_up_to_which_every_median_is_within_the_bound() -> None:
    rows = [(20.0, 4.3), (5.0, 3.6), (50.0, 9.0), (10.0, 4.1)]
    assert capacity(3.5, rows, 1.2) == 10.0
    assert capacity(3.5, rows, 3.0) == 50.0
    assert capacity(1.0, rows, 1.2) is None


def test_a_slower_rate_that_missed_ends_the_capacity_even_if_a_faster_one_made_it() -> None:
    assert capacity(3.5, [(5.0, 3.6), (10.0, 4.5), (20.0, 4.0)], 1.2) == 5.0


def test_step_rows_give_each_kind_at_each_size_and_the_part_that_takes_turns() -> None:
    small = Size(10, up_s=0.3, steps={"CreateNamespace": {"count": 21, "seconds": 0.021}})
    small.steps["LoadNat"] = {"count": 10, "seconds": 0.5}
    big = Size(100, up_s=1.2, steps={"CreateNamespace": {"count": 201, "seconds": 0.402}})
    big.steps["CreateBridge"] = {"count": 1, "seconds": 0.0003}
    big.beside = {"CreateNamespace": {"count": 21, "seconds": 0.063}}  # the small lab next to the big one
    assert step_rows([small, big]) == [
        ["CreateNamespace", "21 x 1.00", "201 x 2.00", "21 x 3.00"],
        ["LoadNat (side by side)", "10 x 50.00", "-", "-"],
        ["CreateBridge", "-", "1 x 0.30", "-"],
        ["all but side by side: seconds", "0.02", "0.40", "0.06"],
        ["up (CLI wall time): seconds", "0.30", "1.20", "-"],
    ]
