"""RFC 8489 §6.2.1 retransmission timing, as a pure schedule."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from punch.stun.transaction import RFC_POLICY, RetransmitPolicy, Transaction, TransactionTimeout

pytestmark = pytest.mark.unit


def test_rfc_schedule_doubles_from_500_ms_and_waits_rm_times_rto_after_the_last_send() -> None:
    # RFC 8489 §6.2.1 example: sends at 0, 500, 1500, 3500, 7500, 15500, 31500 ms; fail at 39500 ms.
    assert RFC_POLICY.waits() == [0.5, 1, 2, 4, 8, 16, 8.0]
    assert RFC_POLICY.total() == 39.5
    assert RetransmitPolicy(rto=0.25, max_rto=2.0).waits() == [0.25, 0.5, 1, 2, 2, 2, 4.0]


def test_constant_pace_for_probes() -> None:
    policy = RetransmitPolicy(rto=0.05, backoff=1.0, max_rto=0.05, max_sends=4, last_wait=1.0)
    assert policy.waits() == [0.05, 0.05, 0.05, 0.05]


def test_waits_are_taken_one_at_a_time() -> None:
    # A connectivity check may send once per interval for the whole punch timeout; a transaction takes each wait
    # when it sends, so a policy's length costs nothing up front.
    endless = RetransmitPolicy(rto=0.1, backoff=1.0, max_sends=10**12)
    assert list(itertools.islice(endless.iter_waits(), 3)) == [0.1, 0.1, 0.1]
    assert list(RFC_POLICY.iter_waits()) == RFC_POLICY.waits()


def test_a_transaction_sends_max_sends_times_then_times_out() -> None:
    sent: list[bytes] = []

    async def scenario() -> None:
        policy = RetransmitPolicy(rto=0.001, backoff=1.0, max_sends=5, last_wait=1.0)
        transaction = Transaction(b"request", ("192.0.2.1", 3478), lambda data, _: sent.append(data), policy)
        transaction.start()
        with pytest.raises(TransactionTimeout, match=r"^no response from 192\.0\.2\.1:3478 after 5 sends$"):
            await asyncio.wait_for(transaction.wait(), 5)
        assert transaction.sends == 5

    asyncio.run(scenario())
    assert sent == [b"request"] * 5


def test_over_a_reliable_transport_a_request_is_sent_once_with_the_same_deadline() -> None:
    # RFC 8489 §6.2.2: over TCP or TLS the client does not retransmit, and gives up after Ti
    once = RFC_POLICY.once()
    assert (once.max_sends, once.waits(), once.total()) == (1, [39.5], RFC_POLICY.total())
