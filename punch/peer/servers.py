"""A peer with several rendezvous servers (``punch peer --server A --server B``): the nearest answering one, and
another when it stops answering.

Servers that share a registry (``punch server --registry``) serve one ID space, so a peer may register with any of
them and be found through all. It registers with the nearest that answers a Binding request (the first answer wins:
every server is asked at once), and when its server stops answering its refreshes it turns to the nearest of the
others that answers and registers there, keeping its token (the shared registry knows it); its direct session does
not need the server and goes on meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging

from punch.errors import PeerError
from punch.peer.config import PeerConfig
from punch.stun import Address, Method
from punch.stun.protocol import StunEndpoint, format_address
from punch.stun.transaction import RetransmitPolicy, TransactionTimeout
from punch.stun.wire import request

log = logging.getLogger(__name__)

# How a peer with other servers to turn to finds its server silent: about 4.5 s without an answer to a refresh (one
# server alone is waited for longer: SERVER_POLICY, there is nowhere else to go).
FAILOVER_POLICY = RetransmitPolicy(rto=0.5, max_rto=1.0, max_sends=5, last_wait=1.0)
PROBE_POLICY = RetransmitPolicy(rto=0.25, max_rto=1.0, max_sends=4, last_wait=2.0)  # asking who answers


async def nearest(endpoint: StunEndpoint, servers: tuple[Address, ...], policy: RetransmitPolicy) -> Address:
    """The server of ``servers`` whose answer to a Binding request comes first (all asked at once); PeerError if
    none answers."""

    async def ask(server: Address) -> Address:
        await endpoint.request(request(Method.BINDING), server, policy)
        return server

    asking = [asyncio.ensure_future(ask(server)) for server in servers]
    try:
        for answered in asyncio.as_completed(asking):
            with contextlib.suppress(TransactionTimeout):
                return await answered
    finally:
        for task in asking:
            task.cancel()
        await asyncio.gather(*asking, return_exceptions=True)
    raise PeerError(
        f"none of the servers answered ({', '.join(format_address(s) for s in servers)}); "
        "is `punch server` running there and reachable?"
    )


async def with_nearest_server(config: PeerConfig, endpoint: StunEndpoint) -> PeerConfig:
    """``config`` with its nearest answering server as ``server`` and the others as ``servers``, asked through
    ``endpoint`` (the session's socket); ``config`` itself when it names one server."""
    every = (config.server, *(s for s in config.servers if s != config.server))
    if len(every) == 1:
        return config
    chosen = await nearest(endpoint, every, PROBE_POLICY)
    log.info("nearest answering server: %s (of %d)", format_address(chosen), len(every))
    return dataclasses.replace(config, server=chosen, servers=tuple(s for s in every if s != chosen))


async def next_server(endpoint: StunEndpoint, failed: Address, servers: tuple[Address, ...]) -> Address | None:
    """The nearest answering server of ``servers`` but ``failed`` (None if none answers)."""
    others = tuple(s for s in servers if s != failed)
    if not others:
        return None
    try:
        return await nearest(endpoint, others, PROBE_POLICY)
    except PeerError:
        return None
