"""The notes of a diagram: the steps a peer's log says it took that no arrow shows (the route its probes take, its
NAT's mapping, early checks or Ready/Go, the path chosen, a refusal and a move, port prediction, the relay, QUIC's
handshake done, what the server said of the session).

Each note is one of the peer's log lines (punch.peer.*), shortened; a line no pattern here knows makes no note.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from punch.diagram.cast import DIED

_REACHED = re.compile(r"TTL (\d+) reached the server")
_OPENING = re.compile(r"opening probes (?:get|keep) TTL (\d+)")


def _route(match: re.Match[str]) -> str:
    line = match.string
    hops = [f"{ttl}: {router}" for ttl, router in DIED.findall(line)]
    hops += [f"{ttl}: the server" for ttl in _REACHED.findall(line)[:1]]  # further TTLs reach it as well
    opening = _OPENING.search(line)
    probes = f"<br/>low-TTL probes get TTL {opening[1]}" if opening else ""
    return f"route to the server, by TTL: {', '.join(hops) or 'no answers'}{probes}"


def _after(separator: str) -> Callable[[re.Match[str]], str]:
    """The line from ``separator`` on (its cause stays in the log)."""
    return lambda match: match.string.partition(separator)[2] or match.string


_NOTES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    (re.compile(r"^route to the server: "), _route),
    (re.compile(r"^NAT mapping is (endpoint-\w+)"), lambda m: f"our NAT's mapping is {m[1]}"),
    (re.compile(r"^(\S+) has our public address: we are behind the same NAT"), lambda m: f"behind one NAT with {m[1]}"),
    (
        re.compile(r"^round trips to the server: ours ([\d.]+) ms, (\S+) ([\d.]+) ms: both open .* after ([\d.]+) ms"),
        lambda m: f"early checks: round trips ours {m[1]} ms, {m[2]} {m[3]} ms<br/>probes now, checks after {m[4]} ms",
    ),
    (re.compile(r"Ready/Go is as fast as early checks"), lambda m: "Ready/Go: early checks would not be faster"),
    (re.compile(r"LAN candidate is on our link: Ready/Go"), lambda m: "Ready/Go: their LAN candidate is on our link"),
    (re.compile(r"^path chosen: .*"), lambda m: m[0]),
    (re.compile(r"; falling back to the relay"), lambda m: "no direct path: falling back to the relay"),
    (re.compile(r"^no direct path .*: (.*); using the relay"), lambda m: f"{m[1]}: the relay"),
    (re.compile(r"^upgraded from the relay to the (\S+) path via (\S+)"), lambda m: f"upgraded to {m[1]} via {m[2]}"),
    (re.compile(r"^our check to (\S+) was refused by (\S+)'s NAT"), lambda m: f"refused by {m[2]}'s NAT: {m[2]} moves"),
    (re.compile(r"^moving to a fresh socket \(port (\d+)\)"), lambda m: f"moving to a fresh socket (port {m[1]})"),
    (re.compile(r"^following (\S+) to (\S+): "), lambda m: f"following {m[1]} to {m[2]}"),
    (re.compile(r"^told to move, but .*: we stay"), lambda m: "told to move, but their checks reach us: we stay"),
    (re.compile(r"^port prediction: .*; "), _after("; ")),
    (re.compile(r"^spraying (\d+) checks to random ports of (\S+)"), lambda m: f"spraying {m[1]} checks at {m[2]}"),
    (re.compile(r"^hit: (\S+) answered after (\d+) checks"), lambda m: f"hit: {m[1]} after {m[2]} checks"),
    (re.compile(r"^the session continues on our socket on port (\d+)"), lambda m: f"keeping the socket on {m[1]}"),
    (re.compile(r"; asking the server for (\S+) again"), lambda m: f"path lost: asking the server for {m[1]} again"),
    (re.compile(r"^back on a (\S+) path to \S+ via (\S+)"), lambda m: f"back on a {m[1]} path via {m[2]}"),
    (re.compile(r"; back to the relay"), lambda m: "the direct path broke: back to the relay"),
    (
        re.compile(r"^QUIC is up with (\S+) \(we are its (client|server), (keys checked both ways|its key checked)"),
        lambda m: f"QUIC is up: we are {m[1]}'s {m[2]}, {m[3]}",
    ),
    (re.compile(r"^the server says about our session: (.*)"), lambda m: f"the server says: {m[1]}"),
)


def note(message: str) -> str | None:
    """The note for a peer's log line, or None."""
    for pattern, words in _NOTES:
        match = pattern.search(message)
        if match is not None:
            return words(match)
    return None
