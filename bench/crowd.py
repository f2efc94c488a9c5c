"""The peers of one lab-scale run: forked from the benchmark, each in its own namespace, held until let go.

Two ways to run them (``hosts``):

- 0: every peer a process of its own, `punch peer` (punch.cli.main) forked from the benchmark after it imported
  punch once (as a fork server does: the interpreter's pages are shared); its stdin holds its one line;
- H > 0: the pairs dealt to H host processes (bench/peer_host.py), each running its guests as coroutines in
  one asyncio loop, every guest's socket in the guest's own namespace.

Either way each peer prints ``[SENDER] TEXT`` for the text it receives and its ``--json`` result when it ends,
into one pipe read here (1 MiB, so no process waits to write while the benchmark sleeps between arrivals), and
talks until its stdin (its host's) closes. The benchmark's signal GO lets a held peer (or host) start.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import resource
import select
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import punch.cli
from bench import peer_host
from netns import naming
from netns.kernel import namespaces
from netns.topology import generate

GO = signal.SIGUSR1  # lets a held peer, or a host's held guests, start


def peer_argv(me: int, other: int, run: str, timeout: float = 60) -> list[str]:
    """`punch peer` for peer ``me`` talking to ``other``, its texts from stdin; IDs carry ``run`` (no two runs
    share one)."""
    return [
        "peer", "--server", str(generate.SERVER), "--id", f"{run}{me}", "--to", f"{run}{other}", "--json", "-q",
        "--timeout", f"{timeout:.0f}", "--punch-timeout", "20", "--open-ttl", "2", "--no-relay", "--no-predict",
    ]  # fmt: skip


def udp_in_datagrams(snmp: str) -> int:
    """InDatagrams of the ``Udp:`` lines of a namespace's net/snmp (the UDP datagrams it received)."""
    header, values = (line.split() for line in snmp.splitlines() if line.startswith("Udp:"))
    return int(values[header.index("InDatagrams")])


@dataclass
class Peer:
    me: int
    other: int
    pid: int  # the process that runs it: its own, or its host
    received: bool = False  # it printed the other's text
    done: bool = False  # its result came, or its process exited


@dataclass
class Process:
    control: int  # the write end of its stdin; closing it ends its sessions
    log: Path
    code: int | None = None  # its exit status, once it exited


class Crowd:
    """The peers of ``pairs``, as processes (``hosts`` 0) or guests of ``hosts`` hosts; see the module."""

    def __init__(self, lab: str, logs: Path, run: str, timeout: float, hosts: int = 0) -> None:
        self.lab, self.logs, self.run, self.timeout, self.hosts = lab, logs, run, timeout, hosts
        self.peers: dict[int, Peer] = {}
        self.processes: dict[int, Process] = {}
        self.results: dict[str, dict[str, Any]] = {}
        self._held: list[tuple[float, int]] = []  # (time, pid) of the processes let go by release()
        self._events, self._events_in = os.pipe()
        fcntl.fcntl(self._events_in, fcntl.F_SETPIPE_SZ, 1 << 20)
        self._partial = b""
        self._drained = False  # every write end closed and every line read

    def start(self, pairs: list[tuple[int, int]], times: list[float] | None) -> None:
        """Fork every peer: with ``times`` the first of each pair starts now, the second is held for its time (s
        after :meth:`release`); without, every peer is held until then."""
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {GO})  # the children inherit it: no GO is lost
        try:
            if self.hosts:
                self._start_hosts(pairs, times)
            else:
                self._start_processes(pairs, times)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def _start_processes(self, pairs: list[tuple[int, int]], times: list[float] | None) -> None:
        firsts = [self._fork_peer(a, b) for a, b in pairs]
        seconds = [self._fork_peer(b, a) for a, b in pairs]
        if times is None:
            self._held = [(0.0, pid) for pid in firsts + seconds]
            return
        for pid in firsts:
            os.kill(pid, GO)
        self._held = list(zip(times, seconds, strict=True))

    def _start_hosts(self, pairs: list[tuple[int, int]], times: list[float] | None) -> None:
        at = times or [0.0] * len(pairs)
        for h in range(min(self.hosts, len(pairs))):
            mine = list(zip(pairs[h :: self.hosts], at[h :: self.hosts], strict=True))
            guests = [peer_host.Guest(a, b, None if times else 0.0) for (a, b), _ in mine]
            guests += [peer_host.Guest(b, a, t) for (a, b), t in mine]
            argv = [peer_argv(g.me, g.other, self.run, self.timeout) for g in guests]
            pid = self._fork(f"host{h}", b"", functools.partial(peer_host.serve, self.lab, guests, argv, GO))
            for g in guests:
                self.peers[g.me] = Peer(g.me, g.other, pid)
            self._held.append((0.0, pid))

    def _fork_peer(self, me: int, other: int) -> int:
        def body() -> int:
            with namespaces.entered(naming.namespace(self.lab, f"peer{me}")):
                signal.sigwait({GO})
                return punch.cli.main(peer_argv(me, other, self.run, self.timeout))

        pid = self._fork(f"p{me}", f"hello from {me}\n".encode(), body)
        self.peers[me] = Peer(me, other, pid)
        return pid

    def _fork(self, name: str, stdin_text: bytes, body: Callable[[], int]) -> int:
        """Fork a process running ``body``: stdin a pipe holding ``stdin_text``, stdout the events pipe, stderr
        ``logs/NAME.log``."""
        stdin, control = os.pipe()
        os.write(control, stdin_text)
        log = self.logs / f"{name}.log"
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid:
            os.close(stdin)
            self.processes[pid] = Process(control, log)
            return pid
        code = 1
        try:
            err = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            for fd, to in ((stdin, 0), (self._events_in, 1), (err, 2)):
                os.dup2(fd, to)
            os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])  # the others' stdins above all
            # As a fresh process: the standard streams on 0-2 (not whatever the forking process put there, e.g.
            # pytest's capture) and no logging handlers. Line-buffered whatever PYTHONUNBUFFERED says: a line is
            # one write(), so it lands whole in the pipe.
            sys.stdin = open(0, closefd=False)  # noqa: SIM115 (they live until os._exit)
            sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
            sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
            logging.root.handlers.clear()
            code = body()
        finally:
            os._exit(code)

    def release(self) -> None:
        """Let the held processes go, each at its time (seconds from now); returns after the last."""
        started = time.monotonic()
        for at, pid in self._held:
            time.sleep(max(0.0, started + at - time.monotonic()))
            os.kill(pid, GO)

    def asked(self, me: int) -> bool:
        """Whether peer ``me`` registered and asked for its partner: its namespace got the server's two answers."""
        if self.peers[me].done:
            return True  # nothing to wait for
        with namespaces.entered(naming.namespace(self.lab, f"peer{me}")):
            return udp_in_datagrams(Path("/proc/thread-self/net/snmp").read_text()) >= 2

    def follow(self, done: Callable[[], bool], seconds: float) -> None:
        """Read the peers' lines and reap the processes that exit until ``done()``; RuntimeError after ``seconds``."""
        deadline = time.monotonic() + seconds
        by_sender = {f"{self.run}{p.other}": p for p in self.peers.values()}
        while not done():
            if time.monotonic() > deadline:
                raise RuntimeError(f"peers still running after {seconds:.0f} s")
            if select.select([self._events], [], [], 0.02)[0]:
                chunk = os.read(self._events, 1 << 16)
                self._drained = not chunk
                *lines, self._partial = (self._partial + chunk).split(b"\n")
                for line in map(bytes.decode, lines):
                    if line.startswith("{"):
                        found = json.loads(line)
                        self.results[found["id"]] = found
                        self.peers[int(found["id"][len(self.run) :])].done = True
                    elif line.startswith("[") and (sender := by_sender.get(line[1 : line.find("]")])):
                        sender.received = True  # by_sender: the peer whose partner sent it
            with contextlib.suppress(ChildProcessError):  # none left
                while (exited := os.waitpid(-1, os.WNOHANG))[0] in self.processes:
                    self._exited(exited[0], os.waitstatus_to_exitcode(exited[1]))

    def _exited(self, pid: int, code: int) -> None:
        self.processes[pid].code = code
        for peer in self.peers.values():
            peer.done = peer.done or peer.pid == pid

    def all_talked(self) -> bool:
        """Every peer received the other's text, or ended."""
        return all(p.received or p.done for p in self.peers.values())

    def open_sessions(self) -> int:
        return sum(p.received and not p.done for p in self.peers.values())

    def alive(self) -> list[int]:
        return [pid for pid, process in self.processes.items() if process.code is None]

    def end(self) -> None:
        """Close every stdin (each pair says goodbye) and wait until all processes have exited."""
        for process in self.processes.values():
            os.close(process.control)
        os.close(self._events_in)
        self.follow(lambda: self._drained and not self.alive(), self.timeout + 60)
        os.close(self._events)

    def outcome(self, me: int, other: int) -> tuple[bool, str]:
        """Whether peer ``me`` finished on a direct path with the other's text (its result: ``results``), and why
        not."""
        found = self.results.get(f"{self.run}{me}", {})
        if found.get("path") == "direct" and found.get("received") == [f"hello from {other}"]:
            return True, ""
        if found.get("error"):
            return False, f"p{me}: {found['error']}"
        errors = self.processes[self.peers[me].pid].log.read_text().strip().splitlines()
        return False, errors[-1] if errors else f"p{me}: {found or 'no result'}"

    def stop(self) -> None:
        """Kill and reap whatever process is still running (after a failure); closes our ends. Idempotent."""
        for pid in self.alive():
            os.kill(pid, signal.SIGKILL)
            self._exited(pid, os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
        for fd in (self._events, self._events_in, *(p.control for p in self.processes.values())):
            with contextlib.suppress(OSError):
                os.close(fd)
