"""How many NATs stand between a peer and the internet: the IP TTL for the opener's mapping-opening probes.

The opener's probe must pass every NAT of its own (creating the mappings) and die before it reaches the other
peer's NAT (see punch/peer/puncher.py). Behind one home NAT that is TTL 2; behind a home NAT and a carrier-grade
NAT it is 3. This module finds it the way traceroute does: one UDP socket per TTL (1..max_hops) sends a STUN
Binding request toward the server; a router that drops a packet whose TTL ran out answers with ICMP Time
Exceeded (RFC 792), which the kernel hands to the socket's error queue (``IP_RECVERR``, Linux) with the
router's address (the "offender"). The ICMP comes back through our NATs as a RELATED packet.

The answer is the TTL of the first router with a public address: every router before it has a private one
(RFC 1918, RFC 6598 shared space, link-local; IPv6: unique local, RFC 4193, and link-local), which is what routers
inside a home or a carrier network have. Toward an IPv6 server the same runs with the hop limit, ``IPV6_RECVERR`` and
ICMPv6 Time Exceeded (RFC 4443 §3.3); a home router with a global LAN prefix is public there, so the trace never
raises the default of 2 that passes it (and its RFC 6092 firewall).
A heuristic: a provider whose core routers use private addresses makes it too high, a LAN numbered from
public addresses makes it too low (so the caller only ever raises its default of 2 with it), and a network
that drops ICMP gives no answer at all (the caller then keeps its default). Routers that stay silent (they rate-limit
ICMP errors) while a private one after them, or a later one after our private ones, answers still leave the TTL one
past the last private router (``past_private``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import socket
import time
from dataclasses import dataclass
from typing import Protocol

from punch.peer.puncher import PunchTimings
from punch.stun import Address, Method, encode
from punch.stun.errqueue import IP_RECVERR, IPV6_RECVERR, MSG_ERRQUEUE, icmp_error_from
from punch.stun.wire import request

log = logging.getLogger(__name__)

NOT_PUBLIC = tuple(
    ipaddress.ip_network(n)
    for n in (
        *("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16", "127.0.0.0/8"),
        *("fc00::/7", "fe80::/10", "::1/128"),
    )
)


LATE_HOP = 0.01  # seconds a router nearer than the destination may answer after the destination (see trace)


@dataclass(frozen=True, slots=True)
class Hop:
    """What happened to the probe sent with ``ttl``: a router dropped it, or it reached the destination."""

    ttl: int
    router: str | None = None  # the ICMP Time Exceeded's sender
    reached: bool = False
    rtt: float | None = None  # seconds from the probe to the server's answer, when it reached the server

    @property
    def public(self) -> bool:
        if self.router is None:
            return False
        address = ipaddress.ip_address(self.router)
        return not any(address in network for network in NOT_PUBLIC if network.version == address.version)

    def describe(self) -> str:
        if self.reached:
            rtt = f" ({self.rtt * 1000:.1f} ms)" if self.rtt is not None else ""
            return f"TTL {self.ttl} reached the server{rtt}"
        if self.router is None:
            return f"TTL {self.ttl}: no answer"
        return f"TTL {self.ttl} died at {self.router} ({'public' if self.public else 'private'})"


def open_ttl(hops: list[Hop]) -> int | None:
    """The TTL of the first public router, if the hops before it all answered; else None."""
    for expected, hop in enumerate(sorted(hops, key=lambda h: h.ttl), start=1):
        if hop.ttl != expected or hop.reached or hop.router is None:
            return None
        if hop.public:
            return hop.ttl
    return None


def past_private(hops: list[Hop]) -> int | None:
    """Where ``open_ttl`` finds nothing because routers were silent: the TTL one past the last private router that
    answered before any public one or the server, if something answered after it (a router further on, or the
    server, but not the server at the very next TTL: that one is on our side of every NAT). A router that rate-limits
    its ICMP errors (the first public one often does; our own NAT does too, once its errors to us came in a burst:
    port mapping's requests, the trace) then costs nothing: the routers before a private one are ours, and a probe
    with this TTL dies at the router after the last of them, whatever that is. None otherwise."""
    ordered = sorted(hops, key=lambda h: h.ttl)
    last = None
    for hop in ordered:
        if hop.reached or (hop.router is not None and hop.public):
            break
        if hop.router is not None:
            last = hop.ttl
    if last is None:
        return None
    after = [hop for hop in ordered if hop.ttl > last]
    if not after or (after[0].ttl == last + 1 and after[0].reached):
        return None
    return last + 1


def time_exceeded_from(ancillary: list[tuple[int, int, bytes]]) -> str | None:
    """The offender's address if ``ancillary`` (from ``recvmsg(..., MSG_ERRQUEUE)``) is an ICMP Time Exceeded."""
    error = icmp_error_from(ancillary)
    return error.offender if error is not None and error.time_exceeded else None


class _Probe:
    """One socket sending one Binding request with a fixed TTL (IPv6: hop limit), and what came back to it."""

    def __init__(self, ttl: int, destination: Address, source_ip: str) -> None:
        self.ttl = ttl
        v6 = ":" in destination[0]
        self.sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind((source_ip if (":" in source_ip) == v6 else ("::" if v6 else "0.0.0.0"), 0))
        if v6:
            self.sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
            self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)
        else:
            self.sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
            self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        self.destination = destination
        self.hop: Hop | None = None
        self.sent_at = 0.0

    def send(self) -> None:
        # The clock first: a pause during the send (the scheduler, a virtual machine's stolen time) then makes the
        # round trip look longer, never shorter. Read after it, a pause shortened it: one way a peer 4 ms from its
        # server could tell it 1.07 ms (seen once in CI), and time its early checks too soon.
        self.sent_at = time.monotonic()
        self.sock.sendto(encode(request(Method.BINDING)), self.destination)

    def on_readable(self, done: asyncio.Event) -> None:
        try:
            _data, ancillary, _flags, _addr = self.sock.recvmsg(512, 512, MSG_ERRQUEUE)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            return
        else:
            router = time_exceeded_from(ancillary)
            if router is not None and self.hop is None:
                self.hop = Hop(self.ttl, router)
                done.set()
            return
        try:
            self.sock.recv(2048)  # the server's answer: this TTL was enough to reach it
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # an error the error queue also holds (e.g. unreachable)
            return
        if self.hop is None:
            self.hop = Hop(self.ttl, reached=True, rtt=time.monotonic() - self.sent_at)
            done.set()


async def trace(destination: Address, max_hops: int = 6, wait: float = 1.0, source_ip: str = "0.0.0.0") -> list[Hop]:
    """Send one probe per TTL 1..``max_hops`` at once; the hops that answered within ``wait`` seconds, or, once a
    probe reached the destination after ``t`` seconds, within ``max(2 t, t + LATE_HOP)``: a router nearer than the
    destination that has not answered by then will not (it rate-limits or filters ICMP), and a peer waiting for its
    answer would hold its punch (punch.peer.session awaits the trace before its first probe)."""
    loop = asyncio.get_running_loop()
    probes = [_Probe(ttl, destination, source_ip) for ttl in range(1, max_hops + 1)]
    done = asyncio.Event()
    started = loop.time()
    try:
        for probe in probes:
            loop.add_reader(probe.sock.fileno(), probe.on_readable, done)
            probe.send()
        async with asyncio.timeout(wait) as deadline:
            while open_ttl(_answered(probes)) is None and not _settled(probes):
                done.clear()
                await done.wait()
                if any(p.hop is not None and p.hop.reached for p in probes):
                    reached = loop.time() - started
                    latest = started + max(2 * reached, reached + LATE_HOP)
                    deadline.reschedule(min(deadline.when() or latest, latest))
    except (TimeoutError, OSError) as exc:
        if isinstance(exc, OSError):
            log.debug("route discovery failed: %s", exc)
    finally:
        for probe in probes:
            loop.remove_reader(probe.sock.fileno())
            probe.sock.close()
    return _answered(probes)


def _answered(probes: list[_Probe]) -> list[Hop]:
    return [p.hop for p in probes if p.hop is not None]


def _settled(probes: list[_Probe]) -> bool:
    """Every TTL up to the first that reached the destination has its answer (nothing more to learn)."""
    for probe in probes:
        if probe.hop is None:
            return False
        if probe.hop.reached:
            return True
    return True


class RoundTrips(Protocol):
    """Where the round trips to the server that a trace measures go (punch.peer.client.RendezvousClient)."""

    def observe_rtt(self, rtt: float) -> None: ...

    async def sample_rtt(self) -> None: ...


async def opening_timings(
    timings: PunchTimings, discover: bool, server: Address, source_ip: str, rtts: RoundTrips
) -> PunchTimings:
    """``timings`` with ``open_ttl`` set to the TTL that passes all our own NATs (:func:`trace` from ``source_ip``
    toward ``server``), if ``discover``. A probe that reached the server is also a sample of our round trip to it,
    which we tell the server in Connect (the first, our registration's, may include the start-up of a fresh
    process). Without a trace, a Binding request takes that second sample, where early checks may use it."""
    if not discover or timings.open_ttl <= 0:
        if timings.early and timings.open_ttl > 0:
            await rtts.sample_rtt()
        return timings
    found = await trace(server, source_ip=source_ip)
    for hop in found:
        if hop.rtt is not None:
            rtts.observe_rtt(hop.rtt)
    ttl, why = open_ttl(found), "past our own NATs"
    if ttl is None and (ttl := past_private(found)) is not None:
        answered = {hop.ttl for hop in found}
        why = (
            "past our own NATs, some of them silent"
            if ttl in answered
            else f"past our own NATs, to TTL {ttl}'s silent router"
        )
    route = ", ".join(hop.describe() for hop in sorted(found, key=lambda h: h.ttl)) or "no answers"
    if ttl is None or ttl <= timings.open_ttl:  # only ever raise it: a LAN may use public addresses
        log.info("route to the server: %s; opening probes keep TTL %d", route, timings.open_ttl)
        return timings
    log.info("route to the server: %s; opening probes get TTL %d (%s)", route, ttl, why)
    return dataclasses.replace(timings, open_ttl=ttl)
