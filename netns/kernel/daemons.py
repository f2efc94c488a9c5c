"""Daemons in a namespace: started and awaited until ready, found by their command line, stopped. The one daemon
today is the NFQUEUE delaying daemon (netns/kernel/delayd.py), ready once the kernel shows its queue bound.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence

from netns.errors import KernelError
from netns.kernel.boundary import wait_for
from netns.kernel.processes import alive, processes_in, signal_pids, spawn_in

DELAYD_MODULE = "netns.kernel.delayd"


def _queues_bound(pid: int) -> set[int]:
    """Queue numbers bound in the network namespace of ``pid`` (/proc/PID/net/netfilter/nfnetlink_queue)."""
    try:
        with open(f"/proc/{pid}/net/netfilter/nfnetlink_queue", encoding="ascii") as f:
            return {int(line.split()[0]) for line in f if line.strip()}
    except (OSError, ValueError, IndexError):
        return set()


def delayd_pid(ns: str, queue: int) -> int | None:
    """The PID of the delaying daemon of ``queue`` running in ``ns`` (found by its command line), or None."""
    return delayds([ns]).get((ns, queue))


def delayds(namespaces: Sequence[str]) -> dict[tuple[str, int], int]:
    """(namespace, queue) -> PID of each delaying daemon running in any of ``namespaces``, in one pass over /proc."""
    found = {}
    for pid, ns in processes_in(namespaces):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        queue = argv[argv.index("--queue") + 1 :][:1] if "--queue" in argv else []
        if DELAYD_MODULE in argv and queue and queue[0].isdigit():
            found[ns, int(queue[0])] = pid
    return found


def start_delayd(ns: str, queue: int, argv: Sequence[str], log_path: str, timeout: float = 10.0) -> None:
    """Start the delaying daemon in ``ns`` and wait until the kernel shows ``queue`` bound (or it died)."""
    pid = spawn_in(ns, argv, log_path)

    def bound() -> bool:
        if not alive(pid):
            raise KernelError(f"delay daemon for queue {queue} in {ns} exited; see {log_path}")
        return queue in _queues_bound(pid)

    wait_for(bound, f"the delay daemon to bind queue {queue} in {ns}", timeout)


def stop_delayd(ns: str, queue: int, timeout: float = 5.0) -> None:
    """SIGTERM the delaying daemon of ``queue`` in ``ns`` and wait for it to exit; gone is success."""
    pid = delayd_pid(ns, queue)
    if pid is None:
        return
    signal_pids([pid], signal.SIGTERM)
    wait_for(lambda: not alive(pid), f"the delay daemon (PID {pid}) to exit", timeout)
