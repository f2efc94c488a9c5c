"""bench/relay_load and bench/relay_coturn: the receiver's drop count, the rates, the rounds and the verdicts."""

from __future__ import annotations

import pytest

from bench.relay_coturn import against_coturn, ratios, verdict
from bench.relay_load import delivered_rate, load_cells, lost_share, median_round, socket_drops

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


def test_ratios_are_punch_over_coturn_for_the_sizes_both_delivered() -> None:
    punch = {100: counts(10, 2), 1000: counts(10, 3), 1400: counts(10, 1)}
    coturn = {100: counts(10, 4), 1000: counts(10, 0)}
    assert ratios(punch, coturn) == {100: 0.5}


def test_verdict_states_the_goal_beside_the_ratio_and_by_how_much_it_misses() -> None:
    assert verdict(100, 0.55, [0.6, 0.5]) == (
        "100-byte payloads: punch relays 0.55x coturn's packets/s and Mbit/s (rounds: 0.60x, 0.50x); "
        "goal: at least 1.0x: 45% short."
    )
    assert verdict(1000, 1.2, [1.2]).endswith("(rounds: 1.20x); goal: at least 1.0x: met.")


def test_against_coturn_has_a_row_per_relay_and_size_and_says_when_coturn_was_not_saturated() -> None:
    punch = {100: counts(100_000, 20_000)}
    coturn = {100: counts(50_000, 49_000)}
    lines = against_coturn(punch, coturn, [{100: 0.4}], 3.0)
    assert "| punch server | 100 | 104 | 50,000 | 10,000 | 8.0 | 80% |" in lines
    assert "| coturn | 100 | 104 | 25,000 | 24,500 | 19.6 | 2% |" in lines
    assert lines[-3].startswith("- 100-byte payloads: punch relays 0.41x coturn's packets/s and Mbit/s (rounds: 0.40x)")
    assert lines[-1].startswith("coturn lost less than 5% at 100 bytes: it relayed about all the sender could offer")
