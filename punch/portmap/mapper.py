"""The mapper: one port mapping on one router, for its whole life (after Tailscale's portmapper).

:meth:`Mapper.start` asks the router whether it speaks PCP (ANNOUNCE), NAT-PMP (the external address request) and
UPnP IGD (an SSDP search), all three at once, so that a router that speaks none costs the longest of the three
waits, not their sum; then it maps our port with the first of PCP, NAT-PMP and UPnP IGD that the router speaks,
falling back to the next when one refuses (an error result code, an IGD that answers too slowly). The protocol that
worked is kept for the renewals.

It renews the mapping when half its lifetime has passed (RFC 6887 §11.2.1, RFC 6886 §3.3), asking for the same
external port; a renewal that fails is tried again at half the time that is left, and a mapping that ran out is
asked for anew, with every protocol. A router that lost our mapping (it restarted: its epoch went back, RFC 6887
§8.5; or someone deleted it) gets it again at the next renewal; where the router then gives another port, the
owner is told (``on_change``), and is told None while there is no mapping. :meth:`close` deletes the mapping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from punch.portmap import natpmp, pcp, upnp
from punch.portmap.errors import PortmapError
from punch.portmap.grant import Grant
from punch.stun.transaction import RetransmitPolicy

log = logging.getLogger(__name__)

# A request to the router: 0.25 s, then 0.5 s, then 1 s before giving up (1.75 s; RFC 6886 §3.1 starts at 250 ms
# too, but goes on for a minute: a router that has not answered by then is taken not to speak the protocol)
ROUTER_POLICY = RetransmitPolicy(rto=0.25, backoff=2.0, max_sends=3, last_wait=4.0)
MIN_RETRY = 2.0  # seconds: a failed renewal is tried again no sooner, and an expired mapping sought no more often
# than every half lifetime, or this long at least


@dataclass(frozen=True, slots=True)
class PortmapConfig:
    """Whether and how the peer asks its router for a port mapping (``punch peer --no-portmap`` turns it off)."""

    enabled: bool = True
    lifetime: int = 7200  # seconds asked for (RFC 6886 §3.3 recommends 7200); the router may grant less
    router: str | None = None  # ask this router instead of the gateway toward the server (loopback tests)
    port: int = pcp.PORT  # PCP's and NAT-PMP's port on the router (RFC 6887 §19.1, RFC 6886 §3.1)
    ssdp_port: int = upnp.SSDP_PORT
    policy: RetransmitPolicy = ROUTER_POLICY
    upnp_timeout: float = 2.0  # each UPnP IGD call (HTTP to the router) waits at most this long
    renew_at: float = 0.5  # renew when this share of the lifetime has passed


@dataclass(frozen=True, slots=True)
class PortMapping:
    """Our mapping as the router granted it: UDP ``external_ip``:``external_port`` -> our ``internal_port``."""

    protocol: str  # "PCP", "NAT-PMP" or "UPnP IGD"
    router: str
    internal_port: int
    external_ip: str | None  # None: the router did not say (UPnP IGD)
    external_port: int
    lifetime: int  # seconds granted; 0: until deleted (an IGD:1 with permanent leases only)

    def describe(self) -> str:
        """``UDP 203.0.113.10:40000`` (``?`` for an address the router did not say)."""
        return f"UDP {self.external_ip or '?'}:{self.external_port}"

    def as_dict(self) -> dict[str, object]:
        """What ``--json`` reports of it."""
        return {
            "protocol": self.protocol,
            "router": self.router,
            "external": f"{self.external_ip or '?'}:{self.external_port}",
            "lifetime": self.lifetime,
        }


class Client(Protocol):
    """What the mapper asks of each protocol's client (punch.portmap.pcp, .natpmp, .upnp)."""

    name: str

    async def probe(self) -> int | None: ...  # the router's epoch, where the protocol has one

    async def map(self, internal_port: int, suggested_port: int, lifetime: int) -> Grant: ...

    async def unmap(self, internal_port: int, external_port: int) -> None: ...


def epoch_lost(previous: int, previous_at: float, epoch: int, now: float) -> bool:
    """Whether a router whose epoch was ``previous`` at our time ``previous_at`` and is ``epoch`` at ``now`` lost
    its state since (it restarted): RFC 6887 §8.5, which RFC 6886 §3.6 says in other words: its clock went back,
    or ran more than 1/16 (and 2 s) slower or faster than ours."""
    if epoch + 1 < previous:
        return True
    ours, theirs = now - previous_at, epoch - previous
    return ours + 2 < theirs - theirs / 16 or theirs + 2 < ours - ours / 16


class Mapper:
    """One mapping of our UDP ``internal_port`` on ``router`` (module docstring). ``counters`` counts the datagrams
    from the router that were dropped, by reason (punch.portmap.exchange)."""

    def __init__(
        self,
        router: str,
        internal_port: int,
        config: PortmapConfig,
        on_change: Callable[[PortMapping | None], None] | None = None,
        clients: tuple[Client, ...] | None = None,
    ) -> None:
        self._router = router
        self._internal_port = internal_port
        self._config = config
        self._on_change = on_change
        self.counters: Counter[str] = Counter()
        self._clients: tuple[Client, ...] = clients or (
            pcp.PcpClient((router, config.port), config.policy, self.counters),
            natpmp.NatPmpClient((router, config.port), config.policy, self.counters),
            upnp.UpnpClient(router, config.ssdp_port, config.policy, config.upnp_timeout, self.counters),
        )
        self._client: Client | None = None  # the protocol that made the mapping
        self.mapping: PortMapping | None = None  # the mapping we hold now
        self.held: PortMapping | None = None  # the last one we held (kept after close, for reports)
        self._epoch: tuple[int, float] | None = None  # the router's epoch at our loop time, from its last answer
        self._keeping: asyncio.Task[None] | None = None
        self._closed = False
        self.renewals = 0
        self.spoken = asyncio.Event()  # set when the router answered a probe: it speaks one of the protocols

    @property
    def router(self) -> str:
        return self._router

    async def start(self) -> PortMapping | None:
        """Make the mapping (module docstring) and keep it renewed in the background; None if no protocol could."""
        mapping = await self._make()
        if not self._closed:
            self._keeping = asyncio.get_running_loop().create_task(self._keep())
        return mapping

    async def _make(self) -> PortMapping | None:
        """Probe every protocol at once; map with the first that works, in order; None, with the reasons, if none."""
        probes = [(client, asyncio.ensure_future(client.probe())) for client in self._clients]
        for _, probe in probes:
            probe.add_done_callback(self._answered)
        failures = []
        try:
            for client, probe in probes:
                try:
                    epoch = await probe
                    grant = await client.map(self._internal_port, self._suggested_port(), self._config.lifetime)
                except PortmapError as error:
                    failures.append(f"{client.name}: {error}")
                    continue
                self._client = client
                self._note_epoch(epoch if epoch is not None else grant.epoch)
                return self._granted(grant, failures)
        finally:
            for _, probe in probes:
                probe.cancel()
            await asyncio.gather(*(p for _, p in probes), return_exceptions=True)
        log.info("router %s maps no port for us (%s)", self._router, "; ".join(failures))
        return None

    def _answered(self, probe: asyncio.Future[int | None]) -> None:
        if not probe.cancelled() and probe.exception() is None:
            self.spoken.set()

    def _suggested_port(self) -> int:
        """The external port to ask for: the one we have, else our internal port (a router keeps it where free)."""
        return self.mapping.external_port if self.mapping is not None else self._internal_port

    def _note_epoch(self, epoch: int | None) -> bool:
        """Keep the router's epoch; whether it says the router lost its state since the last one."""
        if epoch is None:
            return False
        now = asyncio.get_running_loop().time()
        lost = self._epoch is not None and epoch_lost(*self._epoch, epoch, now)
        self._epoch = (epoch, now)
        return lost

    def _granted(self, grant: Grant, failures: list[str] | None = None) -> PortMapping:
        """``grant`` as our mapping now, said in a line the first time (with why the protocols before it failed)."""
        assert self._client is not None
        mapping = PortMapping(
            self._client.name,
            self._router,
            self._internal_port,
            grant.external_ip,
            grant.external_port,
            grant.lifetime,
        )
        if self.mapping is None:
            log.info(
                "router %s mapped %s -> us (port %d) for %s (%s)",
                self._router,
                mapping.describe(),
                self._internal_port,
                f"{mapping.lifetime} s" if mapping.lifetime else "good (until we delete it)",
                "; ".join((mapping.protocol, *(failures or ()))),
            )
        self.mapping = self.held = mapping
        return mapping

    def _changed(self, mapping: PortMapping | None) -> None:
        if self._on_change is not None:
            self._on_change(mapping)

    async def _keep(self) -> None:
        """Renew the mapping (or seek a new one) until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            mapping = self.mapping
            if mapping is None:
                await asyncio.sleep(max(MIN_RETRY, self._config.lifetime * self._config.renew_at))
                if (found := await self._make()) is not None:
                    self._changed(found)
                continue
            if mapping.lifetime == 0:
                return  # permanent: nothing to renew
            expires = loop.time() + mapping.lifetime
            wait = mapping.lifetime * self._config.renew_at
            while True:
                await asyncio.sleep(wait)
                if await self._renew(mapping):
                    break
                left = expires - loop.time()
                if left <= MIN_RETRY:
                    log.info(
                        "router %s: our mapping %s ran out; asking for a new one", self._router, mapping.describe()
                    )
                    self.mapping = self._client = None
                    self._changed(None)
                    break
                wait = max(MIN_RETRY, left / 2)
                log.info("router %s: trying to renew again in %.0f s (%.0f s left)", self._router, wait, left)

    async def _renew(self, mapping: PortMapping) -> bool:
        """One renewal of ``mapping``: True once renewed (told if it moved), False if the router did not."""
        client = self._client
        assert client is not None
        try:
            grant = await client.map(self._internal_port, mapping.external_port, self._config.lifetime)
        except PortmapError as error:
            log.info("router %s did not renew our mapping %s (%s): %s", self._router, mapping.describe(),
                     client.name, error)  # fmt: skip
            return False
        restarted = self._note_epoch(grant.epoch)
        renewed = self._granted(grant)
        self.renewals += 1
        if (renewed.external_ip, renewed.external_port) != (mapping.external_ip, mapping.external_port):
            log.info("router %s lost our mapping %s; it maps %s -> us now (%s)", self._router, mapping.describe(),
                     renewed.describe(), client.name)  # fmt: skip
            self._changed(renewed)
        elif restarted:
            log.info("router %s restarted (its epoch went back): it lost our mapping, and made %s again (%s)",
                     self._router, renewed.describe(), client.name)  # fmt: skip
        else:
            log.info("router %s renewed %s -> us for %d s (%s)", self._router, renewed.describe(), renewed.lifetime,
                     client.name)  # fmt: skip
        return True

    async def close(self) -> None:
        """Stop renewing and delete the mapping (best effort: a router that does not answer keeps it until its
        lifetime ends); idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._keeping is not None:
            self._keeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeping
        mapping, client = self.mapping, self._client
        if mapping is None or client is None:
            return
        self.mapping = None
        try:
            await client.unmap(self._internal_port, mapping.external_port)
        except PortmapError as error:
            left = f"ends with its lifetime ({mapping.lifetime} s)" if mapping.lifetime else "stays"
            log.info("router %s did not delete our mapping %s (%s): %s; it %s", self._router, mapping.describe(),
                     client.name, error, left)  # fmt: skip
            return
        log.info("router %s deleted our mapping %s (%s)", self._router, mapping.describe(), client.name)
