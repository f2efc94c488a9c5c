"""Run plan steps with an undo stack.

Before a step runs, its inverse (if any) is pushed: inverses are idempotent, so a step interrupted half-way
is undone too. On any error or interruption the finished steps are undone in reverse order with
SIGINT/SIGTERM held off, then the exception is re-raised.

With ``jobs`` > 1 the steps run on that many worker threads, each namespace on one worker (which keeps one
netlink socket per namespace, netns/kernel/links.py): a step waits only for the earlier steps that touch one of its
namespaces (a veth touches two), so the plan's order holds within every namespace while different
namespaces proceed side by side (helpers like iptables-restore mostly wait on the kernel, so many run at once).
An inverse is pushed when its step starts; on an error or a signal no further step starts, the running ones
finish, and the finished ones are undone.

Signals are handled by deferral (``deferred_signals``): the handler only records the signal, and ``apply``
raises ``Interrupted`` at the next step boundary. An exception raised from inside a signal handler can land
anywhere (in an at-fork hook, a ``finally``, a library's cleanup) and be swallowed there; a flag cannot.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from types import FrameType
from typing import Any

from netns.kernel import containers, daemons, links, namespaces, portmap, processes, tc
from netns.lab import plan
from netns.lab.plan import Step

log = logging.getLogger(__name__)

Executor = Callable[[Step], None]


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived while ``apply`` ran under ``deferred_signals``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_pending: list[int] = []


def _record(signum: int, frame: FrameType | None) -> None:
    _pending.append(signum)


def _check_pending() -> None:
    if _pending:
        raise Interrupted(_pending[0])


@contextmanager
def deferred_signals() -> Iterator[None]:
    """Within this block SIGINT/SIGTERM only make ``apply`` stop (and undo) at the next step boundary."""
    _pending.clear()
    saved = {sig: signal.signal(sig, _record) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _dispatch() -> dict[type[Any], Callable[[Any], None]]:
    return {
        plan.CreateNamespace: lambda s: namespaces.create_namespace(s.ns),
        plan.DeleteNamespace: lambda s: namespaces.delete_namespace(s.ns),
        plan.MarkNamespace: lambda s: links.mark_namespace(s.ns, s.marker),
        plan.StartContainer: _start_container,
        plan.RemoveContainer: _remove_container,
        plan.CreateVeth: lambda s: links.create_veth(s.ns, s.ifname, s.peer_ns, s.peer_ifname),
        plan.CreateBridge: lambda s: links.create_bridge(s.ns, s.ifname),
        plan.AttachPort: lambda s: links.attach_port(s.ns, s.port, s.bridge),
        plan.Sysctl: lambda s: namespaces.sysctl(s.ns, s.key, s.value, s.optional),
        plan.AddAddress: lambda s: links.add_address(s.ns, s.ifname, s.address, s.prefixlen),
        plan.LinkUp: lambda s: links.link_up(s.ns, s.ifname),
        plan.AddRoute: lambda s: links.add_route(s.ns, s.dst, s.gateway),
        plan.LoadNat: lambda s: processes.load_ruleset(s.ns, s.ruleset, s.ruleset6),
        plan.LoadNft: lambda s: processes.load_nftables(s.ns, s.ruleset),
        plan.StartPortmap: lambda s: portmap.start(s.ns, s.conf, s.conf_path, s.log),
        plan.StopPortmap: lambda s: portmap.stop(s.ns),
        plan.StartDelayd: lambda s: daemons.start_delayd(s.ns, s.queue, s.argv, s.log),
        plan.StopDelayd: lambda s: daemons.stop_delayd(s.ns, s.queue),
        plan.SetQdisc: lambda s: tc.set_qdisc(s.ns, s.ifname, s.kind, dict(s.params)),
        plan.LoadImpair: lambda s: processes.load_impair(s.ns, s.iptables, s.nftables),
    }


def _start_container(step: plan.StartContainer) -> None:
    pid = containers.start(step.lab, step.node, step.image, step.command, step.env)
    namespaces.attach_namespace(step.ns, pid)


def _remove_container(step: plan.RemoveContainer) -> None:
    containers.remove(step.lab, step.node)
    namespaces.delete_namespace(step.ns)


def kernel_executor(step: Step) -> None:
    """Carry out ``step`` on the running kernel."""
    _dispatch()[type(step)](step)


class StepClock:
    """An executor that runs each step with ``execute`` and keeps, per kind of step, how many ran and the time
    they took (``up --json``'s ``steps``). On several threads the times add up: the helper steps
    (``HELPER_STEPS``) overlap, so their sum can be more than the wall time; the others take turns."""

    def __init__(self, execute: Executor = kernel_executor) -> None:
        self._execute = execute
        self._lock = threading.Lock()
        self._count: dict[str, int] = {}
        self._seconds: dict[str, float] = {}

    def __call__(self, step: Step) -> None:
        started = time.perf_counter()
        try:
            self._execute(step)
        finally:
            took = time.perf_counter() - started
            kind = type(step).__name__
            with self._lock:
                self._count[kind] = self._count.get(kind, 0) + 1
                self._seconds[kind] = self._seconds.get(kind, 0.0) + took

    def by_kind(self) -> dict[str, dict[str, float]]:
        """``{kind: {"count": n, "seconds": s}}``, the kinds in the order they first ran."""
        with self._lock:
            return {kind: {"count": n, "seconds": round(self._seconds[kind], 6)} for kind, n in self._count.items()}


@contextmanager
def _signals_held() -> Iterator[None]:
    """Ignore SIGINT/SIGTERM while undoing, so a second Ctrl-C cannot leave things half-removed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def apply(steps: Sequence[Step], execute: Executor = kernel_executor, jobs: int = 1) -> None:
    """Run ``steps`` in order (per namespace, on ``jobs`` threads); on failure or interruption undo the finished
    ones, then re-raise."""
    if jobs > 1:
        _apply_parallel(steps, execute, jobs)
        return
    undo: list[Step] = []
    try:
        for step in steps:
            _check_pending()
            inverse = plan.inverse(step)
            if inverse is not None:
                undo.append(inverse)
            log.debug("%s", step.describe())
            execute(step)
        _check_pending()
    except BaseException as exc:
        _undo_after(exc, undo, execute)
        raise


def _undo_after(exc: BaseException, undo: list[Step], execute: Executor) -> None:
    """Undo the finished steps after ``exc`` stopped ``apply``; an interrupt that came meanwhile (e.g. a Ctrl-C to
    the process group also killed the helper, iptables-restore, we were running) is raised instead of it."""
    log.info("undoing %d step(s)", len(undo))
    with _signals_held():
        rollback(undo, execute)
    if _pending and not isinstance(exc, Interrupted):
        raise Interrupted(_pending[0]) from exc


def rollback(undo: list[Step], execute: Executor = kernel_executor) -> None:
    """Run ``undo`` in reverse; keep going past failures (logged) so as much as possible is removed."""
    for step in reversed(undo):
        try:
            log.debug("undo: %s", step.describe())
            execute(step)
        except Exception as exc:
            log.error("undo failed: %s: %s", step.describe(), exc)


# Steps that mostly wait for a helper process (and the kernel behind it): these run side by side. Every other
# step is a few netlink requests built in Python: those take turns (``python``), because threads that contend
# for the GIL around each of pyroute2's many small syscalls made every request several times slower.
HELPER_STEPS = (
    plan.LoadNat,
    plan.LoadNft,
    plan.LoadImpair,
    plan.StartDelayd,
    plan.StartContainer,
    plan.StartPortmap,
    plan.StopPortmap,
)


class _Skipped(Exception):
    """A step not started because an earlier one failed or a signal arrived."""


def _namespaces(step: Step) -> tuple[str, ...]:
    return (step.ns, step.peer_ns) if isinstance(step, plan.CreateVeth) else (step.ns,)


def _apply_parallel(steps: Sequence[Step], execute: Executor, jobs: int) -> None:
    undo: list[Step] = []
    lock = threading.Lock()
    stop = threading.Event()

    def run(step: Step, before: list[Future[None]]) -> None:
        wait(before)
        if stop.is_set() or any(f.exception() is not None for f in before):
            raise _Skipped
        inverse = plan.inverse(step)
        if inverse is not None:
            with lock:
                undo.append(inverse)
        log.debug("%s", step.describe())
        if isinstance(step, HELPER_STEPS):
            execute(step)
            return
        with python:
            execute(step)

    # Each step reports its end to ``settle`` (on its worker): the main thread only waits for ``settled`` (all
    # ended, or one failed) and looks at signals in between. Polling every future instead cost time in
    # proportion to the plan's size at every look, and held the GIL the steps need: bring-up grew as N squared.
    left = len(steps)
    failures: list[BaseException] = []
    settled = threading.Event()

    def settle(future: Future[None]) -> None:
        nonlocal left
        error = _error(future)
        with lock:
            left -= 1
            if error is not None and not failures:
                failures.append(error)
                stop.set()
            if failures or left == 0:
                settled.set()

    python = threading.Lock()
    workers = [ThreadPoolExecutor(1, "netns-apply", initializer=links.open_cache) for _ in range(jobs)]
    futures: list[Future[None]] = []
    try:
        if not steps:
            settled.set()
        owner: dict[str, int] = {}
        last: dict[str, Future[None]] = {}
        for step in steps:
            names = _namespaces(step)
            worker = owner.setdefault(names[0], len(owner) % jobs)
            future = workers[worker].submit(run, step, [last[n] for n in names if n in last])
            future.add_done_callback(settle)
            last.update(dict.fromkeys(names, future))
            futures.append(future)
        while not settled.wait(0.05):
            _check_pending()
        if failures:
            raise failures[0]
        _check_pending()
    except BaseException as exc:
        stop.set()
        wait(futures)
        _undo_after(exc, undo, execute)
        raise
    finally:
        for pool in workers:
            pool.submit(links.close_cache)
            pool.shutdown(wait=True)


def _error(future: Future[None]) -> BaseException | None:
    """The exception of a finished step, unless it was only skipped."""
    exc = future.exception()
    return None if isinstance(exc, _Skipped) else exc
