"""What an arrow says of its datagram: the message in punch's words (punch.stun.wire), from the attributes a
trace keeps (punch.stun.trace.summary); an answer is told by the request it answers."""

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
    said: Mapping[tuple[str, int], str] | None = None,
    route: bool = False,
) -> str:
    """The arrow's words for a datagram with ``facts``; ``request``: the facts of the request it answers (same
    transaction ID), if known; ``from_server``: the server sent it (a relayed Data or Close says so); ``ttl``: sent
    with that low IP TTL; ``said``: the texts the peers logged, by (peer ID, sequence number); ``route``: a Binding
    of a peer's route trace (punch.peer.hops: its sockets leave no trace), or its answer."""
    method, kind = facts.get("method"), facts.get("class")
    if route and method == "Binding" and kind in ("request", "success"):
        return "route probe" if kind == "request" else "route probe answered"
    if method is None:
        return f"{facts.get('size', '?')}-byte datagram, not STUN"
    if kind == "error":
        return f"{method} error {facts.get('error', '')}".rstrip()
    if kind == "success":
        return _answer(str(method), facts, request or {}, from_server)
    if kind == "indication":
        return f"{method} indication"
    return _request(str(method), facts, from_server, ttl, said or {})


def _is_check(facts: Mapping[str, Any]) -> bool:
    """A Binding request of a session: a connectivity check between the peers (punch.peer.puncher)."""
    return "session" in facts


def _data(facts: Mapping[str, Any], said: Mapping[tuple[str, int], str]) -> str:
    seq = facts.get("seq")
    words = said.get((str(facts.get("peer")), seq)) if isinstance(seq, int) else None
    return f"Data {seq}" + (f" {words}" if words else "")


def _request(
    method: str, facts: Mapping[str, Any], from_server: bool, ttl: int | None, said: Mapping[tuple[str, int], str]
) -> str:
    peer = facts.get("peer", "?")
    candidates = list(facts.get("candidates", ()))
    relayed = " (relayed)" if from_server else ""
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
    if method == "Data":
        return _data(facts, said) + relayed
    if method == "Close":
        return "Close: nothing more to send" + relayed
    return f"{method} request"


def _answer(method: str, facts: Mapping[str, Any], request: Mapping[str, Any], from_server: bool) -> str:
    relayed = " (relayed)" if from_server else ""
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
    if method == "Data":
        seq = request.get("seq")
        return (f"Data {seq} acknowledged" if isinstance(seq, int) else "Data acknowledged") + relayed
    return f"{method} OK" + (relayed if method == "Close" else "")
