"""apply with jobs > 1: the plan's order within every namespace, every step once, undo of what started."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from netns.lab import apply, plan
from netns.topology import generate

pytestmark = pytest.mark.unit


class Recorder:
    def __init__(self, fail_on: str | None = None) -> None:
        self.done: list[plan.Step] = []
        self.fail_on = fail_on
        self.lock = threading.Lock()

    def __call__(self, step: plan.Step) -> None:
        if step.describe() == self.fail_on:
            raise RuntimeError("boom")
        with self.lock:
            self.done.append(step)


def touches(step: plan.Step, ns: str) -> bool:
    return step.ns == ns or (isinstance(step, plan.CreateVeth) and step.peer_ns == ns)


def test_each_namespace_sees_its_steps_in_plan_order() -> None:
    steps = plan.plan(generate.topology(20), "t")
    recorder = Recorder()
    apply.apply(steps, recorder, jobs=4)
    assert sorted(map(steps.index, recorder.done)) == list(range(len(steps)))
    for ns in {s.ns for s in steps}:
        assert [s for s in recorder.done if touches(s, ns)] == [s for s in steps if touches(s, ns)]


def test_a_failure_undoes_only_what_started() -> None:
    steps = plan.plan(generate.topology(20), "t")
    recorder = Recorder(fail_on="veth t-nat3:lan3 <-> t-peer3:lan3")
    with pytest.raises(RuntimeError, match="boom"):
        apply.apply(steps, recorder, jobs=4)
    created = [s.ns for s in recorder.done if isinstance(s, plan.CreateNamespace)]
    deleted = [s.ns for s in recorder.done if isinstance(s, plan.DeleteNamespace)]
    assert sorted(deleted) == sorted(created)
    assert "t-nat3" in deleted
    # Namespaces that do not wait for the failed veth may have gone on; nat3 and peer3 stopped there.
    assert not [s for s in recorder.done if touches(s, "t-nat3") and isinstance(s, plan.LoadNat | plan.LinkUp)]
    assert not [s for s in recorder.done if touches(s, "t-peer3") and isinstance(s, plan.AddAddress | plan.AddRoute)]


def test_the_step_clock_counts_every_step_by_kind_and_times_them() -> None:
    steps = plan.plan(generate.topology(20), "t")
    clock = apply.StepClock(Recorder())
    apply.apply(steps, clock, jobs=4)
    kinds = clock.by_kind()
    assert {kind: int(v["count"]) for kind, v in kinds.items()} == Counter(type(step).__name__ for step in steps)
    assert next(iter(kinds)) == "CreateNamespace"  # in the order they first ran
    assert all(v["seconds"] >= 0 for v in kinds.values())


def test_the_step_clock_counts_a_failed_step_and_lets_its_error_through() -> None:
    clock = apply.StepClock(Recorder(fail_on="create namespace t-a"))
    with pytest.raises(RuntimeError, match="boom"):
        clock(plan.CreateNamespace("t-a"))
    assert clock.by_kind() == {"CreateNamespace": {"count": 1, "seconds": pytest.approx(0, abs=1)}}


def test_an_empty_plan_returns_at_once_on_workers_too() -> None:
    recorder = Recorder()
    apply.apply([], recorder, jobs=4)
    assert recorder.done == []


def test_the_first_failure_is_raised_once_and_the_rest_are_undone() -> None:
    steps = plan.plan(generate.topology(20), "t")
    recorder = Recorder(fail_on="create namespace t-server")
    with pytest.raises(RuntimeError, match="boom"):
        apply.apply(steps, recorder, jobs=4)
    created = {s.ns for s in recorder.done if isinstance(s, plan.CreateNamespace)}
    # The failed creation's inverse was pushed when it started (inverses are idempotent): it is undone too.
    assert {s.ns for s in recorder.done if isinstance(s, plan.DeleteNamespace)} == created | {"t-server"}
    assert len(created) < len([s for s in steps if isinstance(s, plan.CreateNamespace)]) - 1
