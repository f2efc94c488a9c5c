"""coturn's RFC 5780 classifier, ``turnutils_natdiscovery``, against coturn's ``turnserver`` in a lab's server node,
and a strict reading of what it prints (coturn 4.6's src/apps/natdiscovery/natdiscovery.c).

Its output is a section per test (``-= Mapping Behavior Discovery =-`` ...), each holding the responses it got
(``RFC 5780 response N`` blocks with ``UDP reflexive addr`` and ``Local addr`` lines), ``STUN receive timeout..``
for each request that got none, and for mapping and filtering a verdict between two rulers of ``=``. Hairpinning
has no verdict: a hairpinned request shows as ``Received a request (maybe a successful hairpinning)``. The mapping
lifetime test (``-t -T SECONDS``) sends a second request from a new socket after the timer, asking for the answer
at the first mapping's port (RESPONSE-PORT): its second response arrives only while that mapping lives.
Anything else in the output fails the parse.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from netns.testing import Lab

PRIMARY, SECONDARY = "203.0.113.1", "203.0.113.2"

MAPPINGS = {
    "NAT with Endpoint Independent Mapping!": "endpoint-independent",
    "NAT with Address Dependent Mapping!": "address-dependent",
    "NAT with Address and Port Dependent Mapping!": "address-and-port-dependent",
    "No NAT! (Endpoint Independent Mapping)": "no-nat",
}
FILTERINGS = {
    "NAT with Endpoint Independent Filtering!": "endpoint-independent",
    "NAT with Address Dependent Filtering!": "address-dependent",
    "NAT with Address and Port Dependent Filtering!": "address-and-port-dependent",
}
SECTIONS = {
    "-= Mapping Lifetime Behavior Discovery =-": "lifetime",
    "-= Hairpinning Behavior Discovery =-": "hairpinning",
    "-= Mapping Behavior Discovery =-": "mapping",
    "-= Filtering Behavior Discovery =-": "filtering",
}
RULER = "=" * 40
HAIRPINNED = "Received a request (maybe a successful hairpinning)"
TIMEOUT = "STUN receive timeout.."
_ADDRESS = re.compile(
    r"^\d+: : IPv4\. (Response origin|Other addr|UDP reflexive addr|Local addr)(?:: )+([\d.]+):(\d+)$"
)


@dataclass
class Response:
    reflexive: tuple[str, int] | None = None
    local: tuple[str, int] | None = None
    origin: tuple[str, int] | None = None


@dataclass
class Section:
    responses: list[Response] = field(default_factory=list)
    timeouts: int = 0
    verdict: str | None = None
    hairpinned: bool = False


class ParseError(AssertionError):
    pass


def parse(text: str) -> dict[str, Section]:
    """The sections of natdiscovery's output by name (``mapping``, ``filtering``, ``hairpinning``, ``lifetime``)."""
    sections: dict[str, Section] = {}
    current: Section | None = None
    lines = [line.strip() for line in text.splitlines()]
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line:
            continue
        if line in SECTIONS:
            current = sections.setdefault(SECTIONS[line], Section())
            continue
        if current is None:
            raise ParseError(f"line before any section: {line!r}")
        if line == RULER:
            if i < len(lines) and lines[i].startswith("RFC 5780 response "):
                current.responses.append(Response())
                i += 1
                continue
            verdict, closing = (lines[i] if i < len(lines) else ""), (lines[i + 1] if i + 1 < len(lines) else "")
            if closing != RULER or verdict not in {**MAPPINGS, **FILTERINGS}:
                raise ParseError(f"unknown verdict {verdict!r}")
            current.verdict = MAPPINGS.get(verdict) or FILTERINGS[verdict]
            i += 2
            continue
        if line == TIMEOUT:
            current.timeouts += 1
        elif line == HAIRPINNED:
            current.hairpinned = True
        elif line == "No ALG: Mapped == XOR-Mapped":
            continue
        elif (match := _ADDRESS.match(line)) is not None:
            if not current.responses:
                raise ParseError(f"address outside a response: {line!r}")
            kind, address = match.group(1), (match.group(2), int(match.group(3)))
            response = current.responses[-1]
            if kind == "UDP reflexive addr":
                response.reflexive = address
            elif kind == "Local addr":
                response.local = address
            elif kind == "Response origin":
                response.origin = address
        else:
            raise ParseError(f"unexpected line {line!r}")
    return sections


def start_turnserver(lab: Lab, node: str = "server") -> None:
    """coturn's turnserver on both server addresses (RFC 5780 needs two), ports 3478 and 3479; waits until bound."""
    lab.spawn(
        node,
        "turnserver",
        "-L",
        PRIMARY,
        "-L",
        SECONDARY,
        "--listening-port",
        "3478",
        "--no-tls",
        "--no-dtls",
        "--no-tcp",
        "--no-cli",
        "-n",
        "--log-file",
        "stdout",
        "--simple-log",
    )
    deadline = time.monotonic() + 15
    want = {f"{a}:{p}" for a in (PRIMARY, SECONDARY) for p in (3478, 3479)}
    while True:
        bound = {line.split()[3] for line in lab.exec(node, "ss", "-Hunl").stdout.splitlines() if line.split()}
        if want <= bound:
            return
        assert time.monotonic() < deadline, f"turnserver did not bind {sorted(want - bound)}"
        time.sleep(0.05)
