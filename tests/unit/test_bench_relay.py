"""bench/relay_load and bench/relay_coturn: the receiver's drop count, the rates, the rounds and the verdicts."""

from __future__ import annotations

import pytest

from bench.relay_coturn import against_coturn, ratios, verdict
from bench.relay_load import (
    cpu_ticks,
    delivered_rate,
    load_cells,
    lost_share,
    median_round,
    per_cpu_second,
    socket_drops,
    with_cpu,
)

pytestmark = pytest.mark.unit

# /proc/net/udp as Linux 6 prints it (two sockets; the second has dropped 17 datagrams)
PROC_NET_UDP = """\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  811: 0100007F:0DA2 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 51234 2 0000000000000000 0
  812: 0100007F:0DA9 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 51299 2 0000000000000000 17
"""


def counts(sent: float, received: float, dropped: float = 0.0, seconds: float = 2.0) -> dict[str, float]:
    return {"size": 104, "sent": sent, "offered": sent / 2.0, "received": received, "dropped": dropped,
            "seconds": seconds}  # fmt: skip


def test_socket_drops_reads_the_drops_column_of_the_socket_with_that_inode() -> None:
    assert (socket_drops(PROC_NET_UDP, 51234), socket_drops(PROC_NET_UDP, 51299)) == (0, 17)


def test_socket_drops_names_an_inode_it_cannot_find() -> None:
    with pytest.raises(ValueError, match=r"^/proc/net/udp: no socket with inode 4242$"):
        socket_drops(PROC_NET_UDP, 4242)


def test_delivered_counts_what_was_read_and_what_a_full_buffer_dropped() -> None:
    assert delivered_rate(counts(1000, 600, 200, seconds=2.0)) == 400.0
    assert delivered_rate(counts(1000, 0, seconds=0.0)) == 0.0
    assert lost_share(counts(1000, 600, 200)) == pytest.approx(0.2)
    assert lost_share(counts(0, 0)) == 0.0


def test_load_cells_give_the_rates_mbits_of_the_given_size_and_the_loss() -> None:
    assert load_cells(counts(100_000, 60_000, 20_000, seconds=2.0), 1000) == ["50,000", "40,000", "320.0", "20%"]


def test_median_round_takes_each_sizes_median_round_and_skips_a_round_without_it() -> None:
    slow, middle, fast = counts(10, 2), counts(10, 4), counts(10, 8)
    rounds = [{100: fast, 1000: slow}, {100: slow, 1000: middle}, {100: middle}]
    assert median_round(rounds) == {100: middle, 1000: slow}  # 1000: two rounds, the lower of the two


def test_cpu_ticks_add_user_and_system_time_after_a_command_name_with_spaces_and_parentheses() -> None:
    stat = "4242 (python (x) y) S 1 4242 4242 0 -1 4194560 812 0 0 0 1234 56 0 0 20 0 3 0 99 0 0"
    assert cpu_ticks(stat) == 1234 + 56


def test_with_cpu_measures_one_size_at_a_time_and_adds_the_servers_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    used = iter([1.0, 1.5, 2.0, 4.0])  # the server's CPU time before and after each size
    monkeypatch.setattr("bench.relay_load.cpu_seconds", lambda pid: next(used))
    asked: list[list[int]] = []

    def measure(payloads: list[int]) -> dict[int, dict[str, float]]:
        asked.append(payloads)
        return {payloads[0]: counts(10, 5)}

    found = with_cpu(4242, measure, [100, 1000])
    assert asked == [[100], [1000]]
    assert (found[100]["cpu"], found[1000]["cpu"]) == (0.5, 2.0)
    assert per_cpu_second(found[1000]) == 2.5
    assert per_cpu_second(counts(10, 5)) == 0.0  # no CPU measured


def test_ratios_are_punch_over_coturn_for_the_sizes_both_delivered() -> None:
    punch = {100: counts(10, 2), 1000: counts(10, 3), 1400: counts(10, 1)}
    coturn = {100: counts(10, 4), 1000: counts(10, 0)}
    assert ratios(punch, coturn) == {100: 0.5}


def test_verdict_states_the_goal_beside_both_ratios_and_by_how_much_each_misses() -> None:
    assert verdict(100, [0.6, 0.5, 0.55], [0.4, 0.44]) == (
        "100-byte payloads: punch relays 0.55x (rounds: 0.60x, 0.50x, 0.55x) coturn's packets/s and Mbit/s, and "
        "0.42x (rounds: 0.40x, 0.44x) its packets per CPU-second; goal: at least 1.0x: 45% short in packets/s and "
        "58% short in packets per CPU-second."
    )
    assert verdict(1000, [1.2], [0.9]).endswith("goal: at least 1.0x: 10% short in packets per CPU-second.")
    assert verdict(1000, [1.2], [1.1]).endswith("its packets per CPU-second; goal: at least 1.0x: met.")


def test_against_coturn_has_a_row_per_relay_and_size_and_says_when_coturn_was_not_saturated() -> None:
    punch = {100: {**counts(100_000, 20_000), "cpu": 2.0}}
    coturn = {100: {**counts(50_000, 49_000), "cpu": 1.0}}
    lines = against_coturn([punch], [coturn], 3.0)
    assert "| punch server | 100 | 104 | 50,000 | 10,000 | 8.0 | 80% | 2.00 | 10,000 |" in lines
    assert "| coturn | 100 | 104 | 25,000 | 24,500 | 19.6 | 2% | 1.00 | 49,000 |" in lines
    assert lines[-3].startswith(
        "- 100-byte payloads: punch relays 0.41x (rounds: 0.41x) coturn's packets/s and Mbit/s, and 0.20x (rounds: "
        "0.20x) its packets per CPU-second"
    )
    assert lines[-1].startswith("coturn lost less than 5% at 100 bytes: it relayed about all the sender could offer")
