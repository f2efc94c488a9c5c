"""The Connects a lab's server took and the Introduces it sent, on the lab's one clock.

A tcpdump in the server's namespace prints one line per packet (``-tt``: seconds since the epoch, the clock of
``time.time()`` and so of the peers' ``path_at``). Which packets: a Connect request arriving for the server's port,
an Introduce request leaving from it, told apart by the STUN message type at the start of the UDP payload. Two
ways to see them (:func:`watching`):

- on an interface (``CONNECT_OR_INTRODUCE`` as the capture filter): the kernel stamps each packet as it passes
  the interface, so a busy machine delays the reading, not the time;
- on ``nflog:GROUP``, fed by NFLOG rules the caller adds where a packet must be seen at a hook rather than on the
  wire (bench/punch_floor.py: the lab's delay daemon holds packets where they arrive, so only INPUT sees a
  Connect after its delay). libpcap stamps an nflog packet when it reads it, so tcpdump runs with the same
  real-time priority as the benchmarks' server, to read each one the moment it is logged.
"""

from __future__ import annotations

import shutil
import signal
import struct
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from punch.stun.message import Message, Method, encode

PORT = 3478
REAL_TIME = ["chrt", "--rr", "1"]  # as the benchmarks' punch server: it runs the moment it has work


def _request_type(method: Method) -> int:
    return int(struct.unpack("!H", encode(Message.request(method))[:2])[0])


CONNECT, INTRODUCE = _request_type(Method.CONNECT), _request_type(Method.INTRODUCE)
CONNECT_OR_INTRODUCE = (
    f"(udp dst port {PORT} and udp[8:2] = {CONNECT:#06x}) or (udp src port {PORT} and udp[8:2] = {INTRODUCE:#06x})"
)


@dataclass(frozen=True, slots=True)
class Seen:
    time: float  # seconds since the epoch
    kind: str  # "connect" (arrived) or "introduce" (left)
    peer: str  # the peer's endpoint as the server sees it, "IP:PORT": its NAT's mapping


@contextmanager
def watching(namespace: str, source: str, out: Path, capture_filter: str = "") -> Iterator[None]:
    """tcpdump on ``source`` (an interface, or ``nflog:GROUP``) in ``namespace``, its lines in ``out``, from when it
    listens until the block ends (on SIGTERM it prints what it already read)."""
    if shutil.which("tcpdump") is None:
        raise RuntimeError("bench: the server's packets are read by tcpdump; install it (apt-get install tcpdump)")
    argv = ["ip", "netns", "exec", namespace, *REAL_TIME, "tcpdump", "-i", source, "-n", "-tt", "-l", "-p"]
    argv += ["--immediate-mode", *([capture_filter] if capture_filter else [])]
    with out.open("w") as lines:
        tcpdump = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=lines, stderr=subprocess.PIPE, text=True)
    try:
        assert tcpdump.stderr is not None
        for line in tcpdump.stderr:
            if "listening on" in line:
                break
        else:
            raise RuntimeError(f"tcpdump in {namespace} exited before listening: {tcpdump.wait()}")
        yield
    finally:
        tcpdump.send_signal(signal.SIGTERM)
        tcpdump.communicate(timeout=10)


def read(out: Path) -> list[Seen]:
    """What :func:`watching` wrote: ``1764071234.567890 IP 192.0.2.14.40321 > 203.0.113.1.3478: UDP, length 64``
    is a Connect from 192.0.2.14:40321; a line from the server's port an Introduce to its destination."""
    seen = []
    for line in out.read_text().splitlines():
        words = line.split()
        if len(words) < 5 or words[1] != "IP":
            continue
        source, destination = (word.rstrip(":").rpartition(".") for word in (words[2], words[4]))
        if destination[2] == str(PORT):
            seen.append(Seen(float(words[0]), "connect", f"{source[0]}:{source[2]}"))
        elif source[2] == str(PORT):
            seen.append(Seen(float(words[0]), "introduce", f"{destination[0]}:{destination[2]}"))
    return seen


def by_peer(seen: list[Seen]) -> dict[tuple[str, str], list[float]]:
    """The times of each (kind, peer) in ``seen``, in the order seen."""
    index: dict[tuple[str, str], list[float]] = {}
    for s in seen:
        index.setdefault((s.kind, s.peer), []).append(s.time)
    return index


def pair_times(peers: list[dict[str, object]], index: dict[tuple[str, str], list[float]]) -> tuple[float, float] | None:
    """One pair's punch in ms, as the issue times it: from its second Connect reaching the server (the later of
    the two peers' first) to both peers on their proven direct path (the later ``path_at`` of their ``--json``
    results); and the server's part of it, from that Connect to the later of the two Introduces leaving.
    ``index``: :func:`by_peer`. None when it misses a peer's Connect or Introduce."""
    endpoints = [str(p.get("mapped")) for p in peers]
    connects = [index.get(("connect", e), []) for e in endpoints]
    if not all(connects):
        return None
    second = max(min(times) for times in connects)
    sent = [[t for t in index.get(("introduce", e), []) if t >= second] for e in endpoints]
    if not all(sent):
        return None
    introduced = max(min(times) for times in sent)
    done = max(float(str(p["path_at"])) for p in peers)
    return (done - second) * 1000, (introduced - second) * 1000
