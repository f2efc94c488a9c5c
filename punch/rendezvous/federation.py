"""One server among several that share a registry (punch.rendezvous.shared): its name, its inbox, its writes behind.

:class:`Federation` is what a :class:`~punch.rendezvous.server.RendezvousServer` started with ``--registry`` adds to
itself. It owns the shared registry's client and, around it:

- whether the registry answers: one log line when it stops, one when it answers again (every call says so);
- the server's inbox: what other servers ask it to send its peers (a peer takes datagrams only from the server it
  registered with, through its NAT), read in a task and handed to the server;
- keepalives renewed in the server's own table (the fast path, in C where built) written behind to the registry, a
  batch at a time, so that a keepalive costs no round trip; after a Redis restart that lost everything, each
  peer's next keepalive writes its registration again;
- requests in flight to the registry, at most ``max_pending`` (a registration storm queues there and beyond it is
  refused at once, 503, instead of growing without bound) and one per peer (a retransmission that arrives while its
  request is in flight is dropped: the peer sends it again, and it is answered then from what the first did).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from punch.errors import RegistryUnavailable
from punch.rendezvous.records import Envelope, Write
from punch.rendezvous.registry import Match, Registration, Wish
from punch.rendezvous.shared import RedisRegistry

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_PENDING = 4096  # requests waiting on the registry at once (--registry): beyond, 503 at once
RETRY_AFTER = 0.5  # seconds between attempts to reach a registry that does not answer (the inbox, the writes behind)
WRITE_BATCH = 256  # keepalives written behind at once


class Federation:
    """The shared registry as one server of several sees it; ``name`` is the server's among them (unique, stable
    across its restarts: what other servers address its inbox by, and what registrations made here record).

    ``deliver_here`` takes each envelope other servers send this one; ``lost`` each peer ID whose registration
    another registrant took over while this server renewed it (its own table must let go too).
    """

    def __init__(
        self,
        shared: RedisRegistry,
        name: str,
        *,
        deliver_here: Callable[[Envelope], None],
        lost: Callable[[str], None],
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.shared = shared
        self.name = name
        self._deliver_here = deliver_here
        self._lost = lost
        self.max_pending = max_pending
        self.available = True  # as far as we know: until a call fails
        self.pending: set[str] = set()  # peer IDs with a request waiting on the registry
        self._renewals: dict[str, tuple[Registration, float]] = {}  # written behind: registration, lease (s)
        # The wishes of peers registered here that no match took yet (asker -> target, wish, when it ends on the
        # loop's clock): put back if the registry loses them (a Redis restart), found by a
        # keepalive written behind
        self.wishes: dict[str, tuple[str, Wish, float]] = {}
        self._renewed = asyncio.Event()
        self.written = asyncio.Event()  # set after each batch of renewals written behind (tests wait on it)
        self._outbox: dict[str, list[Envelope]] = {}  # server -> what to ask it, in order
        self._after: list[Callable[[], None]] = []  # called once the outbox as it is now was sent
        self._outgoing = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def may_ask(self, peer_id: str) -> bool:
        """Whether a request for ``peer_id`` may wait on the registry now: none of its own is waiting, and fewer than
        ``max_pending`` in all."""
        return peer_id not in self.pending and len(self.pending) < self.max_pending

    async def start(self) -> None:
        """Reach the registry once (saying so if it does not answer: the server starts all the same), then read the
        inbox and write renewals behind, until :meth:`close`."""
        try:
            await self.call(self.shared.ping())
            kind = "a Redis Cluster" if self.shared.cluster else "Redis"
            log.info("registry: %s at %s, shared with other servers; this one is %r", kind, self.shared.url, self.name)
        except RegistryUnavailable:
            pass
        self._spawn(self._read_inbox())
        self._spawn(self._write_behind())
        self._spawn(self._send_outbox())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.shared.close()

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            await work

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def call(self, work: Awaitable[T]) -> T:
        """``work`` (a call of the shared registry), noting whether the registry answers: one log line when that
        changes. RegistryUnavailable passes on."""
        try:
            result = await work
        except RegistryUnavailable as error:
            if self.available:
                self.available = False
                log.warning(
                    "registry %s does not answer (%s): answering Binding and keepalives, refusing what needs the "
                    "registry with 503 until it does",
                    self.shared.url,
                    error,
                )
            raise
        if not self.available:
            self.available = True
            log.info("registry %s answers again", self.shared.url)
        return result

    def deliver(self, server: str, envelope: Envelope) -> None:
        """Ask ``server`` to send its peer a request: behind the caller's back, in the order asked (one sender, each
        batch to a server in one pipeline)."""
        self._outbox.setdefault(server, []).append(envelope)
        self._outgoing.set()

    def deliver_then(self, then: Callable[[], None]) -> None:
        """Call ``then`` once what :meth:`deliver` was asked so far is in the registry (or could not be put there)."""
        self._after.append(then)
        self._outgoing.set()

    async def _send_outbox(self) -> None:
        while True:
            await self._outgoing.wait()
            self._outgoing.clear()
            outbox, self._outbox = self._outbox, {}
            after, self._after = self._after, []
            for server, envelopes in outbox.items():
                try:
                    await self.call(self.shared.deliver(server, envelopes))
                except RegistryUnavailable:
                    log.warning(
                        "could not ask server %r to send %s a request: the registry does not answer",
                        server,
                        ", ".join(e.recipient for e in envelopes),
                    )
            for then in after:
                then()

    def keep_session(self, match: Match, life: float) -> None:
        """Store a session made here for ``life`` seconds (in a task), for a server that must serve it later."""

        async def keep() -> None:
            with contextlib.suppress(RegistryUnavailable):  # both servers hold it: only a restart would miss it
                await self.call(self.shared.save_session(match, life))

        self._spawn(keep())

    def renewed(self, registration: Registration, lease: float) -> None:
        """A keepalive renewed ``registration`` here for ``lease`` seconds: written to the registry behind."""
        self._renewals[registration.peer_id] = (registration, lease)
        self._renewed.set()

    async def _write_behind(self) -> None:
        while True:
            await self._renewed.wait()
            self._renewed.clear()
            while self._renewals:
                batch = [self._renewals.popitem() for _ in range(min(WRITE_BATCH, len(self._renewals)))]
                try:
                    written = await self.call(self._store_all([item for _, item in batch]))
                except RegistryUnavailable:
                    for peer_id, item in batch:
                        self._renewals.setdefault(peer_id, item)  # unless renewed again meanwhile
                    await asyncio.sleep(RETRY_AFTER)
                    continue
                for (peer_id, _), kept in zip(batch, written, strict=True):
                    if not kept:
                        log.info("%s is registered under another token now: forgotten here", peer_id)
                        self._lost(peer_id)
                self.written.set()

    async def _store_all(self, items: list[tuple[Registration, float]]) -> list[bool]:
        """Write renewals; put back the wishes of the peers the registry had lost; False for each refused."""
        stores = (self.shared.store(r, self.name, r.token, lease) for r, lease in items)
        written = list(await asyncio.gather(*stores))
        now = asyncio.get_running_loop().time()
        for asker in [a for a, (_, _, ends) in self.wishes.items() if ends <= now]:
            del self.wishes[asker]
        lost = [
            (r.peer_id, self.wishes[r.peer_id])
            for (r, _), w in zip(items, written, strict=True)
            if w is Write.CREATED and r.peer_id in self.wishes
        ]
        await asyncio.gather(
            *(self.shared.wish_again(asker, target, wish, ends - now) for asker, (target, wish, ends) in lost)
        )
        for asker, (target, *_) in lost:
            log.info("the registry had lost %s and its wish for %s: written again", asker, target)
        return [w is not Write.REFUSED for w in written]

    def wished(self, asker: str, target: str, wish: Wish, life: float) -> None:
        """``asker``, registered here, waits for ``target``: its wish is in the registry (and kept here)."""
        self.wishes[asker] = (target, wish, asyncio.get_running_loop().time() + life)

    def matched(self, match: Match) -> None:
        """A session took the wishes of its two peers."""
        self.wishes.pop(match.opener.peer_id, None)
        self.wishes.pop(match.prober.peer_id, None)

    async def _read_inbox(self) -> None:
        after: bytes | None = None
        while True:
            try:
                if after is None:
                    after = await self.call(self.shared.newest(self.name))
                after, envelopes = await self.call(self.shared.receive(self.name, after, wait=0.4))
            except RegistryUnavailable:
                await asyncio.sleep(RETRY_AFTER)
                continue
            for envelope in envelopes:
                try:
                    self._deliver_here(envelope)
                except Exception:  # one bad envelope must not stop the inbox
                    log.exception("an envelope for %s could not be handled", envelope.recipient)
