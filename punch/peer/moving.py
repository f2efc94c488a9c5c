"""Moving to a fresh socket after a refused check: the way back from a lost conntrack race, in a few round trips.

The race (punch.peer.puncher): a check that reaches the other peer's NAT before that peer's own probe left is, on a
NAT without a firewall, recorded there as a connection of its own. When its peer then sends toward us, the NAT must
map it to another port; and Linux maps every later flow from that peer's socket to the port it mapped it to last
(conntrack's search for an existing mapping of the same source), so that socket is lost for punching toward anyone
for as long as those entries live (punch.peer.session.upgrade_waits). Nothing listens on the NAT's own address at
the port our check went to, so the NAT's kernel also answers it with ICMP Port Unreachable, which our socket reads
(StunEndpoint.watch_refusals). A refusal from the other peer's public endpoint therefore says: the other peer's
socket is lost for this punch, and its NAT has no firewall.

A fresh socket is not. So:

1. the peer whose check was refused asks the server to **move** the other (Move), stops checking, and waits;
2. the server tells the other peer to move (Move); it opens a fresh socket, which its NAT maps to a port of its
   own, and sends our public endpoint a low-TTL probe from it: its NAT is now open toward us, as the opener's is
   in a punch;
3. it says Ready from the fresh socket; the server sees the new public endpoint there and tells us, in a Go with
   CANDIDATE, to check it (punch.rendezvous.server);
4. we **follow**: we check the fresh endpoint from our session socket, as a prober does (our NAT still maps our
   socket as it did: we sent first). The mover answers from the fresh socket, as an opener does, and the chosen
   path runs over that socket (Path.local).

No NAT sees a check before its own peer's probe: the mover's NAT was opened before its Ready left, and our checks
open our NAT on their way out. When both peers' checks were refused (neither NAT has a firewall: the late peer's
checks left from the port its NAT remapped), both ask; the server tells only one peer to move, the first one asked
about, which is the late one (its checks started after the early one's had reached its NAT). Each peer moves or
follows once per punch; if that fails too, the punch fails (and the session takes the relay), at once where the
other NAT refuses again (two NATs next to each other: :func:`_unless_refused`). A closed socket
refuses checks as well: if the other peer has left the server since the introduction, the server answers Move with
404 (PeerGone), and the punch ends without the relay, since nobody is left to relay to.

One path, on both sides. A NAT that forwards from anywhere (a full cone) lets the late peer's checks in even from
the port its own NAT remapped, and the prober may choose that pair before the server's Move arrives. So a refused
opener keeps answering (and takes the prober's nomination) while it waits for the move; a peer told to move that
already hears the other's checks stays and finishes its punch; a path chosen before the peer learned anything
stands; and a mover's old socket answers no more checks and chooses nothing from the moment it decides
(Puncher.silence). A pair needs both sides' checks answered, so a peer that moves never took part in one.

Only a punch of the plain kind moves (with low-TTL probes: the mover needs one; not port prediction), over IPv4 on
Linux, where the socket can read ICMP errors; elsewhere a lost race ends on the relay, as before. Behind one NAT
the race is lost at the other peer's NAT below the shared one (a home router behind a carrier's NAT), whose
refusal the shared NAT's hairpin brings back from the other's public address; the mover's probe dies at the
shared NAT (Puncher.opening_ttl), as in the punch. A shared NAT that does not hairpin refuses every check to its
public address itself, which no move mends: so peers with a LAN candidate of the other on a link of theirs
(punch.peer.routes), who take Ready/Go and so lose no race, do not move at all, and a refused prober behind one NAT
keeps checking the LAN candidates while the other moves (a routed LAN may answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging

from punch.errors import PeerError
from punch.peer.client import RendezvousClient
from punch.peer.dispatch import Dispatcher
from punch.peer.puncher import Path, Puncher
from punch.peer.tasks import settle
from punch.stun import Address, Message, MessageClass
from punch.stun.protocol import SocketMaker, StunEndpoint, format_address
from punch.stun.wire import Introduction, Role

log = logging.getLogger(__name__)

FIRST = asyncio.FIRST_COMPLETED


def _succeeded(task: asyncio.Future[Path]) -> bool:
    return task.done() and not task.cancelled() and task.exception() is None


class Moves:
    """One punch that may move (or follow a move): :meth:`run` returns the chosen path, or PeerError.

    ``dispatcher`` routes the session socket's requests: a follower puts its puncher in the puncher's place there
    while it checks. A mover's fresh socket (made by ``open_socket``, as the session's others) hands checks to the
    mover's puncher and everything else (the session's Data and Close, once the path runs over it) to
    ``dispatcher``; ``sockets`` closes it when the session ends. ``timeout``: how long a peer that asked waits for
    the other's move.
    """

    def __init__(
        self,
        puncher: Puncher,
        introduction: Introduction,
        client: RendezvousClient,
        dispatcher: Dispatcher,
        open_socket: SocketMaker,
        sockets: contextlib.AsyncExitStack,
        timeout: float,
    ) -> None:
        self._puncher = puncher
        self._intro = introduction
        self._client = client
        self._dispatcher = dispatcher
        self._open_socket = open_socket
        self._sockets = sockets
        self._timeout = timeout
        self._public = introduction.candidates[0]
        # Behind one NAT the refusal may come from that NAT itself, one that does not hairpin: then a LAN candidate
        # off our links (a routed LAN) may still answer, so a refused prober checks on while the other moves.
        self._lan_may_answer = puncher.same_nat and len(introduction.candidates) > 1
        self.outcome: str | None = None  # "moved" or "followed", once it did

    def _log_refusal(self, _: asyncio.Future[None]) -> None:
        log.info(
            "our check to %s was refused by %s's NAT (ICMP port unreachable): it had no mapping toward us, so one of "
            "us checked before the other's probe had opened its NAT, and the late one must move to a fresh socket%s",
            format_address(self._public),
            self._intro.peer_id,
            " (or the NAT we share does not hairpin: then no move helps)" if self._puncher.same_nat else "",
        )

    @property
    def _tellings(self) -> tuple[asyncio.Future[None], asyncio.Future[Address]]:
        """What the server may tell us: move (Move), or where the other peer moved (Go with CANDIDATE)."""
        return self._client.move, self._client.moved

    async def run(self) -> Path:
        told = self._tellings
        if any(f.done() for f in told):
            return await self._told()
        endpoint = self._puncher.endpoint
        refused = _refusals(endpoint, self._public)
        refused.add_done_callback(self._log_refusal)
        running = asyncio.ensure_future(self._puncher.run())
        try:
            try:
                await asyncio.wait((running, refused, *told), return_when=FIRST)
            finally:
                endpoint.unwatch_refusals()
            if not running.done() and not any(f.done() for f in told):  # refused: the other peer must move
                if self._intro.role is Role.PROBER and not self._lan_may_answer:
                    # We control the choice, and the other got none of our checks there: nothing more to check.
                    running.cancel()
                    await asyncio.gather(running, return_exceptions=True)
                # As the opener we keep answering: the prober may have proven a path to us already (a NAT that
                # forwards from anywhere let its checks in) and chosen it, and then it does not move; we take
                # its nomination as usual.
                await self._ask_to_move(running)
            if self._client.move.done() and not running.done() and self._puncher.heard:
                # Told to move, but the other's checks reach us already: the pair works (through a NAT that forwards
                # from anywhere), and it may have chosen it; we stay and finish the punch.
                log.info("told to move, but %s's checks reach us already: we stay", self._intro.peer_id)
                await asyncio.wait((running,))
            if self._client.move.done() and self._puncher.chosen is None:
                # We move: from this instant the old socket neither answers nor chooses, so no pair proven with it
                # can become a path on either side (no await between the look at `heard` and this).
                self._puncher.silence()
        finally:
            await settle(running)  # a finished punch's error is raised below, or moot once a path is chosen
        chosen = self._puncher.chosen  # set at once, also where the task did not see it before it ended
        if chosen is not None:
            return chosen
        if not any(f.done() for f in told):
            return running.result()  # the punch's own error (its checks ran out)
        return await self._told()

    async def _ask_to_move(self, running: asyncio.Future[Path]) -> None:
        """Ask the server to move the other peer; wait for what it then tells us, or for ``running`` to choose."""
        told = self._tellings
        try:
            async with asyncio.timeout(self._timeout):
                await self._client.ask_to_move(self._intro.session_id)
                if not running.done():
                    await asyncio.wait((*told, running), return_when=FIRST)
                if not _succeeded(running) and not any(f.done() for f in told):
                    await asyncio.wait(told, return_when=FIRST)  # our checks ran out: the move may still come
        except TimeoutError:
            raise PeerError(
                f"{self._intro.peer_id}'s NAT refused our checks, and {self._intro.peer_id} did not move to a "
                f"fresh socket within {self._timeout:g} s"
            ) from None

    async def _told(self) -> Path:
        """Move or follow, as the server told us."""
        if self._client.move.done():
            return await self._move()
        return await self._follow(self._client.moved.result())

    async def _follow(self, fresh: Address) -> Path:
        """Check the other peer's fresh endpoint from our session socket, as a prober does."""
        self.outcome = "followed"
        follower = self._puncher.moved(dataclasses.replace(self._intro, candidates=(fresh,), role=Role.PROBER))
        self._dispatcher.replace(self._puncher.on_request, follower.on_request)
        log.info("following %s to %s: checking it there", self._intro.peer_id, format_address(fresh))
        try:
            return await _unless_refused(
                follower,
                fresh,
                f"{self._intro.peer_id}'s NAT refused our checks at its fresh socket too: our own NAT maps our "
                "socket to another port now, because their fresh probe reached it (no router between the two "
                "NATs), so every move repeats the race",
            )
        finally:
            # The session's puncher answers from here on (keepalives on the path, the relay's retries), as before.
            self._dispatcher.replace(follower.on_request, self._puncher.on_request)

    async def _move(self) -> Path:
        """Open our NAT from a fresh socket, tell the server (it tells the other peer), answer there."""
        self.outcome = "moved"
        self._puncher.silence()  # the other must not prove a pair with our old socket from now on
        mover: Puncher | None = None

        def on_datagram(message: Message, source: Address, data: bytes) -> None:
            if message.message_class is not MessageClass.REQUEST:
                return
            if mover is not None and mover.on_request(message, source):
                return
            self._dispatcher(message, source, data)

        host = self._puncher.endpoint.local_address[0]
        try:
            fresh = await self._open_socket(on_datagram, (host, 0))
        except OSError as error:  # e.g. a host of peers whose sockets live in other namespaces (run_peer's sock)
            raise PeerError(f"could not open a fresh socket on {host}: {error.strerror or error}") from None
        self._sockets.push_async_callback(fresh.close)
        mover = self._puncher.moved(
            dataclasses.replace(self._intro, candidates=(self._public,), role=Role.OPENER), fresh
        )
        log.info(
            "moving to a fresh socket (port %d): it opens our NAT toward %s anew",
            fresh.local_address[1],
            self._intro.peer_id,
        )
        refused = _refusals(fresh, self._public)
        mover.open_mappings()
        try:
            await self._client.ready(self._intro.session_id, via=fresh)
        except PeerError:
            fresh.unwatch_refusals()
            await mover.close()
            raise
        return await _unless_refused(
            mover,
            self._public,
            f"our probe from a fresh socket reached {self._intro.peer_id}'s NAT, which refused it: our probes reach "
            "their NAT (no router between the two NATs), so every move repeats the race",
            refused,
        )


def _refusals(endpoint: StunEndpoint, remote: Address) -> asyncio.Future[None]:
    """Done once ``remote``'s own host refuses a datagram of ``endpoint`` to it (ICMP Port Unreachable), from now
    until ``endpoint.unwatch_refusals()``."""
    refused: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_refused(destination: Address, offender: str) -> None:
        if destination == remote and offender == remote[0] and not refused.done():
            refused.set_result(None)

    endpoint.watch_refusals(on_refused)
    return refused


async def _unless_refused(
    puncher: Puncher, remote: Address, why: str, refused: asyncio.Future[None] | None = None
) -> Path:
    """``puncher``'s punch after a move, ended with PeerError(``why``) if ``remote``'s NAT refuses one of its
    datagrams (``refused``: :func:`_refusals` of the puncher's socket, watched from before its first datagram).

    Before a move a refusal says the other peer's socket lost the race; after it, the move was the way back, and a
    refusal says the race came again: both peers' NATs are next to each other (compose's routers on one network),
    so no TTL keeps a probe from the other NAT, and a bare one then maps its own peer elsewhere. Nothing more
    to try: the session takes the relay at once instead of after the punch's timeout.
    """
    endpoint = puncher.endpoint
    if refused is None:
        refused = _refusals(endpoint, remote)
    running = asyncio.ensure_future(puncher.run())
    try:
        await asyncio.wait((running, refused), return_when=FIRST)
    finally:
        endpoint.unwatch_refusals()
    if running.done():
        return running.result()
    await settle(running)
    if puncher.chosen is not None:
        return puncher.chosen
    raise PeerError(f"no direct path to {puncher.peer}: {why}")  # the session logs it, and takes the relay
