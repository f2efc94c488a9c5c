"""Ownership: what a lab may touch. A namespace belongs to lab ``NAME`` iff its name carries the lab's prefix
``NAME-`` AND either carries the lab's marker (``lo`` ifalias ``netns-lab:NAME``) or is one of the node names
recorded in the lab's state file, which ``up`` writes before it creates any namespace (so a namespace created
just before a ``kill -9`` of ``up``, not yet marked, is still found). Nothing else is ever touched.
"""

from __future__ import annotations

import logging
import os

from netns import naming
from netns.errors import LabError
from netns.kernel import links, namespaces
from netns.lab.state import read_state

log = logging.getLogger(__name__)


def require_root(verb: str) -> None:
    if os.geteuid() != 0:
        raise LabError(f"`{verb}` needs root to manage network namespaces; run it as root (e.g. with sudo)")


def namespaces_with_prefix(lab: str) -> list[str]:
    return [ns for ns in namespaces.list_namespaces() if naming.has_prefix(lab, ns)]


def owned_namespaces(lab: str) -> list[str]:
    """The namespaces lab ``lab`` owns: prefix AND (marker OR a node name recorded by ``up``)."""
    state = read_state(lab) or {}
    recorded = set(state.get("nodes", {}))
    owned = []
    for ns in namespaces_with_prefix(lab):
        if naming.node_of(lab, ns) in recorded or links.read_marker(ns) == naming.marker(lab):
            owned.append(ns)
        else:
            log.warning("namespace %s has the prefix of lab %s but not its marker; left alone", ns, lab)
    return owned


def node_namespace(lab: str, node: str) -> str:
    """The namespace of ``node`` in running lab ``lab``, or a LabError naming the nodes there are."""
    naming.check_lab_name(lab)
    ns = naming.namespace(lab, node)
    owned = owned_namespaces(lab)
    if ns not in owned:
        if not owned:
            raise LabError(f"lab {lab!r} is not up; run `python -m netns up --name {lab}`")
        names = ", ".join(naming.node_of(lab, n) for n in owned)
        raise LabError(f"no node {node!r} in lab {lab!r}; its nodes are {names}")
    return ns
