"""Peer-reflexive first: where one NAT maps endpoint-dependently and the other does not, the hard side checks from
its main socket before anyone predicts a port (RFC 8445 §7.3.1.3), and ports are predicted (punch.peer.predict)
only if that gets no answer within a round trip or two.

What each side knows when its Introduce arrives, and what it must assume:

- The **hard** side (its NAT maps endpoint-dependently: "symmetric") measured that itself (RFC 5780 §4.3, against
  the server's two addresses) and learns from its Introduce that the other NAT maps endpoint-independently, and
  both round trips to the server. A check from its main socket to the other's public endpoint leaves from a fresh
  public port of its NAT, which the other side cannot know beforehand; what comes back from exactly that endpoint
  its own NAT lets in (conntrack), so its own filtering does not matter.
- The **easy** side knows the same two mappings. Neither side knows how the easy NAT *filters* (RFC 4787 §5):
  RFC 5780 §4.4's test passes by an answer that does not come, some seconds of waiting, which a peer does not
  spend at startup (``punch probe`` does). So both assume the filtering RFC 4787 REQ-8 recommends, endpoint-
  independent or address-dependent (a packet from any port of an address we sent something gets in), and the
  hard side's checks find out within a round trip or two.

The punch:

1. the easy side, the moment its Introduce arrives, sends the hard side's candidates low-TTL probes
   (punch.peer.strategy.Strategy.opens_at_introduction): they open its NAT toward the hard NAT's *address*, which
   is what an address-dependent filter asks, and die before the hard NAT;
2. the hard side checks the easy side's candidates from its main socket once that probe has left
   (punch.peer.strategy.early_delay after its own Introduce). An easy NAT that filters by address at most lets the
   checks in; the easy side sees them come from a port that is none of the candidates, a peer-reflexive candidate,
   answers there and checks it back (RFC 8445 §7.3.1.4). Both directions work, the easy side (the prober)
   nominates, and the path is ``direct``. Nobody waited for Ready and Go;
3. if nothing of the other peer reaches the hard side's main socket within punch.peer.strategy.reflexive_window
   (two round trips between the peers, at least 20 ms), the easy NAT filters by port as well, or dropped the checks,
   or one of the two processes is slow: the hard side binds its many sockets, its main socket still listening and
   checking meanwhile. An answer that comes while it binds them (a busy machine: tens of milliseconds late) still
   makes the path direct, and the sockets are closed unused. Otherwise the hard side gives its main socket up for
   this punch (checks reaching it go unanswered, so that no path is proven there after the cut), opens the
   mappings and says Ready, and Go tells the easy side to spray. Go is the easy side's only reason to spray, and
   it comes only after the hard side gave up: both call that path ``predicted``. The wait past the window costs
   nothing: those sockets are needed anyway.

A bare router (no firewall) that filters by address and gets the hard side's first check before the easy side's
probe left takes it for a connection of its own (the conntrack race of punch.peer.puncher): the main socket is then
lost toward that endpoint, and ports are predicted after the window. The early checks' margin keeps that rare.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from punch.errors import PeerError
from punch.peer.clock import sleep_until
from punch.peer.predict import PortOpener, PredictConfig, Sprayer
from punch.peer.puncher import Path, Puncher
from punch.peer.strategy import Strategy
from punch.stun.protocol import Handler, SocketMaker, StunEndpoint
from punch.stun.wire import Introduction, Role

log = logging.getLogger(__name__)


class Rendezvous(Protocol):
    """What this part of the punch needs of the rendezvous client (punch.peer.client.RendezvousClient)."""

    introduced_at: float | None  # loop.time() when the Introduce arrived
    go: asyncio.Event  # the server said Go

    async def ready(self, session_id: bytes) -> None: ...


class ReflexiveFirst:
    """The part of a punch between a symmetric NAT and a cone that comes before the puncher's own run (module
    docstring): :meth:`start`; then :meth:`failure` says why no path was found, and :meth:`settle` closes what the
    chosen path does not use. Port prediction's sockets also go on ``sockets``, closed with the session."""

    def __init__(
        self,
        puncher: Puncher,
        introduction: Introduction,
        strategy: Strategy,
        client: Rendezvous,
        config: PredictConfig,
        *,
        endpoint: StunEndpoint,
        open_socket: SocketMaker,
        session: Handler,
        sockets: contextlib.AsyncExitStack,
        open_ttl: int,
        go_within: float,
    ) -> None:
        self._puncher = puncher
        self._intro = introduction
        self._strategy = strategy
        self._client = client
        self._config = config
        self._endpoint = endpoint  # the session's socket
        self._open_socket = open_socket  # as the session's (checks signed, only the session's accepted)
        self._session = session  # the session's handler, for the datagrams of the socket a path is chosen over
        self._sockets = sockets
        self._open_ttl = open_ttl
        self._go_within = go_within  # the easy side: seconds to wait for a path or Go
        self.opener: PortOpener | None = None
        self.sprayer: Sprayer | None = None

    async def start(self) -> None:
        """The hard side: check from the main socket first, then (no answer) open many mappings and say Ready. The
        easy side: wait for a path, or for Go (the hard side got no answer), then spray. PeerError if neither comes
        within ``go_within`` seconds."""
        if self._intro.role is Role.OPENER:
            await self._hard_side()
            return
        try:
            async with asyncio.timeout(self._go_within):
                go = await self._go_or_path()
        except TimeoutError:
            raise PeerError(f"the server never said Go for {self._intro.peer_id}; is it still running?") from None
        if go:
            self._spray()

    async def _hard_side(self) -> None:
        """Check from the main socket (module docstring, step 2); without an answer within the window, open many
        mappings (the main socket still listening meanwhile), give the main socket up and say Ready (step 3)."""
        if self._strategy.reflexive_delay is None:
            await self._predict(await self._bind_many())
            return
        started = await self._check_from_main_socket()
        if await self._contact_within(self._strategy.reflexive_window):
            self._log_reached(started, "")
            return
        opener = await self._bind_many()
        if self._puncher.contact.is_set():  # an answer that came late, while we bound the sockets: still direct
            self._log_reached(started, f", while we opened {len(opener.sockets)} sockets to predict ports")
            await opener.close()
            self.opener = None
            return
        log.info(
            "nothing from %s reached our main socket within %.0f ms: its NAT lets in only the port it sent to "
            "(or dropped our checks); giving that socket up for this punch and predicting ports",
            self._intro.peer_id,
            (asyncio.get_running_loop().time() - started) * 1000,
        )
        self._puncher.give_up_session_socket()
        await self._predict(opener)

    async def _check_from_main_socket(self) -> float:
        """Wait for the other's low-TTL probe to have left (``reflexive_delay`` after our Introduce), then check
        from the main socket; when the checks began (loop time)."""
        strategy = self._strategy
        assert strategy.reflexive_delay is not None
        loop = asyncio.get_running_loop()
        introduced = self._client.introduced_at
        await sleep_until((loop.time() if introduced is None else introduced) + strategy.reflexive_delay)
        self._puncher.check_from_session_socket(strategy.reflexive_window)
        return loop.time()

    async def _contact_within(self, window: float) -> bool:
        """Whether the other peer reached the main socket, or answered a check of it, within ``window`` seconds.
        An answer handled in the loop turn the window ends in counts: the timeout's cancellation can come after
        it set the event (both ready in one turn)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(window):
                await self._puncher.contact.wait()
        return self._puncher.contact.is_set()

    def _log_reached(self, started: float, meanwhile: str) -> None:
        log.info(
            "%s reached our main socket in %.1f ms%s: its NAT let our checks in (it filters by address at most); "
            "no port prediction",
            self._intro.peer_id,
            (asyncio.get_running_loop().time() - started) * 1000,
            meanwhile,
        )

    async def _bind_many(self) -> PortOpener:
        """Port prediction's hard side: bind many sockets (each gets its mapping in :meth:`_predict`)."""
        opener = PortOpener(self._puncher, self._open_socket, self._session)
        self.opener = await self._sockets.enter_async_context(opener)
        await opener.open(self._endpoint.local_address[0], self._config.sockets)
        return opener

    async def _predict(self, opener: PortOpener) -> None:
        """Open the sockets' mappings, then Ready: the other side sprays once told Go."""
        # Full open_ttl even toward a peer behind the NAT we share (not Puncher.opening_ttl): our fresh sockets are
        # new to that NAT too, which maps each only when a packet of it passes (tests/e2e/test_punch_cgnat.py)
        opener.send(self._intro.candidates[0], self._open_ttl)
        await self._client.ready(self._intro.session_id)

    async def _go_or_path(self) -> bool:
        """The easy side: True once Go comes (the hard side opened its mappings), False once a path was chosen
        without it (peer-reflexive). Without peer-reflexive first, Go is all it waits for."""
        waiting: set[asyncio.Future[Any]] = {asyncio.ensure_future(self._client.go.wait())}
        if self._strategy.reflexive_first:
            waiting.add(asyncio.ensure_future(self._puncher.wait_chosen()))
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waiting:
                task.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)
        return self._puncher.chosen is None

    def _spray(self) -> None:
        if self._strategy.reflexive_first:
            log.info("%s got no answer on its main socket and opened many mappings (Go): spraying", self._intro.peer_id)
        self._puncher.predict_from_now()
        self.sprayer = Sprayer(self._puncher, self._endpoint, self._intro.candidates[0][0], self._config)
        self.sprayer.start()

    def failure(self) -> str | None:
        """Why port prediction found no path, if it ran."""
        predictor = self.opener or self.sprayer
        return None if predictor is None else predictor.failure()

    async def settle(self, path: Path | None) -> None:
        """Stop spraying; keep the socket ``path`` runs over, if one of ours, and close the other sockets."""
        if self.sprayer is not None:
            await self.sprayer.close()
        if self.opener is not None and path is not None and path.local is not None:
            await self.opener.close_others(path.local)  # the chosen one is the session's socket now (_on_chosen)
        elif self.opener is not None:
            await self.opener.close()
