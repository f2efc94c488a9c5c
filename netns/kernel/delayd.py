"""The NFQUEUE delaying daemon: ``python -m netns.kernel.delayd --queue N --delay MS [--jitter MS]``.

A kernel without the ``netem`` qdisc still has NFQUEUE: an iptables rule hands each packet arriving on an
interface to queue N (netns/rules/impair.py says why arriving), and this daemon, bound to that queue in the node's
namespace, holds each packet's verdict for ``delay`` +/- ``jitter`` milliseconds (uniform, or normal with
``--distribution normal``) and then issues NF_ACCEPT. Jitter reorders packets, as a real jittery path does.

It speaks nfnetlink_queue (``include/uapi/linux/netfilter/nfnetlink_queue.h``) over a raw AF_NETLINK socket
(NETLINK_NETFILTER): one CONFIG message binds the queue with copy mode META (no payload is copied, only the
packet id), each PACKET message is scheduled on a heap, and a single select loop sleeps until the next packet
is due or a new one arrives (no busy loop, no compiled dependency).

A packet is held from the moment it reached the interface, not from the moment the daemon read it: the kernel
stamps each packet it receives once any socket asks for receive timestamps (the daemon holds one with
SO_TIMESTAMPNS, as tcpdump does; the switch is the kernel's, for as long as such a socket is open), and the queue
passes the stamp on (NFQA_TIMESTAMP). Without a stamp the hold counts from the read. The daemon also asks for
the least timer slack (PR_SET_TIMERSLACK), so its sleep ends when the next packet is due, not up to 50 us later.
A packet is never released early: the delay is a lower bound, as netem's is; what the daemon still adds (its
wake-up, the verdict) shows in the floor benchmark's ping of the delayed path (bench/punch_floor.md).

The queue is bound without the fail-open flag and the iptables rule carries no ``--queue-bypass``: if the
daemon dies, the interface's traffic stops (the kernel drops what no listener takes) instead of passing
unimpaired, and ``status`` reports the daemon as dead. On SIGTERM/SIGINT the daemon accepts every packet it
holds, then exits.
"""

from __future__ import annotations

import argparse
import ctypes
import heapq
import logging
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Sequence
from types import FrameType

log = logging.getLogger(__name__)

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQNL_CFG_CMD_BIND = 1
NFQNL_CFG_CMD_UNBIND = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_TIMESTAMP = 4
NFQNL_COPY_META = 1
NF_ACCEPT = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLA_TYPE_MASK = 0x3FFF
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
SO_TIMESTAMPNS = 35
PR_SET_TIMERSLACK = 29
MAX_STAMP_AGE = 1.0  # seconds: an older stamp is not believed (the wall clock was set meanwhile); the read counts

_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, seq, port id
_NFGENMSG = struct.Struct("!BBH")  # family, version, resource id (the queue number), big-endian
_NLATTR = struct.Struct("=HH")
_TIMESTAMP = struct.Struct("!QQ")  # struct nfqnl_msg_packet_timestamp: seconds, microseconds (wall clock)
QUEUE_MAXLEN = 10_000
RCVBUF = 8 << 20


class QueueError(Exception):
    """The kernel refused a request on the queue (e.g. EBUSY: another process has bound it)."""


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attr(kind: int, payload: bytes) -> bytes:
    return _NLATTR.pack(_NLATTR.size + len(payload), kind) + payload + b"\0" * (_align(len(payload)) - len(payload))


def message(msg_type: int, queue: int, attrs: bytes, seq: int = 0, flags: int = NLM_F_REQUEST) -> bytes:
    """One nfnetlink_queue message: nlmsghdr, nfgenmsg (AF_UNSPEC, version 0, queue number), attributes."""
    body = _NFGENMSG.pack(socket.AF_UNSPEC, 0, queue) + attrs
    kind = (NFNL_SUBSYS_QUEUE << 8) | msg_type
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def config_bind(queue: int, seq: int) -> bytes:
    """CONFIG: bind ``queue`` for IPv4, copy metadata only, and a long queue."""
    attrs = (
        _attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, socket.AF_INET))
        + _attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))
        + _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", QUEUE_MAXLEN))
    )
    return message(NFQNL_MSG_CONFIG, queue, attrs, seq, NLM_F_REQUEST | NLM_F_ACK)


def verdict(queue: int, packet_id: int, decision: int = NF_ACCEPT) -> bytes:
    """VERDICT for one packet (struct nfqnl_msg_verdict_hdr: verdict, id; both big-endian)."""
    return message(NFQNL_MSG_VERDICT, queue, _attr(NFQA_VERDICT_HDR, struct.pack("!II", decision, packet_id)))


Packet = tuple[int, float | None]  # packet id, when it reached the interface (wall clock), if the kernel stamped it


def parse(data: bytes) -> tuple[list[Packet], list[int]]:
    """Split a netlink datagram into (the PACKET messages' packets, errno values of ERROR messages)."""
    packets: list[Packet] = []
    errors: list[int] = []
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            raise QueueError(f"netlink message at offset {offset} claims {length} bytes, {len(data) - offset} left")
        if kind == NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", data, offset + _NLMSGHDR.size)
            errors.append(-code)
        elif kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            pos = offset + _NLMSGHDR.size + _NFGENMSG.size
            end = offset + length
            packet_id: int | None = None
            stamp: float | None = None
            while pos + _NLATTR.size <= end:
                alen, atype = _NLATTR.unpack_from(data, pos)
                if alen < _NLATTR.size:
                    break
                if atype & NLA_TYPE_MASK == NFQA_PACKET_HDR and alen >= _NLATTR.size + 4:
                    packet_id = struct.unpack_from("!I", data, pos + _NLATTR.size)[0]
                elif atype & NLA_TYPE_MASK == NFQA_TIMESTAMP and alen >= _NLATTR.size + _TIMESTAMP.size:
                    seconds, micros = _TIMESTAMP.unpack_from(data, pos + _NLATTR.size)
                    stamp = seconds + micros / 1e6
                pos += _align(alen)
            if packet_id is not None:
                packets.append((packet_id, stamp))
        offset += _align(length)
    return packets, errors


def clocks() -> tuple[float, float]:
    """(monotonic, wall) clock readings for one instant, the wall clock read first. A pause between the two reads
    (the scheduler; a virtual machine's stolen time, tens of milliseconds here at times) then puts a packet's
    arrival later by the pause, never earlier: read the other way round, it released the packet that much early."""
    wall_now = time.time()
    return time.monotonic(), wall_now


def arrival(stamp: float | None, now: float, wall_now: float) -> float:
    """When (monotonic clock) a packet stamped ``stamp`` (wall clock) arrived, read at ``now`` / ``wall_now``; the
    read itself without a stamp, or for one from the future or older than MAX_STAMP_AGE (the clock was set)."""
    if stamp is None or not 0.0 <= wall_now - stamp <= MAX_STAMP_AGE:
        return now
    return now - (wall_now - stamp)


class Delayer:
    """Holds packet verdicts on a heap until each one is due."""

    def __init__(self, queue: int, delay: float, jitter: float, distribution: str, rng: random.Random) -> None:
        self.queue = queue
        self.delay = delay / 1000
        self.jitter = jitter / 1000
        self.distribution = distribution
        self.rng = rng
        self.held: list[tuple[float, int, int]] = []  # (due, arrival order, packet id)
        self.count = 0

    def hold_for(self) -> float:
        if not self.jitter:
            return self.delay
        if self.distribution == "normal":
            return max(0.0, self.rng.gauss(self.delay, self.jitter))
        return max(0.0, self.rng.uniform(self.delay - self.jitter, self.delay + self.jitter))

    def add(self, packet_id: int, arrived: float) -> None:
        self.count += 1
        heapq.heappush(self.held, (arrived + self.hold_for(), self.count, packet_id))

    def due(self, now: float) -> list[int]:
        ready = []
        while self.held and self.held[0][0] <= now:
            ready.append(heapq.heappop(self.held)[2])
        return ready

    def timeout(self, now: float) -> float | None:
        return max(0.0, self.held[0][0] - now) if self.held else None


def _check_ack(sock: socket.socket, what: str) -> None:
    while True:
        packets, errors = parse(sock.recv(65536))
        if errors:
            if errors[0]:
                raise QueueError(f"{what}: {os.strerror(errors[0])}")
            return
        if packets:
            raise QueueError(f"{what}: a packet arrived before the kernel acknowledged the binding")


def run(queue: int, delay: float, jitter: float, distribution: str = "uniform", seed: int | None = None) -> None:
    """Bind ``queue`` and delay its packets until SIGTERM/SIGINT; then accept what is held and return."""
    stop: list[int] = []

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)
    delayer = Delayer(queue, delay, jitter, distribution, random.Random(seed))
    _least_timer_slack()
    # select() is resumed after a signal handler (PEP 475): the wakeup fd makes a signal end the wait.
    wake_r, wake_w = socket.socketpair()
    wake_w.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno())
    with wake_r, wake_w, _stamping(), socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as sock:
        sock.setsockopt(socket.SOL_SOCKET, 33, RCVBUF)  # SO_RCVBUFFORCE (root): room for bursts
        sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
        sock.bind((0, 0))
        sock.send(config_bind(queue, 1))
        _check_ack(sock, f"bind queue {queue}")
        log.info("queue %d bound: delay %gms jitter %gms (%s)", queue, delay, jitter, distribution)
        while not stop:
            wait = delayer.timeout(time.monotonic())
            try:
                readable, _, _ = select.select([sock, wake_r], [], [], wait)
            except InterruptedError:
                continue
            if sock in readable:
                _drain(sock, delayer)
            for packet_id in delayer.due(time.monotonic()):
                sock.send(verdict(queue, packet_id))
        for _, _, packet_id in sorted(delayer.held):
            sock.send(verdict(queue, packet_id))
        log.info("stopping on %s: accepted %d held packet(s)", signal.Signals(stop[0]).name, len(delayer.held))


def _drain(sock: socket.socket, delayer: Delayer) -> None:
    while True:
        try:
            data = sock.recv(65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        packets, errors = parse(data)
        for code in errors:
            if code:
                log.warning("kernel reported %s on queue %d", os.strerror(code), delayer.queue)
        now, wall_now = clocks()
        for packet_id, stamp in packets:
            delayer.add(packet_id, arrival(stamp, now, wall_now))


def _stamping() -> socket.socket:
    """A socket asking for receive timestamps: while one is open, the kernel stamps every packet it receives, and
    the queue passes the stamp on (NFQA_TIMESTAMP). Without it, a hold counts from the read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError as exc:
        log.info("no receive timestamps (%s): holds count from the read", exc.strerror)
    return sock


def _least_timer_slack() -> None:
    """Ask for 1 ns of timer slack (the default 50 us lets a sleep end that much after the packet is due)."""
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0) != 0:
        log.info("timer slack unchanged: %s", os.strerror(ctypes.get_errno()))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netns.kernel.delayd", description=__doc__.splitlines()[0])
    parser.add_argument("--queue", type=int, required=True, help="NFQUEUE number to bind (0-65535)")
    parser.add_argument("--delay", type=float, required=True, help="milliseconds to hold each packet")
    parser.add_argument("--jitter", type=float, default=0.0, help="+/- milliseconds around the delay")
    parser.add_argument("--distribution", choices=("uniform", "normal"), default="uniform")
    parser.add_argument("--seed", type=int, help="seed the random jitter (reproducible runs)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s delayd: %(message)s")
    try:
        run(args.queue, args.delay, args.jitter, args.distribution, args.seed)
    except (OSError, QueueError) as exc:
        log.error("queue %d: %s", args.queue, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
