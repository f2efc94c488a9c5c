"""How a peer reaches its server: over UDP, else over TCP, else over TLS (RFC 8489 §6.2.2; punch.stun.stream).

Some networks let no UDP out: a corporate or hotel firewall lets out the web (TCP 80 and 443) and DNS, nothing else.
A peer there gets no answer to its first STUN request over UDP. It then connects to the server over TCP, at the
server's own address and port unless told otherwise (3478 serves both, RFC 8489 §8), and if that fails too over TLS
(``--server-tls``, e.g. on 443), and from then on sends the server over that connection all it would have sent over
UDP: its socket carries the server's address over the connection (punch.stun.protocol.StunEndpoint.carry), so that
the rendezvous client, the carrier's relay route and the handlers of what the server sends see no difference; only
how the server's address is reached changed. The server does the same at its end (punch.rendezvous.streams).
A connection is taken once the server answered a Binding over it: a port where something else listens (a web server
or a proxy on 80 answering HTTP, a service that cuts the connection, one that says nothing) is closed, counted by
what ended it (punch.stun.stream), and the next way tried, within ``connect_timeout`` each.

The punch. A peer whose UDP does not reach the server will hardly punch through its firewall: it tells the server so
(NAT-MAPPING udp-blocked, punch.stun.wire.Mapping) in its registration, the server passes that on in the other peer's
Introduce, and both peers start on the relay at once (punch.peer.strategy: ``Plan.RELAY_FIRST``), over the connection
at our end and over UDP at the other's, instead of punching for the punch timeout first. From the relay the session
retries a direct path now and then, as from any relay (punch.peer.session: its upgrade; upgrade_waits), which finds a
LAN path to a peer behind the same firewall, or UDP let out later, and moves onto it once proven: the session and its
QUIC connection go on over it (punch.peer.carrier), and the server connection carries only the registration. For
the latter, a connection leaves from the socket's own address and port where it can: a NAT that keeps ports (most
do) maps it to the public port it gives the socket's UDP, so the address the server sees over the connection, which
the other peer gets as our server-reflexive candidate, is the one our UDP leaves from once it gets out.

How long UDP is given. Loss must not send a peer to TCP: a try is a request and its answer, which fail together 36%
of the time with 20% loss each way (the lab's fault tests); :data:`UDP_TRIAL` sends 12 over about 5.6 s, which all fail
once in 200,000 starts. A peer that may not relay (``--no-relay``) has no use for a connection (its only paths are
punched, over UDP): it never connects, and waits for its registration's answer as before.

Trust. Over TLS the server's certificate is verified (punch.stun.tls) against the CA file given (else the system's
trust store) and the name or address we connect to, or pinned by its SHA-256, or both. A certificate that fails is an
error that ends the run (PeerError), never a reason to try something else. The connection is not what keeps the
session safe (what the peers send each other is signed with the session's key and sealed by QUIC, keys the server
never holds): TLS hides from the network whom we talk to, and looks like the web to a firewall.

A connection that ends (the server gone, a middlebox cutting it) ends a session on the relay through it at once, with
why (punch.peer.session.Session.lost), instead of after its keepalives went unanswered; a session on a direct path
goes on without the server (what is sent to the server is dropped and counted, ``stream-gone``).

What is not done: several servers (``--server`` again) are reached over UDP only; a connection that ends is not made
again; and no UDP answer later moves the registration back off the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import ipaddress
import logging
import os
import ssl
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path

from punch.errors import PeerError, PunchError
from punch.stun import Address, Method
from punch.stun.protocol import StunEndpoint, format_address
from punch.stun.stream import Stream, open_stream
from punch.stun.tls import DEFAULT_TLS_PORT, CertificateRefused, check_pin, client_context
from punch.stun.transaction import RetransmitPolicy, TransactionTimeout
from punch.stun.wire import request

log = logging.getLogger(__name__)

# UDP's chance (module docstring): 12 sends, 250 ms apart at first, then 500 ms; 5.6 s in all.
UDP_TRIAL = RetransmitPolicy(rto=0.25, backoff=1.5, max_rto=0.5, max_sends=12, last_wait=2.0)
CONNECT_TIMEOUT = 3.0  # seconds for a connection (and its TLS handshake): a firewall drops, it does not refuse


class Via(enum.Enum):
    """How the server is reached (``--server-via``)."""

    AUTO = "auto"  # UDP; else TCP; else TLS, if given
    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"


@dataclass(frozen=True, slots=True)
class TlsServer:
    """Where the server listens on TLS, and how its certificate is checked (punch.stun.tls)."""

    host: str  # a name or an address: the certificate must name it (unless only pinned)
    port: int = DEFAULT_TLS_PORT
    ca: Path | None = None  # the CA certificates (PEM) to verify it against; None: the system's trust store
    pin: bytes | None = None  # the SHA-256 its certificate must have

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Reach:
    """How a peer may reach its server (``PeerConfig.reach``, module docstring)."""

    via: Via = Via.AUTO
    tcp: bool = True  # try TCP (with AUTO)
    tcp_at: Address | None = None  # where the server listens on TCP; None: its UDP address and port
    tls: TlsServer | None = None  # where it listens on TLS; None: no TLS
    trial: RetransmitPolicy = UDP_TRIAL
    connect_timeout: float = CONNECT_TIMEOUT


class ServerLink:
    """How the session reaches its server: ``via`` ``udp``, or over ``stream`` (``tcp``, ``tls``), whose messages go
    to the session's socket as from the server. :meth:`close` closes the connection."""

    def __init__(self, via: str = "udp", stream: Stream | None = None, reading: asyncio.Task[None] | None = None):
        self.via = via
        self.stream = stream
        self._reading = reading

    @property
    def over_stream(self) -> bool:
        return self.stream is not None

    async def ended(self) -> str:
        """Why the connection ended, once it has; never returns over UDP."""
        if self._reading is None or self.stream is None:
            await asyncio.Event().wait()
        else:
            await asyncio.shield(self._reading)
        assert self.stream is not None
        return self.stream.ended_by or "closed"

    async def close(self) -> None:
        """Close the connection, if any; idempotent."""
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading
        if self.stream is not None:
            await self.stream.close()


async def reach_server(reach: Reach, server: Address, endpoint: StunEndpoint, *, relay: bool) -> ServerLink:
    """How ``endpoint`` (the session's socket) reaches ``server`` (module docstring); over a connection, the socket
    carries the server's address over it from now on. PeerError if nothing reaches it, or a TLS server's certificate
    is refused."""
    tries = []
    if reach.via is Via.AUTO:
        if not relay:
            return ServerLink()
        try:
            await endpoint.request(request(Method.BINDING), server, reach.trial)
            return ServerLink()
        except TransactionTimeout:
            sends, seconds = reach.trial.max_sends, reach.trial.total()
            tries.append(f"no answer over UDP ({sends} sends in {seconds:.1f} s)")
            log.info("the server at %s did not answer over UDP (%d sends in %.1f s): UDP may be blocked here; "
                     "reaching it over TCP or TLS", format_address(server), sends, seconds)  # fmt: skip
    elif reach.via is Via.UDP:
        return ServerLink()
    counters = endpoint.counters
    local = endpoint.local_address
    if reach.via in (Via.AUTO, Via.TCP) and (reach.tcp or reach.via is Via.TCP):
        at = reach.tcp_at or server
        opening = asyncio.wait_for(_open(at[0], at[1], counters, None, local), reach.connect_timeout)
        taken = await _connect(endpoint, server, "tcp", opening, format_address(at), reach.connect_timeout)
        if isinstance(taken, ServerLink):
            return taken
        tries.append(taken)
    if reach.via in (Via.AUTO, Via.TLS) and reach.tls is not None:
        opening = _open_tls(reach.tls, counters, reach.connect_timeout, local)
        taken = await _connect(endpoint, server, "tls", opening, str(reach.tls), reach.connect_timeout)
        if isinstance(taken, ServerLink):
            return taken
        tries.append(taken)
    if reach.via is Via.TLS and reach.tls is None:
        tries.append("no TLS address to reach it at (--server-tls)")
    raise PeerError(
        f"the server at {format_address(server)} cannot be reached: {'; '.join(tries)}; is `punch server` running "
        "there, and does this network let TCP out to it (--server-tls HOST:443 where only the web gets out)?"
    )


async def _connect(
    endpoint: StunEndpoint, server: Address, via: str, opening: Awaitable[Stream], where: str, within: float
) -> ServerLink | str:
    """The link over the connection ``opening`` makes to ``where``, if the server answers over it (:func:`_carry`);
    else why not, as the error names each try."""
    try:
        stream = await opening
    except (TimeoutError, OSError) as error:
        return f"no connection over {via.upper()} to {where} ({_why(error, within)})"
    taken = await _carry(endpoint, server, via, stream, within)
    return taken if isinstance(taken, ServerLink) else f"no answer over {via.upper()} from {where} ({taken})"


async def _open(host: str, port: int, counters: Counter[str], context: ssl.SSLContext | None, local: Address) -> Stream:
    """A connection to ``host``:``port`` from the address and port of our socket, ``local``, where we can: a NAT that
    keeps ports maps it to the public port it gives our UDP, so that the server-reflexive address the server sees
    (our candidate for the other peer) is right for UDP too, once UDP gets out. From another port if that one is
    taken (or our socket has no address of its own and ``host`` is a name, whose family we do not know)."""
    bound, own_port = local
    if bound in ("0.0.0.0", "::"):
        family = _family(host)
        bound = "::" if family == 6 else "0.0.0.0" if family == 4 else ""
    if bound:
        try:
            return await open_stream(host, port, counters, context, (bound, own_port))
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
            log.debug("port %d is taken for TCP here: connecting from another", own_port)
    return await open_stream(host, port, counters, context)


def _family(host: str) -> int | None:
    """4 or 6 for an IP address, None for a name."""
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


async def _open_tls(tls: TlsServer, counters: Counter[str], within: float, local: Address) -> Stream:
    """A TLS connection to ``tls`` whose certificate we accept; PeerError if it is refused."""
    try:
        context = client_context(tls.ca, tls.pin is not None)
    except OSError as error:  # ssl.SSLError too
        raise PeerError(f"the CA file {tls.ca} cannot be loaded ({error}); give CA certificates in PEM") from None
    try:
        async with asyncio.timeout(within):
            stream = await _open(tls.host, tls.port, counters, context, local)
    except ssl.SSLCertVerificationError as error:
        raise PeerError(
            f"the server at {tls} presented a certificate we do not trust ({error.verify_message}): refused; give "
            "--server-ca with the CA that signed it, or --server-pin with its SHA-256"
        ) from None
    if tls.pin is not None:
        try:
            check_pin(stream.tls, tls.pin)
        except CertificateRefused as error:
            await stream.close()
            raise PeerError(f"the server at {tls} is refused: {error} (--server-pin)") from None
    return stream


async def _carry(endpoint: StunEndpoint, server: Address, via: str, stream: Stream, within: float) -> ServerLink | str:
    """``endpoint`` reaches ``server`` over ``stream`` if the server answers a Binding over it within ``within``
    seconds: the link. Else (a proxy or another service at that port: a frame that is not STUN, a cut, a silence)
    the connection is closed and ``endpoint`` reaches ``server`` as before: why, in a few words."""
    endpoint.carry(server, stream.send)
    checked, ended = False, None

    async def read() -> None:
        why = await stream.run(lambda message: endpoint.datagram_received(message, server))
        if checked:
            log.warning("the %s connection to the server at %s ended (%s): it hears nothing from us any more",
                        via.upper(), format_address(server), why)  # fmt: skip

    reading = asyncio.ensure_future(read())
    link = ServerLink(via, stream, reading)
    once = RetransmitPolicy(rto=within, max_sends=1)  # (the transport retransmits: RFC 8489 §6.2.2)
    binding = asyncio.ensure_future(endpoint.request(request(Method.BINDING), server, once))
    try:
        await asyncio.wait((binding, reading), return_when=asyncio.FIRST_COMPLETED)
        checked = binding.done() and binding.exception() is None
        ended = None if checked or not reading.done() else stream.ended_by
    finally:
        if not checked:  # (also when we are cancelled)
            binding.cancel()
            with contextlib.suppress(asyncio.CancelledError, PunchError, OSError):
                await binding
            endpoint.uncarry(server, stream.send)
            await link.close()
    if checked:
        log.info("reaching the server at %s over %s, from %s to %s", format_address(server), via.upper(),
                 format_address(stream.local), format_address(stream.remote))  # fmt: skip
        return link
    why = ended or f"no answer to a Binding within {within:g} s"
    log.info("the server at %s did not answer over %s (%s)", format_address(server), via.upper(), why)
    return why


def _why(error: OSError, timeout: float) -> str:
    """A failed connection's reason, as short as it says it."""
    if isinstance(error, TimeoutError):
        return f"nothing within {timeout:g} s"
    if isinstance(error, ssl.SSLError):  # (its errno is no OS error's)
        return str(error.reason or error)
    return os.strerror(error.errno) if error.errno else str(error) or type(error).__name__
