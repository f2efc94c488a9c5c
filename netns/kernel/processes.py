"""Processes in a namespace: helpers run there (iptables-restore, nft, conntrack), commands a user runs in a node
(``exec``, through ``ip netns exec``), and the processes found in a lab's namespaces for ``down`` to stop.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator, Sequence

from netns.errors import KernelError
from netns.kernel.boundary import translated
from netns.kernel.namespaces import entered, identity


def in_namespace(ns: str, argv: Sequence[str]) -> list[str]:
    """The argv that runs ``argv`` inside ``ns``."""
    return ["ip", "netns", "exec", ns, *argv]


def run_in(ns: str, argv: Sequence[str], stdin: str | None = None, timeout: float = 30.0) -> str:
    """Run ``argv`` inside ``ns`` (started from this thread inside it), return its stdout; a failure becomes a
    KernelError with its stderr."""
    what = f"{' '.join(argv)} in {ns}"
    with entered(ns), translated(f"run {what}"):
        try:
            done = subprocess.run(
                list(argv),
                input=stdin,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise KernelError(f"{what}: timed out after {timeout:g}s") from exc
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise KernelError(f"{what}: {reason}")
    return done.stdout


def pids_in(ns: str) -> list[int]:
    """PIDs in ``ns``: every /proc/PID/ns/net with the namespace's inode (like ``ip netns pids``)."""
    return pids_in_any([ns])


def pids_in_any(namespaces: Sequence[str]) -> list[int]:
    """PIDs in any of ``namespaces``, found in one pass over /proc."""
    return sorted(pid for pid, _ in processes_in(namespaces))


def processes_in(namespaces: Sequence[str]) -> Iterator[tuple[int, str]]:
    """(PID, namespace) of every process (but this one) in any of ``namespaces``, in one pass over /proc."""
    by_identity = {ident: ns for ns in namespaces if (ident := identity(ns)) is not None}
    if not by_identity:
        return
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue  # exited meanwhile, a zombie, or a kernel thread
        ns = by_identity.get((st.st_dev, st.st_ino))
        if ns is not None and int(entry) != os.getpid():
            yield int(entry), ns


def signal_pids(pids: Sequence[int], sig: signal.Signals) -> None:
    """Send ``sig`` to each PID; a process that has already exited counts as done."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            continue
        except OSError as exc:
            raise KernelError(f"cannot send {sig.name} to PID {pid}: {exc.strerror}") from exc


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a zombie has no network namespace left)."""
    try:
        os.stat(f"/proc/{pid}/ns/net")
    except OSError:
        return False
    return True


def exec_in(ns: str, argv: Sequence[str]) -> None:
    """Replace this process with ``argv`` running inside ``ns`` (stdio and exit code pass through)."""
    full = in_namespace(ns, argv)
    with translated(f"run {' '.join(argv)} in {ns}"):
        os.execvp(full[0], full)


def spawn_in(ns: str, argv: Sequence[str], log_path: str) -> int:
    """Start ``argv`` inside ``ns`` in a new session, output appended to ``log_path``; return its PID.

    ``ip netns exec`` execs the command itself, so the PID is the command's.
    """
    with translated(f"start {' '.join(argv)} in {ns}"), open(log_path, "ab") as out:
        child = subprocess.Popen(
            in_namespace(ns, argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return child.pid


def load_ruleset(ns: str, ruleset: str, ruleset6: str = "") -> None:
    """Replace the iptables tables named in ``ruleset`` inside ``ns``, all in one iptables-restore run (and the
    ip6tables ones in ``ruleset6``, if given, in one ip6tables-restore run)."""
    run_in(ns, ["iptables-restore"], stdin=ruleset)
    if ruleset6:
        run_in(ns, ["ip6tables-restore"], stdin=ruleset6)


def load_nftables(ns: str, ruleset: str) -> None:
    """Add the nftables tables in ``ruleset`` inside ``ns``, atomically, with ``nft -f -``."""
    run_in(ns, ["nft", "-f", "-"], stdin=ruleset)


def load_impair(ns: str, iptables: str, nftables: str) -> None:
    """Replace the raw table (iptables-restore) and the impairment nftables table (``nft -f``) in ``ns``."""
    run_in(ns, ["iptables-restore"], stdin=iptables)
    run_in(ns, ["nft", "-f", "-"], stdin=nftables)


def nft_tables(ns: str, families: Sequence[str], table: str) -> str:
    """The text of the nftables tables ``FAMILY TABLE`` for each of ``families`` in ``ns`` (as ``nft list table``
    shows them), "" for each that does not exist: one ``nft list ruleset`` run, cut at its top-level tables."""
    try:
        ruleset = run_in(ns, ["nft", "list", "ruleset"])
    except KernelError:
        return ""
    wanted = {f"table {family} {table} {{" for family in families}
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in ruleset.splitlines(keepends=True):
        if line.startswith("table "):
            current = blocks.setdefault(line.rstrip("\n"), []) if line.rstrip("\n") in wanted else None
        if current is not None:
            current.append(line)
        if line.startswith("}"):
            current = None
    return "".join("".join(blocks.get(f"table {family} {table} {{", [])) for family in families)
