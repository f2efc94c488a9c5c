"""A trace of one process: every datagram its STUN endpoints send and receive, the ICMP errors they read, and its
log lines, as JSON lines (``punch server --trace FILE``, ``punch peer --trace FILE``; ``punch diagram`` draws the
traces of one run as a sequence diagram, punch.diagram).

One JSON object a line, each with ``t`` (wall-clock seconds, ``time.time()``: processes on one machine, or in the
namespaces of one lab, share that clock) and ``event``:

    start    the first line: ``format``, ``participant`` ("peer 10", "server"), ``role`` ("peer" or "server") and
             what the process was asked (a peer's ``id``, ``to`` and ``server``; a server's ``listen``)
    socket   ``local``: an endpoint's socket was bound (a peer's first one is its session socket)
    send     ``local``, ``remote``, ``size``, and what the datagram is (:func:`summary`): STUN's ``method``,
             ``class``, ``txid`` and the attributes a reader needs, or ``stun`` false; ``quic``, the types of the
             QUIC packets it holds (a Relay indication: the packets it carries); ``ttl`` for one sent with a low IP
             TTL
    recv     the same, for a datagram received (``remote`` is where it came from)
    icmp     ``local``, ``remote`` (the refused datagram's destination), ``type``, ``code`` (RFC 792),
             ``offender``: an ICMP error the socket read (only while it watches for refusals)
    log      ``logger``, ``level``, ``message``: a log record of one of punch's loggers

An endpoint traces when it is opened while a :class:`Tracer` is current (:func:`tracing`; a context variable, so
that what runs in tasks started meanwhile, and the endpoints they open, trace to it too, and peers run in one
process trace to files of their own). Nothing secret is written: no key, token or payload, and QUIC is never
decrypted: its packets are named from their headers (punch.stun.quicpackets), which say their type in the clear,
and a datagram that is not STUN is known by a digest of its bytes, as sent and as received (the texts appear only as
the log lines say them). A line costs about 30 us (the datagram decoded, the JSON written), taken after a
datagram was sent and before one received is handled; an endpoint that does not trace pays one attribute check per
datagram (punch.stun.protocol).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from punch.errors import StunDecodeError
from punch.stun.attributes import AttributeType, ErrorCode
from punch.stun.message import Message, Method, decode, is_stun, method_name
from punch.stun.quicpackets import packet_types

FORMAT = 1


def _address(value: object) -> str | None:
    if isinstance(value, tuple) and len(value) == 2:
        host, port = value
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return None


def summary(data: bytes) -> dict[str, Any]:
    """What a trace says of one datagram: ``size``, and for a STUN message its method, class, transaction ID and
    the attributes that tell its story (PEER-ID as ``peer``, TARGET-ID, SESSION-ID's first 4 bytes, CANDIDATEs,
    XOR-MAPPED-ADDRESS, USE-CANDIDATE, ROLE, LEASE, NAT-MAPPING, SERVER-RTT, STATUS, ERROR-CODE; a Relay
    indication's DATA-PAYLOAD as ``quic``, the types of the QUIC packets it carries). Otherwise ``stun`` false,
    ``digest`` (8 hex digits of a BLAKE2b hash of the bytes: both ends see the same, so a reader can tell which
    receipt is which send) and, where it is QUIC, ``quic``: its packets' types ("Initial", "1-RTT", ...)."""
    facts: dict[str, Any] = {"size": len(data)}
    if not is_stun(data):
        facts.update(_not_stun(data))
        return facts
    try:
        message = decode(data)
    except StunDecodeError as error:
        facts.update(_not_stun(data), malformed=str(error))
        return facts
    facts.update(
        method=method_name(message.method),
        **{"class": message.message_class.name.lower()},  # request, indication, success, error
        txid=message.transaction_id.hex(),
    )
    facts.update(_attributes(message))
    return facts


def _not_stun(data: bytes) -> dict[str, Any]:
    facts: dict[str, Any] = {"stun": False, "digest": hashlib.blake2b(data, digest_size=4).hexdigest()}
    if types := packet_types(data):
        facts["quic"] = types
    return facts


def _attributes(message: Message) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    texts = {AttributeType.PEER_ID: "peer", AttributeType.TARGET_ID: "target", AttributeType.STATUS: "status"}
    for attribute, name in texts.items():
        if (text := message.text(attribute)) is not None:
            facts[name] = text
    numbers = {
        AttributeType.ROLE: "role",
        AttributeType.LEASE: "lease",
        AttributeType.NAT_MAPPING: "nat_mapping",
        AttributeType.SERVER_RTT: "server_rtt_us",
    }
    for attribute, name in numbers.items():
        if (number := message.integer(attribute)) is not None:
            facts[name] = number
    if (session := message.raw(AttributeType.SESSION_ID)) is not None:
        facts["session"] = session[:4].hex()
    candidates = [_address(c) for c in message.addresses(AttributeType.CANDIDATE)]
    if candidates:
        facts["candidates"] = candidates
    if (mapped := _address(message.address(AttributeType.XOR_MAPPED_ADDRESS))) is not None:
        facts["mapped"] = mapped
    if message.has(AttributeType.USE_CANDIDATE):
        facts["use_candidate"] = True
    error = message.error_code()
    if isinstance(error, ErrorCode):
        facts["error"] = f"{error.code} {error.reason}"
    if message.method == Method.RELAY and (payload := message.raw(AttributeType.DATA_PAYLOAD)) is not None:
        facts["quic"] = packet_types(payload)
    return facts


class Tracer:
    """Writes one process's trace to ``out``, a line at a time (safe to call from any thread)."""

    def __init__(self, out: TextIO, clock: Callable[[], float] = time.time) -> None:
        self._out = out
        self._clock = clock
        self._lock = threading.Lock()

    def _write(self, event: str, at: float | None = None, **fields: Any) -> None:
        when = self._clock() if at is None else at
        line = json.dumps({"t": round(when, 6), "event": event, **fields}, separators=(",", ":"))
        with self._lock:
            self._out.write(line + "\n")

    def start(self, participant: str, role: str, **facts: Any) -> None:
        """The first line: who this process is in the run, and what it was asked."""
        self._write("start", format=FORMAT, participant=participant, role=role, **facts)

    def socket(self, local: str) -> None:
        self._write("socket", local=local)

    def now(self) -> float:
        """The trace's clock (wall-clock seconds)."""
        return self._clock()

    def datagram(
        self, event: str, local: str, remote: str, data: bytes, ttl: int | None = None, at: float | None = None
    ) -> None:
        """``event`` "send" or "recv": one datagram of the socket at ``local``, to or from ``remote``, ``at`` a
        time of :meth:`now` (default: now, before the datagram is read)."""
        when = self._clock() if at is None else at
        extra = {} if ttl is None else {"ttl": ttl}
        self._write(event, when, local=local, remote=remote, **summary(data), **extra)

    def icmp(self, local: str, destination: str, icmp_type: int, code: int, offender: str | None) -> None:
        self._write("icmp", local=local, remote=destination, type=icmp_type, code=code, offender=offender)

    def log(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self._write("log", logger=record.name, level=record.levelname, message=message)


_current: contextvars.ContextVar[Tracer | None] = contextvars.ContextVar("punch_tracer", default=None)


def current() -> Tracer | None:
    """The tracer of the code running now (:func:`tracing`), or None: an endpoint opened now traces to it."""
    return _current.get()


@contextlib.contextmanager
def tracing(tracer: Tracer) -> Iterator[Tracer]:
    """Make ``tracer`` current in this context: for what runs here and in the tasks started here (they copy the
    context when created)."""
    token = _current.set(tracer)
    try:
        yield tracer
    finally:
        _current.reset(token)


class TraceHandler(logging.Handler):
    """A logging handler that writes each record to the current tracer, if there is one (the CLI adds it to
    punch's logger with ``--trace``)."""

    def emit(self, record: logging.LogRecord) -> None:
        tracer = _current.get()
        if tracer is None:
            return
        try:
            tracer.log(record)
        except Exception:  # as logging.Handler does: a failing handler must not fail the code that logs
            self.handleError(record)
