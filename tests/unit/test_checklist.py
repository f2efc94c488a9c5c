"""Candidate pairs and their RFC 8445 states (punch.peer.checklist)."""

from __future__ import annotations

import pytest

from punch.peer.checklist import CheckList, CheckListState, PairState

pytestmark = pytest.mark.unit

THEM = ("192.0.2.14", 5000)
LAN = ("10.0.14.2", 5000)


def test_a_pair_goes_waiting_in_progress_succeeded_and_stays_succeeded() -> None:
    pairs: CheckList[str] = CheckList()
    pair = pairs.pair(THEM, "socket")
    seen = [pair.state]
    pair.start()
    seen.append(pair.state)
    pair.succeed()
    pair.start()  # a triggered check of a proven pair proves nothing less
    pair.fail()  # another check of it running out
    seen.append(pair.state)
    assert seen == [PairState.WAITING, PairState.IN_PROGRESS, PairState.SUCCEEDED]
    assert pairs.pair(THEM, "socket") is pair


def test_a_pair_whose_checks_ran_out_failed_and_may_be_checked_again() -> None:
    pair = CheckList[str]().pair(THEM, "socket")
    pair.start()
    pair.fail()
    seen = [pair.state]
    pair.start()
    assert [*seen, pair.state] == [PairState.FAILED, PairState.IN_PROGRESS]


def test_pairs_are_told_apart_by_remote_and_socket() -> None:
    pairs: CheckList[str] = CheckList()
    assert pairs.pair(THEM, "main") is not pairs.pair(THEM, "extra")
    assert pairs.find(LAN, "main") is None
    assert not pairs.heard
    pairs.pair(LAN, "main").checked_by_peer = True
    assert pairs.heard


def test_one_nominated_pair_at_a_time() -> None:
    pairs: CheckList[str] = CheckList()
    assert pairs.nominating is None
    pairs.pair(LAN, "main").nominated_by_us = True
    nominating = pairs.nominating
    assert nominating is not None
    assert nominating.remote == LAN


def test_the_list_completes_with_a_choice_or_fails_without() -> None:
    chosen: CheckList[str] = CheckList()
    chosen.complete()
    chosen.end()
    assert chosen.state is CheckListState.COMPLETED
    given_up: CheckList[str] = CheckList()
    assert given_up.running
    given_up.end()
    assert given_up.state is CheckListState.FAILED
