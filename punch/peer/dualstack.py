"""Candidates of both IP families, IPv6 preferred (RFC 8421 §4: IPv6 first, IPv4 close behind).

A peer whose socket takes both families (bound to ``::``, punch.stun.families) and that knows servers of both
(``--server [2001:db8:113::1]:3478 --server 203.0.113.1:3478``: one server's two addresses, or two servers)
registers by one family and learns its public endpoint in the other from a Binding request to a server of that
family (any STUN server tells it). It offers that endpoint, then its own address toward that server, after its host
candidates of the first family. So in the candidates the other peer receives (what the server saw first, then what
the peer offered), the first candidate of each family is that family's public endpoint: :func:`public_candidates`.

The prober nominates the IPv6 public candidate in every check (:func:`preferred_candidate`), as it nominates the one
public candidate of a single-family peer. The IPv4 one is the fallback: when its check is answered and the IPv6 one
has not been chosen within as long again (punch.peer.puncher.lan_wait: both checks left at the same moment, so a
working IPv6 path answers about as soon), the prober nominates IPv4 in a check of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from punch.stun import Address, AttributeType, Method
from punch.stun.families import family_of, takes_both
from punch.stun.protocol import StunEndpoint, format_address, host_candidates
from punch.stun.transaction import RetransmitPolicy, TransactionTimeout
from punch.stun.wire import request

log = logging.getLogger(__name__)

# Asking for our endpoint in the other family: the registration waits for it, so not long (about 0.7 s at most).
GATHER_POLICY = RetransmitPolicy(rto=0.1, max_rto=0.2, max_sends=4, last_wait=0.2)


def public_candidates(candidates: tuple[Address, ...]) -> tuple[Address, ...]:
    """The first candidate of each family in ``candidates``: its public (server-reflexive) endpoint."""
    firsts: dict[int, Address] = {}
    for candidate in candidates:
        firsts.setdefault(family_of(candidate[0]), candidate)
    return tuple(firsts.values())


def preferred_candidate(candidates: tuple[Address, ...]) -> Address:
    """The candidate the prober nominates in every check: the IPv6 public one if there is one, else the first."""
    return next((c for c in public_candidates(candidates) if family_of(c[0]) == 6), candidates[0])


async def other_family_candidates(
    endpoint: StunEndpoint, server: Address, servers: tuple[Address, ...]
) -> tuple[Address, ...]:
    """Our public endpoint in the family ``server`` (ours) is not of, then our own address toward it, when our socket
    takes both families and ``servers`` has a server of that family (the first of them to answer a Binding request
    tells it); () otherwise, also when none answers."""
    local = endpoint.local_address
    ours = family_of(server[0])
    others = tuple(s for s in servers if family_of(s[0]) != ours)
    if not takes_both(local[0]) or not others:
        return ()

    async def ask(server: Address) -> tuple[Address, Address]:
        response, _ = await endpoint.request(request(Method.BINDING), server, GATHER_POLICY)
        mapped = response.address(AttributeType.XOR_MAPPED_ADDRESS)
        if mapped is None:
            raise TransactionTimeout(f"{format_address(server)} did not say where it sees us")
        return server, mapped

    asking = [asyncio.ensure_future(ask(server)) for server in others]
    try:
        for answered in asyncio.as_completed(asking):
            with contextlib.suppress(TransactionTimeout):
                other, mapped = await answered
                found = (mapped, *(h for h in host_candidates(local, other) if h != mapped))
                log.info(
                    "%s sees us at %s: offered beside our IPv%d candidates",
                    format_address(other),
                    format_address(mapped),
                    ours,
                )
                return found
    finally:
        for task in asking:
            task.cancel()
        await asyncio.gather(*asking, return_exceptions=True)
    log.info("no server of the other family answered (%s): IPv%d candidates only", _listed(others), ours)
    return ()


def _listed(servers: tuple[Address, ...]) -> str:
    return ", ".join(format_address(s) for s in servers)
