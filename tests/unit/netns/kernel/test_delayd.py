"""The NFQUEUE delaying daemon without root: its nfnetlink_queue messages, arrival times and the hold."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from types import SimpleNamespace

import pytest

from netns.kernel import delayd

pytestmark = pytest.mark.unit


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
