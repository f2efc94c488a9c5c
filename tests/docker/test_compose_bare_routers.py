"""compose.yaml with bare routers (``PUNCH_FIREWALL=none``): no direct path, and the relay still carries the texts.

The two router containers share the public network with no router between them, so no probe TTL stops the
opener's low-TTL probe short of the other NAT: it arrives there addressed to that router itself. The home
firewall drops it before conntrack records it (test_compose.py punches direct); a bare router delivers it to its
own stack and records an inbound flow for the prober's public port, so the prober's checks toward the opener
leave through MASQUERADE from another port, which the opener's NAT refuses. Moving to a fresh socket repeats the
race, and the refusals that follow tell both peers so: they take the relay at once (punch.peer.moving).
"""

from __future__ import annotations

import re

import pytest

from tests.docker.harness import Project, last_json

pytestmark = pytest.mark.docker

PUBLIC = {"10": "198.51.100.10", "14": "198.51.100.14"}


@pytest.fixture(scope="module")
def bare(project: Project) -> Project:
    """This module's project with both routers recreated without the firewall."""
    project.env["PUNCH_FIREWALL"] = "none"
    project.compose("up", "--detach", "--wait", "--force-recreate", "--no-deps", "nat10", "nat14", timeout=180)
    return project


def test_bare_routers_side_by_side_fall_back_to_the_relay_and_the_texts_arrive(bare: Project) -> None:
    for router in ("nat10", "nat14"):
        code, rules = bare.exec(router, "iptables", "-S")
        assert code == 0, rules
        assert "DROP" not in rules, f"{router} is not bare:\n{rules}"
    texts = {p: f"hello from peer{p}" for p in PUBLIC}
    names = {p: bare.start_run(f"peer{p}", "--send", texts[p], "--json") for p in PUBLIC}
    results, logs = {}, {}
    for p, name in names.items():
        code, out, logs[p] = bare.wait(name)
        assert code == 0, f"peer{p} exited {code}:\n{out}\n{logs[p]}"
        results[p] = last_json(out)

    # A refused check, a move, and refusals again, which end the punch without waiting for its timeout.
    mover, follower = sorted(PUBLIC, key=lambda p: results[p]["move"] != "moved")
    assert (results[mover]["move"], results[follower]["move"]) == ("moved", "followed"), results
    assert f"our probe from a fresh socket reached {follower}'s NAT, which refused it" in logs[mover], logs[mover]
    assert f"{mover}'s NAT refused our checks at its fresh socket too" in logs[follower], logs[follower]
    for p, other in (("10", "14"), ("14", "10")):
        assert "falling back to the relay through the server" in logs[p], logs[p]
        assert results[p]["path"] == "relay"
        assert results[p]["received"] == [texts[other]]

    # Why: the prober's router holds the opener's probe as an inbound flow to the prober's own public port.
    opener, prober = sorted(PUBLIC, key=lambda p: results[p]["role"] != "opener")
    opener_port, prober_port = (results[p]["mapped"].rsplit(":", 1)[1] for p in (opener, prober))
    table = bare.conntrack(f"nat{prober}")
    probe = (
        rf"src={PUBLIC[opener]} dst={PUBLIC[prober]} sport={opener_port} dport={prober_port} \[UNREPLIED\] "
        rf"src={PUBLIC[prober]} dst={PUBLIC[opener]} sport={prober_port} dport={opener_port}\b"
    )
    assert re.search(probe, table), f"nat{prober} holds no inbound flow of the opener's probe:\n{table}"
