"""compose.yaml end to end: two peers, each behind its own NAT router container, punch and talk directly.

The routers are containers with iptables MASQUERADE and the home-router firewall (docker/nat-router.sh);
the peers' only way out is their router. These tests check that the peers' packets meet those routers'
NAT (not Docker's), that the punched path is direct between the two public addresses, and that a peer
cannot reach the other LAN.
"""

from __future__ import annotations

import re

import pytest

from tests.docker.harness import Project, last_json

pytestmark = pytest.mark.docker

SERVER = "198.51.100.1"
PUBLIC = {"10": "198.51.100.10", "14": "198.51.100.14"}
LAN_PREFIX = {"10": "10.0.10.", "14": "10.0.14."}


def test_server_is_healthy_by_its_stun_healthcheck(project: Project) -> None:
    assert project.health("server") == "healthy"
    code, output = project.exec("server", "stun-check", "127.0.0.1:3478")
    assert code == 0, output
    assert output.startswith("127.0.0.1:3478 answered: mapped 127.0.0.1:")


@pytest.mark.parametrize("peer", ["10", "14"])
def test_peer_reaches_the_server_through_its_own_nat(project: Project, peer: str) -> None:
    code, out, err = project.run(f"peer{peer}", "stun-check", f"{SERVER}:3478")
    assert code == 0, err
    # The server saw the router's public address: the router's MASQUERADE rewrote the packet, not Docker's.
    assert re.fullmatch(rf"{SERVER}:3478 answered: mapped {re.escape(PUBLIC[peer])}:\d+", out.strip()), out


@pytest.mark.parametrize(("peer", "other"), [("10", "14"), ("14", "10")])
def test_peer_cannot_reach_the_other_lan(project: Project, peer: str, other: str) -> None:
    # A STUN server on the other LAN; a host on that LAN reaches it, the peer here must not.
    host = project.start_run(f"peer{other}", "punch", "server", "--listen", "0.0.0.0:3478")
    try:
        address = project.address(host, f"lan{other}")
        assert address.startswith(LAN_PREFIX[other])
        code, out, err = project.run(f"peer{other}", "stun-check", "--timeout", "5", address)
        assert code == 0, f"control failed: a host on lan{other} cannot reach {address}: {err}"
        code, out, err = project.run(f"peer{peer}", "stun-check", "--timeout", "2", address)
        assert code == 1, f"peer{peer} reached {address} on lan{other} directly: {out}"
        assert err.strip() == f"stun-check: {address}:3478: no Binding success response within 2 s"
    finally:
        project.client.containers.get(host).remove(force=True)


def test_peers_punch_a_direct_path_and_exchange_messages(project: Project) -> None:
    texts = {p: [f"hello from peer{p}", f"peer{p} says bye"] for p in ("10", "14")}
    # Both started before either is waited for: each waits for the other at the server.
    names = {p: project.start_run(f"peer{p}", "--send", texts[p][0], "--send", texts[p][1], "--json") for p in texts}
    results = {}
    for p, name in names.items():
        code, out, err = project.wait(name)
        assert code == 0, f"peer{p} exited {code}:\n{out}\n{err}"
        results[p] = last_json(out)

    for p, other in (("10", "14"), ("14", "10")):
        result, theirs = results[p], results[other]
        assert result["error"] is None
        assert result["path"] == "direct"
        assert result["received"] == texts[other]
        assert result["sent"] == texts[p]
        assert result["mapped"].startswith(f"{PUBLIC[p]}:")
        # The path goes straight to the other NAT's public mapping: no server, no LAN shortcut.
        assert result["remote"] == theirs["mapped"]

    # Each router's kernel NATed the flow between the two public endpoints (conntrack, as in the netns lab).
    for p, other in (("10", "14"), ("14", "10")):
        local_port = results[p]["local"].rsplit(":", 1)[1]
        mapped_port = results[p]["mapped"].rsplit(":", 1)[1]
        their_port = results[other]["mapped"].rsplit(":", 1)[1]
        table = project.conntrack(f"nat{p}")
        entry = (
            rf"src={re.escape(LAN_PREFIX[p])}\d+ dst={re.escape(PUBLIC[other])} sport={local_port} dport={their_port} "
            rf"src={re.escape(PUBLIC[other])} dst={re.escape(PUBLIC[p])} sport={their_port} dport={mapped_port}\b"
        )
        assert re.search(entry, table), f"nat{p} has no entry for the direct flow:\n{table}"
