"""How long a peer on the relay waits between its retries of a direct path (punch.peer.session.upgrade_waits)."""

from __future__ import annotations

from itertools import islice

import pytest

from punch.peer.session import upgrade_waits

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("interval", "nat_udp_timeout", "waits"),
    [
        # the first retry comes soon (a path blocked for a while); after a failed one, quiet past Linux's 30 s
        # timeout and its garbage collector's 60 s
        (15.0, 90.0, [15, 101, 202, 300, 300]),
        (1.0, 72.0, [1, 83, 166, 300]),  # a shorter timeout, as the e2e test sets on its routers
        (150.0, 90.0, [150, 300, 300]),  # already quiet enough
        (1.0, 400.0, [1, 411, 411]),  # a NAT slower to forget than the cap: the quiet wins
    ],
)
def test_retries_back_off_and_leave_the_nats_time_to_forget(
    interval: float, nat_udp_timeout: float, waits: list[float]
) -> None:
    assert list(islice(upgrade_waits(interval, nat_udp_timeout), len(waits))) == waits
