"""bench/server_packets: reading the server's tcpdump lines, and timing a pair from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.server_packets import CONNECT, CONNECT_OR_INTRODUCE, INTRODUCE, Seen, by_peer, pair_times, read

pytestmark = pytest.mark.unit

LINES = """\
1764071234.100000 IP 10.0.1.1.43857 > 10.0.0.1.3478: UDP, length 88
1764071234.300000 IP 10.0.1.2.35811 > 10.0.0.1.3478: UDP, length 88
1764071234.300500 IP 10.0.0.1.3478 > 10.0.1.1.43857: UDP, length 168
1764071234.300700 IP 10.0.0.1.3478 > 10.0.1.2.35811: UDP, length 168
1764071234.400000 IP 10.0.0.1.3478 > 10.0.1.1.43857: UDP, length 168
tcpdump: this is not a packet
"""
A, B = "10.0.1.1:43857", "10.0.1.2:35811"


def test_the_capture_filter_matches_the_stun_types_of_connect_and_introduce_requests() -> None:
    # RFC 8489 section 5: method 0x0C2 (Connect) and 0x0C3 (Introduce), class request, interleaved into 14 bits
    assert (CONNECT, INTRODUCE) == (0x0282, 0x0283)
    assert CONNECT_OR_INTRODUCE == (
        "(udp dst port 3478 and udp[8:2] = 0x0282) or (udp src port 3478 and udp[8:2] = 0x0283)"
    )


def test_read_tells_connects_in_from_introduces_out_by_the_server_port(tmp_path: Path) -> None:
    out = tmp_path / "server.txt"
    out.write_text(LINES)
    assert read(out) == [
        Seen(1764071234.1, "connect", A),
        Seen(1764071234.3, "connect", B),
        Seen(1764071234.3005, "introduce", A),
        Seen(1764071234.3007, "introduce", B),
        Seen(1764071234.4, "introduce", A),
    ]


def seen(*events: tuple[float, str, str]) -> dict[tuple[str, str], list[float]]:
    return by_peer([Seen(*event) for event in events])


def test_a_pair_is_timed_from_its_second_connect_to_the_later_path_and_the_later_introduce() -> None:
    index = seen(
        (10.0, "connect", A),  # the first peer asked early and waited
        (12.0, "connect", B),
        (12.0005, "introduce", B),
        (12.0007, "introduce", A),
        (12.5, "connect", A),  # a later Connect (a retransmission) does not move the start
        (13.0, "introduce", A),  # nor does a resent Introduce the end of the server's part
    )
    total, server = pair_times([{"mapped": A, "path_at": 12.003}, {"mapped": B, "path_at": 12.004}], index) or (0, 0)
    assert total == pytest.approx(4.0)
    assert server == pytest.approx(0.7)


def test_an_introduce_before_the_second_connect_belongs_to_an_earlier_session() -> None:
    index = seen((9.0, "introduce", A), (10.0, "connect", A), (12.0, "connect", B), (12.001, "introduce", B))
    assert pair_times([{"mapped": A, "path_at": 12.01}, {"mapped": B, "path_at": 12.01}], index) is None


def test_a_pair_the_capture_missed_is_not_timed() -> None:
    index = seen((10.0, "connect", A), (10.001, "introduce", A), (10.001, "introduce", B))
    assert pair_times([{"mapped": A, "path_at": 10.01}, {"mapped": B, "path_at": 10.01}], index) is None
