"""The route trace that sets the opening probes' TTL (punch.peer.hops), through the lab's routers (needs root).

From peer10 the route to the server is nat10 (TTL 1, a private address), the core (TTL 2, public), the server
(TTL 3). A router that sends no ICMP Time Exceeded (it rate-limits or filters them) must not hold the trace for
its whole wait: once a deeper probe reached the server, the trace waits for nearer routers only a little longer.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from netns.testing import Lab
from tests.e2e.punch_in_lab import PY, SERVER, start_server

pytestmark = pytest.mark.e2e

WAIT = 20.0  # the trace's own limit: a silent router must cost far less than this
TRACE = """
import asyncio, json, sys, time
from punch.peer import hops
started = time.monotonic()
found = asyncio.run(hops.trace((sys.argv[1], 3478), wait=float(sys.argv[2])))
print(json.dumps({
    "hops": [[h.ttl, h.router, h.reached] for h in sorted(found, key=lambda h: h.ttl)],
    "open_ttl": hops.open_ttl(found),
    "seconds": time.monotonic() - started,
}))
"""


def trace_from_peer10(lab: Lab) -> dict[str, Any]:
    done = lab.exec("peer10", PY, "-c", TRACE, SERVER, str(WAIT), timeout=WAIT + 30)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


@pytest.fixture
def server(lab: Lab) -> subprocess.Popen[Any]:
    return start_server(lab)


@pytest.mark.usefixtures("server")
def test_the_trace_finds_our_nat_and_the_first_public_router(lab: Lab) -> None:
    result = trace_from_peer10(lab)
    assert result["hops"][:2] == [[1, "10.0.10.1", False], [2, "198.51.100.1", False]]
    assert result["open_ttl"] == 2


@pytest.mark.usefixtures("server")
def test_a_silent_router_does_not_hold_the_trace_for_its_wait(lab: Lab) -> None:
    drop = ["iptables", "-I", "OUTPUT", "-p", "icmp", "--icmp-type", "time-exceeded", "-j", "DROP"]
    assert lab.exec("nat10", *drop).returncode == 0
    result = trace_from_peer10(lab)
    assert result["hops"][:2] == [[2, "198.51.100.1", False], [3, None, True]]  # (deeper TTLs reach it too)
    assert result["open_ttl"] is None  # TTL 1 unknown: the peer keeps its default
    assert result["seconds"] < WAIT / 2  # it stopped soon after the server answered, not at its wait
