"""Reading traces (punch.stun.trace): one file per process, checked line by line.

A line that is not what the writer writes is an error naming the file and the line; only a last line cut short (a
process killed while writing it) is left out. Events this reader does not know are skipped (a newer writer's).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from punch.errors import PunchError
from punch.stun.trace import FORMAT


class TraceError(PunchError):
    """A file that is not a trace punch can read; the message names the file, the line and the fix."""


@dataclass(frozen=True, slots=True)
class Datagram:
    """One datagram as one process saw it: sent to, or received from, ``remote`` on its socket at ``local``."""

    trace: int  # the index of the trace it is from
    t: float
    sent: bool
    local: str
    remote: str
    facts: dict[str, Any]  # punch.stun.trace.summary: method, class, txid, attributes; or digest, quic
    ttl: int | None = None  # the IP TTL it was sent with, where that was set low

    @property
    def key(self) -> tuple[str, str, str]:
        """What both ends of one datagram's trip see alike: its method, class and transaction ID; for one that is not
        STUN (QUIC), its size and digest (an older trace has no digest: its size alone)."""
        if "txid" not in self.facts:
            return ("not STUN", str(self.facts.get("size")), str(self.facts.get("digest", "")))
        return (str(self.facts.get("method")), str(self.facts.get("class")), str(self.facts["txid"]))


@dataclass(frozen=True, slots=True)
class LogLine:
    trace: int
    t: float
    logger: str
    level: str
    message: str


@dataclass(frozen=True, slots=True)
class Icmp:
    """An ICMP error a socket read: the datagram to ``remote`` from ``local`` failed, says ``offender``."""

    trace: int
    t: float
    local: str
    remote: str
    icmp_type: int
    code: int
    offender: str | None

    @property
    def icmp6(self) -> bool:
        """An ICMPv6 error (RFC 4443): the datagram went to an IPv6 address (written ``[IPV6]:PORT``)."""
        return self.remote.startswith("[")

    @property
    def time_exceeded(self) -> bool:
        return self.icmp_type == (3 if self.icmp6 else 11)

    @property
    def what(self) -> str:
        """RFC 792's (RFC 4443's) name of the error."""
        if self.time_exceeded:
            return "time exceeded"
        names = (
            {(1, 4): "port unreachable", (1, 3): "address unreachable", (1, 0): "no route"}
            if self.icmp6
            else {(3, 3): "port unreachable", (3, 1): "host unreachable", (3, 0): "net unreachable"}
        )
        return names.get((self.icmp_type, self.code), f"type {self.icmp_type} code {self.code}")


@dataclass(slots=True)
class Trace:
    """One process's trace: who it was in the run, its sockets (in the order they were bound) and its events."""

    index: int
    name: str
    participant: str
    role: str
    facts: dict[str, Any]
    started: float
    sockets: list[str] = field(default_factory=list)
    datagrams: list[Datagram] = field(default_factory=list)
    logs: list[LogLine] = field(default_factory=list)
    icmps: list[Icmp] = field(default_factory=list)

    def span(self) -> tuple[float, float]:
        """From the start to the last event."""
        times = [d.t for d in self.datagrams] + [e.t for e in self.logs] + [e.t for e in self.icmps]
        return self.started, max(times, default=self.started)

    def keep(self, begin: float, end: float) -> None:
        """Leave out the events outside ``begin`` .. ``end``."""
        self.datagrams = [d for d in self.datagrams if begin <= d.t <= end]
        self.logs = [e for e in self.logs if begin <= e.t <= end]
        self.icmps = [e for e in self.icmps if begin <= e.t <= end]


_FIX = "give files written by `punch server --trace FILE` or `punch peer --trace FILE`"


def _need(line: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = line.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        event = line.get("event")
        what = f"its {event} event" if isinstance(event, str) else "the line"
        raise TraceError(f"{where}: {what} lacks {name!r} or it has the wrong type; {_FIX}")
    return value


def read(path: Path, index: int = 0) -> Trace:
    """The trace in ``path`` (TraceError if it is not one)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise TraceError(f"{path}: cannot read it ({getattr(error, 'strerror', None) or error}); {_FIX}") from None
    return parse(text.splitlines(keepends=True), str(path), index)


def parse(lines: Sequence[str], name: str, index: int = 0) -> Trace:
    """A trace from its lines (``name`` for the errors)."""
    trace: Trace | None = None
    for number, raw in enumerate(lines, start=1):
        where = f"{name} line {number}"
        try:
            line = json.loads(raw)
        except json.JSONDecodeError:
            if number == len(lines) and not raw.endswith("\n"):
                break  # the process was stopped while writing its last line
            raise TraceError(f"{where}: not JSON; {_FIX}") from None
        if not isinstance(line, dict):
            raise TraceError(f"{where}: not a JSON object; {_FIX}")
        t = float(_need(line, "t", (int, float), where))
        event = _need(line, "event", str, where)
        if trace is None:
            trace = _start(line, event, t, name, index, where)
            continue
        _add(trace, line, event, t, where)
    if trace is None:
        raise TraceError(f"{name}: empty; {_FIX}")
    return trace


def _start(line: dict[str, Any], event: str, t: float, name: str, index: int, where: str) -> Trace:
    if event != "start":
        raise TraceError(f"{where}: a trace begins with a start event, not {event!r}; {_FIX}")
    version = _need(line, "format", int, where)
    if version != FORMAT:
        raise TraceError(f"{where}: trace format {version}, but this punch reads format {FORMAT}; {_FIX}")
    known = {"t", "event", "format", "participant", "role"}
    facts = {k: v for k, v in line.items() if k not in known}
    participant = _need(line, "participant", str, where)
    return Trace(index, name, participant, _need(line, "role", str, where), facts, t)


def _add(trace: Trace, line: dict[str, Any], event: str, t: float, where: str) -> None:
    if event == "socket":
        trace.sockets.append(_need(line, "local", str, where))
    elif event in ("send", "recv"):
        local, remote = _need(line, "local", str, where), _need(line, "remote", str, where)
        _need(line, "size", int, where)
        ttl = line.get("ttl")
        facts = {k: v for k, v in line.items() if k not in ("t", "event", "local", "remote", "ttl")}
        trace.datagrams.append(
            Datagram(trace.index, t, event == "send", local, remote, facts, ttl if isinstance(ttl, int) else None)
        )
    elif event == "icmp":
        offender = line.get("offender")
        trace.icmps.append(
            Icmp(
                trace.index,
                t,
                _need(line, "local", str, where),
                _need(line, "remote", str, where),
                _need(line, "type", int, where),
                _need(line, "code", int, where),
                offender if isinstance(offender, str) else None,
            )
        )
    elif event == "log":
        logger, level = _need(line, "logger", str, where), _need(line, "level", str, where)
        trace.logs.append(LogLine(trace.index, t, logger, level, _need(line, "message", str, where)))


def read_all(paths: Iterable[Path]) -> list[Trace]:
    """Every trace, indexed in the order given, the long-lived ones cut to the others' span (:func:`clip`)."""
    traces = [read(path, index) for index, path in enumerate(paths)]
    clip(traces)
    return traces


def clip(traces: list[Trace]) -> None:
    """A server's trace covers every run since it started: where peers' traces are given too, only what happened
    while those peers ran (from the first one's start to the last one's last event) is kept of it."""
    peers = [trace.span() for trace in traces if trace.role != "server"]
    if not peers:
        return
    begin, end = min(b for b, _ in peers), max(e for _, e in peers)
    for trace in traces:
        if trace.role == "server":
            trace.keep(begin, end)
