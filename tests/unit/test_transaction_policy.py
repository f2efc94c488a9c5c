"""RFC 8489 §6.2.1 retransmission timing, as a pure schedule."""

from __future__ import annotations

import pytest

from punch.stun.transaction import RFC_POLICY, RetransmitPolicy

pytestmark = pytest.mark.unit


def test_rfc_schedule_doubles_from_500_ms_and_waits_rm_times_rto_after_the_last_send() -> None:
    # RFC 8489 §6.2.1 example: sends at 0, 500, 1500, 3500, 7500, 15500, 31500 ms; fail at 39500 ms.
    assert RFC_POLICY.waits() == [0.5, 1, 2, 4, 8, 16, 8.0]
    assert RFC_POLICY.total() == 39.5
    assert RetransmitPolicy(rto=0.25, max_rto=2.0).waits() == [0.25, 0.5, 1, 2, 2, 2, 4.0]


def test_constant_pace_for_probes() -> None:
    policy = RetransmitPolicy(rto=0.05, backoff=1.0, max_rto=0.05, max_sends=4, last_wait=1.0)
    assert policy.waits() == [0.05, 0.05, 0.05, 0.05]
