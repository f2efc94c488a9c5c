"""Port-mapping routers (``port-mapping: true``): miniupnpd in the router, asked by clients nobody here wrote --
miniupnpc's ``natpmpc`` (NAT-PMP, RFC 6886) and ``upnpc`` (UPnP IGD) -- maps a public port to a peer; what arrives
there reaches the peer although the router's filtering alone would drop it; ``status`` lists the mappings; and
``down``, or an ``up`` that fails half-way, leaves no miniupnpd and no namespace behind.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from netns.kernel import portmap
from netns.kernel.processes import alive
from netns.testing import Lab, LabFactory, namespaces_of
from netns.topology.model import TOPOLOGIES
from tests.e2e import requires
from tests.e2e.inbound import receive

PORT_MAPPING = TOPOLOGIES / "port-mapping.yaml"

MINIUPNPD = f"needs miniupnpd 2.3.9 at {portmap.DEFAULT_BINARY}: build it with {portmap.SETUP}"
pytestmark = [
    pytest.mark.e2e,
    *requires.marks(MINIUPNPD if portmap.binary() is None else None),
    *requires.marks(requires.missing(("natpmpc", "upnpc"), "apt-get install natpmpc miniupnpc")),
]


def running_for(pid: str, lab: str) -> bool:
    """Whether process ``pid`` is a miniupnpd of lab ``lab`` (its configuration lies in the lab's state dir)."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return os.path.basename(exe) == "miniupnpd" and f"/{lab}/" in cmdline


def inbound(lab: Lab, peer: str, public: str, port: int, wait: float) -> str:
    return receive(lab, peer, "203.0.113.1", public, port, wait)


def test_natpmp_and_upnp_map_ports_that_status_lists_and_down_removes(lab_factory: LabFactory) -> None:
    lab = lab_factory(firewall=None, topology=PORT_MAPPING)
    # the port-restricted router drops what nobody inside asked for
    assert inbound(lab, "peer10", "198.51.100.10", 4000, 1.0) == "nothing"

    natpmp = lab.exec("peer10", "natpmpc", "-g", "10.0.10.1", "-a", "4000", "4000", "udp", "120", check=True)
    assert "Mapped public port 4000 protocol UDP to local port 4000 liftime 120" in natpmp.stdout
    assert "Public IP address : 198.51.100.10" in natpmp.stdout
    assert inbound(lab, "peer10", "198.51.100.10", 4000, 10.0) == "inbound from 203.0.113.1"

    url = "http://10.0.14.1:2189/rootDesc.xml"
    upnp = lab.exec("peer14", "upnpc", "-u", url, "-a", "10.0.14.2", "5000", "5000", "UDP", check=True)
    assert "external :5000 UDP is redirected to internal 10.0.14.2:5000" in upnp.stdout
    assert inbound(lab, "peer14", "192.0.2.14", 5000, 10.0) == "inbound from 203.0.113.1"

    status = lab.cli("status", "--name", lab.name)
    assert status.returncode == 0, status.stderr
    assert "  port mappings (miniupnpd): 1\n    udp 4000 -> 10.0.10.2:4000 (expires in " in status.stdout
    assert "    udp 5000 -> 10.0.14.2:5000 (expires in " in status.stdout
    assert f"nat10 [router] {lab.namespace('nat10')} nat masquerade/home on wan10 + miniupnpd" in status.stdout

    daemons = portmap.pids(lab.namespace("nat10")) + portmap.pids(lab.namespace("nat14"))
    assert len(daemons) == 2
    lab.down()
    assert not any(map(alive, daemons))  # a zombie, not yet reaped by init, has no namespace: it counts as gone
    lab.assert_gone()


def test_an_up_that_fails_after_miniupnpd_started_leaves_nothing(
    lab_factory: LabFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nat14's miniupnpd fails once nat10's runs: up undoes everything, the running miniupnpd included."""
    real = portmap.binary()
    wrapper = tmp_path / "miniupnpd"
    wrapper.write_text(
        "#!/bin/sh\n"
        'case "$*" in *nat14*) ;; *) exec "$REAL" "$@" ;; esac\n'
        "for i in $(seq 100); do\n"
        '  [ -n "$(ip netns pids "$LAB-nat10")" ] && { echo "failing on purpose"; exit 1; }\n'
        "  sleep 0.1\n"
        "done\n"
        "exit 1\n",
        encoding="utf-8",
    )
    wrapper.chmod(0o755)
    lab = Lab("tfail" + os.urandom(1).hex())
    monkeypatch.setenv(portmap.BINARY_ENV, str(wrapper))
    monkeypatch.setenv("REAL", str(real))
    monkeypatch.setenv("LAB", lab.name)
    done = lab.cli("up", "--name", lab.name, "--topology", str(PORT_MAPPING))
    assert done.returncode == 1
    assert f"miniupnpd in {lab.name}-nat14 exited: failing on purpose" in done.stderr
    assert namespaces_of(lab.name) == []
    left = [pid for pid in os.listdir("/proc") if pid.isdigit() and running_for(pid, lab.name)]
    assert left == []
    lab.assert_gone()
