"""The lab's state file (``/run/netns-lab/NAME/lab.json``): what ``up`` recorded of the lab, written before it
creates any namespace, read by ``down`` (the node names it owns), ``status``, ``impair``, ``readdress`` and ``exec``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from netns import naming
from netns.kernel import tc
from netns.lab.plan import impair_links
from netns.rules import nat as natrules
from netns.topology import behaviour
from netns.topology.model import Node, Topology

STATE_FILE = "lab.json"


def state_path(lab: str) -> Path:
    return naming.state_dir(lab) / STATE_FILE


def read_state(lab: str) -> dict[str, Any] | None:
    """The state ``up`` recorded for lab ``lab`` (nodes, networks, captures), or None if there is none."""
    try:
        data = json.loads(state_path(lab).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_state(lab: str, state: dict[str, Any]) -> None:
    """Replace the state file of lab ``lab`` (OSError if it cannot be written)."""
    state_path(lab).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")


def record(lab: str, key: str, value: Any) -> None:
    """Add ``key`` to the recorded state (an error if there is none: the lab's state dir must exist)."""
    state = json.loads(state_path(lab).read_text(encoding="utf-8"))
    state[key] = value
    write_state(lab, state)


def initial_state(topology: Topology, lab: str) -> dict[str, Any]:
    """What ``up`` records of ``topology`` as lab ``lab``: its nodes, their NATs, and its networks' impairments."""
    nodes = {
        node.name: {
            "namespace": naming.namespace(lab, node.name),
            "kind": node.kind,
            "nat": natrules.describe(node.nat) if node.nat else None,
            "behaviour": _behaviour(node.nat),
            **({"image": node.container.image} if node.container else {}),
            **({"ipv6": True} if node.uses_ipv6 else {}),
            **({"nat_config": _nat_config(node)} if node.nat else {}),
        }
        for node in topology.nodes
    }
    return {"name": lab, "topology": topology.source, "nodes": nodes, **_impair_state(topology, lab)}


def _nat_config(node: Node) -> dict[str, Any]:
    """What rebuilds a router's NAT rules while the lab runs (``readdress``): its Nat and its LANs."""
    assert node.nat is not None
    return {**dataclasses.asdict(node.nat), "lans": natrules.lans_of(node)}


def _behaviour(nat: behaviour.Nat | None) -> dict[str, Any] | None:
    """A NAT in RFC 4787 terms (preset, mapping, filtering, hairpinning, udp_timeout, firewall, summary)."""
    if nat is None:
        return None
    return {**behaviour.as_dict(nat), "summary": behaviour.summary(nat)}


def _impair_state(topology: Topology, lab: str) -> dict[str, Any]:
    """What ``status`` and ``impair`` need: each network's members, queue and impairment, and the mechanism."""
    netem = any(n.impair for n in topology.networks) and tc.netem_supported(sys.executable)
    links = impair_links(topology, lab)
    networks = {
        network.name: {
            "members": list(topology.members(network.name)),
            "queue": index,
            "impair": network.impair.as_dict() if network.impair else None,
        }
        for index, network in enumerate(topology.networks)
    }
    return {"netem": netem if links else None, "networks": networks}


def is_container(lab: str, node: str) -> bool:
    """Whether ``node`` of lab ``lab`` is a container node (as recorded by ``up``)."""
    info = (read_state(lab) or {}).get("nodes", {}).get(node)
    return bool(isinstance(info, dict) and info.get("image"))
