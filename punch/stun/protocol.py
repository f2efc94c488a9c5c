"""A UDP endpoint that speaks STUN: it only parses and dispatches.

Responses go to the client transaction with the same transaction ID (RFC 8489 §6.3.3); requests and
indications go to the owner's handler. Anything that is not a valid STUN message is dropped and counted,
never raised into the event loop (RFC 8489 §6.3: a malformed message is silently discarded).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import cast

from punch.errors import StunDecodeError
from punch.stun import (
    Address,
    AttributeType,
    Message,
    MessageClass,
    decode,
    describe,
    encode,
    is_stun,
    trace,
    verify_integrity_sha256,
)
from punch.stun.arrival import (
    ANCILLARY_SPACE,
    ArrivalAddresses,
    ask_for_destinations,
    destination_of,
    send_from_arrival,
)
from punch.stun.errqueue import IP_RECVERR, IPV6_RECVERR, MSG_ERRQUEUE, icmp_error_from
from punch.stun.families import dual_stack_socket, mapped, takes_both, takes_ipv4, unmapped
from punch.stun.fastpath import RECEIVE_BUFFER, Accelerator, Take
from punch.stun.transaction import RFC_POLICY, RetransmitPolicy, Transaction

log = logging.getLogger(__name__)

# (message, source, the datagram's bytes): the bytes let a relay forward a message exactly as it came.
Handler = Callable[[Message, Address, bytes], None]
# (SESSION-ID, method) -> the key that signs such a message of that session, or None where this endpoint holds no
# key for it (punch.stun.wire.SERVER_METHODS: a peer signs what concerns the server with another key than what goes
# to the other peer).
KeyLookup = Callable[[bytes, int], bytes | None]
# (the datagram's bytes, source) -> True when it was answered (or dropped and counted) without decoding; False
# hands it to the general path. For requests so frequent that decoding them is the cost (a keepalive).
FastPath = Callable[[bytes, Address], bool]
# (a datagram that is not STUN, source): what shares the socket with STUN (punch's QUIC, RFC 7983) goes there.
Others = Callable[[bytes, Address], None]
# (the destination our datagram was refused at, who refused it): see StunEndpoint.watch_refusals.
# Opens one more socket of an owner's, its keys and what is not STUN set as on the owner's others:
# (handler, local address) -> endpoint (OSError if it cannot bind).
SocketMaker = Callable[["Handler", Address], Awaitable["StunEndpoint"]]
OnRefused = Callable[[Address, str], None]
# Sends one message's bytes over a TCP or TLS connection (punch.stun.stream.Stream.send): see StunEndpoint.carry.
StreamSend = Callable[[bytes], None]
RECEIVE_SIZE = 65535  # the largest UDP payload: a datagram read by recvmsg is never cut


def _no_keys(session_id: bytes, method: int) -> bytes | None:
    return None


def format_address(address: Address) -> str:
    """``IP:PORT``, with brackets around IPv6 addresses."""
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def host_candidates(bound: Address, server: Address) -> tuple[Address, ...]:
    """Our own (host) endpoints as the other peer could reach them on a shared LAN.

    A wildcard bind has no single address: ask the kernel which source address it would use toward the
    server (connecting a UDP socket sends nothing).
    """
    host, port = bound
    if host not in ("0.0.0.0", "::"):
        return ((host, port),)
    family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(server)
        except OSError:
            return ()
        return ((str(probe.getsockname()[0]), port),)


class StunEndpoint(asyncio.DatagramProtocol):
    """One UDP socket speaking STUN.

    ``handler`` receives every valid request and indication, and the responses that match none of our own
    transactions (a relay forwards those). ``counters`` counts what was dropped and why (``not-stun``,
    ``malformed``, ``bad-integrity``, ``handler-error``) and what was handled.

    Session integrity: ``keys`` gives the key of a SESSION-ID and method (the owner's lookup, asked each time, never
    copied). A message we send that carries a SESSION-ID with a key gets MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6)
    under that key; a message we receive that carries one, or a response to a request of ours that carried one, is
    dropped unless its MESSAGE-INTEGRITY-SHA256 checks out (constant-time comparison). So a host that learns the
    endpoints but not the key can inject nothing.

    Remotes reached over a TCP or TLS connection instead (:meth:`carry`, punch.stun.stream) are sent to over it; what
    comes over it is handed to :meth:`datagram_received` as from that remote, and goes the same way as a datagram.

    Tracing: an endpoint opened while a tracer is current (punch.stun.trace) writes every datagram it sends and
    receives, and the ICMP errors it reads, to that tracer; otherwise it costs one attribute check per datagram.
    """

    def __init__(
        self, handler: Handler, *, fingerprint: bool = True, keys: KeyLookup = _no_keys, others: Others | None = None
    ) -> None:
        self._handler = handler
        self._others = others  # datagrams that are not STUN (else dropped and counted as not-stun)
        self._fingerprint = fingerprint
        self._transport: asyncio.DatagramTransport | None = None
        self._dual_stack = False  # an IPv6 socket that also carries IPv4 (punch.stun.families): translate at the edge
        self._pending: dict[bytes, Transaction] = {}
        self._pending_keys: dict[bytes, tuple[bytes, ...]] = {}  # a response must be signed with one of them
        self._key_for = keys
        self.fast_paths: dict[bytes, FastPath] = {}  # by message type, the datagram's first two bytes
        self.counters: Counter[str] = Counter()
        self._fast_fd: int | None = None  # a duplicate of the socket's descriptor that the C fast path reads
        # On [::]: a duplicate that reads each datagram with its destination and answers from it (punch.stun.arrival)
        self._arrival_sock: socket.socket | None = None
        self._arrivals: ArrivalAddresses | None = None
        # While a batch from the C fast path is handled: what the handlers send, sent together afterwards.
        self._outbox: list[tuple[bytes, Address]] | None = None
        self._errors: socket.socket | None = None  # a duplicate that reads the error queue (watch_refusals)
        self._on_refused: OnRefused | None = None
        self._tracer = trace.current()
        self._traced_as = ""  # our address as the trace gives it
        self._streams: dict[Address, StreamSend] = {}  # remotes reached over a connection, not through the socket
        self.closed = asyncio.get_running_loop().create_future()

    @property
    def keys(self) -> KeyLookup:
        """The session keys this endpoint signs and checks with (another socket of the same sessions takes them)."""
        return self._key_for

    # -- asyncio.DatagramProtocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's datagram transport does not always subclass DatagramTransport, though it behaves as one.
        self._transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        self._dual_stack = sock is not None and takes_ipv4(sock)
        if self._tracer is not None:
            self._traced_as = format_address(self.local_address)
            self._tracer.socket(self._traced_as)

    @property
    def traced(self) -> bool:
        """Whether this endpoint writes a trace (punch.stun.trace)."""
        return self._tracer is not None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._errors is not None:
            self._errors.close()
            self._errors = None
        if self._fast_fd is not None:
            asyncio.get_running_loop().remove_reader(self._fast_fd)
            os.close(self._fast_fd)
            self._fast_fd = None
        if self._arrival_sock is not None:
            asyncio.get_running_loop().remove_reader(self._arrival_sock.fileno())
            self._arrival_sock.close()
            self._arrival_sock = None
        for transaction in list(self._pending.values()):
            transaction.cancel()
        self._pending.clear()
        self._pending_keys.clear()
        if not self.closed.done():
            self.closed.set_result(None)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors reported by the kernel (port unreachable, TTL exceeded): expected while punching.
        self.counters["icmp-error"] += 1
        log.debug("socket reported %s", exc)
        if self._errors is not None:
            self._read_error_queue()

    def watch_refusals(self, on_refused: OnRefused) -> bool:
        """Call ``on_refused(destination, offender)`` for each of our datagrams that an ICMP Port Unreachable
        (RFC 792; ICMPv6 Destination Unreachable, port, RFC 4443 §3.1) refused: no socket listened at
        ``destination``, says the host ``offender``. Linux (``IP_RECVERR``, ``IPV6_RECVERR``; a dual-stack socket
        both, its IPv4 errors IPv4-mapped, which :meth:`_read_error_queue` unmaps: punch.stun.errqueue); False where
        it cannot be watched.

        Every ICMP error then waits on the socket's error queue, and the socket stays readable until it is read:
        the kernel also reports each one as the error of the next receive or send, which asyncio hands to
        :meth:`error_received`, and that reads the whole queue. A send would fail (and its datagram be lost), so
        while watching, each send first takes a pending error itself (``SO_ERROR``). :meth:`unwatch_refusals`
        ends it (punching needs it; a session's texts need none of it).
        """
        if self._transport is None or self._errors is not None:
            return self._errors is not None
        sock = self._transport.get_extra_info("socket")
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return False
        try:
            if sock.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
            if sock.family == socket.AF_INET or self._dual_stack:
                sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        except OSError:
            return False
        self._errors = sock.dup()
        self._errors.setblocking(False)
        self._on_refused = on_refused
        return True

    def unwatch_refusals(self) -> None:
        """Stop :meth:`watch_refusals` (the kernel drops what is still queued); idempotent."""
        errors, self._errors, self._on_refused = self._errors, None, None
        if errors is None:
            return
        with contextlib.suppress(OSError):
            errors.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 0)
        with contextlib.suppress(OSError):
            errors.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 0)
        errors.close()

    def _read_error_queue(self) -> None:
        while self._errors is not None:  # (a handler may stop the watching)
            try:
                _data, ancillary, _flags, queued_at = self._errors.recvmsg(1, 512, MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                log.debug("reading the error queue failed: %s", error)
                return
            destination = unmapped((str(queued_at[0]), int(queued_at[1])))
            icmp = icmp_error_from(ancillary)
            if icmp is not None and self._tracer is not None:
                where = format_address(destination)
                self._tracer.icmp(self._traced_as, where, icmp.icmp_type, icmp.code, icmp.offender)
            if icmp is None or not icmp.port_unreachable or icmp.offender is None or self._on_refused is None:
                continue
            self.counters["refused"] += 1
            try:
                self._on_refused(destination, icmp.offender)
            except Exception:  # as for the handler: count it and show it
                self.counters["handler-error"] += 1
                log.exception("refusal handler failed for %s", format_address(destination))

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        source: Address = (str(addr[0]), int(addr[1]))
        if self._dual_stack:
            source = unmapped(source)
        if self._tracer is not None:
            self._tracer.datagram("recv", self._traced_as, format_address(source), data)
        fast = self.fast_paths.get(data[:2])
        if fast is not None:
            try:
                if fast(data, source):
                    return
            except Exception:  # as for the handler below: count it and show it
                self.counters["handler-error"] += 1
                log.exception("fast path failed on %d bytes from %s", len(data), format_address(source))
                return
        if not is_stun(data):
            if self._others is not None:
                self._others(data, source)
                return
            self.counters["not-stun"] += 1
            log.debug("dropped a %d-byte non-STUN datagram from %s", len(data), format_address(source))
            return
        try:
            message = decode(data)
        except StunDecodeError as error:
            self.counters["malformed"] += 1
            log.debug("dropped a malformed message from %s: %s", format_address(source), error)
            return
        if message.message_class in (MessageClass.SUCCESS, MessageClass.ERROR):
            transaction = self._pending.get(message.transaction_id)
            keys = self._pending_keys.get(message.transaction_id)
            if keys is not None and not self._authentic(data, keys, message, source):
                return
            if transaction is not None:
                self.counters["response"] += 1
                transaction.response_received(message, source)
                return
            self.counters["unmatched-response"] += 1
        else:
            key = self._key(message)
            if key is not None and not self._authentic(data, (key,), message, source):
                return
            self.counters[message.message_class.name.lower()] += 1
        try:
            self._handler(message, source, data)
        except Exception:  # a bug in a handler must not stop the endpoint; count it and show it
            self.counters["handler-error"] += 1
            log.exception("handler failed on %s from %s", describe(message), format_address(source))

    def _key(self, message: Message) -> bytes | None:
        session_id = message.raw(AttributeType.SESSION_ID)
        return self._key_for(session_id, message.method) if session_id is not None else None

    def _authentic(self, data: bytes, keys: tuple[bytes, ...], message: Message, source: Address) -> bool:
        if any(verify_integrity_sha256(data, key) for key in keys):
            return True
        self.counters["bad-integrity"] += 1
        log.info(
            "dropped %s from %s: its MESSAGE-INTEGRITY-SHA256 is missing or wrong",
            describe(message),
            format_address(source),
        )
        return False

    def _encode(self, message: Message, key: bytes | None = None) -> bytes:
        """Signed with the session's key if the message has a session, else with ``key`` if given."""
        return encode(message, fingerprint=self._fingerprint, integrity_sha256_key=self._key(message) or key)

    # -- answering from the address asked (a wildcard socket on a host with several) --------------------------

    def answer_from_arrival(self, budget: int = 512) -> None:
        """Read the dual-stack socket with each datagram's destination, and send to each source from the address
        it last sent to (punch.stun.arrival); ``budget`` datagrams at most per turn of the event loop."""
        if self._transport is None or not self._dual_stack:
            raise RuntimeError("answer_from_arrival needs a connected dual-stack endpoint")
        sock = self._transport.get_extra_info("socket")
        ask_for_destinations(sock)
        self._arrival_sock = socket.socket(fileno=os.dup(sock.fileno()))  # (the same socket: non-blocking too)
        self._arrivals = ArrivalAddresses()
        cast(asyncio.ReadTransport, self._transport).pause_reading()
        asyncio.get_running_loop().add_reader(self._arrival_sock.fileno(), self._read_arrivals, budget)

    def _read_arrivals(self, budget: int) -> None:
        sock, arrivals = self._arrival_sock, self._arrivals
        assert sock is not None
        assert arrivals is not None
        for _ in range(budget):
            try:
                data, ancillary, _flags, addr = sock.recvmsg(RECEIVE_SIZE, ANCILLARY_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                self.error_received(error)
                return
            destination = destination_of(ancillary)
            if destination is not None:
                arrivals.arrived(unmapped((str(addr[0]), int(addr[1]))), destination)
            self.datagram_received(data, addr)

    # -- the C fast path -----------------------------------------------------------------------------------

    def use_fastpath(self, accelerator: Accelerator, tail: bytes, take: Take | None = None, budget: int = 512) -> None:
        """Read the socket through ``accelerator``: it answers well-formed Binding requests itself (success
        with XOR-MAPPED-ADDRESS, then ``tail``, then FINGERPRINT) in batches and hands every other datagram to
        :meth:`datagram_received`, ``budget`` datagrams at most per turn of the event loop. With ``take``
        (a rate limit), it answers a source's requests only as far as ``take`` allows; the others are dropped
        and counted as ``rate-limited``."""
        if self._transport is None:
            raise RuntimeError("endpoint is not connected")
        # asyncio lets no one else watch a transport's descriptor: watch a duplicate of it (the same socket),
        # and stop the transport's own reading. connection_lost() removes and closes the duplicate.
        sock = self._transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        fd = os.dup(sock.fileno())
        self._fast_fd = fd
        cast(asyncio.ReadTransport, self._transport).pause_reading()
        asyncio.get_running_loop().add_reader(fd, self._drain, accelerator, fd, tail, take, budget)

    def _drain(self, accelerator: Accelerator, fd: int, tail: bytes, take: Take | None, budget: int) -> None:
        """One batch: the C side answers what it can; the rest is handled here, and whatever the handlers send
        meanwhile leaves in one sendmmsg afterwards (in order; what the kernel refuses is counted as
        ``send-error``, as on the C side)."""
        answered, others, send_errors, error, limited = accelerator.drain(fd, tail, budget, take)
        if limited:
            self.counters["rate-limited"] += limited
        if answered:
            self.counters["request"] += answered
            self.counters["fastpath"] += answered
        if send_errors:
            self.counters["send-error"] += send_errors
        if others:
            outbox: list[tuple[bytes, Address]] = []
            self._outbox = outbox
            try:
                for data, source in others:
                    self.datagram_received(data, source)
            finally:
                self._outbox = None
                self._flush(accelerator, fd, outbox)
        if error:
            self.error_received(OSError(error, os.strerror(error)))

    def _flush(self, accelerator: Accelerator, fd: int, outbox: list[tuple[bytes, Address]]) -> None:
        if not outbox or self._transport is None:
            return  # (a transport closed meanwhile still has the descriptor until connection_lost)
        if cast(asyncio.WriteTransport, self._transport).get_write_buffer_size():
            for data, remote in outbox:  # asyncio holds datagrams the kernel had no room for: queue behind them
                self._transport.sendto(data, remote)
            return
        failed = accelerator.send_batch(fd, outbox)
        if failed:
            self.counters["send-error"] += failed

    # -- sending ------------------------------------------------------------------------------------------

    @property
    def local_address(self) -> Address:
        """The address and port the socket is bound to."""
        if self._transport is None:
            raise RuntimeError("endpoint is not connected")
        name = self._transport.get_extra_info("sockname")
        return (str(name[0]), int(name[1]))

    def fileno(self) -> int:
        """The socket's file descriptor (to ask the kernel about it; reading and writing are ours)."""
        if self._transport is None:
            raise RuntimeError("endpoint is not connected")
        return int(self._transport.get_extra_info("socket").fileno())

    def send_bytes(self, data: bytes, remote: Address) -> None:
        """Send raw bytes; silently nothing once closed. While a batch from the C fast path is handled, they
        leave with the batch's other answers (:meth:`_drain`)."""
        if self._transport is None or self._transport.is_closing():
            return
        tracer = self._tracer
        sent_at = tracer.now() if tracer is not None else 0.0
        to = mapped(remote) if self._dual_stack else remote
        carried = self._streams.get(remote) if self._streams else None
        if carried is not None:
            carried(data)
        elif self._outbox is not None:
            self._outbox.append((data, to))
        elif self._arrival_sock is not None and self._arrivals is not None:
            try:
                send_from_arrival(self._arrival_sock, data, remote, self._arrivals)
            except OSError as error:  # as asyncio's transport does with a send that fails: report, go on
                self.counters["send-error"] += 1
                log.debug("sending %d bytes to %s failed: %s", len(data), format_address(remote), error)
        else:
            self._take_pending_error()
            self._transport.sendto(data, to)
        if tracer is not None:  # written after the datagram left: the trace costs it no time
            tracer.datagram("send", self._traced_as, format_address(remote), data, at=sent_at)

    def carry(self, remote: Address, send: StreamSend) -> None:
        """From now on, what goes to ``remote`` leaves with ``send`` (a TCP or TLS connection, punch.stun.stream), not
        through the socket, and a request to it is sent once (RFC 8489 §6.2.2: TCP retransmits, the client does not).
        The connection hands what it reads to :meth:`datagram_received`, as from ``remote``."""
        self._streams[remote] = send

    def uncarry(self, remote: Address, send: StreamSend) -> None:
        """Undo :meth:`carry` for ``remote``, if ``send`` still carries it."""
        if self._streams.get(remote) == send:
            del self._streams[remote]

    def _take_pending_error(self) -> None:
        """While watching refusals, a pending ICMP error would fail our next send: take it first."""
        if self._errors is not None and self._errors.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            self._read_error_queue()

    def send(self, message: Message, remote: Address, key: bytes | None = None) -> None:
        """Encode (with FINGERPRINT) and send one message: signed with its session's key, if we hold one, else with
        ``key`` if given."""
        self.send_bytes(self._encode(message, key), remote)

    def wire(self, message: Message, key: bytes | None = None) -> bytes:
        """The bytes :meth:`send` would send for ``message``."""
        return self._encode(message, key)

    def send_with_ttl(self, message: Message, remote: Address, ttl: int) -> None:
        """Send one message with a given IP TTL (IPv6: hop limit), then restore the socket's default.

        Used to open our own NAT's mapping with a probe that dies before the other side's NAT.
        """
        if self._transport is None or self._transport.is_closing():
            return
        sock = self._transport.get_extra_info("socket")
        v6 = ":" in remote[0]  # (an IPv6 socket sends IPv4-mapped destinations as IPv4, with IP_TTL's TTL)
        level, option = (socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS) if v6 else (socket.IPPROTO_IP, socket.IP_TTL)
        previous = sock.getsockopt(level, option)
        sock.setsockopt(level, option, ttl)
        try:
            # asyncio sends at once when nothing is queued; a queued datagram would leave with the wrong TTL.
            if cast(asyncio.WriteTransport, self._transport).get_write_buffer_size() == 0:
                self._take_pending_error()
                data = self._encode(message)
                sent_at = self._tracer.now() if self._tracer is not None else 0.0
                self._transport.sendto(data, mapped(remote) if self._dual_stack else remote)  # now, never in a batch
                if self._tracer is not None:
                    self._tracer.datagram("send", self._traced_as, format_address(remote), data, ttl, sent_at)
            else:
                log.debug("write buffer busy; low-TTL probe to %s skipped", format_address(remote))
        finally:
            sock.setsockopt(level, option, previous)

    def start_transaction(
        self,
        message: Message,
        remote: Address,
        policy: RetransmitPolicy,
        integrity_key: bytes | None = None,
        answer_keys: tuple[bytes, ...] = (),
    ) -> Transaction:
        """Send a request and keep retransmitting it until a response or the policy runs out.

        ``integrity_key`` signs a request we hold no session key for (e.g. with a registration token). Its response
        is accepted only signed: with the session's key, if we hold one, or one of ``answer_keys``.
        """
        if remote in self._streams:
            policy = policy.once()
        transaction = Transaction(self._encode(message, integrity_key), remote, self.send_bytes, policy)
        self._pending[message.transaction_id] = transaction
        key = self._key(message)
        keys = (key, *answer_keys) if key is not None else answer_keys
        if keys:
            self._pending_keys[message.transaction_id] = keys
        transaction.start()
        return transaction

    async def request(
        self,
        message: Message,
        remote: Address,
        policy: RetransmitPolicy = RFC_POLICY,
        integrity_key: bytes | None = None,
        answer_keys: tuple[bytes, ...] = (),
    ) -> tuple[Message, Address]:
        """Send a request and wait for its response (success or error) and the address it came from
        (:meth:`start_transaction`)."""
        transaction = self.start_transaction(message, remote, policy, integrity_key, answer_keys)
        try:
            return await transaction.wait()
        finally:
            self.forget(message.transaction_id)

    def forget(self, transaction_id: bytes) -> None:
        """Stop tracking a transaction started with :meth:`start_transaction`."""
        self._pending_keys.pop(transaction_id, None)
        transaction = self._pending.pop(transaction_id, None)
        if transaction is not None:
            transaction.cancel()

    async def close(self) -> None:
        """Close the socket; idempotent."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()
        if self._transport is not None:
            await self.closed


async def open_endpoint(
    handler: Handler,
    local: Address,
    *,
    fingerprint: bool = True,
    reuse_port: bool = False,
    sock: socket.socket | None = None,
    keys: KeyLookup = _no_keys,
    others: Others | None = None,
) -> StunEndpoint:
    """Bind a UDP socket on ``local`` (in a SO_REUSEPORT group if asked) and return its endpoint. On ``::`` the
    socket takes IPv4 too, and the endpoint speaks of IPv4 peers by their IPv4 addresses (punch.stun.families).

    With ``sock`` the endpoint takes that bound UDP socket instead (``local`` and ``reuse_port`` unused) and
    closes it when it closes: a socket the caller made elsewhere, e.g. in another network namespace. ``keys``: the
    session keys that sign and check its messages (:class:`StunEndpoint`); ``others``: where the datagrams that are
    not STUN go (else they are dropped and counted).
    """
    loop = asyncio.get_running_loop()
    if sock is not None and (sock.type != socket.SOCK_DGRAM or sock.family not in (socket.AF_INET, socket.AF_INET6)):
        raise ValueError(f"open_endpoint needs a UDP socket, got {sock!r}")
    if sock is None and takes_both(local[0]):  # on [::]: IPv6 and IPv4 (punch.stun.families)
        sock = dual_stack_socket(local, reuse_port)
    if sock is not None:
        _, protocol = await loop.create_datagram_endpoint(
            lambda: StunEndpoint(handler, fingerprint=fingerprint, keys=keys, others=others), sock=sock
        )
        return protocol
    family = socket.AF_INET6 if ":" in local[0] else socket.AF_INET
    _, protocol = await loop.create_datagram_endpoint(
        lambda: StunEndpoint(handler, fingerprint=fingerprint, keys=keys, others=others),
        local_addr=local,
        family=family,
        reuse_port=reuse_port,
    )
    return protocol
