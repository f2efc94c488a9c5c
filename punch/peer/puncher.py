"""Punching: connectivity checks between two peers, and the choice of a path proven in both directions.

Checks are STUN Binding requests between the peers, as in ICE (RFC 8445 §7.2), carrying the session's
identity (SESSION-ID and the sender's PEER-ID) so that a look-alike candidate (the same private address on
another LAN, or ourselves) is never mistaken for the other peer.

Why there are two roles. A Linux NAT (conntrack) that receives the other peer's check *before* its own peer's
first packet toward that peer has left records the inbound packet as a connection of its own; when its peer
then sends, SNAT must pick a different public port, and a naive simultaneous open deadlocks. So:

1. the **opener** sends each candidate a check with a low IP TTL (default 2): it passes the opener's own NAT,
   creating the mapping, and dies in the network before it can reach the other NAT (one hop sooner toward a
   peer behind the same outermost NAT, which would turn it around to them: :meth:`Puncher.opening_ttl`);
2. the opener then tells the server it is Ready, and the server tells the **prober** to Go;
3. the prober checks every candidate; its checks find the opener's mapping already open and get through;
   the opener answers and sends a triggered check back (RFC 8445 §7.3.1.4);
4. the prober, which controls the choice, nominates the other's public endpoint in every check it sends there
   (USE-CANDIDATE; aggressive nomination, RFC 5245 §8.1.1.2) and chooses it when a check is answered. The opener
   takes a nomination only for a pair its own check proved (RFC 8445 §7.3.1.5: a nominated pair that has not
   succeeded waits for its triggered check), so a check replayed from another address, authentic as it is,
   never steers the path there. Behind one NAT the same goes for the NAT's hairpin (the other's public endpoint),
   and a LAN candidate that answers first (a routed LAN) gives the hairpin a moment before the prober nominates
   it in a check of its own (:meth:`Puncher._wait_for_hairpin`); but where a LAN candidate of the other peer is on
   one of our own links (punch.peer.routes), so that its path likely beats the hairpin, the prober nominates the
   regular way throughout (RFC 8445 §8.1.1): the first pair that answered, after a short grace for a LAN
   candidate (:func:`lan_wait`), in a check of its own.

If no check arrives from the prober in time, the opener probes at full TTL as well (for networks where the
low-TTL probe could not open the mapping).

**Early checks.** Steps 2 and 3 cost a round trip to the server (Ready, then Go) before the first check leaves. When
both peers told the server their round trip to it (SERVER-RTT in Connect; Introduce carries the other's), each can
tell when the other received its Introduce and sent its own low-TTL probe: the introductions leave the server at the
same moment, so the other's arrives ``their_rtt/2 - our_rtt/2`` after ours. Then both peers open their own mapping
at once and send full checks once the other's mapping is open (see :func:`punch.peer.strategy.early_delay`); the
checks cross, and one peer-to-peer round trip proves the path (and nominates it, step 4), with nobody waiting for
Go. This is the default where it is clearly faster (:func:`punch.peer.strategy.early_pays`: round trips to the
server over about 2 ms; nearer, Ready/Go costs hardly more and cannot race); ``--no-early-checks`` always waits for
Go. The cost: a check that reaches the other NAT before the other peer's probe left (an introduction lost and
retransmitted, a peer stalled for longer than the margin plus the time between the peers) loses the conntrack race
on a NAT without a firewall. Such a NAT refuses the check (ICMP port unreachable), and the other peer moves to a
fresh socket (punch.peer.moving); a NAT that refuses silently leaves the relay, whose retries go direct only after
the NATs forgot the race (punch.peer.session.upgrade_waits: the second retry, about two minutes later). Home
routers, which drop unsolicited packets, only drop such a check.

Port prediction (punch.peer.predict) reuses this machinery: the opener's many extra sockets hand their checks to
:meth:`Puncher.on_request` with ``via`` (answers and triggered checks leave from the socket the check reached),
and the prober's spray reports an answering port with :meth:`Puncher.found`. Such paths are ``predicted``. Before
ports are predicted the hard side checks from the session's socket (punch.peer.reflexive): the easy side sees those
checks come from a port that is none of the candidates, a peer-reflexive candidate (RFC 8445 §7.3.1.3), and answers
and checks it as any other; a path found so is ``direct``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from punch.errors import PeerError
from punch.peer.checklist import CandidatePair, CheckList, CheckListState, PairState
from punch.peer.clock import sleep_until
from punch.peer.dualstack import preferred_candidate, public_candidates
from punch.peer.strategy import EARLY_FLOOR, Plan, Strategy, mapped_candidates
from punch.stun import Address, AttributeType, Message, MessageClass, Method, make_success
from punch.stun.families import family_of
from punch.stun.protocol import StunEndpoint, format_address
from punch.stun.transaction import RetransmitPolicy, TransactionTimeout
from punch.stun.wire import Introduction, Role, request

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PunchTimings:
    """How fast and how long to punch; all in seconds except ``open_ttl``."""

    check_interval: float = 0.05  # constant pace of checks to each candidate
    timeout: float = 10.0  # give up on a direct path after this long
    opener_fallback: float = 2.0  # opener probes at full TTL if no check arrived by then
    open_ttl: int = 2  # TTL of the opener's mapping-opening probes; 0 disables them (see punch.peer.hops)
    # Behind the same NAT, a proven public path waits for a LAN one to prove itself (lan_wait): at most lan_grace,
    # at least lan_margin
    lan_grace: float = 0.25
    lan_margin: float = 0.02
    early: bool = True  # check without waiting for Go when both peers told the server their round trip to it
    early_margin: float = 0.05  # early checks wait this share of the larger one-way delay for jitter, and
    early_floor: float = EARLY_FLOOR  # at least this long (a peer the scheduler holds back on a near server)


def lan_wait(public_took: float, margin: float, cap: float) -> float:
    """How long a public path proven behind the same NAT (through its hairpin) waits for a LAN candidate to
    answer: as long again as the public path took to prove, at least ``margin`` (the scheduler, a first ARP),
    at most ``cap``. The checks to both left at the same moment, and a LAN path, where there is one, is no
    longer than the way through the NAT and back: its answer comes about as soon, or there is none (two homes
    behind one carrier NAT: their LAN addresses lead nowhere)."""
    return min(cap, max(margin, public_took))


@dataclass(frozen=True, slots=True)
class Path:
    """A path proven in both directions."""

    remote: Address
    # "direct" (through the NATs), "direct-lan" (to a host candidate), "mapped" (through a port a router maps for one
    # of us, punch.portmap), "predicted", or "relay"
    kind: str
    local: StunEndpoint | None = None  # the socket it runs over, when not the session's own (port prediction)


PLAIN = Strategy()  # a plain punch: no port prediction, different NATs, Ready/Go


class Puncher:
    """Runs the checks of one session (see the module docstring); :meth:`run` returns the chosen path.

    Its pairs and their RFC 8445 states are a :class:`punch.peer.checklist.CheckList`; how it punches (early
    checks, a LAN first, aggressive nomination, prediction) is a :class:`punch.peer.strategy.Strategy`, decided
    before it is made.
    """

    def __init__(
        self,
        endpoint: StunEndpoint,
        me: str,
        introduction: Introduction,
        timings: PunchTimings,
        *,
        strategy: Strategy = PLAIN,
        early_at: float | None = None,
        on_chosen: Callable[[Path], None] | None = None,
        on_heard: Callable[[Address], None] | None = None,
        nominate_every_check: bool = True,
        fresh: bool = False,
    ) -> None:
        self._endpoint = endpoint  # the session's socket (swapped for the chosen one after port prediction)
        # ``endpoint`` is a fresh socket of a peer that moved (punch.peer.moving): the path runs over it (Path.local)
        self._fresh = fresh
        self._me = me
        self._intro = introduction
        self._publics = public_candidates(introduction.candidates)  # each family's public endpoint (dualstack)
        self._preferred = preferred_candidate(introduction.candidates)  # the one nominated in every check
        self._mapped = mapped_candidates(introduction.candidates)  # ports the other's router maps for it
        self._timings = timings
        self._strategy = strategy
        self._on_chosen = on_chosen  # called the moment a path is chosen (before any datagram on it is handled)
        self._on_heard = on_heard  # called with the source of each of the other peer's checks we answer
        self._chosen: asyncio.Future[Path] = asyncio.get_running_loop().create_future()
        self._pairs: CheckList[StunEndpoint] = CheckList()
        self._lan_proven = asyncio.Event()
        # Early checks (module docstring): when (loop.time()) to start checking, or None to wait for Go.
        self._early = early_at
        # The prober nominates the public path in every check (step 4); not when a LAN path goes first, not when
        # predicting (Strategy.aggressive), and not in the relay's retries (``nominate_every_check``): there the
        # opener's window may close before its own check is answered, while the prober already moved (a nomination
        # in a check of its own comes after the opener answered it).
        self._aggressive = nominate_every_check and strategy.aggressive
        self._tasks: set[asyncio.Task[None]] = set()
        self._silent = False  # we moved to a fresh socket: checks reaching this one go unanswered
        # Peer-reflexive first (punch.peer.reflexive): until ports are predicted, the remotes we check from the session
        # socket or hear from are recorded, and a path to one of them is "direct"; a session socket the hard side
        # gave up on answers no more checks; ``contact``: a check of the other's reached us, or it answered ours.
        self._before_prediction = strategy.reflexive_first
        self._reflexive: set[Address] = set()
        self._given_up: StunEndpoint | None = None
        self._session_checks: list[asyncio.Task[None]] = []
        self.contact = asyncio.Event()
        self._check_policy = RetransmitPolicy(
            rto=timings.check_interval,
            backoff=1.0,
            max_rto=timings.check_interval,
            max_sends=max(1, int(timings.timeout / timings.check_interval)),
            last_wait=1.0,
        )

    @property
    def endpoint(self) -> StunEndpoint:
        """The socket the session's checks and keepalives leave from."""
        return self._endpoint

    def use(self, endpoint: StunEndpoint) -> None:
        """From now on check (and keep the path alive) from ``endpoint``: the socket a path was chosen over."""
        self._endpoint = endpoint

    @property
    def strategy(self) -> Strategy:
        return self._strategy

    @property
    def early(self) -> bool:
        """Whether both sides check without waiting for Go (module docstring)."""
        return self._early is not None

    @property
    def same_nat(self) -> bool:
        """Whether both peers sit behind one NAT (one public address)."""
        return self._strategy.same_nat

    @property
    def lan_first(self) -> bool:
        """Whether the prober waits a moment for a LAN candidate before it nominates the NAT's hairpin."""
        return self._strategy.lan_first

    @property
    def hopeless(self) -> bool:
        """Both NATs map endpoint-dependently: no direct path to retry from the relay."""
        return self._strategy.hopeless

    @property
    def heard(self) -> bool:
        """Whether a check of the other peer's reached us (punch.peer.moving)."""
        return self._pairs.heard

    @property
    def peer(self) -> str:
        return self._intro.peer_id

    @property
    def chosen(self) -> Path | None:
        """The chosen path, once there is one."""
        return self._chosen.result() if self._chosen.done() else None

    async def wait_chosen(self) -> Path:
        """Wait for the chosen path (without checking anything: :meth:`run` does that)."""
        return await asyncio.shield(self._chosen)

    def _choose(self, path: Path) -> None:
        if self._silent:
            return  # we moved (punch.peer.moving)
        if self._fresh and path.local is None:
            path = dataclasses.replace(path, local=self._endpoint)
        self._pairs.complete()
        self._chosen.set_result(path)
        if self._on_chosen is not None:
            self._on_chosen(path)

    def _kind(self, remote: Address, via: StunEndpoint | None = None) -> str:
        """What a path to ``remote`` from ``via`` (default: the session's socket) is. Both sides call it the same: a
        path over one of port prediction's sockets (``predicted``) is never one of the pairs the hard side checked
        from its session socket before it predicted, which alone the easy side heard from before Go; a path through a
        port a router maps for one of us (Plan.MAPPED, where nothing is predicted) is ``mapped``."""
        if remote in self._mapped:
            return "mapped"
        if remote in self._intro.candidates[1:] and remote not in self._publics:
            return "direct-lan"
        if via is not None and via is not self._endpoint:
            return "predicted"  # one of port prediction's sockets
        if self._strategy.waits and family_of(remote[0]) == family_of(self._intro.candidates[0][0]):
            # the other peer reached us through the port our router maps (Strategy.waits): in the family we registered
            # in, taken to be the other's (a path of the other family, punch.peer.dualstack, does not pass that port)
            return "mapped"
        if self._strategy.predicting and remote not in self._reflexive:
            return "predicted"
        return "direct"

    def check(self, *, nominate: bool = False) -> Message:
        """A connectivity check of this session (the endpoint signs it with the session's key)."""
        attributes: list[tuple[int, object]] = [
            (AttributeType.PEER_ID, self._me),
            (AttributeType.SESSION_ID, self._intro.session_id),
        ]
        if nominate:
            attributes.append((AttributeType.USE_CANDIDATE, None))
        return request(Method.BINDING, *attributes)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- the run ------------------------------------------------------------------------------------------

    def open_mappings(self) -> None:
        """Opener, step 1: open our NAT's mapping toward each candidate with low-TTL checks (sent at once); none where a
        router maps a port for one of us (Plan.MAPPED: that port is open already, and a flow toward the other that
        our NAT recorded could clash with its checks to our mapped port, punch.peer.strategy.waits_for_checks)."""
        if self._timings.open_ttl <= 0 or self._strategy.plan is Plan.MAPPED:
            return
        for candidate in self._intro.candidates:
            ttl = self.opening_ttl(candidate)
            log.info(
                "probe sent to %s with TTL %d: opens our NAT mapping, dies before %s",
                format_address(candidate),
                ttl,
                "theirs" if ttl == self._timings.open_ttl else "the NAT we share with them",
            )
            self._endpoint.send_with_ttl(self.check(), candidate, ttl)

    def opening_ttl(self, candidate: Address) -> int:
        """The TTL of our probe toward ``candidate``: ``open_ttl``, which passes all our NATs, except toward the
        public endpoint of a peer behind the same outermost NAT (``same_nat``): that NAT hairpins the probe to the
        other peer's NATs instead of letting it die, and a NAT without a firewall receives it addressed to itself,
        delivers it locally and so makes MASQUERADE give the other peer's checks a new port (the conntrack race).
        One hop less dies at the shared NAT, after passing the NATs below it, which are ours alone; the shared one
        already maps us (we talked to the server through it) and hairpins their checks to that mapping."""
        ttl = self._timings.open_ttl
        if self._strategy.same_nat and ttl > 1 and candidate == self._intro.candidates[0]:
            return ttl - 1
        return ttl

    def silence(self) -> None:
        """Answer no more checks and choose no path (we move to a fresh socket, punch.peer.moving: a pair proven
        with this one would be a path we no longer use)."""
        self._silent = True

    def again(self, timeout: float, open_ttl: int) -> Puncher:
        """A fresh puncher for the same session and socket, checking for ``timeout`` seconds and opening our mapping
        with probes of TTL ``open_ttl`` (the relay's background retries)."""
        timings = dataclasses.replace(self._timings, timeout=timeout, open_ttl=open_ttl, early=False)
        return Puncher(
            self._endpoint,
            self._me,
            self._intro,
            timings,
            strategy=Strategy(same_nat=self._strategy.same_nat, lan_on_link=self._strategy.lan_on_link),
            on_heard=self._on_heard,
            nominate_every_check=False,
        )

    def moved(self, introduction: Introduction, endpoint: StunEndpoint | None = None) -> Puncher:
        """A puncher for the same session after a move (punch.peer.moving): toward ``introduction``'s candidates,
        in its role; from ``endpoint``, a fresh socket of ours whose paths then run over it, or from ours."""
        timings = dataclasses.replace(self._timings, early=False)
        fresh = endpoint is not None and endpoint is not self._endpoint
        return Puncher(
            endpoint or self._endpoint,
            self._me,
            introduction,
            timings,
            # the mover's probe dies at the NAT we share (opening_ttl); a plain punch otherwise
            strategy=Strategy(same_nat=self._strategy.same_nat),
            on_chosen=self._on_chosen,
            on_heard=self._on_heard,
            fresh=fresh,
        )

    async def run(self) -> Path:
        """Check candidates until a path is chosen or the timeout passes (PeerError)."""
        if self._chosen.done():  # peer-reflexive first found it before anything else was needed
            self._stop()
            return self._chosen.result()
        if self._strategy.waits:  # the other checks the port our router maps for us; we answer, and check back
            self._spawn(self._opener_fallback())
        elif self._early is not None:
            self._spawn(self._early_checks(self._early))
        elif self._intro.role is Role.PROBER:
            self._start_checks("probing")
        elif not self._strategy.predicting:
            self._spawn(self._opener_fallback())
        return await self._wait_for_path()

    async def retry(self, lead: float) -> Path:
        """On the relay, try again without the server, on our own clock; PeerError on timeout.

        Both peers retry at about the same time (their timers started when each fell back to the relay). Both open
        their mapping with low-TTL probes first; the prober checks ``lead`` seconds later, for the timeout, and the
        opener only answers and sends triggered checks, as in a punch (and checks at full TTL itself if no check
        came ``opener_fallback`` seconds after the lead). So no NAT sees a check before its own peer's probe left,
        as long as the opener starts less than ``lead`` later than the prober, and the prober less than the timeout
        later than the opener. The peers' mappings toward the server stay open, so a path that was blocked for a
        while can now be proven.
        """
        log.info("on the relay: trying a direct path to %s again", self.peer)
        self.open_mappings()
        if self._intro.role is Role.PROBER:
            self._spawn(self._checks_after(lead))
        else:
            self._spawn(self._opener_fallback(lead))
        return await self._wait_for_path(lead + self._timings.timeout)

    async def _wait_for_path(self, seconds: float | None = None) -> Path:
        timeout = self._timings.timeout if seconds is None else seconds
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(self._chosen)
        except TimeoutError:
            tried = ", ".join(format_address(c) for c in self._intro.candidates)
            raise PeerError(
                f"no direct path to {self.peer} within {timeout:g} s (tried {tried}); "
                "both NATs may be symmetric, or a firewall drops UDP"
            ) from None
        finally:
            # The path (or the error) is the result now: the checks still running end at the loop's next turn,
            # not on the punch's time (awaiting them took some turns of a freshly started process's loop).
            self._stop()

    def _stop(self) -> None:
        self._pairs.end()
        for task in list(self._tasks):
            task.cancel()

    async def close(self) -> None:
        """Stop every check still running and wait until they have; idempotent."""
        self._stop()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _early_checks(self, at: float) -> None:
        await sleep_until(at)  # not asyncio.sleep: a wait of about a millisecond, which asyncio rounds up to two
        self._start_checks("checking without waiting for Go:")

    async def _checks_after(self, lead: float) -> None:
        await asyncio.sleep(lead)
        self._start_checks("on the relay: probing")

    async def _opener_fallback(self, after: float = 0.0) -> None:
        waited = after + self._timings.opener_fallback  # a retry's fallback also waits out its lead
        await asyncio.sleep(waited)
        if not self._pairs.heard and not self._chosen.done():
            self._start_checks(f"no check from {self.peer} after {waited:g} s; probing")

    def _start_checks(self, why: str, policy: RetransmitPolicy | None = None) -> list[asyncio.Task[None]]:
        log.info("%s %s", why, ", ".join(format_address(c) for c in self._intro.candidates))
        return [
            self._spawn(self._check_until_proven(self._pairs.pair(candidate, self._endpoint), policy))
            for candidate in self._intro.candidates
        ]

    # -- peer-reflexive first (punch.peer.reflexive) ----------------------------------------------------------

    def check_from_session_socket(self, window: float) -> None:
        """The hard side: check every candidate from the session's socket now, paced to be answered within
        ``window`` seconds even when the first check came a moment too soon and was dropped."""
        self._reflexive.update(self._intro.candidates)
        interval = self._timings.check_interval
        policy = dataclasses.replace(
            self._check_policy, rto=min(interval, window / 4), backoff=2.0, max_sends=self._check_policy.max_sends + 4
        )
        self._session_checks = self._start_checks("checking from our main socket:", policy)

    def give_up_session_socket(self) -> None:
        """The hard side, when nothing came back: the session socket's pairs fail and checks reaching it go
        unanswered from now on, so that every path from here runs over port prediction's sockets."""
        self._given_up = self._endpoint
        self.predict_from_now()
        for task in self._session_checks:
            task.cancel()
        for candidate in self._intro.candidates:
            self._pairs.pair(candidate, self._endpoint).fail()

    def predict_from_now(self) -> None:
        """Ports are predicted from now on (the hard side gave up its session socket; the easy side was told Go):
        a remote heard from first after this is a predicted one."""
        self._before_prediction = False

    def found(self, remote: Address) -> None:
        """Port prediction found ``remote`` (it answered a check): the prober nominates it."""
        if self._intro.role is Role.PROBER:
            self._spawn(self._nominate(remote))

    async def _check_until_proven(
        self, pair: CandidatePair[StunEndpoint], policy: RetransmitPolicy | None = None
    ) -> None:
        """Check ``pair`` until the other peer answers from its remote (Succeeded); the prober then nominates it."""
        remote, via = pair.remote, pair.via
        prober = self._intro.role is Role.PROBER
        nominate = self._aggressive and prober and remote == self._preferred
        loop = asyncio.get_running_loop()
        started = loop.time()
        pair.start()
        while not self._chosen.done():
            try:
                response, source = await via.request(
                    self.check(nominate=nominate), remote, policy or self._check_policy
                )
            except TransactionTimeout:
                pair.fail()
                return
            if not self.is_from_peer(response, source, remote):
                log.info("ignored an answer from %s: not %s in our session", format_address(source), self.peer)
                await asyncio.sleep(self._timings.check_interval)
                continue
            log.info("probe answered by %s at %s: both directions work", self.peer, format_address(remote))
            pair.succeed()
            self.contact.set()
            if nominate:
                if self._pairs.nominating is None:  # not once a LAN pair's own nomination began: one pair, both sides
                    pair.nominated_by_us = True
                    self._choose_once(Path(remote, self._kind(remote, via)), "we nominated it in our checks")
            elif prober and remote in self._publics and remote != self._preferred:  # IPv4 beside IPv6 (dualstack)
                if await self._falls_back(remote, loop.time() - started):
                    await self._nominate(remote)
            elif prober and not self._aggressive:
                await self._prefer_lan(remote, loop.time() - started)
                await self._nominate(remote)
            elif prober and self._strategy.same_nat:  # a LAN pair answered before the NAT's hairpin
                await self._wait_for_hairpin(remote, loop.time() - started)
                await self._nominate(remote)
            elif not prober and pair.nominated_by_peer and not self._chosen.done():
                self._take_nomination(pair)
            return

    def _choose_once(self, path: Path, why: str) -> None:
        if not self._chosen.done() and not self._silent:
            log.info("path chosen: %s via %s (%s)", path.kind, format_address(path.remote), why)
            self._choose(path)

    async def _prefer_lan(self, remote: Address, took: float) -> None:
        """Behind the same NAT, hold a public path (proven in ``took`` seconds) back briefly while a LAN candidate
        may still answer (:func:`lan_wait`)."""
        if remote in self._intro.candidates[1:] and remote not in self._publics:
            self._lan_proven.set()
            return
        if not self._strategy.lan_first or len(self._intro.candidates) < 2:
            return
        wait = lan_wait(took, self._timings.lan_margin, self._timings.lan_grace)
        try:
            async with asyncio.timeout(wait):
                await self._lan_proven.wait()
        except TimeoutError:
            log.info(
                "no LAN candidate of %s answered within %.3f s (the NAT's hairpin answered in %.3f s); using the "
                "hairpin",
                self.peer,
                wait,
                took,
            )

    async def _falls_back(self, remote: Address, took: float) -> bool:
        """The public candidate of the other family (``remote``, proven in ``took`` seconds) answered: whether to
        nominate it, because the preferred one was neither chosen nor proven within as long again (:func:`lan_wait`;
        proven, it is about to be nominated)."""
        wait = lan_wait(took, self._timings.lan_margin, self._timings.lan_grace)
        await asyncio.wait((self._chosen,), timeout=wait)
        preferred = self._pairs.find(self._preferred, self._endpoint)
        if self._chosen.done() or (preferred is not None and preferred.state is PairState.SUCCEEDED):
            return False
        log.info(
            "%s at %s did not answer within %.3f s (%s did in %.3f s): falling back to IPv%d",
            self.peer,
            format_address(self._preferred),
            wait,
            format_address(remote),
            took,
            family_of(remote[0]),
        )
        return True

    async def _wait_for_hairpin(self, lan: Address, took: float) -> None:
        """Behind one NAT without a LAN candidate on our links (aggressive nomination of the hairpin): a LAN pair
        (``lan``, proven in ``took`` seconds) answered first, so the LAN is routed; give the hairpin's nominated
        check as long again (:func:`lan_wait`) to be answered, which then is the path. Only if it is not (a NAT
        that does not hairpin) is the LAN pair nominated, in a check of its own: one nominated pair at a time, so
        both sides take the same one."""
        wait = lan_wait(took, self._timings.lan_margin, self._timings.lan_grace)
        await asyncio.wait((self._chosen,), timeout=wait)
        if not self._chosen.done():
            log.info(
                "our NAT's hairpin to %s did not answer within %.3f s (its LAN candidate %s did in %.3f s): "
                "nominating the LAN one",
                self.peer,
                wait,
                format_address(lan),
                took,
            )

    async def _nominate(self, remote: Address) -> None:
        """Nominate the first proven pair, and only that one, so both sides settle on the same path."""
        if self._chosen.done() or self._pairs.nominating is not None:
            return
        self._pairs.pair(remote, self._endpoint).nominated_by_us = True
        try:
            response, source = await self._endpoint.request(self.check(nominate=True), remote, self._check_policy)
        except TransactionTimeout:
            return
        if self.is_from_peer(response, source, remote) and not self._chosen.done() and not self._silent:
            path = Path(remote, self._kind(remote))
            log.info(
                "path chosen: %s via %s (we nominated it, %s agreed)",
                path.kind,
                format_address(remote),
                self.peer,
            )
            self._choose(path)

    def is_from_peer(self, response: Message, source: Address, remote: Address) -> bool:
        """Whether ``response`` answers a check of ours to ``remote`` from the other peer of this session."""
        if response.message_class is not MessageClass.SUCCESS or source != remote:
            return False
        return (
            response.text(AttributeType.PEER_ID) == self.peer
            and response.raw(AttributeType.SESSION_ID) == self._intro.session_id
        )

    async def keep_alive(
        self, remote: Address, interval: float, policy: RetransmitPolicy, until: asyncio.Event | None = None
    ) -> None:
        """Check the chosen path every ``interval`` seconds until cancelled: it keeps both NATs' mappings fresh,
        and a peer that stops answering raises PeerError within ``interval`` plus one retransmission cycle. Once
        ``until`` is set (the other side closed, and may leave), the checks stop and silence is no error."""
        while True:
            await asyncio.sleep(interval)
            if until is not None and until.is_set():
                await asyncio.Event().wait()  # nothing more to check; wait to be cancelled
            try:
                response, source = await self._endpoint.request(self.check(), remote, policy)
            except TransactionTimeout:
                if until is not None and until.is_set():
                    continue
                raise PeerError(
                    f"lost contact with {self.peer}: no answer to keepalives at {format_address(remote)} "
                    f"for {policy.total():g} s"
                ) from None
            if self.is_from_peer(response, source, remote):
                log.debug("keepalive answered by %s", self.peer)

    # -- incoming checks ----------------------------------------------------------------------------------

    def on_request(self, message: Message, source: Address, via: StunEndpoint | None = None) -> bool:
        """Handle a check from the other peer that reached ``via`` (default: the session's socket), answering from
        there; False if the message is not a check of this session."""
        via = via or self._endpoint
        if message.method != Method.BINDING:
            return False
        sender = message.text(AttributeType.PEER_ID)
        if message.raw(AttributeType.SESSION_ID) != self._intro.session_id:
            log.info("ignored a probe from %s: not our session", format_address(source))
            return True
        if sender == self._me:
            log.info("ignored our own probe, come back from %s (a look-alike candidate)", format_address(source))
            return True
        if sender != self.peer:
            log.info(
                "ignored a probe from %s: it claims to be %r, not %s",
                format_address(source),
                sender,
                self.peer,
            )
            return True
        if self._silent:
            log.info("ignored a probe from %s: we moved to a fresh socket", format_address(source))
            return True
        if via is self._given_up:
            log.info(
                "ignored a probe from %s on our main socket: we gave it up for port prediction", format_address(source)
            )
            return True
        reflexive = source not in self._intro.candidates  # RFC 8445 §7.3.1.3
        if self._on_heard is not None:
            self._on_heard(source)
        if self._before_prediction:
            self._reflexive.add(source)
        self.contact.set()
        pair = self._pairs.pair(source, via)
        triggered = pair.checked_by_peer  # our triggered check on this pair is running or done (RFC 8445 §7.3.1.4)
        pair.checked_by_peer = True
        nominated = message.has(AttributeType.USE_CANDIDATE)
        if nominated and self._pairs.state is CheckListState.FAILED:
            # A retry from the relay that gave up: answering would let the prober move to a path we will not take;
            # unanswered, its nomination is retransmitted and reaches our next retry.
            log.info("ignored a nomination from %s: this try has ended", format_address(source))
            return True
        via.send(
            make_success(
                message,
                (
                    (AttributeType.XOR_MAPPED_ADDRESS, source),
                    (AttributeType.PEER_ID, self._me),
                    (AttributeType.SESSION_ID, self._intro.session_id),
                ),
            ),
            source,
        )
        log.info(
            "probe received from %s at %s%s%s; answered",
            self.peer,
            format_address(source),
            " (not one of its candidates: a peer-reflexive candidate)"
            if reflexive and self._before_prediction and not triggered
            else "",
            " (nominating this path)" if nominated else "",
        )
        if nominated and self._intro.role is Role.OPENER and not self._chosen.done():
            pair.nominated_by_peer = True
            if pair.state is PairState.SUCCEEDED:
                self._take_nomination(pair)
                return True
            log.info("nomination of %s waits until our own check proves it", format_address(source))
        if not triggered and self._pairs.running:
            self._spawn(self._check_until_proven(pair))
        return True

    def _take_nomination(self, pair: CandidatePair[StunEndpoint]) -> None:
        """Opener: use the pair the prober nominated (our own check proved it)."""
        if self._silent:
            return
        source, via = pair.remote, pair.via
        extra = via is not self._endpoint  # one of port prediction's sockets
        path = Path(source, self._kind(source, via), via if extra else None)
        log.info("path chosen: %s via %s (nominated by %s)", path.kind, format_address(source), self.peer)
        self._choose(path)
