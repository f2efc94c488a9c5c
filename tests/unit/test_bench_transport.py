"""bench/transport.py's arithmetic and report, from results made up here (no root, no sockets, no lab)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any, cast

import pytest

from bench import transport, transport_load
from bench.punch_floor import EARLY, Row
from bench.transport_tunnel import Timing, Trial, section

pytestmark = pytest.mark.unit


def ends(mib: int, seconds: float, received: int = 900) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON lines of bench/transport_load.py's two ends for one round."""
    sender = {
        "stream": {"bytes": mib << 20, "seconds": seconds, "cpu": seconds / 2},
        "datagram": {"payload": 1000, "sent": 1000, "seconds": 1.0, "cpu": 1.0, "received": received,
                     "received_bytes": received * 1000, "span": 0.5},
        "path": "direct",
    }  # fmt: skip
    receiver = {"stream": {"cpu": seconds, "seconds": seconds}, "datagram": {"cpu": 0.25, "seconds": 0.5}}
    return sender, receiver


def test_a_round_is_read_from_both_ends() -> None:
    found = transport.measurement(*ends(mib=1, seconds=0.5))
    assert found.stream_mbps == pytest.approx((1 << 20) * 8 / 0.5 / 1e6)
    assert found.stream_cpu == (0.5, 1.0)
    assert found.stream_cost == (250.0, 500.0)
    assert found.datagram_cost == pytest.approx(0.25 * 1000 / (900_000 / (1 << 20)))
    assert found.datagram_mbps == pytest.approx(900_000 * 8 / 0.5 / 1e6)
    assert found.offered_mbps == pytest.approx(8.0)
    assert found.lost == pytest.approx(0.1)
    assert found.datagram_cpu == (1.0, 0.5)
    assert found.path == "direct"


def test_an_end_paced_by_its_cpu_per_mib() -> None:
    assert transport.paced_mbps(100.0) == pytest.approx((1 << 20) * 8 / 0.1 / 1e6)
    assert transport.paced_mbps(0.0) == 0.0


def test_the_two_ratios_say_whether_the_code_or_the_machine_decided() -> None:
    assert transport.cause(met=False, met_paced=True) == (
        "by its CPU the code meets the goal, so the shortfall is the machine's load"
    )
    assert transport.cause(met=True, met_paced=True) == "by its CPU the code meets the goal"
    assert (
        transport.cause(met=True, met_paced=False)
        == "by its CPU the code does not meet the goal, although this run did"
    )


def test_tcp_has_no_datagram_figures() -> None:
    sender, receiver = ends(mib=16, seconds=0.1)
    del sender["datagram"], receiver["datagram"]
    found = transport.measurement(sender, receiver)
    assert (found.datagram_mbps, found.lost, found.datagram_cpu) == (None, None, None)


def table(direct_seconds: float) -> list[transport.Row]:
    """Every row with one round: the library's stream at 1 s per 10 MiB, the direct path's at ``direct_seconds``."""
    rows = transport.rows()
    for row in rows:
        seconds = direct_seconds if row.name == transport.DIRECT else 1.0
        row.measurements.append(transport.measurement(*ends(mib=10, seconds=seconds)))
        row.busy.append(0.05)
    rows[-1].failures.append("exit 1")
    rows[-1].busy.append(0.5)
    return rows


def test_the_report_gives_the_direct_path_against_the_librarys_ceiling() -> None:
    lines = transport.throughput_report(
        table(direct_seconds=2.0), rounds=1, mib=10, seconds=1.0, quiet_limit=0.1, patience=30.0
    )
    direct = "| punch, direct | the lab, default topology, home NAT routers (masquerade): direct | 1/1 | 42 | 0.50x |"
    assert any(line.startswith(direct) for line in lines)
    stream = "- Direct path, stream: 42 Mbit/s, 0.50x the library's ceiling (84 Mbit/s on loopback); goal 0.8x"
    # the receiver is the slower end: 2 s of CPU for 10 MiB on the direct path, 1 s on the library's
    paced = (
        "Paced by CPU per MiB (its slower end on a core of its own): 42 against 84 Mbit/s, 0.50x: by its CPU the "
        "code does not meet the goal. Over the lab's path aioquic's own makes 84 Mbit/s (paced 84): punch 0.50x it "
        "(paced 0.50x)"
    )
    assert f"{stream}: not met, 0.30x short (25 Mbit/s). {paced}" in lines
    datagrams = "- Direct path, datagrams: 14 Mbit/s, 1.00x the library's ceiling (14 Mbit/s on loopback); goal 0.8x"
    assert f"{datagrams}: met. Paced by CPU per MiB (its slower end on a core of its own): 29 against 29 Mbit/s, " \
        "1.00x: by its CPU the code meets the goal. Over the lab's path aioquic's own makes 14 Mbit/s (paced 29): " \
        "punch 1.00x it (paced 1.00x)" in lines  # fmt: skip
    assert "(at most 30 s, then it ran anyway)" in "\n".join(lines)
    assert "- TCP, lab path: 1, exit 1" in lines
    assert "the busy share in that second was median 5%, at most 50%; 1 of 7 rounds ran without one." in "\n".join(
        lines
    )


def test_the_whole_report_says_the_load_and_keeps_the_tunnels_section() -> None:
    args = argparse.Namespace(rounds=1, mib=10, seconds=1.0, quiet=0.1, patience=120.0)
    lines = transport.report(table(1.0), ["## tunnel"], args, ((0.5, 0.25, 0.125), (1.0, 1.0, 1.0)))
    assert "0.50, 0.25, 0.12 at the start and 1.00, 1.00, 1.00 at the end" in lines[2]
    assert lines[-1] == "## tunnel"


def test_a_tunnel_trial_is_timed_from_the_second_connect() -> None:
    trial = Trial(begun=10.0, results=({"path_at": 10.5}, {"path_at": 10.52}), listening=10.3, connected=10.301,
                  link_up=10.54, arrived=10.58)  # fmt: skip
    timing = Timing.of(trial, second=10.46)
    assert timing.punch == pytest.approx(60.0)
    assert timing.link_up == pytest.approx(40.0)
    assert timing.listening == pytest.approx(300.0)  # from the start: before the punch
    assert timing.byte == pytest.approx(120.0)
    assert timing.after_link == pytest.approx(40.0)
    assert timing.punch_from_start == pytest.approx(520.0)
    assert timing.byte_from_start == pytest.approx(580.0)


def test_the_tunnel_section_gives_the_goal_ratio() -> None:
    row = Row("home", "port-restricted-cone", "port-restricted-cone")
    row.trials[EARLY] = 3
    row.failures[EARLY].append("paths ['relay', 'relay']")
    timings = [Timing(40.0, 30.0, 300.0, byte, 30.0, 500.0, 560.0) for byte in (72.0, 90.0)]
    lines = section([(row, timings)], trials=3, delays=(15.0, 5.0), pings=[])
    text = "\n".join(lines)
    assert "| home | port-restricted-cone / port-restricted-cone | 2/3 | 40.0 | 81.0 | 1.35x | 1.50x |" in text
    verdict = (
        "- Firewall home: first tunnelled byte median 1.35x, p95 1.50x (punch time + one round trip between the "
        "peers); goal 1.2x: not met, 0.15x over. After the punch the goal leaves 32.0 ms (1.6 round trips); the byte "
        "came 41.0 ms after it (2.0): QUIC's handshake 30.0 ms after peer10's path (1.5 round trips), the byte 30.0 "
        "ms after that (1.5 round trips: the stream's header and the byte leave together, the other peer connects to "
        "the target and hands it on)"
    )
    assert verdict in lines
    assert "- home port-restricted-cone / port-restricted-cone: 1, paths ['relay', 'relay']" in lines


class Arrivals:
    """The datagrams part of a channel (bench/transport_load.py's Channel), fed by the test."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    async def receive_datagram(self) -> bytes:
        return await self.queue.get()


def count(sent: list[bytes], expected: int) -> tuple[int, int]:
    """What a Counter has counted once it stops waiting for ``expected`` datagrams, of ``sent``."""

    async def scenario() -> tuple[int, int]:
        arrivals, counter = Arrivals(), transport_load.Counter()
        counting = asyncio.ensure_future(counter.run(cast(transport_load.Channel, arrivals)))
        for data in sent:
            arrivals.queue.put_nowait(data)
        async with asyncio.timeout(5):
            await counter.until_quiet(expected)
        counting.cancel()
        return counter.count, counter.bytes

    return asyncio.run(scenario())


def test_the_receiver_counts_until_every_datagram_came() -> None:
    assert count([b"ab", b"cde"], expected=2) == (2, 5)


def test_the_receiver_stops_waiting_when_the_rest_were_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport_load, "QUIET", 0.01)
    assert count([b"ab"], expected=3) == (1, 2)
