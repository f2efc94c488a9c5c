"""The lab-scale benchmark's peers (bench/crowd.py), both ways, through a generated lab's NATs (root).

One host process runs several peers, each on a socket made in the peer's own namespace: their packets must
leave through each peer's own NAT router, exactly as a `punch peer` process in that namespace does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench.crowd import Crowd
from netns.testing import LabFactory
from netns.topology import generate

pytestmark = pytest.mark.e2e

PY = sys.executable
PAIRS = [(1, 2), (3, 4), (5, 6)]


@pytest.mark.parametrize("hosts", [0, 2], ids=["processes", "hosted"])
def test_every_pair_punches_through_its_own_nats_and_all_sessions_are_open_together(
    lab_factory: LabFactory, tmp_path: Path, hosts: int
) -> None:
    lab = lab_factory(args=["--peers", "6"])
    server = lab.spawn("server", PY, "-m", "punch", "server", "--listen", f"{generate.SERVER}:3478", text=True)
    crowd = Crowd(lab.name, tmp_path, "c-", timeout=30, hosts=hosts)
    try:
        crowd.start(PAIRS, times=[0.0, 0.05, 0.1])
        crowd.follow(lambda: all(crowd.asked(a) for a, _ in PAIRS), 30)  # the firsts wait at the server
        assert not any(crowd.peers[b].received for _, b in PAIRS)
        crowd.release()
        crowd.follow(crowd.all_talked, 30)
        assert crowd.open_sessions() == 6
        crowd.end()
    finally:
        crowd.stop()
        server.terminate()
    for a, b in PAIRS:
        for me, other in ((a, b), (b, a)):
            assert crowd.outcome(me, other)[:1] == (True,), crowd.outcome(me, other)
            found = crowd.results[f"c-{me}"]
            assert found["mapped"].split(":")[0] == str(generate.router_address(me))  # behind its own NAT
            assert found["remote"].split(":")[0] == str(generate.router_address(other))
    assert len(crowd.processes) == (6 if hosts == 0 else 2)
    assert all(process.code == 0 for process in crowd.processes.values())
