"""The relay's memory of who waits for which answer: bounded in size and age."""

from __future__ import annotations

import pytest

from punch.rendezvous.relay import Refusal, RelayBudget, RelayLedger, RelayTable

pytestmark = pytest.mark.unit

A = ("198.51.100.10", 1)
B = ("192.0.2.14", 2)


def test_an_answer_goes_back_once_to_whoever_asked() -> None:
    table = RelayTable()
    assert table.remember(b"t1", A, now=0) is True
    assert table.remember(b"t2", A, now=0) is False  # same requester: logged once
    assert table.remember(b"t3", B, now=0) is True
    assert table.pop(b"t1") == A
    assert table.pop(b"t1") is None
    assert table.pop(b"unknown") is None


def test_old_and_excess_entries_are_forgotten() -> None:
    table = RelayTable(max_entries=2, max_age=10)
    table.remember(b"old", A, now=0)
    table.remember(b"new", B, now=20)
    assert table.pop(b"old") is None
    table.remember(b"x", A, now=20)
    table.remember(b"y", A, now=20)
    assert (table.pop(b"new"), table.pop(b"x"), table.pop(b"y")) == (None, A, A)


def test_an_answer_is_relayed_only_from_where_the_request_went() -> None:
    table = RelayTable()
    table.remember(b"t1", A, now=0, responder=B, session=b"s")
    waiting = table.waiting(b"t1")
    assert waiting is not None
    assert (waiting.requester, waiting.responder, waiting.session_id) == (A, B, b"s")
    assert table.waiting(b"t1") is waiting  # looking does not take it: a forged answer leaves it for the real one
    assert table.pop(b"t1") == A


def test_a_session_within_its_rate_is_relayed_and_the_excess_dropped_until_the_bucket_refills() -> None:
    ledger = RelayLedger(RelayBudget(rate=1000, total=0, burst=300))
    assert ledger.charge(b"s", 200, now=0) is None
    assert ledger.charge(b"s", 200, now=0) is Refusal.RATE  # 100 left
    assert ledger.charge(b"other", 200, now=0) is None  # each session has its own bucket
    assert ledger.charge(b"s", 200, now=0.05) is Refusal.RATE  # 100 + 50 refilled: still short
    assert ledger.charge(b"s", 200, now=0.1) is None  # 100 + 100
    assert ledger.used(b"s") == 400


def test_a_session_over_its_total_is_refused_for_good() -> None:
    ledger = RelayLedger(RelayBudget(rate=0, total=1000))
    assert ledger.charge(b"s", 600, now=0) is None
    assert ledger.charge(b"s", 600, now=0) is Refusal.QUOTA
    assert ledger.charge(b"s", 10, now=0) is Refusal.QUOTA  # it would fit, but the session's relaying has ended
    assert ledger.used(b"s") == 600


def test_a_refusal_is_told_once_per_session_and_kind() -> None:
    ledger = RelayLedger(RelayBudget(rate=1000, total=500, burst=100))
    ledger.charge(b"s", 200, now=0)
    assert ledger.first(b"s", Refusal.RATE) is True
    assert ledger.first(b"s", Refusal.RATE) is False
    assert ledger.first(b"s", Refusal.QUOTA) is True
    assert ledger.first(b"unknown", Refusal.RATE) is False


def test_no_limit_means_none_and_ended_sessions_are_forgotten() -> None:
    ledger = RelayLedger(RelayBudget(rate=0, total=0))
    for _ in range(100):
        assert ledger.charge(b"s", 65_000, now=0) is None
    ledger.charge(b"gone", 1, now=0)
    ledger.keep({b"s"})
    assert len(ledger) == 1
    assert ledger.used(b"s") == 6_500_000
