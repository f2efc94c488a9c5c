"""One peer's whole run: register (and measure our NAT's mapping), ask, get introduced, punch (predicting ports
when one NAT maps endpoint-dependently, punch.peer.predict), talk, close together.

A direct path that stops answering keepalives (the other peer's NAT got a new public address, or forgot its
mappings and now maps it elsewhere) is sought again: both peers register again, so the server learns where their
NATs map them now, ask for each other again, are introduced in a new session and punch a new path; the texts go on
over it in their first session. A peer that does not come back within ``PeerConfig.rejoin`` seconds is lost.

On the relay, a direct path is tried again now and then (:func:`upgrade_waits`), and taken once proven. The relay is
our server, or the one our Introduce names when the other peer is registered at another server
(punch.rendezvous.tickets). A relay that stops carrying our packets (its server died, or forgot the session) is moved
as a broken direct path is sought again: both peers register again (at another of their servers if theirs is silent)
and ask for each other; the new session's relay carries the same QUIC connection on.

Over whatever path was found, the peers talk QUIC (punch.transport.QuicLink, authenticated by both identity keys):
the carrier (punch.peer.carrier) sends its packets over the path of the moment, so the connection and its streams
outlive every change of path. QUIC's keepalives say whether the path is alive. The texts travel on a stream of
their own (punch.tunnel.texts); other services share the connection (punch.tunnel).

Who the other peer is: its Introduce carries its identity key, which must be the one we pinned (``PeerConfig.pin``)
or, without a pin, the one we knew it by (punch.identity.known_peers: trust on first use). A key we do not accept
ends the run before anything of that session is taken: its key is never added, so nothing of it is even checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from punch.errors import PeerError, PeerGone
from punch.identity.keyfile import Identity
from punch.peer import hops
from punch.peer.carrier import Carrier, Direct, Relayed
from punch.peer.client import RendezvousClient
from punch.peer.config import DROP_REASONS, PeerConfig, PeerResult
from punch.peer.dispatch import Dispatcher
from punch.peer.dualstack import other_family_candidates
from punch.peer.keys import PeerKeys, RequestKey
from punch.peer.moving import Moves
from punch.peer.portmapping import PortMapped
from punch.peer.predict import our_mapping
from punch.peer.puncher import Path, Puncher, PunchTimings
from punch.peer.reach import ServerLink, reach_server
from punch.peer.reflexive import ReflexiveFirst
from punch.peer.servers import with_nearest_server
from punch.peer.situation import behind_one_nat, strategy_for
from punch.peer.strategy import Plan, Strategy, mapped_candidates, mapped_strategy
from punch.peer.trust import Trust
from punch.stun import Address
from punch.stun.families import family_name
from punch.stun.protocol import SocketMaker, StunEndpoint, format_address, host_candidates, open_endpoint
from punch.stun.wire import ANYONE, Introduction, Mapping, Role
from punch.transport.config import LinkConfig
from punch.transport.errors import LinkClosed, LinkError
from punch.transport.quic import QuicLink
from punch.tunnel.services import Services
from punch.tunnel.texts import Texts

# On the relay (upgrade_waits): a retry's low-TTL probes leave this long (at most half the wait) before the prober's
# checks, so retries whose timers are up to this far apart still open the opener's NAT before a check arrives
# (Puncher.retry); after a failed retry the peers keep quiet toward each other this much longer than the NATs' UDP
# timeout (twice the lead: the other's retry may start that much later; and a second of slack); the waits double up
# to MAX_UPGRADE_WAIT.
UPGRADE_LEAD = 5.0
UPGRADE_QUIET = 2 * UPGRADE_LEAD + 1.0
MAX_UPGRADE_WAIT = 300.0
# QUIC's keepalives: the path counts as dead when none was answered for the keepalive interval and this long (as the
# STUN keepalives did: 7.5 s of retransmissions); QUIC itself waits this much longer than that and a rejoin.
DEAD_AFTER = 7.5
IDLE_SLACK = 15.0

log = logging.getLogger(__name__)


def upgrade_waits(interval: float, nat_udp_timeout: float) -> Iterator[float]:
    """How long the relay waits before each retry of a direct path: ``interval``, then twice as long each time, at
    least :data:`UPGRADE_QUIET` more than ``nat_udp_timeout`` and at most :data:`MAX_UPGRADE_WAIT` (or the quiet).

    Why the quiet. A check that reached the other NAT before its peer's probe left (a late introduction with early
    checks, a retry started too far apart) is recorded there as a connection of its own, and the NAT maps its
    peer's packets toward us to another port (punch.peer.puncher); both entries live while the peers keep sending.
    Only a silence on both sides longer than the NAT's memory (its UDP timeout, then its garbage collector's delay:
    ``nat_udp_timeout``, PeerConfig) lets the NAT forget them, and a retry after that starts from clean NATs.
    Retrying sooner, forever, would keep them alive forever.
    """
    quiet = nat_udp_timeout + UPGRADE_QUIET
    wait = interval
    while True:
        yield wait
        wait = min(max(2 * wait, quiet), max(MAX_UPGRADE_WAIT, quiet))


class Session:
    """One peer's run (module docstring). It owns the session's socket, the dispatcher that routes its requests, the
    rendezvous client, the current puncher, the channel of texts and everything ``--json`` reports (:attr:`result`),
    and offers what the run does to them: swap the puncher (a rejoin, a retry from the relay), run over another
    socket (port prediction's, a move's), choose the path.

    Make it with :meth:`open` (binds the socket), then :meth:`run`; :meth:`close` in the end.
    """

    def __init__(
        self,
        config: PeerConfig,
        on_text: Callable[[str], None],
        endpoint: StunEndpoint,
        dispatcher: Dispatcher,
        keys: PeerKeys,
        carrier: Carrier,
        identity: Identity,
        offered: tuple[Address, ...] = (),  # candidates of the other IP family (punch.peer.dualstack)
    ) -> None:
        self._config = config
        self._target = config.target  # the other peer's ID (ANYONE until one we allow is introduced)
        self._on_text = on_text
        self._endpoint = endpoint  # the session's own socket
        self._dispatcher = dispatcher
        self._keys = keys
        self._carrier = carrier  # where the QUIC packets go (the path of the moment)
        self._identity = identity
        # every socket of the session signs and checks as the first, and hands QUIC to the carrier
        self._open_socket: SocketMaker = functools.partial(open_endpoint, keys=keys, others=carrier.datagram_received)
        self.services = Services()  # what the other peer may open on the connection (punch.tunnel)
        self._link: QuicLink | None = None
        # the link once establish() brought it up; LinkClosed if it never will (what waits: a forward's connections)
        self._established: asyncio.Future[QuicLink] = asyncio.get_running_loop().create_future()
        self._texts: Texts | None = None
        self._alive = asyncio.Event()  # the link's keepalives are acknowledged (punch.transport.liveness)
        self._dead = asyncio.Event()
        self._background: list[asyncio.Task[Any]] = []  # refreshing, the route trace, keeping the path
        self._closed = False
        self._timings = config.punch  # the punch's timings, with open_ttl as the route to the server has it
        self._local = endpoint.local_address  # the socket the session runs over now (``--json`` local)
        self._server_link = ServerLink()  # UDP, or a TCP or TLS connection that carries the server's address
        self._client = RendezvousClient(
            endpoint,
            config.server,
            config.peer_id,
            (*host_candidates(self._local, config.server), *offered),
            lease=config.lease,
            policy=config.rendezvous,
            identity=identity,
            credentials=keys.request,
            on_introduced=self._introduced,
            servers=config.servers,
        )
        dispatcher.add(self._client.on_request)
        self._portmap = PortMapped(config.portmap, endpoint, config.server, self._client)  # our router's mapped port
        self._sockets = contextlib.AsyncExitStack()  # port prediction's and a move's sockets, closed at the end
        self._finding = False  # between our request for the target and its introduction (the punch opens then)
        self._introduction: Introduction | None = None
        self._strategy: Strategy | None = None
        self._puncher: Puncher | None = None
        self._path: Path | None = None
        self._mapped: str | None = None
        self._punch_ms: float | None = None
        self._server_rtt_ms: float | None = None  # our round trip to the server as the introduction found it
        self._early: bool | None = None  # a plain punch: whether it checked early
        self._path_at: float | None = None
        self._upgraded = False
        self._move: str | None = None
        self._rejoins = 0
        self._error: str | None = None
        self._current_session = b""  # the latest session's ID: relayed packets go in it
        self._relay: tuple[Address, bytes] | None = None  # its relay and our ticket there, if not our own server
        self._keeping: asyncio.Task[None] | None = None
        self._trust = Trust(config.known_peers, config.pin, config.allow)
        self._path_watchers: list[Callable[[Path], None]] = []

    @classmethod
    async def open(
        cls, config: PeerConfig, on_text: Callable[[str], None], *, sock: socket.socket | None = None
    ) -> Session:
        """Bind ``config.local`` (OSError if it cannot), or take ``sock``: a bound UDP socket the caller made, which
        lets one process host many peers, each with a socket in its own network namespace (bench/peer_host.py); it
        is closed with the session. Port prediction and the TTL discovery open sockets of their own, in the calling
        thread's namespace: a host of peers in other namespaces turns them off (``predict.enabled``,
        ``discover_ttl``) and binds each socket to its address (a wildcard bind asks the calling thread's namespace
        for our address toward the server)."""
        keys = PeerKeys(RequestKey(config.group))
        dispatcher = Dispatcher()
        carrier = Carrier(config.peer_id, (config.server, *config.servers))
        dispatcher.add_indications(carrier.on_indication)
        endpoint = await open_endpoint(dispatcher, config.local, sock=sock, keys=keys, others=carrier.datagram_received)
        try:
            config = await with_nearest_server(config, endpoint)  # several servers: punch.peer.servers
        except PeerError:
            await endpoint.close()
            raise
        offered = await other_family_candidates(endpoint, config.server, config.servers)
        identity = config.identity or Identity.generate()
        return cls(config, on_text, endpoint, dispatcher, keys, carrier, identity, offered)

    async def close(self) -> None:
        """End the session: close QUIC (the other peer learns at once), stop keeping the path and the registration
        (a goodbye to the server), and close every socket; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._never_established("the session closed before it was established")
        if self._link is not None:
            await self._link.close(flush=self._config.linger)
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.services.close()
        with contextlib.suppress(PeerError):
            await self._client.unregister()
        await self._server_link.close()
        await self._portmap.close()
        await self._sockets.aclose()
        await self._endpoint.close()

    @property
    def result(self) -> PeerResult:
        """What ``--json`` prints: the run so far (a failure still reports what crossed)."""
        intro, texts, path = self._introduction, self._texts, self._path
        counters = self._endpoint.counters + self._carrier.counters + self._portmap.counters
        return PeerResult(
            id=self._config.peer_id,
            peer=self._target,
            path=None if path is None else path.kind,
            remote=None if path is None else format_address(path.remote),
            family=None if path is None else family_name(path.remote),
            punch_ms=self._punch_ms,
            path_at=self._path_at,
            server_rtt_ms=self._server_rtt_ms,
            received=[] if texts is None else list(texts.received),
            sent=[] if texts is None else list(texts.sent),
            role=None if intro is None else intro.role.name.lower(),
            session=None if intro is None else intro.session_id.hex(),
            local=format_address(self._local),
            mapped=self._mapped,
            upgraded=self._upgraded,
            move=self._move,
            early=self._early,
            rejoins=self._rejoins,
            peer_key=self._trust.presented,
            error=self._error,
            dropped={reason: counters[reason] for reason in DROP_REASONS if counters[reason]},
            server_via=self._server_link.via,
            portmap=self._portmap.result,
        )

    @property
    def _punching(self) -> Puncher:
        assert self._puncher is not None, "a puncher is made when the introduction arrives"
        return self._puncher

    @property
    def link(self) -> QuicLink:
        """The QUIC connection to the other peer, once :meth:`establish` returned."""
        assert self._link is not None, "the link is up once the session is established"
        return self._link

    @property
    def path(self) -> Path | None:
        """The path the session's packets take now."""
        return self._path

    @property
    def server(self) -> Address:
        """The rendezvous server we are registered with now (another of ``config.servers`` after a failover)."""
        return self._client.server

    @property
    def config(self) -> PeerConfig:
        return self._config

    @property
    def peer(self) -> str:
        """The other peer's ID (``*`` while a session for anyone waits for one)."""
        return self._target

    @property
    def peer_key(self) -> str | None:
        """The fingerprint of the other peer's identity key, once its introduction was accepted."""
        return self._trust.presented

    @property
    def texts(self) -> Texts:
        """The texts to and from the other peer (punch.tunnel.texts), once :meth:`establish` returned."""
        assert self._texts is not None, "the texts are set up once the session is established"
        return self._texts

    def watch_path(self, watcher: Callable[[Path], None]) -> None:
        """Call ``watcher`` with the new path each time the session's packets take another one."""
        self._path_watchers.append(watcher)

    # -- the operations --------------------------------------------------------------------------------------

    def _swap_puncher(self, puncher: Puncher) -> None:
        """``puncher`` takes the current one's place: its checks are routed to it from now on."""
        self._dispatcher.replace(self._punching.on_request, puncher.on_request)
        self._puncher = puncher

    def _run_over(self, endpoint: StunEndpoint) -> None:
        """From now on the session (its checks, its packets, and what ``--json`` reports as ``local``) uses
        ``endpoint``."""
        self._punching.use(endpoint)
        route = self._carrier.route
        if isinstance(route, Direct):
            self._carrier.use(Direct(endpoint, route.remote))
        self._local = endpoint.local_address

    def _use_path(self, path: Path) -> None:
        """Carry the session's packets over ``path`` from now on (its socket, or the relay)."""
        self._path = path
        if path.kind == "relay":
            assert self._introduction is not None
            self._carrier.use(self._relay_route())
        else:
            self._carrier.use(Direct(path.local or self._punching.endpoint, path.remote))
        if self._link is not None:  # a PING over the new path at once: it counts as alive at its first answer
            self._link.check_path()
        for watcher in self._path_watchers:
            watcher(path)

    def _on_chosen(self, path: Path) -> None:
        """A path was chosen (in the handler of the datagram that chose it): if it runs over a socket of its own
        (port prediction's, a move's), the session does from now on."""
        if path.local is not None:
            self._run_over(path.local)

    # -- the run ---------------------------------------------------------------------------------------------

    async def establish(self) -> None:
        """Register, find the other peer, punch a path (or take the relay), and bring QUIC up over it; then keep the
        path in the background (keepalives, a rejoin when it breaks, the relay's retries of a direct path). PeerError
        if any of it fails (also in the result's ``error``)."""
        try:
            await self._establish()
        except PeerError as error:
            self._error = str(error)
            self._never_established(f"no session with {self.peer}: {error}")
            raise
        except BaseException:
            self._never_established("the session was given up before it was established")
            raise
        assert self._link is not None
        self._established.set_result(self._link)

    def _never_established(self, why: str) -> None:
        if not self._established.done():
            self._established.set_exception(LinkClosed(why))
            self._established.exception()  # retrieved: nobody may be waiting

    async def established_link(self) -> QuicLink:
        """The QUIC link, once :meth:`establish` has brought it up (until then, this waits); LinkClosed if it never
        will (the punch failed, or the session closed first)."""
        return await asyncio.shield(self._established)

    async def _establish(self) -> None:
        config, client = self._config, self._client
        log.info("socket bound to %s", format_address(self._local))
        self._portmap.start()  # (asked meanwhile; where our UDP does not get out, Plan.RELAY_FIRST wins over its port)
        self._server_link = await reach_server(config.reach, config.server, self._endpoint, relay=config.relay)
        if self._server_link.over_stream:  # our first registration says our UDP does not reach the server
            await client.announce_mapping(Mapping.UDP_BLOCKED)
            mapped = client.mapped
            assert mapped is not None
        else:
            mapped = await client.register()
        loop = asyncio.get_running_loop()
        hops_found = loop.create_task(self._discover_open_ttl())
        self._background.append(hops_found)
        if not self._server_link.over_stream:  # (over TCP or TLS: UDP_BLOCKED, said above)
            await client.announce_mapping(
                await our_mapping(config.predict, self._endpoint, config.server, config.rendezvous)
            )
        self._mapped = format_address(mapped)
        self._background.append(loop.create_task(client.keep_registered()))
        path = await self._find_path(hops_found)
        await self._bring_up()
        keeping = self._keep_relay() if path.kind == "relay" else self._keep_path(path)
        self._keeping = loop.create_task(keeping)
        self._background.append(self._keeping)

    async def watched(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` while the session lives: PeerError as soon as the session is lost (the other peer gone for
        good, the relay refusing us), with why; a PeerError of ``work``'s, or that one, is the result's ``error``."""
        try:
            await _first_of(work, self.lost())
        except PeerError as error:
            self._error = str(error)
            raise

    async def lost(self) -> None:
        """Returns never; raises PeerError once keeping the path failed, or the relay refuses our session."""
        keeping = self._keeping
        assert keeping is not None, "the path is kept once the session is established"
        notice = asyncio.ensure_future(asyncio.shield(self._client.notice))
        link_ended = asyncio.ensure_future(self._server_link.ended())  # (over TCP or TLS)
        try:
            await asyncio.wait((keeping, notice, link_ended), return_when=asyncio.FIRST_COMPLETED)
            if not (keeping.done() or notice.done()):  # the connection to the server ended (or we closed it)
                if not link_ended.cancelled():
                    why = f"the {self._server_link.via.upper()} connection to the server ended ({link_ended.result()})"
                    if self._path is None or self._path.kind == "relay":
                        raise PeerError(f"{why}: the relay through it is gone")
                    log.warning("%s: the %s path goes on without the server", why, self._path.kind)
                await asyncio.wait((keeping, notice), return_when=asyncio.FIRST_COMPLETED)
        finally:
            notice.cancel()
            link_ended.cancel()
        if self._client.notice.done():
            raise PeerError(f"the relay at {format_address(self._relay_address())} refused our session: "
                            f"{self._client.notice.result()}")  # fmt: skip
        keeping.result()  # its PeerError
        await asyncio.Event().wait()  # (it ended quietly: the other peer closed; wait to be cancelled)

    async def _bring_up(self) -> None:
        """QUIC over the path: the prober is the client, the opener the server; both check the other's identity key,
        the one the introduction carried (and we accepted), in the TLS handshake (punch.transport)."""
        config, introduction = self._config, self._introduction
        assert introduction is not None
        dead_after = config.keepalive + DEAD_AFTER
        link = QuicLink(
            self._identity,
            introduction.public_key,
            self._carrier.send,
            is_client=introduction.role is Role.PROBER,
            config=LinkConfig(
                keepalive=config.keepalive,
                dead_after=dead_after,
                idle_timeout=dead_after + max(config.rejoin, config.punch.timeout) + IDLE_SLACK,
                keylog=config.keylog,
                qlog=config.qlog,
            ),
            on_stream=self.services.on_stream,
            on_datagram=self.services.on_datagram,
            on_path=self._path_changed,
        )
        self._link = link
        self._texts = Texts(link, introduction.peer_id, self._on_text)
        self.services.serve("texts", self._texts.serve)
        link.start()  # first: the packets the carrier kept (the other peer's first Initial) go to a running link
        self._carrier.deliver_to(link.datagram_received)
        try:
            async with asyncio.timeout(config.punch.timeout):
                await link.wait_connected()
        except TimeoutError:
            raise PeerError(
                f"QUIC did not come up with {introduction.peer_id} within {config.punch.timeout:g} s over the "
                f"{self._path.kind if self._path else 'chosen'} path"
            ) from None
        except LinkError as error:
            raise PeerError(f"QUIC with {introduction.peer_id}: {error}") from None
        self._alive.set()
        # a client is up once it checked the server's key; the server checks ours in our Finished, which has left
        log.info("QUIC is up with %s (%s)", introduction.peer_id,
                 "we are its client, its key checked, ours on its way" if link.is_client
                 else "we are its server, keys checked both ways")  # fmt: skip

    def _path_changed(self, alive: bool) -> None:
        (self._alive if alive else self._dead).set()
        (self._dead if alive else self._alive).clear()
        if not alive:
            log.info("no keepalive of ours answered by %s for %g s", self.peer, self._config.keepalive + DEAD_AFTER)

    async def _discover_open_ttl(self) -> PunchTimings:
        """The punch timings with ``open_ttl`` passing all our own NATs (punch.peer.hops.opening_timings)."""
        config = self._config
        discover = config.discover_ttl and not self._server_link.over_stream  # (no UDP gets to the server)
        return await hops.opening_timings(config.punch, discover, config.server, self._local[0], self._client)

    async def _find_path(self, hops_found: asyncio.Task[PunchTimings]) -> Path:
        # The TTL for our low-TTL probes, before we ask: the Introduce may come at once, and with early checks the other
        # peer counts on our probe leaving the moment it arrives (punch.peer.strategy.early_delay): so the puncher is
        # made, and an early punch's probes are sent, in the Introduce's own handler (:meth:`_introduced`). The
        # channel is routed there too: on the relay the other peer sends its first text the moment its own Introduce
        # arrives, and it may reach us before this coroutine runs again (it used to be dropped, and came again only
        # after the channel's first retransmission timeout, 200 ms later).
        config, client = self._config, self._client
        self._timings = await hops_found
        await self._portmap.offer()  # our router's mapped port, registered before we ask
        self._finding = True
        try:
            async with asyncio.timeout(config.timeout):
                introduction = await client.introduced_to(self._target)
                while self._trust.refused is not None and config.target == ANYONE:
                    log.info("%s; waiting for another peer", self._trust.refused)
                    self._trust.forgive()
                    client.expect_another()
                    introduction = await client.introduced_to(ANYONE)
        except TimeoutError:
            if config.target == ANYONE:
                raise PeerError(f"no peer we allow asked for us within {config.timeout:g} s") from None
            raise PeerError(
                f"{config.target} did not ask for us within {config.timeout:g} s; "
                f"start it with `punch peer --id {config.target} --to {config.peer_id}`"
            ) from None
        finally:
            self._finding = False
        if self._trust.refused is not None:
            raise PeerError(self._trust.refused)
        if introduction.peer_id != self._target:
            raise PeerError(f"the server introduced {introduction.peer_id}, but we asked for {self._target}")
        # the known-peers file is written (and synced) while we punch, not before: a first contact costs the punch
        # nothing for it; an error writing it is the session's all the same
        remembering = asyncio.ensure_future(self._trust.remember(introduction.peer_id))
        try:
            path = await self._path_to(introduction)
        except BaseException:
            await asyncio.gather(remembering, return_exceptions=True)
            raise
        await remembering
        return path

    async def _path_to(self, introduction: Introduction) -> Path:
        """The path to ``introduction``'s peer: punched (or the relay), taken, and logged."""
        config, client = self._config, self._client
        loop = asyncio.get_running_loop()
        started = loop.time() if client.introduced_at is None else client.introduced_at
        if self._puncher is None:  # (the Introduce came before we asked: in its handler we were not finding yet)
            self._open_punch(introduction)
            key = self._client.session_key(introduction)
            if key is None:
                raise PeerError(f"{introduction.peer_id}'s key share is not signed by its key: refused")
            self._key_session(introduction.session_id, key)
            self._relay_for(introduction)
        strategy, puncher = self._strategy, self._punching
        assert strategy is not None
        self._server_rtt_ms = None if client.rtt is None else round(client.rtt * 1000, 2)
        self._early = puncher.early if strategy.plan is Plan.PUNCH else None
        if puncher.same_nat:
            preferred = ", so a LAN path is preferred" if puncher.lan_first else ""
            log.info("%s has our public address: we are behind the same NAT%s", self._target, preferred)
        if strategy.relay_at_once:
            why = f"no direct path to {introduction.peer_id}: both NATs map endpoint-dependently, no port to predict"
            if strategy.plan is Plan.RELAY_FIRST:
                why = f"no punch with {introduction.peer_id} now: UDP does not reach the server from one of us"
            if not config.relay:
                raise PeerError(f"{why}; the relay is off (--no-relay)")
            log.info("%s; using the relay through the server", why)
            path = Path(self._relay_address(), "relay")
        else:
            path = await self._punch(introduction, strategy)
        self._punch_ms = round((loop.time() - started) * 1000, 1)
        self._path_at = time.time()
        self._use_path(path)
        log.info(
            "using the %s path to %s via %s (%.1f ms after the introduction)",
            path.kind,
            introduction.peer_id,
            format_address(path.remote),
            self._punch_ms,
        )
        return path

    def _introduced(self, introduction: Introduction) -> None:
        """The Introduce handler's part (punch.peer.client): the other's key is judged; the first introduction to
        our target opens the punch; the session's key is added (after the punch's first probes, which die before
        the other NAT, so that deriving it costs the punch nothing)."""
        if not self._trust.accepts(introduction):
            return
        if self._target == ANYONE:
            self._target = introduction.peer_id
        first = self._finding and self._puncher is None and introduction.peer_id == self._target
        if first:
            self._open_punch(introduction)
        key = self._client.session_key(introduction)
        if key is None:
            self._trust.refuse(
                f"{introduction.peer_id}'s key share is not signed by its key {self._trust.presented}, or not for us: "
                "refused (a forged or replayed introduction)"
            )
            if self._puncher is not None:
                self._puncher.silence()
            return
        self._key_session(introduction.session_id, key)
        self._relay_for(introduction)

    def _key_session(self, session_id: bytes, key: bytes) -> None:
        """From now on the session's messages are signed and checked with ``key``, and its relayed QUIC packets are
        ours: it is the current session (a rejoin's replaces the first one's on the relay)."""
        self._keys.add(session_id, key)
        self._log_key(session_id, key)
        self._carrier.take(session_id)
        self._current_session = session_id

    def _relay_for(self, introduction: Introduction) -> None:
        """The relay of the session ``introduction`` opens: the server it names, with our ticket there, when the other
        peer is registered at another server (punch.rendezvous.tickets); else our own."""
        if introduction.relay is None:
            self._relay = None
            return
        self._relay = (introduction.relay, introduction.relay_ticket)
        self._carrier.take_relay(introduction.relay)
        if self._strategy is not None and self._strategy.plan is Plan.RELAY and self._config.relay:
            # No punch to wait for: our way to the relay opens now, before the other peer's first packet reaches it
            self._carrier.use(self._relay_route())

    def _relay_route(self) -> Relayed:
        """The route of our relayed packets in the current session."""
        relay, ticket = self._relay or (self._client.server, b"")
        return Relayed(self._endpoint, relay, self._current_session, ticket)

    def _relay_address(self) -> Address:
        """Where our relayed packets go in the current session."""
        return self._relay[0] if self._relay is not None else self._client.server

    def _log_key(self, session_id: bytes, key: bytes) -> None:
        """With ``--keylog FILE``: a line for the session's key, in the NSS key log format that also holds QUIC's
        secrets (a label, the session, the secret), so that a capture can be read with it (docs/security.md)."""
        if self._config.keylog is None:
            return
        with self._config.keylog.open("a", encoding="ascii") as out:
            out.write(f"PUNCH_SESSION_KEY {session_id.hex()} {key.hex()}\n")

    def _open_punch(self, introduction: Introduction) -> None:
        """What a peer does the moment its Introduce arrives: decide the strategy, make the puncher (its checks
        routed to it from now on) and, for early checks, send the low-TTL probes that open our NAT (the other peer
        checks a margin of about a millisecond after its own Introduce, counting on them having left)."""
        config = self._config
        strategy = strategy_for(introduction, self._client, self._timings, self._config.predict, self._endpoint)
        early_at = None
        if strategy.early_delay is not None and self._client.introduced_at is not None:
            early_at = self._client.introduced_at + strategy.early_delay
        puncher = Puncher(
            self._endpoint,
            config.peer_id,
            introduction,
            self._timings,
            strategy=strategy,
            early_at=early_at,
            on_chosen=self._on_chosen,
            on_heard=self._carrier.heard,
        )
        self._introduction, self._strategy, self._puncher = introduction, strategy, puncher
        self._dispatcher.add(puncher.on_request)
        if strategy.opens_at_introduction:
            puncher.open_mappings()

    async def _punch(self, introduction: Introduction, strategy: Strategy) -> Path:
        """Open (opener) or wait for Go (prober), with port prediction if planned (peer-reflexive first); then check
        until a path is chosen (moving to a fresh socket after a refused check), or fall back to the relay."""
        config, client, puncher = self._config, self._client, self._punching
        predicting: ReflexiveFirst | None = None
        if strategy.plan in (Plan.OPEN, Plan.SPRAY):
            predicting = ReflexiveFirst(
                puncher,
                introduction,
                strategy,
                client,
                config.predict,
                endpoint=self._endpoint,
                open_socket=self._open_socket,
                session=self._dispatcher,
                sockets=self._sockets,
                open_ttl=self._timings.open_ttl,
                go_within=self._timings.timeout,
            )
            await predicting.start()
        # With early checks both sides opened their mappings when the Introduce came (_open_punch); nobody waits
        # for Ready and Go.
        elif not puncher.early and introduction.role is Role.OPENER:
            puncher.open_mappings()
            await client.ready(introduction.session_id)
        elif not puncher.early:
            try:
                async with asyncio.timeout(self._timings.timeout):
                    await _go_or_moved(client)
            except TimeoutError:
                raise PeerError(f"the server never said Go for {introduction.peer_id}; is it still running?") from None
        path: Path | None = None
        try:
            # Behind one NAT with a LAN candidate on our link (Ready/Go: no race) that NAT refuses a check to its public
            # address if it does not hairpin, which no move mends, while the LAN path works: no move there
            # (punch.peer.moving; Strategy.may_move).
            if strategy.may_move:
                moves = Moves(
                    puncher,
                    introduction,
                    client,
                    self._dispatcher,
                    self._open_socket,
                    self._sockets,
                    self._timings.timeout,
                )
                try:
                    path = await moves.run()
                finally:
                    self._move = moves.outcome
            else:
                path = await puncher.run()
        except PeerError as error:
            why = None if predicting is None else predicting.failure()
            failure = error
            if why is not None:
                timeout = self._timings.timeout
                failure = PeerError(f"no direct path to {introduction.peer_id} within {timeout:g} s: {why}")
            path = self._relay_instead(failure, error)
        finally:
            if predicting is not None:
                await predicting.settle(path)
        return path

    def _keep_relay(self) -> Coroutine[Any, Any, None]:
        """Keeping a relayed path: retrying a direct path from it (:meth:`_upgrade`), unless retries are off or hopeless
        (both NATs map endpoint-dependently), then staying on it (:meth:`_stay_on_the_relay`)."""
        hopeless = self._strategy is not None and self._strategy.hopeless
        return self._upgrade() if self._config.upgrade_interval > 0 and not hopeless else self._stay_on_the_relay()

    async def _upgrade(self) -> None:
        """While the session runs over the relay, retry a direct path after each of :func:`upgrade_waits`; once one is
        proven, carry the packets over it (and back over the relay, starting the waits over, if it stops answering
        keepalives). Runs until cancelled. The retries open our mapping with the TTL that passes our own NATs. A relay
        that stops carrying our packets meanwhile is moved (:meth:`_move_relay`)."""
        config = self._config
        open_ttl = self._timings.open_ttl
        while True:
            waits = upgrade_waits(config.upgrade_interval, config.nat_udp_timeout)
            wait = next(waits)
            while True:
                lead = min(UPGRADE_LEAD, wait / 2)
                await self._on_the_relay_for(wait - lead)
                self._swap_puncher(self._punching.again(min(self._timings.timeout, 5.0), open_ttl))
                try:
                    path = await self._punching.retry(lead)
                    break
                except PeerError as error:
                    wait = next(waits)
                    log.info("%s; staying on the relay, next try in %g s", error, wait)
            self._upgraded = True
            relay = self._path
            assert relay is not None
            self._use_path(path)
            log.info("upgraded from the relay to the %s path via %s", path.kind, format_address(path.remote))
            self._dead.clear()
            await self._dead.wait()
            self._use_path(relay)
            log.info("lost contact with %s on the direct path; back to the relay", self.peer)
            try:
                async with asyncio.timeout(config.keepalive + DEAD_AFTER):
                    await self._alive.wait()
            except TimeoutError:
                await self._move_relay()  # the relay does not carry our packets either

    async def _stay_on_the_relay(self) -> None:
        """On the relay for good (both NATs map endpoint-dependently): moved when it stops carrying our packets
        (:meth:`_move_relay`; PeerError once the other peer is lost); ends quietly once the other peer closed."""
        while True:
            await self._dead.wait()
            if self._link is not None and self._link.close_reason is not None:
                return  # the other peer closed the connection: nothing more to keep
            await self._move_relay()

    async def _on_the_relay_for(self, seconds: float) -> None:
        """Stay on the relay ``seconds``, moving it (:meth:`_move_relay`) whenever it stops carrying our packets."""
        end = asyncio.get_running_loop().time() + seconds
        while True:
            try:
                async with asyncio.timeout_at(end):
                    await self._dead.wait()
            except TimeoutError:
                return
            await self._move_relay()

    async def _move_relay(self) -> None:
        """Our keepalives through the relay go unanswered: its server died (or forgot our session), or the other peer
        is gone. Register and ask for the other peer again (at another of our servers if ours is silent,
        punch.peer.client); the new session's relay, the server that makes it, carries the connection on. PeerError
        if the other peer does not come back within ``PeerConfig.rejoin``."""
        error = self._lost_contact()
        if self._config.rejoin <= 0:
            raise PeerError(error)
        log.info("%s; asking the servers for %s again, for a relay that answers", error, self.peer)
        path = await self._come_back(error, self._relay_again())
        log.info("back on the relay to %s via %s", self.peer, format_address(path.remote))

    async def _relay_again(self) -> Path:
        """Register and ask for the other peer again; the new session's relay (its puncher waits, for the retries of a
        direct path)."""
        self._take_rejoin(await self._client.rejoin(self._target))
        return Path(self._relay_address(), "relay")

    def _lost_contact(self) -> str:
        remote = format_address(self._path.remote) if self._path else "?"
        seconds = self._config.keepalive + DEAD_AFTER
        return f"lost contact with {self.peer}: no answer to keepalives at {remote} for {seconds:g} s"

    async def _keep_path(self, path: Path) -> None:
        """Keep the direct path: QUIC's keepalives check it; when none is answered for a while, find the other peer
        again through the server and punch a new path from the session's own socket, which QUIC then goes on over.
        Runs until cancelled, or ends quietly once the other peer closed; PeerError once the other peer is lost.

        A path over a socket of its own is sought again from the session's socket. After a move (punch.peer.moving):
        the NAT whose entries made us move changed (a new address flushes them), or it forgot them, or they ran out.
        After port prediction (its NAT forgot the mapping between keepalives, or gave its address up): a rejoin does
        not predict, so a symmetric NAT is not punched again, and the session goes on over the relay, whose retries
        of a direct path find one if the NATs allow it then."""
        config = self._config
        while True:
            await self._dead.wait()
            if self._link is not None and self._link.close_reason is not None:
                return  # the other peer closed the connection: nothing more to keep
            error = self._lost_contact()
            if config.rejoin <= 0:
                raise PeerError(error)
            log.info("%s; asking the server for %s again", error, self.peer)
            if path.local is not None:  # the new path starts from the session's socket
                socket = "one of port prediction's sockets" if path.kind == "predicted" else "our fresh socket"
                log.info("the path ran over %s: punching the new one from our session's socket", socket)
                self._run_over(self._endpoint)
            path = await self._come_back(error, self._rejoin())
            if path.kind == "relay":  # no direct path yet (a NAT still holds entries of the old one): retried from it
                log.info("back on the relay to %s; a direct path is tried again from it", self.peer)
                await self._keep_relay()
                return
            log.info("back on a %s path to %s via %s", path.kind, self.peer, format_address(path.remote))

    async def _come_back(self, error: str, finding: Coroutine[Any, Any, Path]) -> Path:
        """The path ``finding`` gives (the other peer found again through the servers), taken, once QUIC's keepalives
        are answered over it: within ``PeerConfig.rejoin``, else PeerError with ``error`` and why."""
        rejoin = self._config.rejoin
        try:
            async with asyncio.timeout(rejoin):
                path = await finding
                self._use_path(path)
                await self._alive.wait()
        except (TimeoutError, PeerError) as why:
            detail = f"it did not come back within {rejoin:g} s" if isinstance(why, TimeoutError) else why
            raise PeerError(f"{error}; {detail}") from None
        self._rejoins += 1
        return path

    async def _rejoin(self) -> Path:
        """Register and ask for the other peer again; punch the new session's path (no port prediction), through a
        port a router maps for one of us where there is one, as the first punch did (Plan.MAPPED: at once, no
        Ready/Go); the relay if no direct path is found."""
        client = self._client
        introduction = await client.rejoin(self._target)
        puncher, mapped = self._take_rejoin(introduction)
        if not mapped and introduction.role is Role.OPENER:  # a plain punch: Ready/Go
            puncher.open_mappings()
            await client.ready(introduction.session_id)
        elif not mapped:
            await client.go.wait()
        try:
            return await puncher.run()
        except PeerError as error:
            # As the first punch does. After a NAT's new address, the other NAT may hold entries of the old path that
            # make it map our checks to other ports (no firewall drops what the other peer sent on to the old path:
            # punch.peer.moving); they run out, and the relay's retries of a direct path find one then.
            return self._relay_instead(error, error)

    def _relay_instead(self, failure: PeerError, error: PeerError) -> Path:
        """The relay's path where a punch failed with ``error`` (reported as ``failure``); ``failure`` raised instead
        if the relay is off or the other peer left (nobody to relay to)."""
        if not self._config.relay or isinstance(error, PeerGone):
            raise failure from None
        log.info("%s; falling back to the relay through the server", failure)
        return Path(self._relay_address(), "relay")

    def _take_rejoin(self, introduction: Introduction) -> tuple[Puncher, bool]:
        """The puncher of a rejoin's session, in the old one's place, and whether a router maps a port for one of us;
        PeerError if its introduction was refused."""
        if self._trust.refused is not None or introduction.session_id not in self._keys:
            raise PeerError(
                self._trust.refused or f"{introduction.peer_id}'s key share is not signed by its key: refused"
            )
        same_nat, lan_on_link = behind_one_nat(introduction, self._client.mapped, self._endpoint)
        ours, theirs = self._client.offered is not None, bool(mapped_candidates(introduction.candidates))
        mapped = ours or theirs
        puncher = Puncher(
            self._endpoint,
            self._config.peer_id,
            introduction,
            self._timings,
            strategy=mapped_strategy(same_nat, lan_on_link, ours, theirs, introduction.role)
            if mapped
            else Strategy(same_nat=same_nat, lan_on_link=lan_on_link),
            early_at=asyncio.get_running_loop().time() if mapped else None,  # a mapped port: checked at once
            on_heard=self._carrier.heard,
        )
        self._swap_puncher(puncher)
        return puncher, mapped


async def _first_of(*coroutines: Coroutine[Any, Any, None]) -> None:
    """Run the coroutines until the first one ends; re-raise its error; cancel the others."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        task.result()


async def _go_or_moved(client: RendezvousClient) -> None:
    """The prober waits for the server's Go, or for a Go saying the opener moved, or for Move (punch.peer.moving)."""
    go = asyncio.ensure_future(client.go.wait())
    try:
        await asyncio.wait((go, client.moved, client.move), return_when=asyncio.FIRST_COMPLETED)
    finally:
        go.cancel()
        await asyncio.gather(go, return_exceptions=True)
