"""The rendezvous server: a standard STUN Binding server plus punch's rendezvous methods.

- Binding request -> success with XOR-MAPPED-ADDRESS, SOFTWARE, FINGERPRINT (RFC 8489 §12.1). Given an
  alternate address, the server listens on both addresses and both ports and honours CHANGE-REQUEST, with
  RESPONSE-ORIGIN and OTHER-ADDRESS in every answer (RFC 5780 §6-§7), for NAT behaviour discovery. Where
  punch._fastpath is built, well-formed Binding requests are answered in C, in batches, with the same bytes
  (punch.stun.fastpath); everything else comes here, and what is answered here from one batch leaves in one
  sendmmsg (punch.stun.protocol). ``--workers`` spreads them over processes
  (punch.rendezvous.workers).
- An unknown comprehension-required attribute in any request -> 420 with UNKNOWN-ATTRIBUTES (RFC 8489 §6.3.1.1).
- Indications and non-STUN datagrams get no answer; malformed messages are dropped and counted.
- Register / Connect / Ready: see punch.stun.wire. When two peers want each other the server sends both
  an Introduce at the same moment (each with the other's public key and key share: the server holds no key of
  the session, punch.identity.agreement), then relays the opener's Ready to the prober as Go. What it sends a peer
  on its own, and what a peer sends it about a session, is signed with the peer's request key. A Ready that either peer
  of the session sends from a socket other than its registered one (a peer that moved, punch.peer.moving) goes
  to the other peer as Go with that socket's endpoint as CANDIDATE: probe it there. Move (a peer's check was
  refused by the other's NAT) goes to the other peer, telling it to move; once per session.
- Registrations live under leases (punch.rendezvous.registry: at most ``max_registrations``, ``--max-peers``,
  stored compactly; ended leases swept by a one-second wheel, punch.rendezvous.leases). A keepalive, a signed
  Register that changes nothing, is renewed and answered straight from its bytes (punch.rendezvous.refresh; read,
  checked and answered in C where punch._fastpath is built).
- Relay: a Data or Close request of an introduced session, sent to the server by one of its two peers from
  its registered endpoint, is forwarded to the other peer (signed with the session's key, which the relay does not
  hold: it can neither read nor forge what it forwards); the answer goes back the same way, only from that peer.
  Peers fall back to this when no direct path can be punched. Each session has a budget (bytes a second and bytes
  in all, punch.rendezvous.relay): what exceeds it is dropped and counted; once the total is used, 486. Relayed
  datagrams are read from their bytes where they are well formed (punch.rendezvous.relayed). The server hands
  them to its Relayer (punch.rendezvous.relaying). With a shared registry, the server that makes a session of two
  peers registered at different servers relays it, and the other server's peer is told so in its Introduce, with a
  ticket (punch.rendezvous.tickets).
- No amplification: every answer but Binding's is capped to its request's size plus what a Binding reply adds to
  a header-only request (punch.rendezvous.replies); Binding's is the RFC's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import socket
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from punch import SOFTWARE
from punch.errors import RegistryUnavailable, StunDecodeError
from punch.identity.fingerprint import fingerprint, looks_like_fingerprint
from punch.rendezvous.ratelimit import RateLimiter
from punch.rendezvous.records import Envelope, RecordError, Stored, Write, decode_match, encode_match
from punch.rendezvous.refresh import answer_size, codec, mapping_of, pack_source, read_arrival, software_attribute
from punch.rendezvous.registry import Match, Registration, Registry, TableFull, Wish, pair_up
from punch.rendezvous.relay import RelayBudget
from punch.rendezvous.relaying import Relayer
from punch.rendezvous.replies import fit, limit_for
from punch.rendezvous.throttle import ThrottledLog
from punch.rendezvous.tickets import relayed_here
from punch.rendezvous.workers import Workers
from punch.stun import (
    CHANGE_IP,
    CHANGE_PORT,
    Address,
    AttributeType,
    ErrorCode,
    Message,
    MessageClass,
    Method,
    decode,
    describe,
    encode,
    fastpath,
    make_error,
    make_success,
    method_name,
    verify_integrity_sha256,
)
from punch.stun.credentials import request_key
from punch.stun.protocol import StunEndpoint, format_address, open_endpoint
from punch.stun.transaction import RetransmitPolicy, TransactionTimeout
from punch.stun.wire import (
    ANYONE,
    PEER_GONE,
    Introduction,
    KeyShare,
    Mapping,
    ProtocolError,
    Role,
    Unauthorized,
    request,
    required_peer_id,
    required_session,
)

if TYPE_CHECKING:
    from punch.rendezvous.federation import Federation

log = logging.getLogger(__name__)

# What the server sends a peer on its own (Introduce, Go, Move) is retransmitted with the RTO capped at 1 s: an
# Introduce lost again and again then arrives within a second of the loss ending, well inside the other peer's
# punch (10 s), where RFC 8489's doubling waits 8 s after the fourth loss (tests/e2e/test_faults.py lost trials so,
# at 20% loss). 20 sends over 18.75 s.
PUSH_POLICY = RetransmitPolicy(rto=0.25, max_rto=1.0, max_sends=20, last_wait=4.0)

DEFAULT_PORT = 3478
_SHARED_METHODS = frozenset((Method.REGISTER, Method.CONNECT, Method.READY, Method.MOVE))  # ask a shared registry
_REGISTER_REQUEST = b"\x02\x81"  # the first two bytes of a Register request (RFC 8489 §5 type)
_SOFTWARE = software_attribute(SOFTWARE)
MAX_PEERS = 1_000_000  # registrations held at most (`--max-peers`): about 0.35 GiB when full (bench/registry.md)
MAX_LEASE = 60.0  # longest registration lease granted, seconds (--max-lease)
RATE_LIMIT = 200.0  # requests a second per source IP, in bursts of twice that (--rate-limit)
SWEEP_INTERVAL = 1.0  # seconds between sweeps of ended leases (punch.rendezvous.leases: one-second slots)


class RendezvousServer:
    """Owns one UDP endpoint and the registry; use ``async with`` or call :meth:`close`."""

    def __init__(
        self,
        *,
        max_lease: float = MAX_LEASE,
        max_registrations: int = MAX_PEERS,
        group: bytes | None = None,
        rate_limit: RateLimiter | float = RATE_LIMIT,
        push_policy: RetransmitPolicy = PUSH_POLICY,
        clock: Callable[[], float] | None = None,
        accelerate: bool = True,
        fast_refresh: bool = True,
        relay_budget: RelayBudget | None = None,
        shared_registry: str | None = None,
        name: str | None = None,
        advertise: Address | None = None,
    ) -> None:
        self.registry = Registry(max_lease=max_lease, max_registrations=max_registrations)
        # With ``shared_registry`` (a redis:// URL, --registry): registrations, wishes and sessions are shared with
        # the other servers using it (punch.rendezvous.federation), this server known among them by ``name``
        # (default: host name and port). Its own table then holds what it serves, as the shared one has it.
        self._shared_url = shared_registry
        self._name = name
        self._federation: Federation | None = None
        # Where peers registered at other servers reach this one when it relays their session (--advertise; default:
        # the address it listens on, unless that is a wildcard): punch.rendezvous.tickets
        self._advertise = advertise
        self._group = group
        # Requests a second per source IP (bursts of twice that), 0 for none, or a limiter of one's own.
        self._limiter: RateLimiter | None = (
            rate_limit
            if isinstance(rate_limit, RateLimiter)
            else RateLimiter(rate=rate_limit, burst=2 * rate_limit)
            if rate_limit > 0
            else None
        )
        self._push_policy = push_policy
        self._clock = clock
        self._accelerate = accelerate  # the C fast paths, where built: see punch.stun.fastpath
        self._accelerator = fastpath.load() if accelerate else None
        self._refresh = codec(self._accelerator)  # keepalives read and answered in C where it is built
        self._endpoint: StunEndpoint | None = None
        self._endpoints: dict[tuple[int, int], StunEndpoint] = {}  # (address index, port index): RFC 5780
        self._tasks: set[asyncio.Task[None]] = set()
        self._relayer = Relayer(self.registry, relay_budget, now=self._now, notify=self._notice)
        self._answering = 0  # size of the request being handled: its replies are capped to it (see _send_capped)
        # The request key of the peer whose request is being handled, once the request proved it came from that
        # peer: its answers, errors too, are signed with it (a peer takes only signed answers in a session)
        self._answer_key: bytes | None = None
        self._table_full_log = ThrottledLog(log)  # a flood would otherwise write one line per refusal
        self._fast_refresh = fast_refresh  # keepalives answered without decoding (punch.rendezvous.refresh)

    @property
    def endpoint(self) -> StunEndpoint:
        if self._endpoint is None:
            raise RuntimeError("server is not started")
        return self._endpoint

    @property
    def address(self) -> Address:
        """Where the server listens (useful with port 0)."""
        return self.endpoint.local_address

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    async def start(self, listen: Address, alternate: Address | None = None, *, reuse_port: bool = False) -> None:
        """Bind the socket(s) and start serving; with ``alternate``, on both addresses and both ports.

        ``reuse_port``: join a SO_REUSEPORT group (``--workers``, see punch.rendezvous.workers).
        """
        hosts = (listen[0], alternate[0]) if alternate else (listen[0],)
        ports = (listen[1], alternate[1]) if alternate else (listen[1],)
        for host_index, host in enumerate(hosts):
            for port_index, port in enumerate(ports):
                key = (host_index, port_index)
                handler = functools.partial(self._handle, key=key)
                self._endpoints[key] = await open_endpoint(handler, (host, port), reuse_port=reuse_port)
        self._endpoint = self._endpoints[(0, 0)]
        if self._fast_refresh:
            self._endpoint.fast_paths[_REGISTER_REQUEST] = self._on_keepalive
        self._relayer.start(self._endpoint)
        log.info("listening on %s (STUN Binding + punch rendezvous)", format_address(self.address))
        if self._shared_url is not None:
            await self._join(self._shared_url)
        if alternate:
            others = ", ".join(format_address(e.local_address) for k, e in self._endpoints.items() if k != (0, 0))
            log.info("answering RFC 5780 NAT behaviour discovery on %s too", others)
        self._start_fastpath()
        self._spawn(self._sweep())

    async def _join(self, url: str) -> None:
        """Share the registry at ``url`` with the other servers using it (punch.rendezvous.federation)."""
        from punch.rendezvous.federation import Federation
        from punch.rendezvous.shared import RedisRegistry

        name = self._name or f"{socket.gethostname()}:{self.address[1]}"
        self._federation = Federation(
            RedisRegistry(url), name, deliver_here=self._on_envelope, lost=self.registry.unregister
        )
        await self._federation.start()
        if self._advertise is None and ipaddress.ip_address(self.address[0]).is_unspecified:
            log.warning(
                "listening on a wildcard address: no relay across servers (peers registered at another server "
                "cannot be told where this one is); give --advertise HOST:PORT, the address peers reach it at"
            )
        else:
            self._advertise = self._advertise or self.address

    def _start_fastpath(self) -> None:
        """Hand Binding requests to the C fast path where it is built and gives the same answers.

        The per-source rate limit still applies: the fast path asks the same limiter, once per source and batch.
        Not when debug logging wants a line per request, nor a trace (punch.stun.trace) a line per datagram.
        """
        accelerator = self._accelerator
        traced = self.endpoint.traced
        if accelerator is None or log.isEnabledFor(logging.DEBUG) or traced:
            reason = (
                "off for this server"
                if not self._accelerate
                else fastpath.unavailable_reason()
                if accelerator is None
                else "not while tracing (a trace line per datagram)"
                if traced
                else "not with debug logging (a line per request)"
            )
            log.info("Binding requests answered in Python: C fast path %s", reason)
            return
        limiter = self._limiter
        take = None if limiter is None else lambda ip, count: limiter.take(ip, count, self._now())
        for key, endpoint in self._endpoints.items():
            after_address = self._binding_attributes(key, key, ("0.0.0.0", 0))[1:]  # no CHANGE-REQUEST on this path
            endpoint.use_fastpath(accelerator, fastpath.binding_tail(after_address), take)
        log.info("Binding requests answered by the C fast path (batched recvmmsg/sendmmsg)")

    async def close(self) -> None:
        """Stop serving: cancel pushes in flight and close the socket; idempotent."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._federation is not None:
            await self._federation.close()
        for endpoint in self._endpoints.values():
            await endpoint.close()
        if self._endpoint is not None:
            log.info("stopped; %s", self.stats())

    def stats(self) -> str:
        """One line: the tables' sizes and what was handled and dropped, by reason."""
        counters = sum((e.counters for e in self._endpoints.values()), Counter[str]())
        shown = " ".join(f"{name}={count}" for name, count in sorted(counters.items()))
        registry = self.registry
        shared = ""
        if self._federation is not None:
            state = "up" if self._federation.available else "down"
            shared = f"registry={state} registry-pending={len(self._federation.pending)} "
        return (
            f"registrations={len(registry.registrations)} waiting={len(registry.wants)} "
            f"sessions={len(registry.sessions)} {shared}{shown}"
        )

    def report_stats_every(self, interval: float) -> None:
        """Log :meth:`stats` every ``interval`` seconds until the server closes."""

        async def report() -> None:
            while True:
                await asyncio.sleep(interval)
                self.registry.expire(self._now())
                log.info("stats: %s", self.stats())

        self._spawn(report())

    async def _sweep(self) -> None:
        """Forget ended leases (and their sessions) every second, whatever else comes: a server that only answers
        keepalives, or hands Connects to a shared registry, would otherwise never sweep its table."""
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self.registry.expire(self._now())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` until it ends or the server closes."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def __aenter__(self) -> RendezvousServer:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- dispatch -----------------------------------------------------------------------------------------

    def _handle(self, message: Message, source: Address, data: bytes, key: tuple[int, int] = (0, 0)) -> None:
        self._answering = len(data)  # its replies are capped to this plus a Binding reply's excess
        self._answer_key = None
        if message.message_class in (MessageClass.SUCCESS, MessageClass.ERROR):
            return  # (the answers to our pushes went to their transactions; the endpoint counted the rest)
        if message.message_class is MessageClass.INDICATION:  # no answer, ever (RFC 8489 §6.3.2)
            if message.method == Method.RELAY and key == (0, 0):
                try:
                    self._relayer.on_relay(message, source, data)
                except ProtocolError as error:
                    self.endpoint.counters["relay-refused"] += 1
                    log.debug("not relayed, from %s: %s", format_address(source), error)
            return
        if self._limiter is not None and not self._limiter.allow(source[0], self._now()):
            self.endpoint.counters["rate-limited"] += 1
            return
        unknown = message.unknown_comprehension_required()
        if unknown:
            self.endpoint.counters["unknown-attribute"] += 1
            log.info(
                "420 to %s: unknown comprehension-required attributes %s",
                format_address(source),
                ", ".join(f"0x{t:04x}" for t in unknown),
            )
            self._reply_error(message, source, 420, "Unknown Attribute", (AttributeType.UNKNOWN_ATTRIBUTES, unknown))
            return
        if key != (0, 0) and message.method != Method.BINDING:
            self._reply_error(
                message,
                source,
                400,
                "Only Binding here: use the primary address",
                via=self._endpoints[key],
            )
            return
        if self._federation is not None and message.method in _SHARED_METHODS:
            self._ask_registry(message, source, data)
            return
        handlers: dict[Method, Callable[[Message, Address], None]] = {
            Method.BINDING: lambda m, s: self._on_binding(m, s, key),
            Method.REGISTER: lambda m, s: self._on_register(m, s, data),
            Method.CONNECT: lambda m, s: self._on_connect(m, s, data),
            Method.READY: lambda m, s: self._on_ready(m, s, data),
            Method.MOVE: lambda m, s: self._on_move(m, s, data),
        }
        handler = handlers.get(Method(message.method)) if message.method in Method._value2member_map_ else None
        if handler is None:
            self.endpoint.counters["unknown-method"] += 1
            self._reply_error(message, source, 400, f"Unknown method 0x{message.method:03x}")
            return
        try:
            handler(message, source)
        except ProtocolError as error:
            self._refuse_request(message, source, error)

    def _refuse_request(self, message: Message, source: Address, error: ProtocolError) -> None:
        code = 401 if isinstance(error, Unauthorized) else 400
        self.endpoint.counters["unauthorized" if code == 401 else "bad-request"] += 1
        log.info("%d to %s: %s", code, format_address(source), error)
        self._reply_error(message, source, code, str(error))

    # -- with a shared registry (punch.rendezvous.federation) ---------------------------------------------

    def _ask_registry(self, message: Message, source: Address, data: bytes) -> None:
        """A Register or Connect, or a Ready or Move of a session this server does not hold, with a shared registry:
        handled in a task, since the registry answers over the network; the same checks and answers as without
        one. At most one request per peer at a time (a retransmission meanwhile is dropped: it comes again) and
        ``max_pending`` in all (beyond, 503 at once)."""
        federation = self._federation
        assert federation is not None
        if message.method in (Method.READY, Method.MOVE):
            session = message.raw(AttributeType.SESSION_ID)
            if session is not None and self.registry.session(session) is not None:
                try:
                    (self._on_ready if message.method == Method.READY else self._on_move)(message, source, data)
                except ProtocolError as error:
                    self._refuse_request(message, source, error)
                return
        asker = message.text(AttributeType.PEER_ID) or ""
        counters = self.endpoint.counters
        if asker in federation.pending:
            counters["registry-busy"] += 1
            return
        if not federation.may_ask(asker):
            counters["registry-busy"] += 1
            self._reply_error(message, source, 503, "Service Unavailable: too many registrations at once; try again")
            return
        handlers = {
            Method.REGISTER: self._register_shared,
            Method.CONNECT: self._connect_shared,
            Method.READY: self._load_session,
            Method.MOVE: self._load_session,
        }
        federation.pending.add(asker)
        size = len(data)

        async def handle() -> None:
            self._resume(size)  # other requests were handled since this one came
            try:
                await handlers[Method(message.method)](message, source, data)
            except ProtocolError as error:
                self._answering = size  # signed, if this request proved whose it is after its last await
                self._refuse_request(message, source, error)
            except RegistryUnavailable:
                self._resume(size)
                counters["registry-unavailable"] += 1
                self._reply_error(message, source, 503, "Service Unavailable: the registry does not answer; try again")
            finally:
                federation.pending.discard(asker)

        self._spawn(handle())

    def _resume(self, size: int) -> None:
        """Back from the registry: answers go to the request of ``size`` bytes again (others were handled
        meanwhile), unsigned (a Register's and a Connect's answers are not)."""
        self._answering = size
        self._answer_key = None

    def _mirror(self, peer_id: str, found: Registration | None) -> None:
        """Hold ``peer_id``'s registration as the shared registry has it. Where it has none, a live one here stays:
        the registry lost it (a Redis restart), and its peer's next request writes it again."""
        if found is not None:
            self.registry.adopt(found, self._now())

    async def _look_up(self, peer_id: str) -> Stored | None:
        """``peer_id``'s registration as the shared registry has it, now held here too (:meth:`_mirror`)."""
        federation = self._federation
        assert federation is not None
        stored = await federation.call(federation.shared.lookup(peer_id, self._now()))
        self._mirror(peer_id, None if stored is None else stored.registration)
        return stored

    async def _register_shared(self, message: Message, source: Address, data: bytes) -> None:
        federation = self._federation
        assert federation is not None
        peer_id = required_peer_id(message)
        stored = await self._look_up(peer_id)
        self._resume(len(data))
        plan = self._admit_registration(message, source, data)
        before = plan.known
        if plan.lease == 0:
            if before is not None:
                await federation.call(federation.shared.remove(peer_id, before.token))
                self._resume(len(data))
            self._goodbye(message, source, peer_id)
            return
        registration = self._store_registration(message, source, plan)
        if registration is None:
            return
        try:
            kept = await federation.call(
                federation.shared.store(
                    registration, federation.name, before.token if before else b"", registration.expires - self._now()
                )
            )
        except RegistryUnavailable:
            if before is not None:  # nothing half written: not here either
                self.registry.adopt(before, self._now())
            else:
                self.registry.unregister(peer_id)
            raise
        self._resume(len(data))
        if kept is Write.REFUSED:
            await self._look_up(peer_id)
            self._resume(len(data))
            raise Unauthorized(f"ID {peer_id} was taken meanwhile; choose another")
        if stored is not None and stored.server != federation.name:
            log.info("%s registers here now (it was registered at %r)", peer_id, stored.server)
        self._answer_registration(message, source, plan, registration)

    async def _connect_shared(self, message: Message, source: Address, data: bytes) -> None:
        federation = self._federation
        assert federation is not None
        asker = required_peer_id(message)
        mine = self.registry.lookup(asker, self._now())
        if mine is None or mine.observed != source:
            await self._look_up(asker)
            self._resume(len(data))
        wanted = self._admit_connect(message, source, data)
        if wanted is None:
            return
        target, wish = wanted
        if target == ANYONE:
            raise ProtocolError("a Connect for anyone is not served with a shared registry (--registry) yet")
        life = self.registry.max_lease
        other_wish, stored = await asyncio.gather(
            federation.call(federation.shared.want(asker, target, wish, life)),
            federation.call(federation.shared.lookup(target, self._now())),
        )
        self._resume(len(data))
        mine = self.registry.lookup(asker, self._now())
        if other_wish is None or stored is None or mine is None:
            if other_wish is not None:  # the target's registration ended meanwhile: both wishes stand
                await federation.call(federation.shared.wish_again(target, asker, other_wish, life))
                await federation.call(federation.shared.wish_again(asker, target, wish, life))
                self._resume(len(data))
            federation.wished(asker, target, wish, life)
            self._answer_waiting(message, source, asker, target, stored is not None)
            return
        match = pair_up(stored.registration, other_wish, mine, wish, (stored.server, federation.name))
        match = relayed_here(match, federation.name, self._advertise)  # we relay it (punch.rendezvous.tickets)
        federation.matched(match)
        self.registry.adopt_session(match)
        federation.keep_session(match, life)
        self._reply(message, source, (AttributeType.STATUS, "introducing"))
        self._introduce(match, asker, target)

    async def _load_session(self, message: Message, source: Address, data: bytes) -> None:
        """A Ready or Move of a session this server does not hold (made at another, before a restart): taken from
        the shared registry, then handled as any."""
        federation = self._federation
        assert federation is not None
        match = await federation.call(federation.shared.session(required_session(message), self._now()))
        self._resume(len(data))
        if match is not None:
            self.registry.adopt_session(match)
        (self._on_ready if message.method == Method.READY else self._on_move)(message, source, data)

    def _on_envelope(self, envelope: Envelope) -> None:
        """Another server asks us to send our peer a request (Introduce, Go, Move: punch.rendezvous.federation)."""
        now = self._now()
        try:
            message = decode(envelope.message)
            match = decode_match(envelope.session, now + self.registry.max_lease) if envelope.session else None
        except (RecordError, StunDecodeError) as error:
            log.warning("a request for %s from another server does not decode (%s): dropped", envelope.recipient, error)
            return
        if match is not None:
            self.registry.adopt_session(match)
            if self._federation is not None:
                self._federation.matched(match)
        pair = None if match is None else match.pair(envelope.recipient)
        recipient = self.registry.lookup(envelope.recipient, now) or (pair[0] if pair else None)
        if recipient is None:
            log.info("another server asks us to send %s a request, but it is not registered here", envelope.recipient)
            return
        self._push(message, recipient, f"{method_name(message.method)} to {recipient.peer_id}")

    @staticmethod
    def _trailer(message: Message) -> tuple[tuple[int, object], ...]:
        """SOFTWARE, and the request's SESSION-ID echoed so that the answer is signed with the session's key."""
        session = message.raw(AttributeType.SESSION_ID)
        echo = ((AttributeType.SESSION_ID, session),) if session is not None else ()
        return (*echo, (AttributeType.SOFTWARE, SOFTWARE))

    def _reply(self, message: Message, source: Address, *attributes: tuple[int, object]) -> None:
        """A success answer (signed with the asker's request key where the request proved it is the asker's)."""
        self._send_capped(make_success(message, (*attributes, *self._trailer(message))), source)

    def _reply_error(
        self,
        message: Message,
        source: Address,
        code: int,
        reason: str,
        *extra: tuple[int, object],
        via: StunEndpoint | None = None,
    ) -> None:
        answer = make_error(message, code, reason[:127], (*extra, *self._trailer(message)))
        self._send_capped(answer, source, via)

    def _notice(self, recipient: Registration, session_id: bytes, code: int, reason: str) -> None:
        """Tell a peer something about its session it could not learn otherwise (the relay refuses it now): a
        Notice, pushed as Introduce is, signed with its request key."""
        notice = request(
            Method.NOTICE, (AttributeType.SESSION_ID, session_id), (AttributeType.ERROR_CODE, ErrorCode(code, reason))
        )
        self._push(notice, recipient, f"Notice {code} to {recipient.peer_id}", self.registry.session(session_id))

    def _send_capped(self, answer: Message, source: Address, via: StunEndpoint | None = None) -> None:
        """Send an answer no larger than its request plus a Binding reply's allowance (no amplification, by
        construction: see punch.rendezvous.replies). A success that cannot shrink enough becomes a 400 that can."""
        endpoint, key = via or self.endpoint, self._answer_key

        def wire(message: Message) -> bytes:
            return endpoint.wire(message, key)

        limit = limit_for(self._answering, source[0])
        data = fit(answer, limit, wire)
        if data is None and answer.message_class is MessageClass.SUCCESS:
            data = fit(make_error(answer, 400, "Request too small for its answer; add FINGERPRINT"), limit, wire)
        if data is None:
            endpoint.counters["answer-too-large"] += 1
            log.info("no answer to %s: even cut short it would be larger than allowed", format_address(source))
            return
        endpoint.send_bytes(data, source)

    # -- methods ------------------------------------------------------------------------------------------

    def _on_binding(self, message: Message, source: Address, key: tuple[int, int]) -> None:
        """RFC 8489 §12.1; with an alternate address, RFC 5780 §6.1 (CHANGE-REQUEST, RESPONSE-ORIGIN, OTHER-ADDRESS)."""
        received_on = self._endpoints[key]
        sender = received_on
        change = message.integer(AttributeType.CHANGE_REQUEST)
        if change is not None and len(self._endpoints) == 1:
            log.info("420 to %s: CHANGE-REQUEST, but no --alternate address", format_address(source))
            self._reply_error(
                message,
                source,
                420,
                "Unknown Attribute",
                (AttributeType.UNKNOWN_ATTRIBUTES, (AttributeType.CHANGE_REQUEST,)),
            )
            return
        answer_key = key
        if len(self._endpoints) == 4:
            change = change or 0
            answer_key = (key[0] ^ bool(change & CHANGE_IP), key[1] ^ bool(change & CHANGE_PORT))
            sender = self._endpoints[answer_key]
            if change:
                log.info(
                    "binding request from %s to %s asks for an answer from %s (CHANGE-REQUEST)",
                    format_address(source),
                    format_address(received_on.local_address),
                    format_address(sender.local_address),
                )
        log.debug("binding request from %s", format_address(source))
        attributes = self._binding_attributes(key, answer_key, source)
        sender.send(make_success(message, attributes), source)

    def _binding_attributes(
        self, key: tuple[int, int], answer_key: tuple[int, int], source: Address
    ) -> tuple[tuple[int, object], ...]:
        """A Binding success's attributes but FINGERPRINT: XOR-MAPPED-ADDRESS, with an alternate address
        RESPONSE-ORIGIN (where the answer leaves) and OTHER-ADDRESS (RFC 5780 §7.3, §7.4), then SOFTWARE."""
        attributes: list[tuple[int, object]] = [(AttributeType.XOR_MAPPED_ADDRESS, source)]
        if len(self._endpoints) == 4:
            attributes += [
                (AttributeType.RESPONSE_ORIGIN, self._endpoints[answer_key].local_address),
                (AttributeType.OTHER_ADDRESS, self._endpoints[(key[0] ^ 1, key[1] ^ 1)].local_address),
            ]
        return (*attributes, (AttributeType.SOFTWARE, SOFTWARE))

    def _check_owner(self, peer_id: str, data: bytes) -> Registration | None:
        """First come, first served (and, in a closed group, members only): see punch.stun.credentials."""
        known = self.registry.lookup(peer_id, self._now())
        key = request_key(self._group, known.token if known else None)
        if key is None or verify_integrity_sha256(data, key):
            return known
        if known is None:
            raise Unauthorized("closed group: sign with --secret-file")
        left = known.expires - self._now()
        raise Unauthorized(f"ID {peer_id} is taken for {left:.0f} s; choose another")

    def _session_of(self, message: Message, data: bytes) -> tuple[Match, Registration, Registration]:
        """The session a Ready or Move is about, the sender's registration and the other's. The sender's request key
        must have signed it (from any socket of the sender's: a moved peer says Ready from a fresh one), and signs
        the answer."""
        sender = required_peer_id(message)
        match = self.registry.session(required_session(message))
        pair = None if match is None else match.pair(sender)
        if match is None or pair is None:
            raise ProtocolError(f"no session of {sender} matches this SESSION-ID")
        mine, other = pair
        current = self.registry.lookup(sender, self._now())
        key = request_key(self._group, (current or mine).token)
        if key is None or not verify_integrity_sha256(data, key):
            self.endpoint.counters["bad-integrity"] += 1
            raise Unauthorized(f"{method_name(message.method)} not signed by {sender}'s registration")
        self._answer_key = key
        return match, mine, other

    def _on_register(self, message: Message, source: Address, data: bytes) -> None:
        plan = self._admit_registration(message, source, data)
        if plan.lease == 0:
            self.registry.unregister(plan.peer_id)
            self._goodbye(message, source, plan.peer_id)
            return
        registration = self._store_registration(message, source, plan)
        if registration is not None:
            self._answer_registration(message, source, plan, registration)

    def _admit_registration(self, message: Message, source: Address, data: bytes) -> _Registering:
        """What a Register asks for, once it proved it may (ProtocolError or Unauthorized if not)."""
        peer_id = required_peer_id(message)
        known = self.registry.lookup(peer_id, self._now())
        if known is None or (known.observed, known.created_by) != (source, message.transaction_id):
            known = self._check_owner(peer_id, data)
        # else: a retransmission of the Register that created this registration (our answer was lost, RFC 8489
        # section 6.3.1): it is answered again, with the same token.
        lease = message.integer(AttributeType.LEASE)
        hosts = tuple(message.addresses(AttributeType.CANDIDATE))[:8]
        # A Register without PUBLIC-KEY keeps the key the registration has (a keepalive may leave it out)
        public_key = message.raw(AttributeType.PUBLIC_KEY) or (known.public_key if known else b"")
        if lease != 0 and looks_like_fingerprint(peer_id) and fingerprint(public_key) != peer_id:
            raise ProtocolError(f"ID {peer_id} is a fingerprint: only the key it is the fingerprint of registers it")
        return _Registering(peer_id, known, 30 if lease is None else lease, hosts, Mapping.of(message), public_key)

    def _goodbye(self, message: Message, source: Address, peer_id: str) -> None:
        log.info("unregistered %s (it said goodbye)", peer_id)
        self._reply(message, source, (AttributeType.LEASE, 0))

    def _store_registration(self, message: Message, source: Address, plan: _Registering) -> Registration | None:
        """The registration ``plan`` makes, in this server's table; None (and 508 said) if the table is full."""
        try:
            return self.registry.register(
                plan.peer_id,
                source,
                plan.hosts,
                plan.lease or 30,
                self._now(),
                plan.mapping,
                message.transaction_id,
                plan.public_key,
            )
        except TableFull as full:
            self.endpoint.counters["table-full"] += 1
            self._table_full_log.log(self._now(), f"refused {plan.peer_id}: {full}")
            self._reply_error(message, source, 508, "Insufficient Capacity; try again later")
            return None

    def _answer_registration(
        self, message: Message, source: Address, plan: _Registering, registration: Registration
    ) -> None:
        granted = round(registration.expires - self._now())
        known = plan.known
        changed = known is None or (known.observed, known.host_candidates, known.mapping) != (
            source,
            plan.hosts,
            plan.mapping,
        )
        if changed:
            log.info(
                "registered %s at %s (host candidates: %s; lease %d s; NAT mapping %s)",
                plan.peer_id,
                format_address(source),
                ", ".join(format_address(h) for h in plan.hosts) or "none",
                granted,
                plan.mapping.label,
            )
        else:
            log.debug("refreshed %s at %s", plan.peer_id, format_address(source))
        self._reply(
            message,
            source,
            (AttributeType.XOR_MAPPED_ADDRESS, source),
            (AttributeType.LEASE, granted),
            (AttributeType.REGISTRATION_TOKEN, registration.token),
        )

    def _on_arrival(self, data: bytes, source: Address) -> bool:
        """A peer's first Register on an open server (unsigned, its ID free): registered and answered straight from
        the bytes (punch.rendezvous.refresh.read_arrival), with the same answer, counters, rate limit and log line as
        :meth:`_on_register`; with a shared registry once it took the ID too (:meth:`_arrive_shared`). False hands
        anything else to the general path."""
        if self._group is not None:
            return False
        read = read_arrival(data)
        if read is None:
            return False
        peer_id, hosts, lease, mapping_code, public_key = read
        now = self._now()
        registry = self.registry
        if registry.lookup(peer_id, now) is not None or len(registry.registrations) >= registry.max_registrations:
            return False  # someone's ID (401 or a retransmission), or a full table: the general path says so
        observed = pack_source(source)
        if observed is None or looks_like_fingerprint(peer_id):
            return False
        if answer_size(observed, _SOFTWARE) > limit_for(len(data), source[0]):
            return False
        federation = self._federation
        if federation is not None and not federation.may_ask(peer_id):
            return False  # the general path drops or refuses it, and counts it
        counters = self.endpoint.counters
        counters["request"] += 1
        counters["arrival"] += 1
        if self._limiter is not None and not self._limiter.allow(source[0], now):
            counters["rate-limited"] += 1
            return True
        mapping = mapping_of(mapping_code)
        registration = registry.register_packed(
            peer_id, observed + hosts, lease, now, mapping, data[8:20], public_key or b""
        )
        if federation is not None:
            self._arrive_shared(federation, registration, data, source, observed)
        else:
            self._welcome(registration, data, source, observed)
        return True

    def _welcome(self, registration: Registration, data: bytes, source: Address, observed: bytes) -> None:
        """The answer to a first Register read from its bytes, and its log line."""
        granted = round(registration.expires - self._now())
        if log.isEnabledFor(logging.INFO):
            candidates = ", ".join(format_address(h) for h in registration.host_candidates) or "none"
            log.info(
                "registered %s at %s (host candidates: %s; lease %d s; NAT mapping %s)",
                registration.peer_id,
                format_address(source),
                candidates,
                granted,
                registration.mapping.label,
            )
        answer = self._refresh.answer(data, observed, granted, registration.token, _SOFTWARE)
        self.endpoint.send_bytes(answer, source)

    def _arrive_shared(
        self, federation: Federation, registration: Registration, data: bytes, source: Address, observed: bytes
    ) -> None:
        """A first Register with a shared registry: the registration made here is stored there if the ID is free
        everywhere (one script), then answered; taken at another server, the general path says so (401); the
        registry silent, 503, and nothing of it kept here."""
        peer_id = registration.peer_id
        federation.pending.add(peer_id)

        async def arrive() -> None:
            try:
                lease = registration.expires - self._now()
                written = await federation.call(federation.shared.store(registration, federation.name, b"", lease))
            except RegistryUnavailable:
                federation.pending.discard(peer_id)
                self._forget_arrival(registration)
                self.endpoint.counters["registry-unavailable"] += 1
                self._resume(len(data))
                message = decode(data)
                self._reply_error(message, source, 503, "Service Unavailable: the registry does not answer; try again")
                return
            federation.pending.discard(peer_id)
            if written is Write.REFUSED:
                self._forget_arrival(registration)
                self._ask_registry(decode(data), source, data)
                return
            self._welcome(registration, data, source, observed)

        self._spawn(arrive())

    def _forget_arrival(self, registration: Registration) -> None:
        if self.registry.registrations.get(registration.peer_id) is registration:
            self.registry.unregister(registration.peer_id)

    def _on_keepalive(self, data: bytes, source: Address) -> bool:
        """A Register that renews a registration unchanged (same endpoint, candidates and NAT mapping), signed
        with its token: renewed and answered straight from the bytes (punch.rendezvous.refresh), with the same
        answer, counters and rate limit as :meth:`_on_register`. False hands anything else to the general path;
        an unsigned one may be a first Register (:meth:`_on_arrival`)."""
        refresh = self._refresh.read(data)
        if refresh is None:
            return self._on_arrival(data, source)
        peer_id, hosts, lease, mapping, public_key = refresh
        now = self._now()
        known = self.registry.lookup(peer_id, now)
        if known is None or known.mapping is not mapping_of(mapping):
            return False
        if public_key is not None and known.public_key != public_key:
            return False  # a new key for the ID (its token's holder): the general path takes it
        observed = pack_source(source)
        if observed is None or known.endpoints != observed + hosts:
            return False
        if answer_size(observed, _SOFTWARE) > limit_for(len(data), source[0]):
            return False  # the general path's answer would drop SOFTWARE (punch.rendezvous.replies): let it
        token = known.token
        key = request_key(self._group, token)
        if key is None or not self._refresh.signed_with(data, key):
            return False
        counters = self.endpoint.counters
        counters["request"] += 1
        counters["keepalive"] += 1
        if self._limiter is not None and not self._limiter.allow(source[0], now):
            counters["rate-limited"] += 1
            return True
        registration = self.registry.renew(known, lease, now)
        if self._federation is not None:
            self._federation.renewed(registration, registration.expires - now)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("refreshed %s at %s", peer_id, format_address(source))
        answer = self._refresh.answer(data, observed, round(registration.expires - now), token, _SOFTWARE)
        self.endpoint.send_bytes(answer, source)
        return True

    def _on_connect(self, message: Message, source: Address, data: bytes) -> None:
        now = self._now()
        self.registry.expire(now)
        wanted = self._admit_connect(message, source, data)
        if wanted is None:
            return
        target, wish = wanted
        asker = required_peer_id(message)
        match = self.registry.want(asker, target, now, wish.share, wish.rtt_us, wish.transaction)
        if match is None:
            self._answer_waiting(message, source, asker, target, self.registry.lookup(target, now) is not None)
            return
        self._reply(message, source, (AttributeType.STATUS, "introducing"))
        self._introduce(match, asker, target)

    def _admit_connect(self, message: Message, source: Address, data: bytes) -> tuple[str, Wish] | None:
        """The target a Connect asks for and the asker's wish, once it proved it may (ProtocolError if not); None if
        it is a retransmission of a Connect that made a session (answered again here)."""
        asker = required_peer_id(message)
        self._check_owner(asker, data)
        target = required_peer_id(message, AttributeType.TARGET_ID)
        if target == asker:
            raise ProtocolError(f"peer {asker} asked for itself; ask for another peer's ID")
        registration = self.registry.lookup(asker, self._now())
        if registration is None or registration.observed != source:
            raise ProtocolError(f"peer {asker} is not registered from {format_address(source)}")
        share = KeyShare.of(message)
        if not registration.public_key:
            raise ProtocolError(f"peer {asker} registered without PUBLIC-KEY; register with one to be introduced")
        earlier = self.registry.introduced_by(asker, message.transaction_id)
        if earlier is not None:  # our answer was lost (RFC 8489 §6.3.1): the same answer, not a second session
            log.info(
                "%s asks for %s again (a retransmission): already introduced (session %s)",
                asker,
                target,
                earlier.session_id.hex()[:8],
            )
            self._reply(message, source, (AttributeType.STATUS, "introducing"))
            return None
        return target, Wish(share, message.integer(AttributeType.SERVER_RTT), message.transaction_id)

    def _answer_waiting(self, message: Message, source: Address, asker: str, target: str, registered: bool) -> None:
        if target == ANYONE:
            status = f"waiting for anyone to ask for {asker}"
        else:
            status = f"waiting for {target}" if registered else f"waiting for {target} to register"
        log.info("%s asks for %s: %s", asker, target, status)
        self._reply(message, source, (AttributeType.STATUS, _fit(status, 128)))

    def _introduce(self, match: Match, asker: str, target: str) -> None:
        """Tell both peers about each other at the same moment (``asker`` asked for ``target``).

        The introductions are punch time: they leave at once (with the batch being handled, see
        StunEndpoint._drain, just after the answer to the Connect), and the log lines saying so are written next.
        """
        introductions = match.introductions()
        elsewhere = [(r, i) for r, i in introductions if self._elsewhere(match, r)]
        here = [(r, i) for r, i in introductions if not self._elsewhere(match, r)]

        def push(which: list[tuple[Registration, Introduction]]) -> None:
            for recipient, introduction in which:
                self._push(introduction.to_message(), recipient, f"Introduce to {recipient.peer_id}", match)

        push(elsewhere)  # handed to the other peer's server, which pushes it (punch.rendezvous.federation)
        if elsewhere and self._federation is not None:
            # ours once the other's is in its server's inbox: the two arrive about together, as early checks expect
            self._federation.deliver_then(functools.partial(push, here))
        else:
            push(here)
        asyncio.get_running_loop().call_soon(self._log_introduction, match, introductions, asker, target)

    def _log_introduction(
        self,
        match: Match,
        introductions: tuple[tuple[Registration, Introduction], ...],
        asker: str,
        target: str,
    ) -> None:
        opener, prober = match.opener, match.prober
        log.info(
            "%s asks for %s: both want each other, introducing (session %s)",
            asker,
            "anyone" if target == ANYONE else target,
            match.session_id.hex()[:8],
        )
        hard = Mapping.ENDPOINT_DEPENDENT
        if opener.mapping == prober.mapping == hard:
            log.info(
                "%s and %s both sit behind endpoint-dependent mappings: no port to predict, they will use the relay",
                opener.peer_id,
                prober.peer_id,
            )
        elif opener.mapping is hard and prober.mapping is Mapping.ENDPOINT_INDEPENDENT:
            log.info(
                "port prediction: %s's NAT maps endpoint-dependently, %s's does not; %s opens many mappings, "
                "%s sprays checks at them",
                opener.peer_id,
                prober.peer_id,
                opener.peer_id,
                prober.peer_id,
            )
        for recipient, introduction in introductions:
            log.info(
                "introduce %s -> %s at %s: %s is at %s; role %s",
                introduction.peer_id,
                recipient.peer_id,
                format_address(recipient.observed),
                introduction.peer_id,
                ", ".join(format_address(c) for c in introduction.candidates),
                introduction.role.name.lower(),
            )

    def _on_ready(self, message: Message, source: Address, data: bytes) -> None:
        match, mine, other = self._session_of(message, data)
        sender = mine.peer_id
        moved = source != mine.observed
        if not moved and mine is match.prober:
            raise ProtocolError("the prober waits for Go")  # short: the answer is capped (no amplification)
        self._reply(message, source)
        attributes: list[tuple[int, object]] = [
            (AttributeType.PEER_ID, sender),
            (AttributeType.SESSION_ID, match.session_id),
            (AttributeType.ROLE, int(Role.PROBER)),
        ]
        if moved:
            log.info(
                "%s has opened its NAT from a fresh socket, seen at %s; telling %s to probe it there (Go)",
                sender,
                format_address(source),
                other.peer_id,
            )
            attributes.append((AttributeType.CANDIDATE, source))
        else:
            log.info("%s has opened its NAT mapping; telling %s to probe now (Go)", sender, other.peer_id)
        self._push(request(Method.GO, *attributes), other, f"Go to {other.peer_id}", match)

    def _on_move(self, message: Message, source: Address, data: bytes) -> None:
        """A peer's check was refused by the other's NAT: tell the other to move (punch.peer.moving), once per
        session (when both ask, the first one's stands)."""
        match, mine, other = self._session_of(message, data)
        sender, session_id = mine.peer_id, match.session_id
        if source != mine.observed:
            raise ProtocolError("not the registered socket")  # short: the answer is capped (no amplification)
        current = other if self._elsewhere(match, other) else self.registry.lookup(other.peer_id, self._now())
        if current is None or current.observed != other.observed:
            # Its NAT still forwards to its closed socket, which refused the check: nobody is left to move.
            log.info("%s asks to move %s, which has left since the introduction", sender, other.peer_id)
            self._reply_error(message, source, PEER_GONE, "the other peer has left")
            return
        if not self.registry.move(session_id, other.peer_id):
            self._reply(message, source, (AttributeType.STATUS, f"{match.mover} moves already"))
            return
        self._reply(message, source, (AttributeType.STATUS, f"telling {other.peer_id} to move"))
        log.info(
            "%s says %s's NAT refused its check; telling %s to move to a fresh socket",
            sender,
            other.peer_id,
            other.peer_id,
        )
        move = request(Method.MOVE, (AttributeType.PEER_ID, sender), (AttributeType.SESSION_ID, session_id))
        self._push(move, other, f"Move to {other.peer_id}", match)

    def _elsewhere(self, match: Match, peer: Registration) -> str | None:
        """The name of the server ``peer`` (of ``match``) is registered at, if not this one (a shared registry)."""
        home = match.server_of(peer.peer_id)
        federation = self._federation
        return home if federation is not None and home and home != federation.name else None

    def _push(self, message: Message, recipient: Registration, what: str, session: Match | None = None) -> None:
        """Send a server-initiated request, signed with the recipient's request key (it takes no other) and
        retransmitted until the peer answers (signed with the same key). Its first transmission is sent before this
        returns (with the batch being handled, if any), not when a task first runs, after the rest of the loop's
        turn: an Introduce or a Go is punch time. A peer of ``session`` registered at another server (a shared
        registry) gets it from there: only that server's datagrams reach it through its NAT."""
        home = None if session is None else self._elsewhere(session, recipient)
        if session is not None and home is not None and self._federation is not None:
            envelope = Envelope(recipient.peer_id, encode(message, fingerprint=False), encode_match(session))
            self._federation.deliver(home, envelope)
            log.debug("%s: passed to server %r", what, home)
            return
        remote = recipient.observed
        key = request_key(self._group, recipient.token)
        keys = (key,) if key is not None else ()
        transaction = self.endpoint.start_transaction(message, remote, self._push_policy, key, keys)

        async def push() -> None:
            try:
                response, _ = await transaction.wait()
            except TransactionTimeout:
                log.warning("%s: no answer from %s", what, format_address(remote))
                return
            if response.message_class is MessageClass.ERROR:
                log.warning("%s: %s answered %s", what, format_address(remote), describe(response))

        def ended(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            self.endpoint.forget(message.transaction_id)  # also if the task was cancelled before it first ran

        task = asyncio.get_running_loop().create_task(push())
        self._tasks.add(task)
        task.add_done_callback(ended)


async def serve(
    listen: Address,
    *,
    alternate: Address | None = None,
    max_lease: float = MAX_LEASE,
    max_peers: int = MAX_PEERS,
    group: bytes | None = None,
    rate_limit: float = RATE_LIMIT,
    stats_interval: float = 0.0,
    workers: int = 1,
    ready: Callable[[Address], None] | None = None,
    relay_budget: RelayBudget | None = None,
    shared_registry: str | None = None,
    name: str | None = None,
    advertise: Address | None = None,
) -> None:
    """Run a server until cancelled; with ``stats_interval``, log a stats line that often; with ``workers``
    above 1, that many processes share the port (see punch.rendezvous.workers; needs no rate limit); with
    ``shared_registry``, one of several servers sharing it, known by ``name`` and reached at ``advertise``."""
    async with contextlib.AsyncExitStack() as stack:
        server = await stack.enter_async_context(
            RendezvousServer(
                max_lease=max_lease,
                max_registrations=max_peers,
                group=group,
                rate_limit=rate_limit,
                relay_budget=relay_budget,
                shared_registry=shared_registry,
                name=name,
                advertise=advertise,
            )
        )
        await server.start(listen, alternate, reuse_port=workers > 1)
        if workers > 1:
            await stack.enter_async_context(Workers(server.endpoint, server.address, workers))
        if stats_interval > 0:
            server.report_stats_every(stats_interval)
        if ready is not None:
            ready(server.address)
        await asyncio.Future()


@dataclass(frozen=True, slots=True)
class _Registering:
    """What a Register asks for, once admitted: ``known`` is the registration it refreshes, if any; ``lease`` 0 is a
    goodbye."""

    peer_id: str
    known: Registration | None
    lease: int
    hosts: tuple[Address, ...]
    mapping: Mapping
    public_key: bytes


def _fit(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8 (an attribute's limit), on a character boundary."""
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")
