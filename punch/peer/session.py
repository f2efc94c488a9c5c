"""One peer's whole run: register (and measure our NAT's mapping), ask, get introduced, punch (predicting ports
when one NAT maps endpoint-dependently, punch.peer.predict), talk, close together.

A direct path that stops answering keepalives (the other peer's NAT got a new public address, or forgot its
mappings and now maps it elsewhere) is sought again: both peers register again, so the server learns where their
NATs map them now, ask for each other again, are introduced in a new session and punch a new path; the texts go on
over it in their first session. A peer that does not come back within ``PeerConfig.rejoin`` seconds is lost.

On the relay, a direct path is tried again now and then (:func:`upgrade_waits`), and taken once proven.

Who the other peer is: its Introduce carries its identity key, which must be the one we pinned (``PeerConfig.pin``)
or, without a pin, the one we knew it by (punch.identity.known_peers: trust on first use). A key we do not accept
ends the run before anything of that session is taken: its key is never added, so nothing of it is even checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any

from punch.errors import PeerError, PeerGone
from punch.identity.fingerprint import fingerprint
from punch.identity.known_peers import judge
from punch.peer import hops, routes, sealing
from punch.peer.channel import Channel
from punch.peer.client import RendezvousClient
from punch.peer.config import DROP_REASONS, KEEPALIVE_POLICY, PeerConfig, PeerResult
from punch.peer.dispatch import Dispatcher
from punch.peer.keys import PeerKeys, RequestKey
from punch.peer.moving import Moves
from punch.peer.predict import PortOpener, Sprayer, choose_plan, our_mapping
from punch.peer.puncher import Path, Puncher, PunchTimings
from punch.peer.servers import with_nearest_server
from punch.peer.strategy import NotEarly, Plan, Situation, Strategy, decide
from punch.stun.protocol import StunEndpoint, format_address, host_candidates, open_endpoint
from punch.stun.wire import Introduction, Role

# On the relay (upgrade_waits): a retry's low-TTL probes leave this long (at most half the wait) before the prober's
# checks, so retries whose timers are up to this far apart still open the opener's NAT before a check arrives
# (Puncher.retry); after a failed retry the peers keep quiet toward each other this much longer than the NATs' UDP
# timeout (twice the lead: the other's retry may start that much later; and a second of slack); the waits double up
# to MAX_UPGRADE_WAIT.
UPGRADE_LEAD = 5.0
UPGRADE_QUIET = 2 * UPGRADE_LEAD + 1.0
MAX_UPGRADE_WAIT = 300.0

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
    ) -> None:
        self._config = config
        self._on_text = on_text
        self._endpoint = endpoint  # the session's own socket
        self._dispatcher = dispatcher
        self._keys = keys
        self._timings = config.punch  # the punch's timings, with open_ttl as the route to the server has it
        self._local = endpoint.local_address  # the socket the session runs over now (``--json`` local)
        self._client = RendezvousClient(
            endpoint,
            config.server,
            config.peer_id,
            host_candidates(self._local, config.server),
            lease=config.lease,
            policy=config.rendezvous,
            identity=config.identity,
            credentials=keys.request,
            on_introduced=self._introduced,
            servers=config.servers,
        )
        dispatcher.add(self._client.on_request)
        self._sockets = contextlib.AsyncExitStack()  # port prediction's and a move's sockets, closed at the end
        self._finding = False  # between our request for the target and its introduction (the punch opens then)
        self._introduction: Introduction | None = None
        self._strategy: Strategy | None = None
        self._puncher: Puncher | None = None
        self._channel: Channel | None = None
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
        self._met: dict[str, str] = {}  # peer ID -> the fingerprint of the key we accepted it with
        self._refused: str | None = None  # why we refused the other peer's key
        self._peer_key: str | None = None

    @classmethod
    async def open(
        cls, config: PeerConfig, on_text: Callable[[str], None], *, sock: socket.socket | None = None
    ) -> Session:
        """Bind ``config.bind`` (OSError if it cannot), or take ``sock``: a bound UDP socket the caller made, which
        lets one process host many peers, each with a socket in its own network namespace (bench/peer_host.py); it
        is closed with the session. Port prediction and the TTL discovery open sockets of their own, in the calling
        thread's namespace: a host of peers in other namespaces turns them off (``predict.enabled``,
        ``discover_ttl``) and binds each socket to its address (a wildcard bind asks the calling thread's namespace
        for our address toward the server)."""
        sealing.warm_up()
        keys = PeerKeys(RequestKey(config.group))
        dispatcher = Dispatcher()
        endpoint = await open_endpoint(dispatcher, config.bind, sock=sock, keys=keys)
        try:
            config = await with_nearest_server(config, endpoint)  # several servers: punch.peer.servers
        except PeerError:
            await endpoint.close()
            raise
        return cls(config, on_text, endpoint, dispatcher, keys)

    async def close(self) -> None:
        """Close the session's socket; idempotent."""
        await self._endpoint.close()

    @property
    def result(self) -> PeerResult:
        """What ``--json`` prints: the run so far (a failure still reports what crossed)."""
        intro, channel, path = self._introduction, self._channel, self._path
        counters = self._endpoint.counters
        return PeerResult(
            id=self._config.peer_id,
            peer=self._config.target,
            path=None if path is None else path.kind,
            remote=None if path is None else format_address(path.remote),
            punch_ms=self._punch_ms,
            path_at=self._path_at,
            server_rtt_ms=self._server_rtt_ms,
            received=[] if channel is None else list(channel.received),
            sent=[] if channel is None else list(channel.sent),
            role=None if intro is None else intro.role.name.lower(),
            session=None if intro is None else intro.session_id.hex(),
            local=format_address(self._local),
            mapped=self._mapped,
            upgraded=self._upgraded,
            move=self._move,
            early=self._early,
            rejoins=self._rejoins,
            peer_key=self._peer_key,
            error=self._error,
            dropped={reason: counters[reason] for reason in DROP_REASONS if counters[reason]},
        )

    @property
    def _punching(self) -> Puncher:
        assert self._puncher is not None, "a puncher is made when the introduction arrives"
        return self._puncher

    @property
    def _talking(self) -> Channel:
        assert self._channel is not None, "the channel is made when the introduction arrives"
        return self._channel

    # -- the operations --------------------------------------------------------------------------------------

    def _swap_puncher(self, puncher: Puncher) -> None:
        """``puncher`` takes the current one's place: its checks are routed to it from now on."""
        self._dispatcher.replace(self._punching.on_request, puncher.on_request)
        self._puncher = puncher

    def _run_over(self, endpoint: StunEndpoint) -> None:
        """From now on the session (its checks, its texts, and what ``--json`` reports as ``local``) uses
        ``endpoint``."""
        self._punching.use(endpoint)
        self._talking.use(endpoint)
        self._local = endpoint.local_address

    def _on_chosen(self, path: Path) -> None:
        """A path was chosen (in the handler of the datagram that chose it): if it runs over a socket of its own
        (port prediction's, a move's), the session does from now on."""
        if path.local is not None:
            self._run_over(path.local)

    # -- the run ---------------------------------------------------------------------------------------------

    async def run(self, texts: AsyncIterator[str]) -> PeerResult:
        """Run to the end and return :attr:`result`; PeerError (also in the result's ``error``) on failure."""
        try:
            await self._run(texts)
        except PeerError as error:
            self._error = str(error)
            raise
        return self.result

    async def _run(self, texts: AsyncIterator[str]) -> None:
        config, client = self._config, self._client
        log.info("socket bound to %s", format_address(self._local))
        mapped = await client.register()
        hops_found = asyncio.get_running_loop().create_task(self._discover_open_ttl())
        await client.announce_mapping(
            await our_mapping(config.predict, self._endpoint, config.server, config.rendezvous)
        )
        self._mapped = format_address(mapped)
        refresher = asyncio.get_running_loop().create_task(client.keep_registered())
        try:
            async with self._sockets:
                path = await self._find_path(hops_found)
                talking = self._talk(texts)
                hopeless = self._strategy is not None and self._strategy.hopeless
                if path.kind == "relay" and config.upgrade_interval > 0 and not hopeless:
                    await _first_of(talking, self._upgrade())
                elif path.kind == "relay":
                    await talking  # the relay answers for the server; keepalives would prove nothing about the peer
                else:
                    await _first_of(talking, self._keep_path(path))
        finally:
            for task in (refresher, hops_found):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await client.unregister()

    async def _discover_open_ttl(self) -> PunchTimings:
        """The punch timings with ``open_ttl`` set to the TTL that passes all our own NATs (punch.peer.hops). A probe
        that reached the server is also a sample of our round trip to it, which we tell the server in Connect (the
        first, our registration's, may include the start-up of a fresh process). Without a trace, a Binding request
        takes that second sample, where early checks may use it."""
        config, client = self._config, self._client
        timings = config.punch
        if not config.discover_ttl or timings.open_ttl <= 0:
            if timings.early and timings.open_ttl > 0:
                await client.sample_rtt()
            return timings
        found = await hops.trace(config.server, source_ip=self._local[0])
        for hop in found:
            if hop.rtt is not None:
                client.observe_rtt(hop.rtt)
        ttl, why = hops.open_ttl(found), "past our own NATs"
        if ttl is None and (ttl := hops.past_private(found)) is not None:
            why = f"past our own NATs, to TTL {ttl}'s silent router"
        route = ", ".join(hop.describe() for hop in sorted(found, key=lambda h: h.ttl)) or "no answers"
        if ttl is None or ttl <= timings.open_ttl:  # only ever raise it: a LAN may use public addresses
            log.info("route to the server: %s; opening probes keep TTL %d", route, timings.open_ttl)
            return timings
        log.info("route to the server: %s; opening probes get TTL %d (%s)", route, ttl, why)
        return dataclasses.replace(timings, open_ttl=ttl)

    async def _find_path(self, hops_found: asyncio.Task[PunchTimings]) -> Path:
        # The TTL for our low-TTL probes, before we ask: the Introduce may come at once, and with early checks the other
        # peer counts on our probe leaving the moment it arrives (punch.peer.strategy.early_delay): so the puncher is
        # made, and an early punch's probes are sent, in the Introduce's own handler (:meth:`_introduced`). The
        # channel is routed there too: on the relay the other peer sends its first text the moment its own Introduce
        # arrives, and it may reach us before this coroutine runs again (it used to be dropped, and came again only
        # after the channel's first retransmission timeout, 200 ms later).
        config, client = self._config, self._client
        self._timings = await hops_found
        self._finding = True
        try:
            async with asyncio.timeout(config.timeout):
                introduction = await client.introduced_to(config.target)
        except TimeoutError:
            raise PeerError(
                f"{config.target} did not ask for us within {config.timeout:g} s; "
                f"start it with `punch peer --id {config.target} --to {config.peer_id}`"
            ) from None
        finally:
            self._finding = False
        if introduction.peer_id != config.target:
            raise PeerError(f"the server introduced {introduction.peer_id}, but we asked for {config.target}")
        if self._refused is not None:
            raise PeerError(self._refused)
        await self._remember(introduction.peer_id)
        loop = asyncio.get_running_loop()
        started = loop.time() if client.introduced_at is None else client.introduced_at
        if self._puncher is None:  # (the Introduce came before we asked: in its handler we were not finding yet)
            self._open_punch(introduction)
            key = self._client.session_key(introduction)
            if key is None:
                raise PeerError(f"{introduction.peer_id}'s key share is not signed by its key: refused")
            self._keys.add(introduction.session_id, key)
            self._log_key(introduction.session_id, key)
            self._open_channel(introduction, key)
        strategy, puncher = self._strategy, self._punching
        assert strategy is not None
        self._server_rtt_ms = None if client.rtt is None else round(client.rtt * 1000, 2)
        self._early = puncher.early if strategy.plan is Plan.PUNCH else None
        if puncher.same_nat:
            preferred = ", so a LAN path is preferred" if puncher.lan_first else ""
            log.info("%s has our public address: we are behind the same NAT%s", config.target, preferred)
        if strategy.plan is Plan.RELAY:
            why = f"no direct path to {introduction.peer_id}: both NATs map endpoint-dependently, no port to predict"
            if not config.relay:
                raise PeerError(f"{why}; the relay is off (--no-relay)")
            log.info("%s; using the relay through the server", why)
            path = Path(config.server, "relay")
        else:
            path = await self._punch(introduction, strategy)
        self._punch_ms = round((loop.time() - started) * 1000, 1)
        self._path_at = time.time()
        self._path = path
        self._talking.point_at(path.remote)
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
        if not self._trusts(introduction):
            return
        first = self._finding and self._puncher is None and introduction.peer_id == self._config.target
        if first:
            self._open_punch(introduction)
        key = self._client.session_key(introduction)
        if key is None:
            self._refused = (
                f"{introduction.peer_id}'s key share is not signed by its key {self._peer_key}, or not for us: "
                "refused (a forged or replayed introduction)"
            )
            log.warning("%s", self._refused)
            if self._puncher is not None:
                self._puncher.silence()
            return
        self._keys.add(introduction.session_id, key)
        self._log_key(introduction.session_id, key)
        if first:
            self._open_channel(introduction, key)

    def _log_key(self, session_id: bytes, key: bytes) -> None:
        """With ``--keylog FILE``: a line for the session's key, in the NSS key log format that also holds QUIC's
        secrets (a label, the session, the secret), so that a capture can be read with it (docs/security.md)."""
        if self._config.keylog is None:
            return
        with self._config.keylog.open("a", encoding="ascii") as out:
            out.write(f"PUNCH_SESSION_KEY {session_id.hex()} {key.hex()}\n")

    def _trusts(self, introduction: Introduction) -> bool:
        """Whether the other's key is the one we pinned, or knew it by (or we meet it for the first time); else the
        run ends with why (punch.identity.known_peers.judge)."""
        peer, presented = introduction.peer_id, fingerprint(introduction.public_key)
        known_peers = self._config.known_peers
        known = self._met.get(peer)
        found = known_peers.lookup(peer) if known_peers is not None and known is None else None
        where = known_peers.where(peer) if known_peers is not None else "met earlier in this run"
        verdict = judge(peer, presented, self._config.pin, known or (found[0] if found else None), where)
        self._peer_key = presented
        if not verdict.accepted:
            self._refused = verdict.reason
            log.warning("%s", verdict.reason)
            return False
        if peer not in self._met:
            log.info("%s", verdict.reason)
        self._met[peer] = presented
        return True

    async def _remember(self, peer: str) -> None:
        """Write the other's key into the known-peers file if it is new there (in a thread: the file is synced)."""
        known_peers, presented = self._config.known_peers, self._met.get(peer)
        if known_peers is None or presented is None:
            return
        found = known_peers.lookup(peer)
        if found is not None and found[0] == presented:
            return
        await asyncio.to_thread(known_peers.remember, peer, presented)
        log.info("remembered %s's key %s in %s", peer, presented, known_peers.path)

    def _open_punch(self, introduction: Introduction) -> None:
        """What a peer does the moment its Introduce arrives: decide the strategy, make the puncher (its checks
        routed to it from now on) and, for early checks, send the low-TTL probes that open our NAT (the other peer
        checks a margin of about a millisecond after its own Introduce, counting on them having left)."""
        config = self._config
        strategy = self._decide(introduction)
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
        )
        self._introduction, self._strategy, self._puncher = introduction, strategy, puncher
        self._dispatcher.add(puncher.on_request)
        if puncher.early:
            puncher.open_mappings()

    def _open_channel(self, introduction: Introduction, key: bytes) -> None:
        """The session's channel of texts, its requests routed after the puncher's."""
        channel = Channel(
            self._endpoint,
            self._config.peer_id,
            introduction.peer_id,
            introduction.session_id,
            key,
            self._on_text,
            relay=self._config.server,
            relay_key=self._keys.request,
        )
        self._channel = channel
        self._dispatcher.add(channel.on_request)

    def _decide(self, introduction: Introduction) -> Strategy:
        """The strategy (punch.peer.strategy.decide), from what we know now, with a log line for each decision."""
        client, timings = self._client, self._timings
        plan = choose_plan(self._config.predict, client.mapping, introduction)
        same_nat, lan_on_link = self._behind_one_nat(introduction)
        told, theirs = client.told_rtt_us, introduction.rtt_us
        strategy = decide(
            Situation(
                plan=plan,
                role=introduction.role,
                early_enabled=timings.early,
                open_ttl=timings.open_ttl,
                same_nat=same_nat,
                lan_on_link=lan_on_link,
                our_rtt=client.rtt,
                told_rtt=None if told is None else told / 1e6,
                their_rtt=None if theirs is None else theirs / 1e6,
                early_margin=timings.early_margin,
                early_floor=timings.early_floor,
            )
        )
        peer = introduction.peer_id
        if strategy.not_early is NotEarly.LAN:
            # On one LAN no race can be lost, but a LAN candidate on our link may be a look-alike: another home behind
            # the same carrier NAT with the same addresses (192.168.1.0/24 in both), whose router can lose the race,
            # and a peer that waits for a LAN candidate does not move (Strategy.may_move).
            log.info("%s's LAN candidate is on our link: Ready/Go, not early checks", peer)
        elif strategy.not_early is NotEarly.NEAR and told is not None and theirs is not None:
            log.info(
                "round trips to the server: ours %.2f ms, %s's %.2f ms: Ready/Go is as fast as early checks here",
                told / 1000,
                peer,
                theirs / 1000,
            )
        elif strategy.early_delay is not None and client.rtt is not None and theirs is not None:
            log.info(
                "round trips to the server: ours %.1f ms, %s's %.1f ms: both open our mappings now, and check after "
                "%.1f ms",
                client.rtt * 1000,
                peer,
                theirs / 1000,
                strategy.early_delay * 1000,
            )
        return strategy

    def _behind_one_nat(self, introduction: Introduction) -> tuple[bool, bool]:
        """Whether the other peer has our public address (both behind one NAT), and if so whether a LAN candidate of
        theirs may be on one of our links (punch.peer.routes), so that its path likely beats the NAT's hairpin and is
        worth a short wait."""
        mapped = self._client.mapped
        same_nat = mapped is not None and introduction.candidates[0][0] == mapped[0]
        lans = introduction.candidates[1:]
        if not same_nat or not lans:
            return same_nat, False
        table = routes.table_of(self._endpoint.fileno())
        if table is None or any(routes.on_link_in(table, host) is not False for host, _ in lans):
            return True, True
        log.info(
            "none of %s's LAN candidates (%s) is on a link of ours: our NAT's hairpin is nominated at once, "
            "no LAN wait",
            introduction.peer_id,
            ", ".join(format_address(c) for c in lans),
        )
        return True, False

    async def _punch(self, introduction: Introduction, strategy: Strategy) -> Path:
        """Open (opener) or wait for Go (prober), with port prediction if planned; then check until a path is chosen
        (moving to a fresh socket after a refused check), or fall back to the relay."""
        config, client, puncher = self._config, self._client, self._punching
        opener: PortOpener | None = None
        sprayer: Sprayer | None = None
        # With early checks both sides opened their mappings when the Introduce came (_open_punch); nobody waits
        # for Ready and Go.
        if not puncher.early and introduction.role is Role.OPENER:
            if strategy.plan is Plan.OPEN:
                opener = await self._sockets.enter_async_context(PortOpener(puncher, self._keys, self._dispatcher))
                await opener.open(config.bind[0], config.predict.sockets)
                # Full open_ttl even toward a peer behind the NAT we share (not Puncher.opening_ttl): our fresh
                # sockets are new to that NAT too, which maps each only when a packet of it passes
                # (tests/e2e/test_punch_cgnat.py)
                opener.send(introduction.candidates[0], self._timings.open_ttl)
            else:
                puncher.open_mappings()
            await client.ready(introduction.session_id)
        elif not puncher.early:
            try:
                async with asyncio.timeout(self._timings.timeout):
                    await _go_or_moved(client)
            except TimeoutError:
                raise PeerError(f"the server never said Go for {introduction.peer_id}; is it still running?") from None
            if strategy.plan is Plan.SPRAY:
                sprayer = Sprayer(puncher, self._endpoint, introduction.candidates[0][0], config.predict)
                sprayer.start()
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
                    self._keys,
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
            predictor = opener or sprayer
            failure = error
            if predictor is not None:
                timeout = self._timings.timeout
                failure = PeerError(
                    f"no direct path to {introduction.peer_id} within {timeout:g} s: {predictor.failure()}"
                )
            if not config.relay or isinstance(error, PeerGone):
                raise failure from None
            log.info("%s; falling back to the relay through the server", failure)
            path = Path(config.server, "relay")
        finally:
            if sprayer is not None:
                await sprayer.close()
            if opener is not None and path is not None and path.local is not None:
                await opener.close_others(path.local)  # the chosen one is the session's socket now (_on_chosen)
            elif opener is not None:
                await opener.close()
        return path

    async def _upgrade(self) -> None:
        """While the session runs over the relay, retry a direct path after each of :func:`upgrade_waits`; once one is
        proven, move the channel onto it (and back to the relay, starting the waits over, if it stops answering).
        Runs until cancelled. The retries open our mapping with the TTL that passes our own NATs."""
        config, channel = self._config, self._talking
        open_ttl = self._timings.open_ttl
        while True:
            waits = upgrade_waits(config.upgrade_interval, config.nat_udp_timeout)
            wait = next(waits)
            while True:
                lead = min(UPGRADE_LEAD, wait / 2)
                await asyncio.sleep(wait - lead)
                self._swap_puncher(self._punching.again(min(self._timings.timeout, 5.0), open_ttl))
                try:
                    path = await self._punching.retry(lead)
                    break
                except PeerError as error:
                    wait = next(waits)
                    log.info("%s; staying on the relay, next try in %g s", error, wait)
            channel.point_at(path.remote)
            self._path, self._upgraded = path, True
            log.info("upgraded from the relay to the %s path via %s", path.kind, format_address(path.remote))
            try:
                await self._punching.keep_alive(path.remote, config.keepalive, KEEPALIVE_POLICY)
            except PeerError as error:
                channel.point_at(config.server)
                self._path = Path(config.server, "relay")
                log.info("%s; back to the relay", error)

    async def _keep_path(self, path: Path) -> None:
        """Keep the direct path alive; when it breaks, find the other peer again through the server and punch a new
        path from the session's own socket. Runs until cancelled; PeerError once the other peer is lost.

        A path over a fresh socket of a move (punch.peer.moving) is sought again from the session's socket: the NAT
        whose entries made us move changed (a new address flushes them), or it forgot them, or they ran out. A path
        over one of port prediction's sockets is not: without predicting again, a symmetric NAT cannot be punched."""
        config, channel = self._config, self._talking
        while True:
            try:
                await self._punching.keep_alive(path.remote, config.keepalive, KEEPALIVE_POLICY, channel.remote_closed)
            except PeerError as error:
                if config.rejoin <= 0 or (path.local is not None and path.kind == "predicted"):
                    raise
                log.info("%s; asking the server for %s again", error, self._punching.peer)
                channel.await_new_path()
                if path.local is not None:  # we had moved: the new path starts from the session's socket
                    log.info("the path ran over our fresh socket: punching the new one from our session's socket")
                    self._run_over(self._endpoint)
                try:
                    async with asyncio.timeout(config.rejoin):
                        path = await self._rejoin()
                except (TimeoutError, PeerError) as why:
                    detail = (
                        f"it did not come back within {config.rejoin:g} s" if isinstance(why, TimeoutError) else why
                    )
                    raise PeerError(f"{error}; {detail}") from None
                channel.move(path.remote)
                self._path, self._rejoins = path, self._rejoins + 1
                log.info("back on a %s path to %s via %s", path.kind, self._punching.peer, format_address(path.remote))

    async def _rejoin(self) -> Path:
        """Register and ask for the other peer again; punch the new session's path (no port prediction, no relay)."""
        client = self._client
        introduction = await client.rejoin(self._config.target)
        if self._refused is not None or introduction.session_id not in self._keys:
            raise PeerError(self._refused or f"{introduction.peer_id}'s key share is not signed by its key: refused")
        same_nat, lan_on_link = self._behind_one_nat(introduction)
        puncher = Puncher(
            self._endpoint,
            self._config.peer_id,
            introduction,
            self._timings,
            strategy=Strategy(same_nat=same_nat, lan_on_link=lan_on_link),
        )
        self._swap_puncher(puncher)
        if introduction.role is Role.OPENER:
            puncher.open_mappings()
            await client.ready(introduction.session_id)
        else:
            await client.go.wait()
        return await puncher.run()

    async def _talk(self, texts: AsyncIterator[str]) -> None:
        channel, config = self._talking, self._config
        async for text in texts:
            await channel.send_text(text)  # each one acknowledged before the next
        try:
            await channel.close()
        except PeerError:
            # The other side only leaves once it has our Close (or gave up): if it had closed too, every text
            # crossed and only the acknowledgement of our Close was lost.
            if not channel.remote_closed.is_set():
                raise
            log.info("our Close went unacknowledged, but %s had closed too: the session is complete", channel.peer)
        try:
            async with asyncio.timeout(config.timeout):
                await channel.remote_closed.wait()
        except TimeoutError:
            raise PeerError(f"{channel.peer} did not say it was done sending within {config.timeout:g} s") from None
        # Keep answering for a moment: if our last acknowledgement was lost, the other side resends its Close.
        await asyncio.sleep(config.linger)
        log.info("session with %s closed", channel.peer)


async def run_peer(
    config: PeerConfig,
    texts: AsyncIterator[str],
    on_text: Callable[[str], None],
    sock: socket.socket | None = None,
) -> PeerResult:
    """Run one peer to the end (:class:`Session`) and return its result; PeerError on failure."""
    session = await Session.open(config, on_text, sock=sock)
    try:
        return await session.run(texts)
    finally:
        await session.close()


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
