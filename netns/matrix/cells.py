"""The cells of the connectivity matrix: every ordered pair of NAT presets, plus same-NAT and double NAT
(CGNAT), under each router firewall kind (``python -m netns matrix``; ``just lab-matrix``), each with what RFC 4787
theory allows there (``theory``); then the networks where NAT traversal fails in the wild (``networks``: blocked
UDP, port mapping, a mobile carrier's NAT, IPv6-only peers), each with what its RFCs allow a peer there.
netns/matrix/runner.py runs them; netns/matrix/report.py writes the tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netns.topology import behaviour
from netns.topology.behaviour import ADF, APDF, APDM, EIF, Nat
from netns.topology.model import TOPOLOGIES

PAIR_PRESETS = ("full-cone", "restricted-cone", "port-restricted-cone", "symmetric", "none")
FIREWALL_KINDS = ("home", "none")
GROUPS = ("pairs", "same-nat", "cgnat", "networks")


# What a peer needs that punch does not have yet (issue 28): said in every cell whose theory depends on it.
@dataclass(frozen=True, slots=True)
class Cell:
    """One lab configuration of the matrix."""

    group: str  # "pairs", "same-nat", "cgnat" or "networks"
    name: str  # readable: "symmetric / full-cone, firewall home"
    topology: Path
    firewall: str
    nat: tuple[tuple[str, str], ...] = ()  # (router, preset) overrides, as `up --nat ROUTER=PRESET`
    peers: tuple[str, str] = ("peer10", "peer14")
    theory: str = ""

    def describe(self) -> dict[str, Any]:
        """The cell as matrix.json names it (the fields before its trials')."""
        return {
            "group": self.group,
            "cell": self.name,
            "topology": self.topology.name,
            "firewall": self.firewall,
            "nat": dict(self.nat),
            "peers": list(self.peers),
            "theory": self.theory,
        }

    def up_args(self) -> list[str]:
        args = ["--topology", str(self.topology), "--firewall", self.firewall]
        for router, preset in self.nat:
            args += ["--nat", f"{router}={preset}"]
        return args


def theory(a: Nat, b: Nat) -> str:
    """What RFC 4787 behaviours allow between a peer behind ``a`` and one behind ``b`` (no hairpin involved).

    A direct path needs each side's packets to reach the other's mapping. An endpoint-independent mapping keeps
    the public endpoint the server saw, so both sides can aim at it. An endpoint-dependent (symmetric) mapping
    gives a new public port toward the other peer: the other side only learns it when a packet arrives from it,
    and only a filter that does not look at the port (endpoint-independent or address-dependent) lets that
    first packet in. A router with ``type: none`` keeps addresses as they are; its firewall decides the filtering.
    """
    open_ = [n.type == "none" and n.firewall == "none" for n in (a, b)]
    if all(open_):
        return "direct: neither side has a NAT or a firewall"
    if any(open_):
        other = b if open_[0] else a
        if other.mapping == APDM:
            return (
                "direct or predicted: one side has neither NAT nor firewall, so the symmetric side's packets reach "
                "it and it answers where they came from (peer-reflexive); software that predicts ports instead "
                "finds a direct path too"
            )
        return (
            "direct: one side has neither NAT nor firewall, so the other's packets reach it, and it answers "
            "the address they came from"
        )
    # From here on, a router without NAT but with the home firewall acts as an endpoint-independent mapping
    # (addresses are kept) with address-and-port-dependent filtering (replies only): a port-restricted cone.
    hard = [n.mapping == APDM for n in (a, b)]
    if all(hard):
        return "relay: both mappings are endpoint-dependent, so neither side can learn the other's port in advance"
    if not any(hard):
        return "direct: both mappings are endpoint-independent, so both aim at the endpoints the server saw"
    easy = b if hard[0] else a
    if easy.filtering in (EIF, ADF):
        kind = "endpoint-independent" if easy.filtering == EIF else "address-dependent"
        return (
            f"direct or predicted: the symmetric side's new port is unknown, but the other side's {kind} filter "
            "would let its first packet in, and the answer would go to the address it came from (peer-reflexive); "
            "software that predicts ports instead (it cannot tell how the other NAT filters) finds a direct path "
            "too"
        )
    assert easy.filtering == APDF
    return (
        "predicted or relay: the symmetric side's new port is unknown and the other side's filter wants exact "
        "ports; only guessing the port (birthday paradox) finds a direct path"
    )


HAIRPIN_THEORY = {
    "home": "direct: the carrier's NAT hairpins, so each reaches the other's public endpoint",
    "none": "direct: the carrier's NAT hairpins, so each reaches the other's public endpoint; the opener's probe "
    "toward a peer with its own public address dies at the CGN (one hop less), since past it the CGN would turn it "
    "around to the other home router, which, bare, would deliver it to itself and make MASQUERADE map the other "
    "peer's checks to a new port (the conntrack race of bare routers)",
}


def _preset_nat(preset: str, firewall: str = "home") -> Nat:
    return Nat("masquerade", "wan", firewall).with_preset(preset)


def cells(firewalls: Sequence[str] = FIREWALL_KINDS, presets: Sequence[str] = PAIR_PRESETS) -> list[Cell]:
    """Every cell: ordered preset pairs (nat10 / nat14) per firewall kind, then same-NAT and CGNAT ones."""
    lab = TOPOLOGIES / "matrix.yaml"  # public LANs, so that any router can be `none`
    result = []
    for firewall in firewalls:
        for a in presets:
            for b in presets:
                result.append(
                    Cell(
                        "pairs",
                        f"{a} / {b}, firewall {firewall}",
                        lab,
                        firewall,
                        (("nat10", a), ("nat14", b)),
                        theory=theory(_preset_nat(a, firewall), _preset_nat(b, firewall)),
                    )
                )
    for firewall in firewalls:
        result.append(
            Cell(
                "same-nat",
                f"same NAT (port-restricted cone, hairpinning), firewall {firewall}",
                TOPOLOGIES / "same-nat.yaml",
                firewall,
                peers=("peer10", "peer11"),
                theory="direct-lan: both peers share a LAN, so their host candidates reach each other",
            )
        )
        result.append(
            Cell(
                "cgnat",
                f"CGNAT + home NAT / home NAT, firewall {firewall}",
                TOPOLOGIES / "cgnat.yaml",
                firewall,
                peers=("peer10", "peer14"),
                theory="direct: two endpoint-independent mappings in a row are one endpoint-independent mapping",
            )
        )
        result.append(
            Cell(
                "cgnat",
                f"two homes behind one CGNAT, firewall {firewall}",
                TOPOLOGIES / "cgnat.yaml",
                firewall,
                peers=("peer10", "peer11"),
                theory=HAIRPIN_THEORY[firewall],
            )
        )
    return result + networks()


def select(
    firewalls: Sequence[str] = FIREWALL_KINDS, presets: Sequence[str] = PAIR_PRESETS, groups: Sequence[str] = GROUPS
) -> list[Cell]:
    """The cells of a matrix run with these ``--firewall``, ``--preset`` and ``--group`` choices, in report order."""
    return [cell for cell in cells(firewalls, presets) if cell.group in groups]


def networks() -> list[Cell]:
    """The networks where traversal fails in the wild, each a cell with its theory (home firewalls)."""
    ipv6 = TOPOLOGIES / "ipv6-only.yaml"
    return [
        Cell(
            "networks",
            "UDP blocked (corporate or hotel firewall) on both sides",
            TOPOLOGIES / "matrix.yaml",
            "udp-blocked",
            theory=(
                "relay over TCP only: only TCP to ports 80 and 443 and UDP to port 53 leave, so neither STUN over "
                "UDP (RFC 8489) nor a punch gets out; a relay reached over TCP or TLS on port 80 or 443 (TURN over "
                "TCP/TLS, RFC 8656 §3.1, RFC 6062; STUN over TCP, RFC 8489 §6.2.2, as punch's) is the only path"
            ),
        ),
        Cell(
            "networks",
            "symmetric NATs that map ports (UPnP IGD, NAT-PMP, PCP) on both sides",
            TOPOLOGIES / "port-mapping.yaml",
            "home",
            (("nat10", "symmetric"), ("nat14", "symmetric")),
            theory=(
                "direct with a port mapping: a peer that asks its router (PCP RFC 6887, NAT-PMP RFC 6886, UPnP IGD) "
                "gets a public port that any remote may send to, so one mapped side makes a path even between "
                "symmetric NATs; without a client both mappings are endpoint-dependent and only a relay is left "
                "(punch asks its router: mapped; with --no-portmap, relay)"
            ),
        ),
        Cell(
            "networks",
            "mobile carrier (symmetric, sequential ports, 30 s) / home NAT",
            TOPOLOGIES / "mobile.yaml",
            "home",
            theory=(
                "predicted or relay: the carrier maps each flow to a new port, but sequentially (RFC 4787 §4.2.1; "
                "RFC 6056 §2.1 on why that is guessable), so the port towards the other peer is the last one seen "
                "plus a few; the home side's filter wants that exact port, so only a prediction gets through, else a "
                "relay; a 30 s mapping lifetime (RFC 4787 REQ-5 asks for 2 minutes) needs keepalives more often"
            ),
        ),
        Cell(
            "networks",
            "IPv6 only, both routed (RFC 6092 firewalls)",
            ipv6,
            "home",
            peers=("peer10", "peer11"),
            theory=(
                "direct: no translation, each address is global; an RFC 6092 firewall (§3.2) lets in what answers "
                "a packet sent, so simultaneous sends open both, as a punch does"
            ),
        ),
        Cell(
            "networks",
            "IPv6 only, routed / NPTv6",
            ipv6,
            "home",
            peers=("peer10", "peer14"),
            theory=(
                "direct: NPTv6 (RFC 6296) swaps the prefix 1:1 both ways and keeps ports, so the address the server "
                "sees is the one to aim at, as behind an endpoint-independent mapping"
            ),
        ),
        Cell(
            "networks",
            "IPv6 only, NPTv6 / NAT66",
            ipv6,
            "home",
            peers=("peer14", "peer16"),
            theory=(
                "direct: NAT66 masquerade maps as IPv4's does (the port kept when free: endpoint-independent, "
                "answers only), the other side 1:1: both aim at what the server saw"
            ),
        ),
    ]


def behaviour_of(preset: str) -> str:
    """The RFC 4787 summary of a preset, for the report's legend."""
    return behaviour.summary(_preset_nat(preset)).split(", firewall")[0]
