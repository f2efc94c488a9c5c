"""The relay's memory of who waits for which answer: bounded in size and age."""

from __future__ import annotations

import pytest

from punch.rendezvous.relay import RelayTable

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
