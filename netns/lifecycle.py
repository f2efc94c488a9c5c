"""Lab lifecycle: validate -> plan -> apply for ``up``; ownership-based teardown for ``down``; ``status``.

Ownership (what ``down`` deletes): a namespace whose name carries the lab's prefix ``NAME-`` AND either
carries the lab's marker (``lo`` ifalias ``netns-lab:NAME``) or is one of the node names recorded in the
lab's state file, which ``up`` writes before it creates any namespace (so a namespace created just before
a ``kill -9`` of ``up``, not yet marked, is still found). Nothing else is ever touched.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netns import apply, behaviour, ipr, naming
from netns import nat as natrules
from netns.errors import KernelError, LabError
from netns.model import Topology
from netns.plan import plan

log = logging.getLogger(__name__)

STATE_FILE = "lab.json"
DEFAULT_TOPOLOGY = Path(__file__).parent / "topologies" / "default.yaml"


def _read_state(lab: str) -> dict[str, Any] | None:
    path = naming.state_dir(lab) / STATE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _state(topology: Topology, lab: str) -> dict[str, Any]:
    nodes = {
        node.name: {
            "namespace": naming.namespace(lab, node.name),
            "kind": node.kind,
            "nat": natrules.describe(node.nat) if node.nat else None,
            "behaviour": _behaviour(node.nat),
        }
        for node in topology.nodes
    }
    return {"name": lab, "topology": topology.source, "nodes": nodes}


def _behaviour(nat: behaviour.Nat | None) -> dict[str, Any] | None:
    """A NAT in RFC 4787 terms (preset, mapping, filtering, hairpinning, udp_timeout, firewall, summary)."""
    if nat is None:
        return None
    return {**behaviour.as_dict(nat), "summary": behaviour.summary(nat)}


def require_root(verb: str) -> None:
    if os.geteuid() != 0:
        raise LabError(f"`{verb}` needs root to manage network namespaces; run it as root (e.g. with sudo)")


def namespaces_with_prefix(lab: str) -> list[str]:
    return [ns for ns in ipr.list_namespaces() if naming.has_prefix(lab, ns)]


def owned_namespaces(lab: str) -> list[str]:
    """The namespaces lab ``lab`` owns: prefix AND (marker OR a node name recorded by ``up``)."""
    state = _read_state(lab) or {}
    recorded = set(state.get("nodes", {}))
    owned = []
    for ns in namespaces_with_prefix(lab):
        if naming.node_of(lab, ns) in recorded or ipr.read_marker(ns) == naming.marker(lab):
            owned.append(ns)
        else:
            log.warning("namespace %s has the prefix of lab %s but not its marker; left alone", ns, lab)
    return owned


@dataclass(slots=True)
class Summary:
    lab: str
    nodes: list[dict[str, Any]] = field(default_factory=list)


def up(topology: Topology, lab: str) -> Summary:
    """Build ``topology`` as lab ``lab``; on any error or interruption leave nothing behind."""
    naming.check_lab_name(lab)
    require_root("up")
    existing = namespaces_with_prefix(lab)
    state_dir = naming.state_dir(lab)
    if existing or state_dir.exists():
        what = f"namespaces {', '.join(existing)}" if existing else f"state dir {state_dir}"
        raise LabError(f"lab {lab!r} is already up ({what}); run `python -m netns down --name {lab}` first")
    steps = plan(topology, lab)
    try:
        state_dir.mkdir(parents=True)
        (state_dir / STATE_FILE).write_text(json.dumps(_state(topology, lab), indent=2) + "\n", encoding="utf-8")
        apply.apply(steps)
    except OSError as exc:
        shutil.rmtree(state_dir, ignore_errors=True)
        raise LabError(f"cannot write state dir {state_dir}: {exc.strerror}; check /run is writable") from exc
    except BaseException:
        shutil.rmtree(state_dir, ignore_errors=True)
        raise
    summary = Summary(lab)
    for node in topology.nodes:
        addresses = [f"{i.network}={a}" for i in node.interfaces for a in i.addresses]
        summary.nodes.append(
            {
                "node": node.name,
                "kind": node.kind,
                "namespace": naming.namespace(lab, node.name),
                "addresses": addresses,
                "nat": natrules.describe(node.nat) if node.nat else None,
                "behaviour": behaviour.summary(node.nat) if node.nat else None,
            }
        )
    return summary


def _stop_processes(namespaces: list[str], timeout: float) -> int:
    """SIGTERM every process in ``namespaces``, poll until gone, SIGKILL the rest. Returns how many."""
    pids = sorted({pid for ns in namespaces for pid in ipr.pids_in(ns)})
    if not pids:
        return 0
    log.info("stopping %d process(es): %s", len(pids), " ".join(map(str, pids)))
    ipr.signal_pids(pids, signal.SIGTERM)
    try:
        ipr.wait_for(lambda: not any(map(ipr.alive, pids)), "processes to exit after SIGTERM", timeout)
    except KernelError:
        stubborn = [pid for pid in pids if ipr.alive(pid)]
        log.warning("killing %d process(es) that ignored SIGTERM: %s", len(stubborn), stubborn)
        ipr.signal_pids(stubborn, signal.SIGKILL)
        ipr.wait_for(lambda: not any(map(ipr.alive, stubborn)), "processes to exit after SIGKILL", timeout)
    return len(pids)


@dataclass(slots=True)
class DownReport:
    lab: str
    namespaces: list[str]
    processes: int


def down(lab: str, timeout: float = 5.0) -> DownReport:
    """Delete everything lab ``lab`` owns; "already gone" is success."""
    naming.check_lab_name(lab)
    require_root("down")
    owned = owned_namespaces(lab)
    stopped = _stop_processes(owned, timeout)
    for ns in owned:
        ipr.delete_namespace(ns)
    shutil.rmtree(naming.state_dir(lab), ignore_errors=True)
    return DownReport(lab, owned, stopped)


def status(lab: str) -> dict[str, Any]:
    """Nodes of a running lab with their interfaces, addresses, routes and NAT kind."""
    naming.check_lab_name(lab)
    state = _read_state(lab)
    present = set(ipr.list_namespaces())
    if state is None:
        raise LabError(f"lab {lab!r} is not up; run `python -m netns up --name {lab}`")
    nodes = []
    missing = []
    for name, info in state.get("nodes", {}).items():
        ns = naming.namespace(lab, name)
        entry: dict[str, Any] = {
            "node": name,
            "kind": info.get("kind"),
            "namespace": ns,
            "nat": info.get("nat"),
            "behaviour": info.get("behaviour"),
        }
        if ns in present:
            entry.update(ipr.describe(ns))
        else:
            missing.append(ns)
        nodes.append(entry)
    return {
        "name": lab,
        "topology": state.get("topology"),
        "up": not missing,
        "missing": missing,
        "nodes": nodes,
    }


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
