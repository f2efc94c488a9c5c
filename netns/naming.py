"""Names the lab gives to what it creates, and the rules that make ownership decidable.

A namespace belongs to lab ``NAME`` iff its name starts with ``NAME-``: lab names contain no dash, so
``punch`` and ``punch2`` never collide. Each namespace is also marked right after creation (the ifalias
of its ``lo`` is ``netns-lab:NAME``) so that ``down`` can tell the lab's namespaces from a stranger's.
"""

from __future__ import annotations

import re
from pathlib import Path

from netns.errors import LabError

LAB_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")
NODE_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,9}$")
# A network's name is also the interface name inside each member: a Linux ifname is at most 15 bytes.
NETWORK_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,14}$")
IFNAME_MAX = 15

DEFAULT_LAB = "punch"
STATE_ROOT = Path("/run/netns-lab")
MARKER_PREFIX = "netns-lab:"
# Labels on every container a lab starts (netns/kernel/containers.py): `down` finds them by these, never by name.
CONTAINER_LAB_LABEL = "netns-lab"
CONTAINER_NODE_LABEL = "netns-lab.node"


def check_lab_name(name: str) -> str:
    """Return ``name`` if it is a valid lab name, else raise a one-line LabError."""
    if not LAB_NAME_RE.fullmatch(name):
        raise LabError(f"lab name {name!r} is invalid; use 1-8 lowercase letters or digits, starting with a letter")
    return name


def namespace(lab: str, node: str) -> str:
    """The namespace of ``node`` in lab ``lab``, e.g. ``punch-peer10``."""
    return f"{lab}-{node}"


def container(lab: str, node: str) -> str:
    """The Docker container of a container node, named like its namespace, e.g. ``punch-peer10``."""
    return namespace(lab, node)


def container_labels(lab: str, node: str | None = None) -> dict[str, str]:
    """The labels of ``node``'s container in lab ``lab`` (without ``node``: those every container of the lab has)."""
    labels = {CONTAINER_LAB_LABEL: lab}
    if node is not None:
        labels[CONTAINER_NODE_LABEL] = node
    return labels


def prefix(lab: str) -> str:
    """Every namespace of lab ``lab`` starts with this."""
    return f"{lab}-"


def has_prefix(lab: str, ns: str) -> bool:
    """True if ``ns`` carries lab ``lab``'s prefix (the first of the two ownership tests)."""
    return ns.startswith(prefix(lab)) and bool(NODE_NAME_RE.fullmatch(ns[len(prefix(lab)) :]))


def node_of(lab: str, ns: str) -> str:
    """The node name inside a namespace name that has lab ``lab``'s prefix."""
    return ns[len(prefix(lab)) :]


def marker(lab: str) -> str:
    """The ifalias put on ``lo`` of every namespace of lab ``lab``."""
    return f"{MARKER_PREFIX}{lab}"


def bridge_port(node: str, network_index: int) -> str:
    """The hub-side end of a member's veth on a bridged network, e.g. ``peer1.3``.

    It contains a dot, which network names never do, so it cannot collide with an interface named after a
    network; the network's index keeps ports to the same node on two bridged networks apart.
    """
    return f"{node}.{network_index}"


def branch_bridge(network_index: int, branch: int) -> str:
    """Branch ``branch`` (from 1) of a bridged network too big for one bridge, e.g. ``0.br1``.

    It starts with a digit, which network and node names never do, so it collides with neither a network's
    interface nor a member's port (``peer1.0``); the network's index keeps two big networks' branches apart.
    """
    return f"{network_index}.br{branch}"


def branch_uplink(network_index: int, branch: int) -> tuple[str, str]:
    """The veth pair joining branch ``branch`` to its network's own bridge: (port there, port on the branch)."""
    return f"{network_index}.up{branch}", f"{network_index}.dn{branch}"


def state_dir(lab: str) -> Path:
    """The lab's state and log directory, created by ``up`` and removed by ``down``."""
    return STATE_ROOT / lab
