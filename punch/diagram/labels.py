"""What an arrow says of its datagram: the message in punch's words (punch.stun.wire), from the attributes a
trace keeps (punch.stun.trace.summary); an answer is told by the request it answers. QUIC is named by its packets'
types ("QUIC Initial + Handshake", "QUIC 1-RTT"), wrapped in a Relay indication on the way to the server and
"(relayed)" on the way from it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ROLES = {1: "opener", 2: "prober"}  # ROLE (punch.stun.wire.Role)
MAPPINGS = {1: "endpoint-independent", 2: "endpoint-dependent"}  # NAT-MAPPING (punch.stun.wire.Mapping)


def text(
    facts: Mapping[str, Any],
    request: Mapping[str, Any] | None,
    *,
    from_server: bool = False,
    ttl: int | None = None,
    said: str | None = None,
    route: bool = False,
) -> str:
    """The arrow's words for a datagram with ``facts``; ``request``: the facts of the request it answers (same
    transaction ID), if known; ``from_server``: the server sent it (a Relay indication it forwards is "relayed");
    ``ttl``: sent with that low IP TTL; ``said``: what the peer's log says its QUIC packet carries ("message 0
    'hello'"); ``route``: a Binding of a peer's route trace (punch.peer.hops: its sockets leave no trace), or its
    answer."""
    method, kind = facts.get("method"), facts.get("class")
    if route and method == "Binding" and kind in ("request", "success"):
        return "route probe" if kind == "request" else "route probe answered"
    if method is None and not facts.get("quic"):
        return f"{facts.get('size', '?')}-byte datagram, neither STUN nor QUIC"
    if method is None:
        return _quic(facts, said)
    if method == "Relay" and kind == "indication":
        where = " (relayed)" if from_server else " in a Relay indication"
        return _quic(facts, said, where)
    if method == "Notice" and kind in ("request", "indication"):
        return f"Notice: {facts.get('error', '?')}"
    if kind == "error":
        return f"{method} error {facts.get('error', '')}".rstrip()
    if kind == "success":
        return _answer(str(method), facts, request or {})
    if kind == "indication":
        return f"{method} indication"
    return _request(str(method), facts, from_server, ttl)


def _quic(facts: Mapping[str, Any], said: str | None, where: str = "") -> str:
    """``QUIC Initial + Handshake``, ``QUIC 1-RTT (relayed): message 0 'hello'``."""
    types = [str(kind) for kind in facts.get("quic", ())]
    return f"QUIC {' + '.join(types) or 'packet'}{where}" + (f": {said}" if said else "")


def _is_check(facts: Mapping[str, Any]) -> bool:
    """A Binding request of a session: a connectivity check between the peers (punch.peer.puncher)."""
    return "session" in facts


def _request(method: str, facts: Mapping[str, Any], from_server: bool, ttl: int | None) -> str:
    peer = facts.get("peer", "?")
    candidates = list(facts.get("candidates", ()))
    if method == "Binding":
        words = "check" if _is_check(facts) else "Binding"
        if facts.get("use_candidate"):
            words += ", USE-CANDIDATE"
        return words + (f", TTL {ttl}" if ttl is not None else "")
    if method == "Register":
        if facts.get("lease") == 0:
            return f"Register {peer}: goodbye (LEASE 0)"
        mapping = MAPPINGS.get(facts.get("nat_mapping", 0))
        return f"Register {peer}" + (f", NAT mapping {mapping}" if mapping else "")
    if method == "Connect":
        rtt = facts.get("server_rtt_us")
        told = f", round trip {rtt / 1000:.1f} ms" if isinstance(rtt, int) else ""
        return f"Connect: {peer} asks for {facts.get('target', '?')}{told}"
    if method == "Introduce":
        lan = f" (+{len(candidates) - 1} LAN)" if len(candidates) > 1 else ""
        where = f" at {candidates[0]}{lan}" if candidates else ""
        role = ROLES.get(facts.get("role", 0), "?")
        return f"Introduce: {peer}{where}, you are the {role}"
    if method == "Ready":
        return "Ready: our NAT is open"
    if method == "Go":
        if candidates:
            return f"Go: {peer} moved, check it at {candidates[0]}"
        return f"Go: {peer}'s NAT is open, check now"
    if method == "Move":
        return f"Move: {peer}'s check was refused, move" if from_server else "Move: their NAT refused our check"
    return f"{method} request"


def _answer(method: str, facts: Mapping[str, Any], request: Mapping[str, Any]) -> str:
    if method == "Binding":
        if _is_check(facts) or _is_check(request):
            return "check answered"
        mapped = facts.get("mapped")
        return f"Binding OK: you are {mapped}" if mapped else "Binding OK"
    if method == "Register":
        mapped = facts.get("mapped")
        return f"Register OK: you are {mapped}" if mapped else "Register OK"
    if method in ("Connect", "Move") and "status" in facts:
        return f"{method} OK: {facts['status']}"
    return f"{method} OK"
