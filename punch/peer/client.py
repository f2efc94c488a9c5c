"""The peer's side of the rendezvous: register under a lease (with our identity's public key), ask for another peer
(with a fresh key share, punch.identity.agreement), take Introduce and Go (and, after a refused check, Move and a Go
that says where the other peer moved, punch.peer.moving); after a lost path, register and ask again
(:meth:`RendezvousClient.rejoin`). What the server sends us on its own is signed with our request key
(:attr:`RendezvousClient.request_key`), and so are our answers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from punch.errors import PeerError, PeerGone
from punch.identity.agreement import OwnShare, Party, share_is_genuine
from punch.identity.keyfile import Identity
from punch.peer.keys import RequestKey
from punch.peer.servers import FAILOVER_POLICY, next_server
from punch.peer.tasks import settle
from punch.stun import Address, AttributeType, Message, MessageClass, Method, make_error, make_success, method_name
from punch.stun.protocol import StunEndpoint, format_address
from punch.stun.transaction import RFC_POLICY, RetransmitPolicy, TransactionTimeout
from punch.stun.wire import (
    ANYONE,
    PEER_GONE,
    Introduction,
    Mapping,
    ProtocolError,
    Role,
    mapping_attribute,
    request,
    required_session,
)

log = logging.getLogger(__name__)

GOODBYE_POLICY = RetransmitPolicy(rto=0.1, max_sends=3, last_wait=2.0)


class RendezvousClient:
    """Talks to the rendezvous server over the peer's one socket."""

    def __init__(
        self,
        endpoint: StunEndpoint,
        server: Address,
        peer_id: str,
        candidates: tuple[Address, ...],
        *,
        lease: int = 30,
        policy: RetransmitPolicy = RFC_POLICY,
        group: bytes | None = None,
        mapping: Mapping = Mapping.UNKNOWN,
        identity: Identity | None = None,
        credentials: RequestKey | None = None,  # where our token is kept (shared with our sockets' keys); else new
        on_introduced: Callable[[Introduction], None] | None = None,
        servers: tuple[Address, ...] = (),  # others sharing the server's registry, to turn to when it falls silent
    ) -> None:
        self._endpoint = endpoint
        self.server = server
        self._servers = servers
        self._asking: str | None = None  # the target of our latest Connect, until introduced
        self._refreshing: asyncio.Task[Address] | None = None  # a refresh on its way: a goodbye waits for it
        self.peer_id = peer_id
        self._candidates = candidates
        self._offered: Address | None = None  # a port our router maps for us (punch.peer.portmapping), if any
        self._lease = lease
        self._policy = policy
        loop = asyncio.get_running_loop()
        self.introduction: asyncio.Future[Introduction] = loop.create_future()
        self.go = asyncio.Event()
        # Where the other peer moved (a Go with CANDIDATE: it opened its NAT from a fresh socket, punch.peer.moving)
        self.moved: asyncio.Future[Address] = loop.create_future()
        self.move: asyncio.Future[None] = loop.create_future()  # the server told us to move (Move)
        # What the server said it refuses from now on about one of our sessions (Notice: "486 Relay quota reached")
        self.notice: asyncio.Future[str] = loop.create_future()
        self.introduced_at: float | None = None  # loop.time() when the Introduce arrived
        # Called with each new introduction the moment its Introduce arrives, in the datagram's handler: what must
        # not wait for the session's next turn (punch.peer.session: an early punch's low-TTL probes) goes there.
        self._on_introduced = on_introduced
        self.mapped: Address | None = None
        # Our token (proves we own our ID: first come, first served), bound to a closed group's key (--secret-file):
        # what signs our requests. Shared with the keys our sockets sign with (punch.peer.keys).
        self._credentials = credentials or RequestKey(group)
        self._mapping = mapping  # how our NAT maps (punch.peer.predict.discover_mapping), told to the server
        self.rtt: float | None = None  # the shortest round trip of our requests to the server (seconds)
        self.told_rtt_us: int | None = None  # the round trip we told the server in our last Connect (SERVER-RTT)
        # Our identity (a fresh one if not given): its public key goes in Register, and it signs our key shares
        self._identity = identity or Identity.generate()
        self._shares: dict[str, OwnShare] = {}  # target -> our share in the latest Connect asking for it
        self._sessions: set[bytes] = set()  # the SESSION-IDs we were introduced to (a retransmission is answered)

    async def _call(
        self, message: Message, what: str, via: StunEndpoint | None = None, policy: RetransmitPolicy | None = None
    ) -> Message:
        loop = asyncio.get_running_loop()
        try:
            key = self._credentials.key
            sent = loop.time()
            response, _ = await (via or self._endpoint).request(message, self.server, policy or self._policy, key)
            self.observe_rtt(loop.time() - sent)  # from the first transmission: a retransmission only makes it longer
        except TransactionTimeout:
            raise PeerError(
                f"the server at {format_address(self.server)} did not answer {what}; "
                "is `punch server` running there and reachable?"
            ) from None
        if response.message_class is MessageClass.ERROR:
            error = response.error_code()
            detail = f"{error.code} {error.reason}" if error else "an error"
            gone = error is not None and error.code == PEER_GONE
            raise (PeerGone if gone else PeerError)(f"the server refused {what}: {detail}")
        return response

    def observe_rtt(self, rtt: float) -> None:
        """One more sample of our round trip to the server: we keep the shortest."""
        self.rtt = rtt if self.rtt is None else min(self.rtt, rtt)

    async def sample_rtt(self) -> None:
        """Measure our round trip to the server once more, with a Binding request (no answer: no sample)."""
        loop = asyncio.get_running_loop()
        sent = loop.time()
        try:
            await self._endpoint.request(request(Method.BINDING), self.server, self._policy)
        except TransactionTimeout:
            return
        self.observe_rtt(loop.time() - sent)

    async def register(self, policy: RetransmitPolicy | None = None) -> Address:
        """Register (or refresh) our ID; returns the endpoint the server sees us at."""
        response = await self._call(
            request(
                Method.REGISTER,
                (AttributeType.PEER_ID, self.peer_id),
                *((AttributeType.CANDIDATE, c) for c in self.candidates),
                (AttributeType.LEASE, self._lease),
                *mapping_attribute(self._mapping),
                (AttributeType.PUBLIC_KEY, self._identity.public_key),
            ),
            "our registration",
            policy=policy,
        )
        mapped = response.address(AttributeType.XOR_MAPPED_ADDRESS)
        if mapped is None:
            raise PeerError("the server's answer to Register lacks XOR-MAPPED-ADDRESS; is it a punch server?")
        granted = response.integer(AttributeType.LEASE) or self._lease
        self._credentials.hold(response.raw(AttributeType.REGISTRATION_TOKEN) or self._credentials.token)
        if mapped != self.mapped:
            log.info(
                "registered as %s with %s; it sees us at %s (lease %d s)",
                self.peer_id,
                format_address(self.server),
                format_address(mapped),
                granted,
            )
        self._lease = granted
        self.mapped = mapped
        return mapped

    @property
    def candidates(self) -> tuple[Address, ...]:
        """What we register beside the endpoint the server sees: the port our router maps for us first (it is on our
        public address: the other peer can check it from anywhere), then our host candidates."""
        return self._candidates if self._offered is None else (self._offered, *self._candidates)

    @property
    def offered(self) -> Address | None:
        """The mapped port we offer (:meth:`offer`), as the other peer sees it: None where we offer none, or where it
        is the very endpoint the server sees (the server then passes it once, as our public endpoint)."""
        return None if self._offered == self.mapped else self._offered

    def offer(self, mapped: Address | None) -> None:
        """Offer ``mapped`` (a port our router maps for us, on our public address), or nothing more, from our next
        Register on."""
        self._offered = mapped

    @property
    def request_key(self) -> bytes | None:
        """The key our requests to the server are signed with, and what it sends us on its own
        (punch.stun.credentials); None before we registered on an open server."""
        return self._credentials.key

    def session_key(self, introduction: Introduction) -> bytes | None:
        """The key of the session ``introduction`` opens, from our share in the Connect that asked for its peer and
        its share (punch.identity.agreement); None if that share is not signed by the key it came with, for a
        Connect that asked for us, or is no usable key."""
        ours = self._shares.get(introduction.peer_id) or self._shares.get(ANYONE)
        if ours is None:
            return None
        theirs = Party(introduction.peer_id, introduction.public_key, introduction.key_share.share)
        signature = introduction.key_share.signature
        if not any(share_is_genuine(theirs, signature, asked_for) for asked_for in (self.peer_id, ANYONE)):
            return None
        return ours.session_key(theirs, introduction.session_id, introduction.role is Role.OPENER)

    @property
    def mapping(self) -> Mapping:
        """How our NAT maps, as we told the server."""
        return self._mapping

    async def announce_mapping(self, mapping: Mapping) -> None:
        """Tell the server how our NAT maps (port prediction needs it before we ask for anyone): registers again,
        unless the mapping is unknown (nothing to tell)."""
        self._mapping = mapping
        if mapping is not Mapping.UNKNOWN:
            await self.register()

    async def unregister(self) -> None:
        """Say goodbye (a zero lease), so that our ID is free again at once; best effort, quick. A refresh on its way
        (one that registers us with another server, maybe) is answered first: a goodbye overtaking it would reach a
        server that does not hold our registration yet."""
        if self._refreshing is not None:
            await asyncio.wait((self._refreshing,), timeout=GOODBYE_POLICY.total())
            await settle(self._refreshing)
        if self._credentials.token is None:
            return
        goodbye = request(Method.REGISTER, (AttributeType.PEER_ID, self.peer_id), (AttributeType.LEASE, 0))
        try:
            await self._endpoint.request(goodbye, self.server, GOODBYE_POLICY, self._credentials.key)
            log.info("unregistered from the server")
        except TransactionTimeout:
            log.info("the server did not answer our goodbye; our registration ends with its lease")
        self._credentials.hold(None)

    async def keep_registered(self) -> None:
        """Refresh the registration well within its lease, forever (cancel to stop); with other servers, turn to the
        nearest answering one when ours falls silent (punch.peer.servers)."""
        policy = FAILOVER_POLICY if self._servers else None
        while True:
            await asyncio.sleep(max(1.0, self._lease / 3))
            server = self.server
            try:
                await self._refresh(self.register(policy))
            except PeerError as error:
                if self.server != server:
                    continue  # a rejoin turned to another server meanwhile
                if not await self.fail_over(error):
                    log.warning("refreshing the registration failed: %s", error)

    async def fail_over(self, error: PeerError) -> bool:
        """Register with the nearest answering one of the other servers instead of ours, and ask it for the peer we
        are waiting for, if any; False if none answers."""
        silent = self.server
        chosen = await next_server(self._endpoint, silent, self._servers)
        if chosen is None:
            return False
        log.warning("%s; registering with %s instead", error, format_address(chosen))
        self.server, self._servers = chosen, (silent, *(s for s in self._servers if s != chosen))
        try:
            await self._refresh(self.register())
            if self._asking is not None and not self.introduction.done():
                await self.connect(self._asking)
        except PeerError as failed:
            log.warning("registering with %s failed: %s", format_address(chosen), failed)
        return True

    async def _refresh(self, registering: Coroutine[Any, Any, Address]) -> Address:
        """A refresh that goes on when the caller is cancelled (the session closing): :meth:`unregister` waits for
        it."""
        self._refreshing = asyncio.ensure_future(registering)
        return await asyncio.shield(self._refreshing)

    async def connect(self, target: str) -> str:
        """Ask the server for ``target``, telling it our round trip to it (the server passes it on to the other
        peer, see punch.peer.puncher); returns the server's status line."""
        # Asked already and not introduced yet (this server is another, after a failover): the same share, so that
        # whichever Connect makes the session, our key for it is the one the other peer derives
        again = self._asking == target and target in self._shares
        self._asking = target
        self.told_rtt_us = None if self.rtt is None else round(self.rtt * 1e6)
        rtt = () if self.told_rtt_us is None else ((AttributeType.SERVER_RTT, self.told_rtt_us),)
        share = self._shares[target] if again else OwnShare(self._identity, self.peer_id, target)
        self._shares[target] = share
        response = await self._call(
            request(
                Method.CONNECT,
                (AttributeType.PEER_ID, self.peer_id),
                (AttributeType.TARGET_ID, target),
                *rtt,
                *share.public.attributes(),
            ),
            f"our request for {target}",
        )
        status = response.text(AttributeType.STATUS) or "ok"
        log.info("asked the server for %s: %s", target, status)
        return status

    async def rejoin(self, target: str) -> Introduction:
        """After the path to ``target`` broke: register again (the server learns where our NAT maps us now; with
        other servers, at the nearest answering one if ours is silent: it may be what broke the path, a relay), ask
        for ``target`` again, and return the new introduction once it has asked for us too."""
        self.expect_another()
        server = self.server
        try:
            await self._refresh(self.register(FAILOVER_POLICY if self._servers else None))
        except PeerError as error:
            if self.server == server and not await self.fail_over(error):
                raise
        return await self.introduced_to(target)

    def expect_another(self) -> None:
        """Wait for a new introduction (and its Go or Move): a rejoin, or a session for anyone that refused the peer
        that came."""
        loop = asyncio.get_running_loop()
        self.introduction, self.go, self.moved, self.move = (
            loop.create_future(),
            asyncio.Event(),
            loop.create_future(),
            loop.create_future(),
        )

    async def introduced_to(self, target: str) -> Introduction:
        """Ask the server for ``target`` (:meth:`connect`) and wait for the introduction to it.

        The Introduce is what matters: one that arrives while our request is still unanswered (every answer to it
        lost so far) is as good as the answer, so the request is given up then instead of holding the punch until
        it times out. Without an Introduce, an unanswered request is the error.
        """
        asking = asyncio.ensure_future(self.connect(target))
        try:
            await asyncio.wait((asking, self.introduction), return_when=asyncio.FIRST_COMPLETED)
            if not self.introduction.done():
                await asking  # answered (the other peer may not have asked yet) or PeerError: no server there
            elif not asking.done():
                log.info(
                    "introduced before the server's answer to our request for %s came: no need to wait for it", target
                )
            return await self.introduction
        finally:
            await settle(asking)  # an answer lost for good does not matter once introduced

    async def ready(self, session_id: bytes, via: StunEndpoint | None = None) -> None:
        """Tell the server our NAT mapping is open, so it sends Go to the other peer; ``via`` a fresh socket of
        ours (punch.peer.moving), the server tells the other peer to probe that socket's endpoint."""
        await self._call(
            request(Method.READY, (AttributeType.PEER_ID, self.peer_id), (AttributeType.SESSION_ID, session_id)),
            "Ready",
            via,
        )
        if via is None:
            log.info("told the server our mapping is open; it tells the other peer to probe")
        else:
            log.info("told the server from our fresh socket; it tells the other peer to probe us there")

    async def ask_to_move(self, session_id: bytes) -> None:
        """Tell the server the other peer's NAT refused our check, so it tells the other peer to move."""
        response = await self._call(
            request(Method.MOVE, (AttributeType.PEER_ID, self.peer_id), (AttributeType.SESSION_ID, session_id)),
            "Move",
        )
        log.info("asked the server to move the other peer: %s", response.text(AttributeType.STATUS) or "ok")

    def on_request(self, message: Message, source: Address) -> bool:
        """Handle Introduce, Go, Move and Notice from the server; False if the message is not ours to handle."""
        if message.method not in (Method.INTRODUCE, Method.GO, Method.MOVE, Method.NOTICE):
            return False
        if source != self.server:
            log.info(
                "ignored %s from %s: not our server",
                method_name(message.method),
                format_address(source),
            )
            return True
        try:
            if message.method == Method.INTRODUCE:
                self._on_introduce(message)
            elif message.method == Method.NOTICE:
                self._on_notice(message)
            elif not (self._on_go(message) if message.method == Method.GO else self._on_move(message)):
                return True  # unanswered: the server sends it again
        except ProtocolError as error:
            log.warning("bad message from the server: %s", error)
            self._endpoint.send(make_error(message, 400, str(error)[:127]), source)
            return True
        # Echo the SESSION-ID: the answer is then signed with the session's key, as the server expects. It leaves
        # after the session has acted on the message (its probes or checks are punch time; the server waits an RTO).
        session = message.raw(AttributeType.SESSION_ID)
        answer = make_success(message, ((AttributeType.SESSION_ID, session),) if session else ())
        asyncio.get_running_loop().call_soon(self._endpoint.send, answer, source)
        return True

    def _on_notice(self, message: Message) -> None:
        session = required_session(message)
        error = message.error_code()
        if session not in self._sessions or error is None:
            raise ProtocolError("Notice about a session we were not introduced to, or without ERROR-CODE")
        if not self.notice.done():
            log.info("the server says about our session: %d %s", error.code, error.reason)
            self.notice.set_result(f"{error.code} {error.reason}")

    def _on_introduce(self, message: Message) -> None:
        introduction = Introduction.from_message(message)
        if self.introduction.done() or introduction.session_id in self._sessions:
            return  # a retransmission: our answer was lost, answer again
        self._sessions.add(introduction.session_id)
        self._asking = None  # a failover from now on asks for nobody, and our next Connect has a fresh share
        log.info(
            "introduced to %s (session %s): candidates %s; we are the %s",
            introduction.peer_id,
            introduction.session_id.hex()[:8],
            ", ".join(format_address(c) for c in introduction.candidates),
            introduction.role.name.lower(),
        )
        self.introduced_at = asyncio.get_running_loop().time()
        if self._on_introduced is not None:
            self._on_introduced(introduction)
        self.introduction.set_result(introduction)

    def _introduced(self, message: Message) -> bool:
        """Whether ``message`` (Go or Move) may be taken now; False (leave it unanswered) if it came before its
        session's Introduce, which the server is still sending again (lost or late): the server sends this one again
        too, and it counts once we are introduced. ProtocolError if it is for another session."""
        session = required_session(message)
        if not self.introduction.done():
            log.info("a %s came before our introduction; it waits to be sent again", method_name(message.method))
            return False
        if self.introduction.result().session_id != session:
            raise ProtocolError(f"{method_name(message.method)} for a session we were not introduced to")
        return True

    def _on_move(self, message: Message) -> bool:
        if not self._introduced(message):
            return False
        if not self.move.done():
            log.info(
                "server says %s's check was refused by our NAT: we move to a fresh socket",
                self.introduction.result().peer_id,
            )
            self.move.set_result(None)
        return True

    def _on_go(self, message: Message) -> bool:
        if not self._introduced(message):
            return False
        moved = message.address(AttributeType.CANDIDATE)
        if moved is not None:
            if not self.moved.done():
                log.info(
                    "server says %s moved to a fresh socket, seen at %s: probe it there",
                    self.introduction.result().peer_id,
                    format_address(moved),
                )
                self.moved.set_result(moved)
            return True
        if self.introduction.result().role is not Role.PROBER:
            raise ProtocolError("Go sent to the opener")
        if not self.go.is_set():
            log.info("server says go: the other side's mapping is open")
            self.go.set()
        return True
