"""Time to the first tunnelled byte, from both peers starting, in the floor benchmark's lab (bench/punch_floor.py).

Each trial starts peer10 with ``--forward LOCAL:127.0.0.1:TARGET`` and the other peer with ``--allow
127.0.0.1:TARGET`` at once, as the floor benchmark starts its peers (early checks, no relay, no prediction). A TCP
listener of the benchmark's own waits on 127.0.0.1:TARGET in the other peer's namespace. The moment peer10's log says
its forward listens (at its start, before it registers), the benchmark connects to 127.0.0.1:LOCAL in peer10's
namespace and writes one byte, which waits there for the session; the first tunnelled byte is that byte arriving at the
listener. Every time is on the lab's one clock (all namespaces share it):

- the second Connect reaching the server (the floor benchmark's origin: NFLOG in the server's INPUT chain);
- the path: both peers holding their proven direct path (``path_at`` of ``punch peer --json``): the punch time;
- peer10's forward listening and our connect; QUIC up on peer10 (its log's "QUIC link up", read as it is written);
- the byte at the listener.

The goal (issue 26): the byte at most 1.2x (punch time + one round trip between the peers) after the second
Connect, both taken in the same trial. The time from the peers' processes starting is shown beside it (it adds
Python's start and the registration).
"""

from __future__ import annotations

import argparse
import json
import queue
import secrets
import signal
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

from bench import punch_floor
from bench.punch_floor import EARLY, PYTHON, SERVER, Row, RowLab, second_connect, spawn
from bench.report import markdown_table, percentile
from netns import naming
from netns.kernel import namespaces

LOCAL, TARGET = 18000, 8000
LISTENING = f"forwarding 127.0.0.1:{LOCAL} "  # peer10's log line once its forward listens (punch.tunnel.forward)
LINK_UP = "QUIC link up"  # punch.transport.quic
WAIT = 30.0  # seconds a trial may take to reach each step
PRESETS = ("port-restricted-cone", "port-restricted-cone")


@dataclass(frozen=True, slots=True)
class Trial:
    """When each step of one successful trial happened (time.time()), and the peers' --json results."""

    begun: float  # just before the peers' processes were started
    results: tuple[dict[str, Any], ...]
    listening: float  # peer10's forward listens
    connected: float  # our connection to the forward, and the byte written
    link_up: float  # peer10's QUIC link up
    arrived: float  # the byte at the target


@dataclass(frozen=True, slots=True)
class Timing:
    """One trial in milliseconds, from the second Connect (``second``) or from the start (``begun``)."""

    punch: float
    link_up: float  # after peer10's path
    listening: float  # from the start
    byte: float  # the byte's arrival, from the second Connect
    after_link: float  # the byte's arrival after peer10's QUIC link came up
    punch_from_start: float
    byte_from_start: float

    @classmethod
    def of(cls, trial: Trial, second: float) -> Timing:
        path_at = max(r["path_at"] for r in trial.results)
        own_path = trial.results[0]["path_at"]
        return cls(
            punch=(path_at - second) * 1000,
            link_up=(trial.link_up - own_path) * 1000,
            listening=(trial.listening - trial.begun) * 1000,
            byte=(trial.arrived - second) * 1000,
            after_link=(trial.arrived - trial.link_up) * 1000,
            punch_from_start=(path_at - trial.begun) * 1000,
            byte_from_start=(trial.arrived - trial.begun) * 1000,
        )


class LogWatch:
    """Reads a peer's stderr as it is written (taking it from the process: ``communicate`` reads only its stdout
    from then on), and notes when the lines we wait for came."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        stream, proc.stderr = proc.stderr, None
        assert stream is not None
        self.lines: list[str] = []
        self.seen: queue.Queue[tuple[str, float]] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            now = time.time()
            self.lines.append(line.rstrip("\n"))
            for marker in (LINK_UP, LISTENING):
                if marker in line:
                    self.seen.put((marker, now))

    def wait(self, marker: str) -> float:
        """When ``marker`` came (TimeoutError after WAIT); markers come in order."""
        deadline = time.monotonic() + WAIT
        while True:
            try:
                found, at = self.seen.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"peer10's log did not say {marker!r} within {WAIT:g} s") from None
            if found == marker:
                return at

    def last(self) -> str:
        self._thread.join(timeout=10)
        return self.lines[-1] if self.lines else ""


def connect_in(namespace: str, port: int) -> socket.socket:
    """A TCP connection to 127.0.0.1:``port`` of ``namespace`` (the socket stays in the namespace it was made in)."""
    with namespaces.entered(namespace):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(WAIT)
    sock.connect(("127.0.0.1", port))
    return sock


def listen_in(namespace: str, port: int) -> socket.socket:
    with namespaces.entered(namespace):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen()
    sock.settimeout(WAIT)
    return sock


class TunnelLab(RowLab):
    """The floor benchmark's lab for one pair of NATs, a listener in the other peer's namespace, and trials that
    forward one TCP connection through the session."""

    def __init__(self, row: Row, delays: tuple[float, float]) -> None:
        super().__init__(row, delays)
        self.target: socket.socket | None = None
        self.trials: list[Trial] = []
        self.timings: list[Timing] = []

    def __enter__(self) -> TunnelLab:
        super().__enter__()
        if self.up:
            self.target = listen_in(naming.namespace(self.name, f"peer{self.row.other}"), TARGET)
        return self

    def trial(self, number: int) -> None:
        if not self.up or self.target is None:
            return
        self.row.trials[EARLY] += 1
        try:
            found = self._forward(number, self.target)
        except (OSError, TimeoutError, subprocess.TimeoutExpired, ValueError) as error:
            self.row.failures[EARLY].append(f"{type(error).__name__}: {error}")
            return
        if isinstance(found, str):
            self.row.failures[EARLY].append(found)
            return
        self.trials.append(found)
        self.finished.append((EARLY, found.begun, list(found.results)))

    def _forward(self, number: int, target: socket.socket) -> Trial | str:
        """One trial: a Trial, or why it failed."""
        lab, row = self.name, self.row
        nodes = ("10", row.other)
        ids = [f"{node}-{number}-{secrets.token_hex(2)}" for node in nodes]
        extra = (["--forward", f"{LOCAL}:127.0.0.1:{TARGET}"], ["--allow", f"127.0.0.1:{TARGET}", "-q"])
        begun = time.time()
        procs = [
            spawn(lab, f"peer{node}", PYTHON, "-m", "punch", "peer", "--server", SERVER, "--id", me, "--to", other,
                  "--json", "--no-relay", "--no-predict", "--open-ttl", str(ttl), "--linger", "0.05", *more)
            for node, me, other, ttl, more in zip(nodes, ids, ids[::-1], row.open_ttl, extra, strict=True)
        ]  # fmt: skip
        log = LogWatch(procs[0])
        try:
            listening = log.wait(LISTENING)
            with connect_in(naming.namespace(lab, "peer10"), LOCAL) as client:
                client.sendall(b"x")
                connected = time.time()
                link_up = log.wait(LINK_UP)
                accepted, _ = target.accept()
                with accepted:
                    accepted.settimeout(WAIT)
                    byte = accepted.recv(1)
                    arrived = time.time()
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
        results, reasons = self._results(procs, log)
        if byte != b"x":
            reasons.append(f"the target got {byte!r}")
        if not reasons and any(r.get("path") != "direct" for r in results):
            reasons.append(f"paths {[r.get('path') for r in results]}")
        if reasons:
            return "; ".join(reasons)
        return Trial(begun, tuple(results), listening, connected, link_up, arrived)

    @staticmethod
    def _results(procs: Sequence[subprocess.Popen[str]], log: LogWatch) -> tuple[list[dict[str, Any]], list[str]]:
        """Both peers' --json results (peer10's stderr is the LogWatch's), and why any failed."""
        results, reasons = [], []
        for proc in procs:
            out, err = proc.communicate(timeout=WAIT)
            lines = out.strip().splitlines()
            results.append(json.loads(lines[-1]) if lines else {})
            if proc.returncode != 0:
                last = log.last() if err is None else (err.strip().splitlines() or [""])[-1]
                reasons.append(last or f"exit {proc.returncode}")
        return results, reasons

    def finish(self) -> Row:
        row = super().finish()
        seen = self.connects()
        self.timings = [Timing.of(t, second_connect(seen, t.begun, list(t.results))) for t in self.trials]
        return row

    def __exit__(self, *_: object) -> None:
        if self.target is not None:
            self.target.close()
            self.target = None
        super().__exit__()


# -- the benchmark's part -----------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", type=int, default=20, help="first-byte trials per router kind (0: none)")
    parser.add_argument("--server-leg", type=float, default=15.0, help="delay of net-server, ms one way")
    parser.add_argument("--wan-leg", type=float, default=5.0, help="delay of each NAT's WAN, ms one way")


def run(args: argparse.Namespace) -> list[str]:
    """The trials, both router kinds taking turns; the report's section."""
    if not args.trials:
        return ["## Time to the first tunnelled byte", "", "Not run (`--trials 0`)."]
    delays = (args.server_leg, args.wan_leg)
    rows = [Row(firewall, *PRESETS) for firewall in ("home", "none")]
    labs = punch_floor.run_rows(rows, args.trials, delays, make=TunnelLab)
    return section([(lab.row, lab.timings) for lab in labs if isinstance(lab, TunnelLab)], args.trials, delays,
                   [ms for lab in labs for ms in lab.row.ping_ms])  # fmt: skip


def after_punch(timings: Sequence[Timing], rtt: float) -> str:
    """Where the time from the punch to the byte went (medians), in milliseconds and in round trips (``rtt``)."""

    def mid(values: Sequence[float]) -> float:
        return statistics.median(values)

    allowed = mid([0.2 * t.punch for t in timings]) + 1.2 * rtt
    spent, up, byte = (
        mid([t.byte - t.punch for t in timings]), mid([t.link_up for t in timings]),
        mid([t.after_link for t in timings]),
    )  # fmt: skip
    return (
        f"After the punch the goal leaves {allowed:.1f} ms ({allowed / rtt:.1f} round trips); the byte came "
        f"{spent:.1f} ms after it ({spent / rtt:.1f}): QUIC's handshake {up:.1f} ms after peer10's path "
        f"({up / rtt:.1f} round trips), the byte {byte:.1f} ms after that ({byte / rtt:.1f} round trips: the "
        "stream's header and the byte leave together, the other peer connects to the target and hands it on)"
    )


def section(
    found: Sequence[tuple[Row, Sequence[Timing]]], trials: int, delays: tuple[float, float], pings: Sequence[float]
) -> list[str]:
    server_leg, wan_leg = delays
    s, d = server_leg + wan_leg, 2 * wan_leg
    rtt = 2 * d
    # the delay daemon's own time at each delay point (bench/punch_floor.py): a round trip between the peers
    # crosses 4 of them, as one to the server does
    delivered = rtt + (statistics.median(pings) - 2 * s) if pings else rtt
    lines = [
        "## Time to the first tunnelled byte",
        "",
        f"In the floor benchmark's lab (bench/punch_floor.py; `just bench-floor`): {trials} trials per router kind, "
        f"both NATs `{PRESETS[0]}`, the kinds taking turns; server <-> peer S = {s:g} ms and peer <-> peer "
        f"D = {d:g} ms one way, so one round trip between the peers is {rtt:g} ms set"
        + (
            f", about {delivered:.1f} ms as the lab's delay daemon delivers it (from ping to the server)"
            if pings
            else ""
        )
        + ". Both peers start at once (early checks, `--no-relay --no-predict`); peer10 forwards "
        f"`--forward {LOCAL}:127.0.0.1:{TARGET}`, the other allows it. As soon as peer10's log says its forward "
        "listens (from its start, before the punch), the benchmark connects to it and writes one byte, which waits "
        "for the session; the byte's arrival at a listener in the other peer's namespace is the first tunnelled "
        "byte. Times run from the second Connect reaching the server, as "
        "the floor benchmark's punch time does, which is measured in the same trials. *Goal ratio*: the byte's time "
        f"over (that trial's punch time + {delivered:.1f} ms); goal 1.2x. *From the start*: from both processes "
        "starting (Python's start, the registration). *QUIC up*: peer10's link up after its path; *listening*: its "
        "forward, from the start; *byte after QUIC up*: from peer10's link up to the byte's arrival (the "
        "forward's own round trips). Medians, p95 of the ratio.",
        "",
    ]
    body = []
    for row, timings in found:
        ratios = [t.byte / (t.punch + delivered) for t in timings]

        def mid(values: Sequence[float]) -> str:
            return f"{statistics.median(values):.1f}" if values else "-"

        body.append(
            [
                row.firewall, row.pair, f"{len(timings)}/{row.trials[EARLY]}",
                mid([t.punch for t in timings]), mid([t.byte for t in timings]),
                f"{statistics.median(ratios):.2f}x" if ratios else "-",
                f"{percentile(ratios, 0.95):.2f}x" if ratios else "-",
                mid([t.link_up for t in timings]), mid([t.listening for t in timings]),
                mid([t.after_link for t in timings]),
                mid([t.punch_from_start for t in timings]), mid([t.byte_from_start for t in timings]),
            ]
        )  # fmt: skip
    lines += markdown_table(
        ["router firewall", "NATs", "trials", "punch time (ms)", "first byte (ms)", "goal ratio", "goal ratio p95",
         "QUIC up (ms)", "listening (ms)", "byte after QUIC up (ms)", "punch from the start (ms)",
         "first byte from the start (ms)"],
        body,
    )  # fmt: skip
    lines += [""]
    for row, timings in found:
        if not timings:
            continue
        ratios = [t.byte / (t.punch + delivered) for t in timings]
        x = statistics.median(ratios)
        verdict = "met" if x <= 1.2 else f"not met, {x - 1.2:.2f}x over"
        lines.append(
            f"- Firewall {row.firewall}: first tunnelled byte median {x:.2f}x, p95 {percentile(ratios, 0.95):.2f}x "
            f"(punch time + one round trip between the peers); goal 1.2x: {verdict}. {after_punch(timings, delivered)}"
        )
    failures = [(row, row.failures[EARLY]) for row, _ in found if row.failures[EARLY]]
    if failures:
        lines += ["", "Failed trials (count, first reason):", ""]
        lines += [f"- {row.firewall} {row.pair}: {len(f)}, {f[0]}" for row, f in failures]
    return lines
