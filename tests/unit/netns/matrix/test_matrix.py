"""The connectivity matrix: its cells, what RFC 4787 theory says of each pair, and the report it writes."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from netns.matrix import cells as matrix
from netns.matrix import html as matrix_html
from netns.matrix import report as matrix_report
from netns.matrix.runner import Result
from netns.topology import model
from netns.topology.behaviour import Nat

pytestmark = pytest.mark.unit


def nat(preset: str, firewall: str = "home") -> Nat:
    return Nat("masquerade", "wan", firewall).with_preset(preset)


def test_every_ordered_pair_per_firewall_then_same_nat_and_cgnat() -> None:
    cells = matrix.cells()
    pairs = [c for c in cells if c.group == "pairs"]
    assert len(pairs) == 2 * 5 * 5
    assert pairs[1].name == "full-cone / restricted-cone, firewall home"
    assert pairs[1].up_args()[2:] == [
        "--firewall",
        "home",
        "--nat",
        "nat10=full-cone",
        "--nat",
        "nat14=restricted-cone",
    ]
    assert [c.group for c in cells[len(pairs) :]] == ["same-nat", "cgnat", "cgnat"] * 2 + ["networks"] * 6
    assert {c.peers for c in cells if c.group == "same-nat"} == {("peer10", "peer11")}


def test_the_new_networks_have_their_theory_and_their_own_table() -> None:
    networks = {c.name: c for c in matrix.networks()}
    blocked = networks["UDP blocked (corporate or hotel firewall) on both sides"]
    assert blocked.up_args()[2:] == ["--firewall", "udp-blocked"]
    assert blocked.theory.startswith("relay over TCP only:")
    mapped = networks["symmetric NATs that map ports (UPnP IGD, NAT-PMP, PCP) on both sides"]
    assert mapped.topology.name == "port-mapping.yaml"
    assert "PCP RFC 6887" in mapped.theory
    ipv6 = [c for c in networks.values() if c.topology.name == "ipv6-only.yaml"]
    assert [c.peers for c in ipv6] == [("peer10", "peer11"), ("peer10", "peer14"), ("peer14", "peer16")]
    assert all(c.theory.startswith("direct:") for c in ipv6)
    results = [Result(c, trials=1, failures=["no route"]) for c in networks.values()]
    text = matrix_report.markdown(results, 1, "test")
    assert "### Networks where traversal fails in the wild" in text
    assert "| IPv6 only, routed / NPTv6 | peer10 ↔ peer14 | - 0/1 | direct: NPTv6 (RFC 6296)" in text
    assert "<h2>Networks where traversal fails in the wild</h2>" in matrix_html.page([r.as_dict() for r in results])


@pytest.mark.parametrize("cell", matrix.cells(), ids=lambda c: c.name)
def test_every_cell_builds_a_valid_lab(cell: matrix.Cell) -> None:
    topology = model.load(cell.topology).with_firewall(cell.firewall)
    for router, preset in cell.nat:
        topology = topology.with_nat(preset, [router])
    assert {n.name for n in topology.nodes} >= set(cell.peers)


@pytest.mark.parametrize(
    ("a", "b", "starts"),
    [
        (nat("full-cone"), nat("port-restricted-cone"), "direct: both mappings are endpoint-independent"),
        (nat("symmetric"), nat("restricted-cone"), "direct or predicted: the symmetric side's new port is unknown"),
        (nat("full-cone"), nat("symmetric"), "direct or predicted: the symmetric side's new port is unknown"),
        (nat("symmetric"), nat("port-restricted-cone"), "predicted or relay"),
        (nat("symmetric"), nat("symmetric"), "relay: both mappings are endpoint-dependent"),
        (nat("none", "none"), nat("symmetric"), "direct or predicted: one side has neither NAT nor firewall"),
        (nat("none", "none"), nat("none", "none"), "direct: neither side"),
        # no NAT, but the home firewall: a port-restricted cone as far as the other side can tell
        (nat("none"), nat("symmetric"), "predicted or relay"),
    ],
)
def test_theory_in_rfc_4787_terms(a: Nat, b: Nat, starts: str) -> None:
    assert matrix.theory(a, b).startswith(starts)
    assert matrix.theory(b, a) == matrix.theory(a, b)


def test_report_tables_and_json(tmp_path: Path) -> None:
    cells = [c for c in matrix.cells(["home"], ["full-cone", "symmetric"])]
    results = [Result(c, trials=2) for c in cells]
    results[0].successes, results[0].paths, results[0].ms = 2, Counter(direct=2), [4.0, 6.0]
    results[3].successes, results[3].paths, results[3].failures = 1, Counter(relay=1), ["timed out"]
    results[4].error = "lab up failed: boom"
    results[5].successes, results[5].paths, results[5].ms = 2, Counter(direct=1, relay=1), [250.0, 5000.0]
    md, js, page = matrix_report.write(results, tmp_path, 2, "just lab-matrix")
    assert page.read_text().count(" data-kind=") == len(results)  # the coloured grids: netns/matrix/html.py
    text = md.read_text()
    assert "| nat10 \\ nat14 | full-cone | symmetric |" in text
    assert "| **full-cone** | direct 2/2 · 5 ms | - 0/2 |" in text
    assert "| **symmetric** | - 0/2 | relay 1/2 |" in text
    assert "- symmetric / symmetric, firewall home: timed out" in text
    assert "| same NAT (port-restricted cone, hairpinning), firewall home | peer10 ↔ peer11 | error |" in text
    assert "| peer10 ↔ peer14 | direct 2/2 (1 relay) · 2625 ms |" in text  # a trial that took another path shows
    data = json.loads(js.read_text())
    assert data[0]["paths"] == {"direct": 2}
    assert data[0]["median_ms"] == 5.0
    assert data[0]["nat"] == {"nat10": "full-cone", "nat14": "full-cone"}
    assert data[4]["error"] == "lab up failed: boom"
