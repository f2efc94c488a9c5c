"""The session's port mapping: which router to ask, whether the port it maps is worth offering, and keeping the offer
to the server up to date (punch.portmap does the asking and owns the mapping's life).

The router asked is the gateway of our route to the server (punch.peer.routes): the NAT our packets to the server
pass. A server reached without a gateway (on our link, or on loopback) has no NAT between us: nothing is asked.

The mapped port is offered as a candidate of ours (punch.peer.client.RendezvousClient.offer) on the public address
the server sees us at: a router whose public address is another one (a carrier's NAT beyond it) mapped a port on an
address nobody outside reaches, and it is not offered. A router that does not say its address (UPnP IGD may not) is
taken to have the one the server sees.

The session waits for the router's mapping before it asks for the other peer (so that the Connect's Register carries
the port), but for a router that answered none of its probes only until OFFER_WAIT after it began asking: a router
on our LAN answers PCP, NAT-PMP or UPnP IGD within milliseconds (or tens), while one that drops them all silently
(or rate-limits its ICMP errors) would hold every start for the requests' whole schedule (1.75 s). A router that
answered a probe is waited for (the mapper's timeouts bound it). A mapping that comes later is offered from our next
registration on.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from punch.peer import routes
from punch.peer.client import RendezvousClient
from punch.peer.tasks import settle
from punch.portmap.mapper import Mapper, PortmapConfig, PortMapping
from punch.stun import Address
from punch.stun.protocol import StunEndpoint, format_address

log = logging.getLogger(__name__)

OFFER_WAIT = 0.5  # seconds after the first request: how long the session's Connect waits for the router's answer


class PortMapped:
    """Our router's port mapping as a candidate of the session: :meth:`start` asks in the background, :meth:`offer`
    waits for the answer and registers the port, :meth:`close` deletes the mapping (idempotent)."""

    def __init__(self, config: PortmapConfig, endpoint: StunEndpoint, server: Address, client: RendezvousClient):
        self._config = config
        self._endpoint = endpoint
        self._server = server
        self._client = client
        self._mapper: Mapper | None = None
        self._asking: asyncio.Task[PortMapping | None] | None = None
        self._asked_at = 0.0  # loop time of the first request
        self._asked = ""  # the router asked

    @property
    def counters(self) -> Counter[str]:
        """The router's datagrams that were dropped, by reason (``--json`` dropped)."""
        return Counter() if self._mapper is None else self._mapper.counters

    @property
    def result(self) -> dict[str, object] | None:
        """What ``--json`` reports: the mapping we held last (protocol, router, external, lifetime, renewals), or
        None."""
        mapper = self._mapper
        if mapper is None or mapper.held is None:
            return None
        return {**mapper.held.as_dict(), "renewals": mapper.renewals}

    def _router(self) -> str | None:
        if self._config.router is not None:
            return self._config.router
        table = routes.table_of(self._endpoint.fileno())
        return None if table is None else routes.gateway_in(table, self._server[0])

    def start(self) -> None:
        """Ask the router on our way to the server (module docstring), in the background; nothing if turned off or
        there is no router."""
        if not self._config.enabled:
            return
        router = self._router()
        if router is None:
            log.debug("no router between us and the server: no port mapping asked")
            return
        self._mapper = Mapper(router, self._endpoint.local_address[1], self._config, on_change=self._changed)
        loop = asyncio.get_running_loop()
        self._asked, self._asked_at = router, loop.time()
        self._asking = loop.create_task(self._mapper.start())

    async def offer(self) -> None:
        """Wait for the router's mapping (for a router that answered no probe, until OFFER_WAIT after we asked) and, if
        it mapped a port we can offer, register it (the Register that follows carries it to the server). A later one
        is offered from our next registration on (module docstring)."""
        asking, mapper = self._asking, self._mapper
        if asking is None or mapper is None:
            return
        spoken = asyncio.ensure_future(mapper.spoken.wait())
        left = self._asked_at + OFFER_WAIT - asyncio.get_running_loop().time()
        try:
            done, _ = await asyncio.wait({spoken, asking}, timeout=max(left, 0.0), return_when=asyncio.FIRST_COMPLETED)
        finally:
            spoken.cancel()
        if not done:
            log.info(
                "router %s has not answered within %g s: we go on without a mapped port (offered later if it maps one)",
                self._asked,
                OFFER_WAIT,
            )
            asking.add_done_callback(self._late)
            return
        mapping = await asyncio.shield(asking)  # done, or it speaks a protocol: the mapper's timeouts bound the wait
        if mapping is not None and self._candidate(mapping) is not None:
            await self._client.register()

    def _late(self, asking: asyncio.Task[PortMapping | None]) -> None:
        """The router's first answer, after we went on without it."""
        if asking.cancelled() or asking.exception() is not None:
            return
        mapping = asking.result()
        if mapping is not None and (candidate := self._candidate(mapping)) is not None:
            log.info("our router mapped a port at last: we offer %s from our next registration on",
                     format_address(candidate))  # fmt: skip

    def _candidate(self, mapping: PortMapping | None) -> Address | None:
        """The candidate ``mapping`` makes (module docstring), now offered; None (and nothing offered) if none."""
        public = self._client.mapped
        candidate = None
        if mapping is not None and public is not None:
            if mapping.external_ip in (None, public[0]):
                candidate = (public[0], mapping.external_port)
            else:
                log.info(
                    "router %s mapped %s, but the server sees us at %s: another NAT lies beyond our router, and "
                    "nobody outside reaches that port; not offered",
                    mapping.router,
                    mapping.describe(),
                    public[0],
                )
        self._client.offer(candidate)
        if candidate is not None and candidate == public:
            log.info("the port our router maps is the one the server sees us at: our public endpoint takes anyone in")
        return candidate

    def _changed(self, mapping: PortMapping | None) -> None:
        """The router maps another port for us now, or none: offered from our next refresh on."""
        candidate = self._candidate(mapping)
        what = "nothing" if candidate is None else format_address(candidate)
        log.info("our mapped port changed: we offer %s from our next registration on", what)

    async def close(self) -> None:
        """Stop asking and delete the mapping."""
        if self._asking is not None:
            await settle(self._asking)
        if self._mapper is not None:
            await self._mapper.close()
