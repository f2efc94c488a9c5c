"""The lab's IPv4 NAT options, judged by coturn's RFC 5780 classifier (``turnutils_natdiscovery``) against coturn's
``turnserver`` on the server node's two addresses (tests/e2e/natdiscovery.py reads its output strictly).

One lab holds a router of each kind, each with one peer; the classifier runs in every peer at once (about 20 s,
the longest being the mapping-lifetime test's timer), and each test reads what it said about one router:
mapping and filtering (RFC 4787 §4.1, §5), port allocation (§4.2.1: the public ports of successive mappings),
hairpinning (§6), the mapping lifetime (§4.3: ``udp-timeout``), and a udp-blocked firewall that lets no STUN out.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from netns.testing import LabFactory
from tests.e2e import natdiscovery, requires
from tests.e2e.natdiscovery import PRIMARY, Section

pytestmark = [
    pytest.mark.e2e,
    *requires.marks(
        requires.missing(("turnserver", "turnutils_natdiscovery", "nft"), "apt-get install coturn nftables")
    ),
]

APDM = "address-and-port-dependent"
TIMEOUT = 10  # udp-timeout of router `short`: the lifetime test's timers lie either side of it
# router (its node is "n" + key, its peer's "p" + key) -> its nat: keys besides wan
ROUTERS: dict[str, dict[str, Any]] = {
    "eim": {"preset": "port-restricted-cone"},
    "fullcone": {"preset": "full-cone"},
    "restrict": {"preset": "restricted-cone"},
    "symrand": {"preset": "symmetric"},
    "symseq": {"mapping": APDM, "port-allocation": "sequential"},
    "eimrand": {"port-allocation": "random"},
    "eimseq": {"port-allocation": "sequential"},
    "hairpin": {"hairpinning": True},
    "short": {"udp-timeout": TIMEOUT},
    "blocked": {"firewall": "udp-blocked"},
}
# peer -> natdiscovery's arguments (several lists: several runs at once)
RUNS: dict[str, list[list[str]]] = {
    "hairpin": [["-H", "-m"]],
    "short": [["-t", "-T", str(TIMEOUT // 2)], ["-t", "-T", str(TIMEOUT + 5)]],
    "blocked": [["-m"]],
    "symseq": [["-m"]],
}


def topology() -> dict[str, Any]:
    """A core with the server, and each router on one internet bridge with its own LAN and peer."""
    networks: dict[str, Any] = {"net-server": {"subnet": "203.0.113.0/24"}, "internet": {"subnet": "198.51.100.0/24"}}
    nodes: dict[str, Any] = {
        "core": {"kind": "core", "interfaces": {"net-server": "203.0.113.254", "internet": "198.51.100.1"}},
        "server": {
            "kind": "server",
            "interfaces": {"net-server": [PRIMARY, natdiscovery.SECONDARY]},
            "gateway": "203.0.113.254",
        },
    }
    for i, (key, nat) in enumerate(ROUTERS.items(), start=1):
        networks[f"lan-{key}"] = {"subnet": f"10.0.{i}.0/24"}
        nodes[f"n{key}"] = {
            "kind": "router",
            "interfaces": {"internet": f"198.51.100.{10 + i}", f"lan-{key}": f"10.0.{i}.1"},
            "gateway": "198.51.100.1",
            "nat": {"wan": "internet", **nat},
        }
        nodes[f"p{key}"] = {"kind": "peer", "interfaces": {f"lan-{key}": f"10.0.{i}.2"}, "gateway": f"10.0.{i}.1"}
    return {"version": 1, "networks": networks, "nodes": nodes}


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, list[dict[str, Section]]]]:
    """What natdiscovery said in each peer (a list: one per run), all run at once in one lab."""
    path: Path = tmp_path_factory.mktemp("natdiscovery") / "routers.yaml"
    path.write_text(yaml.safe_dump(topology(), sort_keys=False), encoding="utf-8")
    factory = LabFactory()
    try:
        lab = factory(firewall=None, topology=path)
        natdiscovery.start_turnserver(lab)
        runs: list[tuple[str, subprocess.Popen[str]]] = []
        for key in ROUTERS:
            for args in RUNS.get(key, [["-m", "-f"]]):
                command = ["turnutils_natdiscovery", *args, PRIMARY]
                runs.append((key, lab.spawn(f"p{key}", *command, text=True)))
        said: dict[str, list[dict[str, Section]]] = {}
        for key, process in runs:
            out, err = process.communicate(timeout=60)
            assert process.returncode == 0, err
            said.setdefault(key, []).append(natdiscovery.parse(out))
        yield said
    finally:
        factory.close()


def ports(section: Section) -> list[int]:
    return [r.reflexive[1] for r in section.responses if r.reflexive is not None]


def assert_preserved(section: Section) -> None:
    assert section.responses
    for response in section.responses:
        assert response.reflexive is not None
        assert response.local is not None
        assert response.reflexive[1] == response.local[1], response


@pytest.mark.parametrize(
    ("router", "mapping", "filtering"),
    [
        ("eim", "endpoint-independent", APDM),
        ("fullcone", "endpoint-independent", "endpoint-independent"),
        ("restrict", "endpoint-independent", "address-dependent"),
        ("symrand", APDM, APDM),
        ("eimrand", "endpoint-independent", APDM),
        ("eimseq", "endpoint-independent", APDM),
    ],
)
def test_mapping_and_filtering(
    verdicts: dict[str, list[dict[str, Section]]], router: str, mapping: str, filtering: str
) -> None:
    [said] = verdicts[router]
    assert said["mapping"].verdict == mapping
    assert said["filtering"].verdict == filtering
    assert {r.reflexive[0] for r in said["mapping"].responses if r.reflexive} == {
        f"198.51.100.{11 + list(ROUTERS).index(router)}"
    }


@pytest.mark.parametrize("router", ["eim", "fullcone", "restrict"])
def test_port_preserving_routers_keep_the_internal_port(
    verdicts: dict[str, list[dict[str, Section]]], router: str
) -> None:
    [said] = verdicts[router]
    assert_preserved(said["mapping"])
    assert_preserved(said["filtering"])


def test_random_allocation_gives_ports_unrelated_to_the_internal_one(
    verdicts: dict[str, list[dict[str, Section]]],
) -> None:
    """Endpoint-independent mapping with random ports: one public port for the endpoint, not its own; the next
    mapping (the filtering test's new socket) gets another random one."""
    [said] = verdicts["eimrand"]
    mapped = said["mapping"].responses
    assert len(set(ports(said["mapping"]))) == 1
    assert mapped[0].reflexive is not None
    assert mapped[0].local is not None
    assert mapped[0].reflexive[1] != mapped[0].local[1]  # a 1 in 64,512 chance of a false failure
    assert ports(said["filtering"])[0] != ports(said["mapping"])[0] + 1


def test_sequential_allocation_counts_up_per_mapping(verdicts: dict[str, list[dict[str, Section]]]) -> None:
    """Endpoint-independent: one port for the mapping test's endpoint, the next number for the next endpoint."""
    [said] = verdicts["eimseq"]
    assert len(set(ports(said["mapping"]))) == 1
    assert ports(said["filtering"])[0] == ports(said["mapping"])[0] + 1


def test_symmetric_sequential_gives_each_flow_the_next_port(verdicts: dict[str, list[dict[str, Section]]]) -> None:
    """Address-and-port-dependent mapping with sequential ports: each of the three flows (primary, other address,
    other address and port) gets the next port."""
    [said] = verdicts["symseq"]
    assert said["mapping"].verdict == APDM
    first = ports(said["mapping"])[0]
    assert ports(said["mapping"]) == [first, first + 1, first + 2]


def test_symmetric_random_gives_each_flow_a_random_port(verdicts: dict[str, list[dict[str, Section]]]) -> None:
    [said] = verdicts["symrand"]
    found = ports(said["mapping"])
    assert len(set(found)) == 3
    assert sorted(found) != list(
        range(min(found), min(found) + 3)
    )  # not consecutive (a tiny chance of a false failure)


def test_hairpinning_router_hairpins(verdicts: dict[str, list[dict[str, Section]]]) -> None:
    [said] = verdicts["hairpin"]
    assert said["hairpinning"].hairpinned
    assert said["mapping"].verdict == "endpoint-independent"


def test_a_router_without_hairpinning_drops_the_hairpinned_request(lab_factory: LabFactory, tmp_path: Path) -> None:
    path = tmp_path / "one.yaml"
    data = topology()
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    lab = lab_factory(firewall=None, topology=path)
    natdiscovery.start_turnserver(lab)
    said = natdiscovery.parse(lab.exec("peim", "turnutils_natdiscovery", "-H", PRIMARY, timeout=30).stdout)
    assert not said["hairpinning"].hairpinned
    assert said["hairpinning"].timeouts == 2


def test_mapping_lives_as_long_as_udp_timeout(verdicts: dict[str, list[dict[str, Section]]]) -> None:
    """RFC 4787 §4.3: the first mapping still answers after half the timeout (two responses), not after it (the
    second request's answer, sent to the first mapping's port, dies at the router)."""
    within, after = verdicts["short"]
    assert len(within["lifetime"].responses) == 2
    assert within["lifetime"].timeouts == 0
    assert len(after["lifetime"].responses) == 1
    assert after["lifetime"].timeouts == 1


def test_udp_blocked_lets_no_stun_out(verdicts: dict[str, list[dict[str, Section]]]) -> None:
    [said] = verdicts["blocked"]
    assert said["mapping"].responses == []
    assert said["mapping"].verdict is None
    assert said["mapping"].timeouts == 1
