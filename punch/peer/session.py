"""One peer's whole run: register (and measure our NAT's mapping), ask, get introduced, punch (predicting ports
when one NAT maps endpoint-dependently, punch.peer.predict), talk, close together.

A direct path that stops answering keepalives (the other peer's NAT got a new public address, or forgot its
mappings and now maps it elsewhere) is sought again: both peers register again, so the server learns where their
NATs map them now, ask for each other again, are introduced in a new session and punch a new path; the texts go on
over it in their first session. A peer that does not come back within ``PeerConfig.rejoin`` seconds is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

from punch.errors import PeerError, PeerGone
from punch.peer import hops, routes, sealing
from punch.peer.channel import Channel
from punch.peer.client import RendezvousClient
from punch.peer.moving import Moves
from punch.peer.predict import Plan, PortOpener, PredictConfig, Sprayer, choose_plan, our_mapping
from punch.peer.puncher import Path, Puncher, PunchTimings, early_delay, early_pays
from punch.stun import Address, Message, MessageClass, describe, method_name
from punch.stun.protocol import StunEndpoint, format_address, host_candidates, open_endpoint
from punch.stun.transaction import RetransmitPolicy
from punch.stun.wire import Introduction, Mapping, Role

# RFC 8489 §6.2.1 timing with the RTO capped at 2 s and 12 sends (not 7): a peer gives up on a silent server after
# 21.75 s, not 39.5 s. With 20% loss each way one exchange fails 36% of the time, so 9 sends still lost one request
# in 10,000, about one 20-trial run in 30 of tests/e2e/test_faults.py (a peer makes ~7 requests); 12 sends: 1 in
# 200,000.
SERVER_POLICY = RetransmitPolicy(rto=0.25, max_rto=2.0, max_sends=12)
# A keepalive that gets no answer for 7.5 s means the other peer is gone (or the path broke).
KEEPALIVE_POLICY = RetransmitPolicy(rto=0.5, max_rto=2.0, max_sends=5, last_wait=4.0)
# On the relay (upgrade_waits): a retry's low-TTL probes leave this long (at most half the wait) before the prober's
# checks, so retries whose timers are up to this far apart still open the opener's NAT before a check arrives
# (Puncher.retry); after a failed retry the peers keep quiet toward each other this much longer than the NATs' UDP
# timeout (twice the lead: the other's retry may start that much later; and a second of slack); the waits double up
# to MAX_UPGRADE_WAIT.
UPGRADE_LEAD = 5.0
UPGRADE_QUIET = 2 * UPGRADE_LEAD + 1.0
MAX_UPGRADE_WAIT = 300.0

log = logging.getLogger(__name__)

# What our socket drops before any handler sees it (punch.stun.protocol.StunEndpoint's counters).
DROP_REASONS = ("not-stun", "malformed", "bad-integrity", "handler-error")


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """What ``punch peer`` was asked to do."""

    server: Address
    peer_id: str
    target: str
    bind: Address = ("0.0.0.0", 0)
    timeout: float = 30.0  # to find the other peer and punch
    lease: int = 30
    punch: PunchTimings = field(default_factory=PunchTimings)
    linger: float = 0.5  # after closing, keep answering retransmissions this long
    rendezvous: RetransmitPolicy = SERVER_POLICY  # requests to the server
    relay: bool = True  # fall back to the server's relay when no direct path can be punched
    keepalive: float = 5.0  # seconds between checks of a direct path while talking
    group: bytes | None = None  # a closed group's key (--secret-file)
    predict: PredictConfig = field(default_factory=PredictConfig)  # port prediction (punch.peer.predict)
    upgrade_interval: float = 15.0  # on the relay, first retry a direct path after this long (seconds; 0 = never)
    # How long a NAT on the way may remember a UDP flow nobody answered, until the entry is gone: Linux's 30 s timeout
    # plus up to 60 s before its garbage collector removes the expired entry (until then new flows from the same
    # source still take its port).
    nat_udp_timeout: float = 90.0
    discover_ttl: bool = True  # find punch.open_ttl from the route to the server (punch.peer.hops), else keep it
    rejoin: float = 15.0  # after a direct path broke, wait this long for the other peer to find us again (0 = never)


@dataclass(slots=True)
class PeerResult:
    """The outcome, as printed by ``--json``."""

    id: str
    peer: str
    path: str | None = None
    remote: str | None = None
    punch_ms: float | None = None
    path_at: float | None = None  # wall-clock time (time.time()) when the path was chosen, for benchmarks
    server_rtt_ms: float | None = None  # our shortest round trip to the server before the introduction
    received: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    role: str | None = None
    session: str | None = None
    local: str | None = None
    mapped: str | None = None
    upgraded: bool = False  # started on the relay, moved to a direct path later
    # "moved": our NAT refused the other's check, and we punched again from a fresh socket; "followed": the other
    # peer did, and we checked it there (punch.peer.moving)
    move: str | None = None
    early: bool | None = None  # a plain punch: True if we checked without waiting for Go, False under Ready/Go
    rejoins: int = 0  # how often the direct path broke and a new one was punched
    error: str | None = None
    dropped: dict[str, int] = field(default_factory=dict)  # datagrams our socket dropped, by reason (DROP_REASONS)


class _Dispatcher:
    """Routes requests on the one socket: server messages to the client, the peer's to puncher and channel."""

    def __init__(self) -> None:
        self.routes: list[Callable[[Message, Address], bool]] = []

    def __call__(self, message: Message, source: Address, data: bytes) -> None:
        if message.message_class is not MessageClass.REQUEST:
            log.debug("ignored a %s from %s", describe(message), format_address(source))
            return
        for route in self.routes:
            if route(message, source):
                return
        log.debug("ignored a %s from %s: nothing expects it now", method_name(message.method), format_address(source))


async def run_peer(
    config: PeerConfig,
    texts: AsyncIterator[str],
    on_text: Callable[[str], None],
    result: PeerResult,
    sock: socket.socket | None = None,
) -> PeerResult:
    """Run one peer to the end and fill ``result``; PeerError (also recorded in ``result.error``) on failure.

    The peer binds ``config.bind``, or takes ``sock``: a bound UDP socket the caller made, which lets one process
    host many peers, each with a socket in its own network namespace (bench/peer_host.py). It is closed at the end.
    Port prediction and the TTL discovery open sockets of their own, in the calling thread's namespace: a host of
    peers in other namespaces turns them off (``predict.enabled``, ``discover_ttl``) and binds each socket to its
    address (a wildcard bind asks the calling thread's namespace for our address toward the server).
    """
    sealing.warm_up()
    dispatcher = _Dispatcher()
    endpoint = await open_endpoint(dispatcher, config.bind, sock=sock)
    try:
        await _run(config, endpoint, dispatcher, texts, on_text, result)
    except PeerError as error:
        result.error = str(error)
        raise
    finally:
        result.dropped = {reason: endpoint.counters[reason] for reason in DROP_REASONS if endpoint.counters[reason]}
        await endpoint.close()
    return result


async def _run(
    config: PeerConfig,
    endpoint: StunEndpoint,
    dispatcher: _Dispatcher,
    texts: AsyncIterator[str],
    on_text: Callable[[str], None],
    result: PeerResult,
) -> None:
    local = endpoint.local_address
    result.local = format_address(local)
    log.info("socket bound to %s", format_address(local))
    client = RendezvousClient(
        endpoint,
        config.server,
        config.peer_id,
        host_candidates(local, config.server),
        lease=config.lease,
        policy=config.rendezvous,
        group=config.group,
    )
    dispatcher.routes.append(client.on_request)
    mapped = await client.register()
    hops_found = asyncio.get_running_loop().create_task(_discover_open_ttl(config, local[0], client))
    client.mapping = await our_mapping(config.predict, endpoint, config.server, config.rendezvous)
    if client.mapping is not Mapping.UNKNOWN:
        await client.register()  # tell the server, before we ask for anyone (port prediction needs it)
    result.mapped = format_address(mapped)
    refresher = asyncio.get_running_loop().create_task(client.keep_registered())
    try:
        async with contextlib.AsyncExitStack() as sockets:  # port prediction's sockets, if any
            path, channel, puncher = await _find_path(
                config, endpoint, dispatcher, client, result, on_text, sockets, hops_found
            )
            result.path, result.remote = path.kind, format_address(path.remote)
            talking = _talk(channel, texts, config.linger, config.timeout)
            if path.kind == "relay" and config.upgrade_interval > 0 and not puncher.hopeless:
                await _first_of(talking, _upgrade(config, dispatcher, puncher, channel, result, hops_found))
            elif path.kind == "relay":
                await talking  # the relay answers for the server; keepalives would prove nothing about the peer
            else:
                found = hops_found.done() and not hops_found.cancelled() and hops_found.exception() is None
                timings = hops_found.result() if found else config.punch  # the opening probes' TTL, as punched
                keeping = _keep_path(config, timings, endpoint, dispatcher, client, puncher, channel, path, result)
                await _first_of(talking, keeping)
    finally:
        for task in (refresher, hops_found):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await client.unregister()


async def _discover_open_ttl(config: PeerConfig, source_ip: str, client: RendezvousClient) -> PunchTimings:
    """The punch timings with ``open_ttl`` set to the TTL that passes all our own NATs (punch.peer.hops). A probe
    that reached the server is also a sample of our round trip to it, which we tell the server in Connect (the
    first, our registration's, may include the start-up of a fresh process). Without a trace, a Binding request
    takes that second sample, where early checks may use it."""
    timings = config.punch
    if not config.discover_ttl or timings.open_ttl <= 0:
        if timings.early and timings.open_ttl > 0:
            await client.sample_rtt()
        return timings
    found = await hops.trace(config.server, source_ip=source_ip)
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


async def _find_path(
    config: PeerConfig,
    endpoint: StunEndpoint,
    dispatcher: _Dispatcher,
    client: RendezvousClient,
    result: PeerResult,
    on_text: Callable[[str], None],
    sockets: contextlib.AsyncExitStack,
    hops_found: asyncio.Task[PunchTimings],
) -> tuple[Path, Channel, Puncher]:
    # The TTL for our low-TTL probes, before we ask: the Introduce may come at once, and with early checks the other
    # peer counts on our probe leaving the moment it arrives (punch.peer.puncher.early_delay): so the puncher is
    # made, and an early punch's probes are sent, in the Introduce's own handler (client.on_introduced). The
    # channel is routed there too: on the relay the other peer sends its first text the moment its own Introduce
    # arrives, and it may reach us before this coroutine runs again (it used to be dropped, and came again only
    # after the channel's first retransmission timeout, 200 ms later).
    config = dataclasses.replace(config, punch=await hops_found)
    openings: list[tuple[Plan, Puncher, Channel]] = []

    def switch(path: Path) -> None:
        if path.local is not None:  # port prediction or a move chose a socket of its own: the session runs over it
            _run_over(path.local, puncher, channel, result)

    def session_channel(introduction: Introduction) -> Channel:
        """The session's channel, its requests routed to it from now on (after the puncher's, _opening)."""
        channel = Channel(
            endpoint,
            config.peer_id,
            introduction.peer_id,
            introduction.session_id,
            introduction.key,
            on_text,
            relay=config.server,
        )
        dispatcher.routes.append(channel.on_request)
        return channel

    def opening(introduction: Introduction) -> None:
        if introduction.peer_id == config.target:
            plan, puncher = _opening(config, endpoint, dispatcher, client, introduction, switch)
            openings.append((plan, puncher, session_channel(introduction)))

    client.on_introduced = opening
    try:
        async with asyncio.timeout(config.timeout):
            introduction = await client.introduced_to(config.target)
    except TimeoutError:
        raise PeerError(
            f"{config.target} did not ask for us within {config.timeout:g} s; "
            f"start it with `punch peer --id {config.target} --to {config.peer_id}`"
        ) from None
    finally:
        client.on_introduced = None
    if introduction.peer_id != config.target:
        raise PeerError(f"the server introduced {introduction.peer_id}, but we asked for {config.target}")
    loop = asyncio.get_running_loop()
    started = loop.time() if client.introduced_at is None else client.introduced_at
    if openings:
        plan, puncher, channel = openings[0]
    else:
        plan, puncher = _opening(config, endpoint, dispatcher, client, introduction, switch)
        channel = session_channel(introduction)
    result.role = introduction.role.name.lower()
    result.server_rtt_ms = None if client.rtt is None else round(client.rtt * 1000, 2)
    result.session = introduction.session_id.hex()
    result.early = puncher.early if plan is Plan.PUNCH else None
    if puncher.same_nat:
        preferred = ", so a LAN path is preferred" if puncher.lan_first else ""
        log.info("%s has our public address: we are behind the same NAT%s", config.target, preferred)
    result.received, result.sent = channel.received, channel.sent  # shared: a failure still reports what crossed
    if plan is Plan.RELAY:
        why = f"no direct path to {introduction.peer_id}: both NATs map endpoint-dependently, no port to predict"
        if not config.relay:
            raise PeerError(f"{why}; the relay is off (--no-relay)")
        log.info("%s; using the relay through the server", why)
        path = Path(config.server, "relay")
    else:
        path = await _punch(config, plan, introduction, endpoint, dispatcher, client, puncher, sockets, result)
    result.punch_ms = round((loop.time() - started) * 1000, 1)
    result.path_at = time.time()
    channel.remote = path.remote
    log.info(
        "using the %s path to %s via %s (%.1f ms after the introduction)",
        path.kind,
        introduction.peer_id,
        format_address(path.remote),
        result.punch_ms,
    )
    return path, channel, puncher


def _run_over(endpoint: StunEndpoint, puncher: Puncher, channel: Channel, result: PeerResult) -> None:
    """From now on the session (its checks, its texts, and what ``--json`` reports as ``local``) uses ``endpoint``."""
    puncher.endpoint = channel.endpoint = endpoint
    result.local = format_address(endpoint.local_address)


def _opening(
    config: PeerConfig,
    endpoint: StunEndpoint,
    dispatcher: _Dispatcher,
    client: RendezvousClient,
    introduction: Introduction,
    on_chosen: Callable[[Path], None],
) -> tuple[Plan, Puncher]:
    """What a peer does the moment its Introduce arrives: choose the plan, decide on early checks, make the puncher
    (its checks routed to it from now on) and, for early checks, send the low-TTL probes that open our NAT: the
    other peer checks a margin of about a millisecond after its own Introduce, counting on them having left."""
    plan = choose_plan(config.predict, client.mapping, introduction)
    same_nat, lan_first = _behind_one_nat(client, endpoint, introduction)
    puncher = Puncher(
        endpoint,
        config.peer_id,
        introduction,
        config.punch,
        predicting=plan is not Plan.PUNCH,
        same_nat=same_nat,
        lan_first=lan_first,
        on_chosen=on_chosen,
        early=_early(config, plan, client, introduction, lan_first),
        hopeless=plan is Plan.RELAY,
    )
    dispatcher.routes.append(puncher.on_request)
    if puncher.early:
        puncher.open_mappings()
    return plan, puncher


def _behind_one_nat(client: RendezvousClient, endpoint: StunEndpoint, introduction: Introduction) -> tuple[bool, bool]:
    """Whether the other peer has our public address (both behind one NAT), and if so whether a LAN candidate of
    theirs may be on one of our links (punch.peer.routes), so that its path likely beats the NAT's hairpin and is
    worth a short wait (``lan_first``)."""
    same_nat = client.mapped is not None and introduction.candidates[0][0] == client.mapped[0]
    lans = introduction.candidates[1:]
    if not same_nat or not lans:
        return same_nat, False
    table = routes.table_of(endpoint.fileno())
    if table is None or any(routes.on_link_in(table, host) is not False for host, _ in lans):
        return True, True
    log.info(
        "none of %s's LAN candidates (%s) is on a link of ours: our NAT's hairpin is nominated at once, no LAN wait",
        introduction.peer_id,
        ", ".join(format_address(c) for c in lans),
    )
    return True, False


def _early(
    config: PeerConfig, plan: Plan, client: RendezvousClient, introduction: Introduction, lan_first: bool
) -> float | None:
    """When (loop.time()) our first check may leave without waiting for Go (punch.peer.puncher), or None: early
    checks need both round trips to the server, a plain punch (no port prediction), low-TTL probes (they open
    both NATs first), a way back from a lost race (a move: not ``lan_first``), and a server far enough away that
    they beat Ready/Go (punch.peer.puncher.early_pays)."""
    if not config.punch.early or plan is not Plan.PUNCH or config.punch.open_ttl <= 0:
        return None
    if lan_first:
        # On one LAN no race can be lost, but a LAN candidate on our link may be a look-alike: another home behind
        # the same carrier NAT with the same addresses (192.168.1.0/24 in both), whose router can lose the race,
        # and a peer that waits for a LAN candidate does not move (punch.peer.session._punch).
        log.info("%s's LAN candidate is on our link: Ready/Go, not early checks", introduction.peer_id)
        return None
    told, theirs = client.told_rtt_us, introduction.rtt_us
    if client.rtt is None or client.introduced_at is None or told is None or theirs is None:
        return None
    their_rtt = theirs / 1e6
    opener_rtt, prober_rtt = (told, theirs) if introduction.role is Role.OPENER else (theirs, told)
    timings = config.punch
    if not early_pays(opener_rtt / 1e6, prober_rtt / 1e6, timings.early_margin, timings.early_floor):
        log.info(
            "round trips to the server: ours %.2f ms, %s's %.2f ms: Ready/Go is as fast as early checks here",
            told / 1000,
            introduction.peer_id,
            their_rtt * 1000,
        )
        return None
    delay = early_delay(client.rtt, their_rtt, timings.early_margin, timings.early_floor)
    log.info(
        "round trips to the server: ours %.1f ms, %s's %.1f ms: both open our mappings now, and check after %.1f ms",
        client.rtt * 1000,
        introduction.peer_id,
        their_rtt * 1000,
        delay * 1000,
    )
    return client.introduced_at + delay


async def _punch(
    config: PeerConfig,
    plan: Plan,
    introduction: Introduction,
    endpoint: StunEndpoint,
    dispatcher: _Dispatcher,
    client: RendezvousClient,
    puncher: Puncher,
    sockets: contextlib.AsyncExitStack,
    result: PeerResult,
) -> Path:
    """Open (opener) or wait for Go (prober), with port prediction if planned; then check until a path is chosen
    (moving to a fresh socket after a refused check), or fall back to the relay."""
    opener: PortOpener | None = None
    sprayer: Sprayer | None = None
    # With early checks both sides opened their mappings when the Introduce came (_opening); nobody waits for
    # Ready and Go.
    if not puncher.early and introduction.role is Role.OPENER:
        if plan is Plan.OPEN:
            opener = await sockets.enter_async_context(PortOpener(puncher, endpoint.key_for, dispatcher))
            await opener.open(config.bind[0], config.predict.sockets)
            # Full open_ttl even toward a peer behind the NAT we share (not Puncher.opening_ttl): our fresh sockets
            # are new to that NAT too, which maps each only when a packet of it passes (tests/e2e/test_punch_cgnat.py)
            opener.send(introduction.candidates[0], config.punch.open_ttl)
        else:
            puncher.open_mappings()
        await client.ready(introduction.session_id)
    elif not puncher.early:
        try:
            async with asyncio.timeout(config.punch.timeout):
                await _go_or_moved(client)
        except TimeoutError:
            raise PeerError(f"the server never said Go for {introduction.peer_id}; is it still running?") from None
        if plan is Plan.SPRAY:
            sprayer = Sprayer(puncher, endpoint, introduction.candidates[0][0], config.predict)
            sprayer.start()
    path: Path | None = None
    try:
        # Behind one NAT with a LAN candidate on our link (Ready/Go: no race) that NAT refuses a check to its public
        # address if it does not hairpin, which no move mends, while the LAN path works: no move there
        # (punch.peer.moving).
        if plan is Plan.PUNCH and config.punch.open_ttl > 0 and not puncher.lan_first:
            moves = Moves(puncher, introduction, client, dispatcher.routes, dispatcher, sockets, config.punch.timeout)
            try:
                path = await moves.run()
            finally:
                result.move = moves.outcome
        else:
            path = await puncher.run()
    except PeerError as error:
        predictor = opener or sprayer
        failure = error
        if predictor is not None:
            timeout = config.punch.timeout
            failure = PeerError(f"no direct path to {introduction.peer_id} within {timeout:g} s: {predictor.failure()}")
        if not config.relay or isinstance(error, PeerGone):
            raise failure from None
        log.info("%s; falling back to the relay through the server", failure)
        path = Path(config.server, "relay")
    finally:
        if sprayer is not None:
            await sprayer.close()
        if opener is not None and path is not None and path.local is not None:
            await opener.close_others(path.local)  # the chosen one is the session's socket now (see switch)
        elif opener is not None:
            await opener.close()
    return path


async def _go_or_moved(client: RendezvousClient) -> None:
    """The prober waits for the server's Go, or for a Go saying the opener moved, or for Move (punch.peer.moving)."""
    go = asyncio.ensure_future(client.go.wait())
    try:
        await asyncio.wait((go, client.moved, client.move), return_when=asyncio.FIRST_COMPLETED)
    finally:
        go.cancel()
        await asyncio.gather(go, return_exceptions=True)


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


async def _upgrade(
    config: PeerConfig,
    dispatcher: _Dispatcher,
    puncher: Puncher,
    channel: Channel,
    result: PeerResult,
    hops_found: asyncio.Task[PunchTimings],
) -> None:
    """While the session runs over the relay, retry a direct path after each of :func:`upgrade_waits`; once one is
    proven, move the channel onto it (and back to the relay, starting the waits over, if it stops answering). Runs
    until cancelled. The retries open our mapping with the TTL that passes our own NATs (``hops_found``)."""
    open_ttl = (await hops_found).open_ttl
    while True:
        waits = upgrade_waits(config.upgrade_interval, config.nat_udp_timeout)
        wait = next(waits)
        while True:
            lead = min(UPGRADE_LEAD, wait / 2)
            await asyncio.sleep(wait - lead)
            retry = puncher.again(min(config.punch.timeout, 5.0), open_ttl)
            dispatcher.routes[dispatcher.routes.index(puncher.on_request)] = retry.on_request
            puncher = retry
            try:
                path = await puncher.retry(lead)
                break
            except PeerError as error:
                wait = next(waits)
                log.info("%s; staying on the relay, next try in %g s", error, wait)
        channel.remote = path.remote
        result.path, result.remote, result.upgraded = path.kind, format_address(path.remote), True
        log.info("upgraded from the relay to the %s path via %s", path.kind, format_address(path.remote))
        try:
            await puncher.keep_alive(path.remote, config.keepalive, KEEPALIVE_POLICY)
        except PeerError as error:
            channel.remote = config.server
            result.path, result.remote = "relay", format_address(config.server)
            log.info("%s; back to the relay", error)


async def _keep_path(
    config: PeerConfig,
    timings: PunchTimings,
    endpoint: StunEndpoint,
    dispatcher: _Dispatcher,
    client: RendezvousClient,
    puncher: Puncher,
    channel: Channel,
    path: Path,
    result: PeerResult,
) -> None:
    """Keep the direct path alive; when it breaks, find the other peer again through the server and punch a new
    path (see the module docstring) from ``endpoint``, the session's socket. Runs until cancelled; PeerError once
    the other peer is lost.

    A path over a fresh socket of a move (punch.peer.moving) is sought again from the session's socket: the NAT
    whose entries made us move changed (a new address flushes them), or it forgot them, or they ran out. A path
    over one of port prediction's sockets is not: without predicting again, a symmetric NAT cannot be punched."""
    while True:
        try:
            await puncher.keep_alive(path.remote, config.keepalive, KEEPALIVE_POLICY, channel.remote_closed)
        except PeerError as error:
            if config.rejoin <= 0 or (path.local is not None and path.kind == "predicted"):
                raise
            log.info("%s; asking the server for %s again", error, puncher.peer)
            channel.recovering = True
            if path.local is not None:  # we had moved: the new path starts from the session's socket
                log.info("the path ran over our fresh socket: punching the new one from our session's socket")
                _run_over(endpoint, puncher, channel, result)
            try:
                async with asyncio.timeout(config.rejoin):
                    puncher, path = await _rejoin(config, timings, dispatcher, client, puncher)
            except (TimeoutError, PeerError) as why:
                detail = f"it did not come back within {config.rejoin:g} s" if isinstance(why, TimeoutError) else why
                raise PeerError(f"{error}; {detail}") from None
            channel.move(path.remote)
            result.path, result.remote, result.rejoins = path.kind, format_address(path.remote), result.rejoins + 1
            log.info("back on a %s path to %s via %s", path.kind, puncher.peer, format_address(path.remote))


async def _rejoin(
    config: PeerConfig, timings: PunchTimings, dispatcher: _Dispatcher, client: RendezvousClient, old: Puncher
) -> tuple[Puncher, Path]:
    """Register and ask for the other peer again; punch the new session's path (no port prediction, no relay)."""
    introduction = await client.rejoin(config.target)
    same_nat, lan_first = _behind_one_nat(client, old.endpoint, introduction)
    puncher = Puncher(old.endpoint, config.peer_id, introduction, timings, same_nat=same_nat, lan_first=lan_first)
    dispatcher.routes[dispatcher.routes.index(old.on_request)] = puncher.on_request
    if introduction.role is Role.OPENER:
        puncher.open_mappings()
        await client.ready(introduction.session_id)
    else:
        await client.go.wait()
    return puncher, await puncher.run()


async def _talk(channel: Channel, texts: AsyncIterator[str], linger: float, patience: float) -> None:
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
        async with asyncio.timeout(patience):
            await channel.remote_closed.wait()
    except TimeoutError:
        raise PeerError(f"{channel.peer} did not say it was done sending within {patience:g} s") from None
    # Keep answering for a moment: if our last acknowledgement was lost, the other side resends its Close.
    await asyncio.sleep(linger)
    log.info("session with %s closed", channel.peer)
