"""Port prediction ("birthday paradox"): a direct path between a peer whose NAT maps endpoint-dependently and a
peer whose NAT maps endpoint-independently (RFC 4787 §4.1), after Tailscale's NAT traversal.

A NAT with endpoint-dependent mapping (the classic "symmetric" NAT; Linux MASQUERADE --random-fully) gives every
new destination a fresh random public port, so the port the server saw is of no use to the other peer. But:

1. the **hard** side (endpoint-dependent) opens many sockets (``--predict-sockets``, 256) and from each sends a
   check toward the other peer's public endpoint with a low IP TTL: each one creates a mapping on its NAT, on a
   random public port, and dies in the network before it reaches the other NAT (on a bare MASQUERADE router an
   arriving packet would leave a conntrack entry that steals the very port tuple the easy side needs: the
   conntrack race of punch.peer.puncher). Then it tells the server it is Ready;
2. the **easy** side (endpoint-independent), told Go, sprays checks from its one socket at random ports of the
   hard NAT's public address (``--predict-probes``, 2000, no port twice, ``--predict-rate`` a second). Each
   check opens the easy NAT's filter toward that port; a check that hits one of the 256 mapped ports is let in
   and delivered to that socket, which answers and checks back (punch.peer.puncher); the easy side nominates
   that path and the hard side keeps that socket for the session.

With k mapped ports among the N ports the NAT draws from and n probes without repeats, every probe misses with
probability C(N-k, n) / C(N, n), about (1 - k/N)^n: for k = 256 and N = 64,512 (Linux picks from 1024-65535 for a
source port of 1024 or more, nf_nat_core.c), a hit is 98% likely after 1,000 probes and 99.97% after 2,000. Two
random sets of a few hundred and a few thousand ports meet easily: the birthday paradox.

Whether our NAT is hard is measured at startup (:func:`discover_mapping`: RFC 5780 §4.3's test against the
server's OTHER-ADDRESS) and told to the server in Register (NAT-MAPPING); the server makes the hard side the
opener and tells each side the other's mapping in Introduce; both then agree on the same plan
(:func:`punch.peer.strategy.plan`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from punch.peer.puncher import Puncher
from punch.peer.strategy import Plan, plan
from punch.stun import Address, AttributeType, Message, MessageClass, Method
from punch.stun.protocol import Handler, SocketMaker, StunEndpoint, format_address
from punch.stun.transaction import RetransmitPolicy, TransactionTimeout
from punch.stun.wire import Introduction, Mapping, request

log = logging.getLogger(__name__)

# Where Linux NAT draws a new source port (a source port of 1024 or more, no --to-ports; also --random-fully).
PORT_RANGE = (1024, 65535)
# The server's other address may be firewalled: do not wait long for it.
OTHER_ADDRESS_POLICY = RetransmitPolicy(rto=0.25, max_rto=1.0, max_sends=4, last_wait=4.0)
# A sprayed check is sent once; its answer, if any, comes within a round trip.
SPRAY_ANSWER_WINDOW = 2.0


@dataclass(frozen=True, slots=True)
class PredictConfig:
    """How to predict ports (``punch peer --predict-*``, ``--no-predict``)."""

    enabled: bool = True
    sockets: int = 256  # the hard side: sockets, each with its own mapping
    probes: int = 2000  # the easy side: checks to distinct random ports
    rate: float = 500.0  # the easy side: checks a second
    ports: tuple[int, int] = PORT_RANGE  # the range the hard NAT draws its ports from
    assume: Mapping | None = None  # skip discovery and take this as our mapping (loopback tests: there is no NAT)
    # Check from the hard side's main socket first, and predict only if that gets no answer (punch.peer.reflexive).
    # Both sides alike: a side without it calls every path of the punch predicted.
    reflexive: bool = True


def choose_plan(config: PredictConfig, ours: Mapping, introduction: Introduction) -> Plan:
    """:func:`plan`, with one log line saying why (for port prediction, punch.peer.situation says how, once the
    strategy is known: peer-reflexive first or not)."""
    peer, theirs = introduction.peer_id, introduction.mapping
    if Mapping.UDP_BLOCKED in (ours, theirs):
        who = "our" if ours is Mapping.UDP_BLOCKED else f"{peer}'s"
        log.info(
            "%s UDP does not reach the server (over TCP or TLS instead): the relay first, a direct path later", who
        )
        return plan(ours, theirs, introduction.role)
    if not config.enabled:
        return Plan.PUNCH
    chosen = plan(ours, theirs, introduction.role)
    if chosen in (Plan.OPEN, Plan.SPRAY):
        pass  # said by punch.peer.situation, with how
    elif chosen is Plan.RELAY:
        log.info("both NATs map endpoint-dependently (ours and %s's): no port can be predicted", peer)
    elif Mapping.ENDPOINT_DEPENDENT in (ours, theirs):
        log.info(
            "no port prediction: our NAT mapping is %s, %s's is %s, we are the %s; punching as usual",
            ours.label,
            peer,
            theirs.label,
            introduction.role.name.lower(),
        )
    return chosen


# -- the pure parts ---------------------------------------------------------------------------------------------


def sample_ports(count: int, ports: tuple[int, int] = PORT_RANGE, rng: random.Random | None = None) -> list[int]:
    """``count`` distinct ports drawn uniformly from ``ports`` (inclusive), in random order (all, if fewer)."""
    low, high = ports
    if not 0 < low <= high <= 65535:
        raise ValueError(f"port range {low}-{high} is not within 1-65535")
    population = range(low, high + 1)
    return (rng or random.SystemRandom()).sample(population, min(count, len(population)))


def hit_probability(sockets: int, probes: int, ports: int = PORT_RANGE[1] - PORT_RANGE[0] + 1) -> float:
    """The chance that ``probes`` distinct random ports include one of ``sockets`` mapped ones, out of ``ports``.

    Every probe misses with probability C(ports - sockets, probes) / C(ports, probes), computed as a product.
    """
    if probes > ports - sockets:
        return 1.0
    miss = 1.0
    for k in range(probes):
        miss *= (ports - sockets - k) / (ports - k)
    return 1.0 - miss


# -- is our NAT hard? --------------------------------------------------------------------------------------------


async def discover_mapping(endpoint: StunEndpoint, server: Address, policy: RetransmitPolicy) -> Mapping:
    """Compare our public endpoint toward the server and toward its OTHER-ADDRESS (RFC 5780 §4.3, tests I and III)."""
    try:
        first, _ = await endpoint.request(request(Method.BINDING), server, policy)
    except TransactionTimeout:  # it answered our Register just now: a lossy path, not a missing server
        log.info(
            "the server at %s did not answer a Binding request (%d sends): NAT mapping unknown, no port prediction",
            format_address(server),
            policy.max_sends,
        )
        return Mapping.UNKNOWN
    mapped, other = first.address(AttributeType.XOR_MAPPED_ADDRESS), first.address(AttributeType.OTHER_ADDRESS)
    if mapped is None or other is None:
        log.info(
            "the server gives no OTHER-ADDRESS (started without --alternate): we cannot tell whether our NAT's "
            "mapping is endpoint-dependent, so no port prediction"
        )
        return Mapping.UNKNOWN
    try:
        second, _ = await endpoint.request(request(Method.BINDING), other, OTHER_ADDRESS_POLICY)
    except TransactionTimeout:
        log.info("the server's other address %s did not answer: NAT mapping unknown, no port prediction", other)
        return Mapping.UNKNOWN
    seen = second.address(AttributeType.XOR_MAPPED_ADDRESS)
    if second.message_class is not MessageClass.SUCCESS or seen is None:
        log.info("the server's other address %s gave no mapped address: NAT mapping unknown", format_address(other))
        return Mapping.UNKNOWN
    if seen == mapped:
        log.info(
            "NAT mapping is endpoint-independent (server saw %s from both %s and %s)",
            format_address(mapped),
            format_address(server),
            format_address(other),
        )
        return Mapping.ENDPOINT_INDEPENDENT
    same_ip = seen[0] == mapped[0]
    log.info(
        "NAT mapping is endpoint-dependent (server saw %s and %s)",
        format_address(mapped),
        f":{seen[1]}" if same_ip else format_address(seen),
    )
    return Mapping.ENDPOINT_DEPENDENT


async def our_mapping(
    config: PredictConfig, endpoint: StunEndpoint, server: Address, policy: RetransmitPolicy
) -> Mapping:
    """Our mapping, to tell the server: measured, assumed (``config.assume``), or UNKNOWN when prediction is off."""
    if not config.enabled:
        return Mapping.UNKNOWN
    if config.assume is not None:
        log.info("assuming our NAT mapping is %s (not measured)", config.assume.label)
        return config.assume
    return await discover_mapping(endpoint, server, policy)


# -- the hard side -----------------------------------------------------------------------------------------------


class _Closing:
    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class PortOpener(_Closing):
    """The hard side: many sockets, each with its own mapping toward the other peer; checks that reach one are
    answered from it (by the puncher). Once the puncher chose a path over one of them, that socket's datagrams go
    to ``session`` (the session's handler); :meth:`close_others` closes the rest, :meth:`close` all."""

    def __init__(self, puncher: Puncher, open_socket: SocketMaker, session: Handler) -> None:
        self._puncher = puncher
        self._open_socket = open_socket  # as the session's: checks signed, only the session's accepted
        self._session = session
        self.sockets: list[StunEndpoint] = []
        self._reached: set[StunEndpoint] = set()

    async def open(self, host: str, count: int) -> None:
        """Bind ``count`` sockets on ``host`` (fewer if the system refuses more: that is logged)."""
        for index in range(count):
            try:
                sock = await self._open_socket(functools.partial(self._on_datagram, index), (host, 0))
            except OSError as error:
                log.warning("could open only %d of %d sockets: %s", index, count, error.strerror or error)
                break
            self.sockets.append(sock)

    def send(self, remote: Address, ttl: int) -> None:
        """From every socket, one check toward ``remote`` with IP TTL ``ttl`` (0: the default TTL)."""
        for sock in self.sockets:
            if ttl > 0:
                sock.send_with_ttl(self._puncher.check(), remote, ttl)
            else:
                sock.send(self._puncher.check(), remote)
        log.info(
            "opened %d sockets toward %s with TTL %s: a fresh mapping on a random port of our NAT each, "
            "dying before theirs",
            len(self.sockets),
            format_address(remote),
            ttl if ttl > 0 else "default",
        )

    def _on_datagram(self, index: int, message: Message, source: Address, data: bytes) -> None:
        if index >= len(self.sockets):
            return
        sock = self.sockets[index]
        chosen = self._puncher.chosen
        if chosen is not None and chosen.local is not None:
            if sock is chosen.local:
                self._session(message, source, data)
            return
        if message.message_class is not MessageClass.REQUEST:
            return
        if sock not in self._reached:
            self._reached.add(sock)
            log.info(
                "a check from %s reached our socket on port %d (one of %d): it hit that socket's mapping",
                format_address(source),
                sock.local_address[1],
                len(self.sockets),
            )
        self._puncher.on_request(message, source, sock)

    def failure(self) -> str:
        """Why no path was found, for the error message."""
        return (
            f"port prediction: no check of {self._puncher.peer} hit any of our {len(self.sockets)} mappings "
            "(more --predict-sockets, or more --predict-probes on the other side, make a hit likelier)"
        )

    async def close_others(self, chosen: StunEndpoint) -> None:
        """Close every socket but ``chosen``, which the session goes on using."""
        others = [sock for sock in self.sockets if sock is not chosen]
        await asyncio.gather(*(sock.close() for sock in others))
        log.info(
            "the session continues on our socket on port %d; closed the other %d",
            chosen.local_address[1],
            len(others),
        )

    async def close(self) -> None:
        """Close every socket, the kept one too; idempotent."""
        await asyncio.gather(*(sock.close() for sock in self.sockets))


# -- the easy side -----------------------------------------------------------------------------------------------


class Sprayer(_Closing):
    """The easy side: checks to random ports of the hard NAT's address, paced; the first port whose answer comes
    from the other peer of our session is reported to the puncher (:meth:`Puncher.found`), which nominates it."""

    def __init__(
        self,
        puncher: Puncher,
        endpoint: StunEndpoint,
        host: str,
        config: PredictConfig,
        rng: random.Random | None = None,
    ) -> None:
        self._puncher = puncher
        self._endpoint = endpoint
        self._host = host
        self._config = config
        self._rng = rng
        self._policy = RetransmitPolicy(rto=SPRAY_ANSWER_WINDOW, max_sends=1)
        self._waiting: dict[bytes, asyncio.Task[tuple[Message, Address]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._started = 0.0
        self.sent = 0
        self.hit: Address | None = None

    def start(self) -> None:
        """Start spraying in the background (until a hit, the budget, or :meth:`close`)."""
        self._task = asyncio.get_running_loop().create_task(self._spray())

    async def _spray(self) -> None:
        loop = asyncio.get_running_loop()
        config = self._config
        ports = sample_ports(config.probes, config.ports, self._rng)
        log.info(
            "spraying %d checks to random ports of %s at %g/s (ports %d-%d, none twice)",
            len(ports),
            self._host,
            config.rate,
            *config.ports,
        )
        self._started = loop.time()
        while self.sent < len(ports) and self.hit is None:
            due = min(len(ports), 1 + int((loop.time() - self._started) * config.rate))
            while self.sent < due:
                self._send(ports[self.sent])
            await asyncio.sleep(max(1.0 / config.rate, 0.001))
        if self.hit is None:
            log.info(
                "sent all %d checks to %s in %.1f s; no port answered yet",
                self.sent,
                self._host,
                loop.time() - self._started,
            )

    def _send(self, port: int) -> None:
        self.sent += 1
        message, remote = self._puncher.check(), (self._host, port)
        transaction = self._endpoint.start_transaction(message, remote, self._policy)
        task = asyncio.get_running_loop().create_task(transaction.wait())
        self._waiting[message.transaction_id] = task
        task.add_done_callback(functools.partial(self._answered, message.transaction_id, remote, self.sent))

    def _answered(
        self, transaction_id: bytes, remote: Address, number: int, task: asyncio.Task[tuple[Message, Address]]
    ) -> None:
        self._waiting.pop(transaction_id, None)
        self._endpoint.forget(transaction_id)
        if task.cancelled() or task.exception() is not None or self.hit is not None:
            return
        response, source = task.result()
        if not self._puncher.is_from_peer(response, source, remote):
            return
        self.hit = remote
        elapsed = asyncio.get_running_loop().time() - self._started
        log.info("hit: %s answered after %d checks (%.1f s)", format_address(remote), number, elapsed)
        self._puncher.found(remote)

    def failure(self) -> str:
        """Why no path was found, for the error message."""
        return (
            f"port prediction: none of {self.sent} checks to random ports of {self._host} was answered "
            "(more --predict-probes, or more --predict-sockets on the other side, make a hit likelier)"
        )

    async def close(self) -> None:
        """Stop spraying and forget the checks still waiting for an answer; idempotent."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for transaction_id in list(self._waiting):
            self._endpoint.forget(transaction_id)
        waiting = list(self._waiting.values())
        await asyncio.gather(*waiting, return_exceptions=True)
        self._waiting.clear()
