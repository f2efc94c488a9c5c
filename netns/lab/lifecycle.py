"""Lab lifecycle: validate -> plan -> apply for ``up``; ownership-based teardown for ``down``; ``status``.

Ownership (what ``down`` deletes): a namespace whose name carries the lab's prefix ``NAME-`` AND either
carries the lab's marker (``lo`` ifalias ``netns-lab:NAME``) or is one of the node names recorded in the
lab's state file, which ``up`` writes before it creates any namespace (so a namespace created just before
a ``kill -9`` of ``up``, not yet marked, is still found). Nothing else is ever touched.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netns import naming
from netns.errors import KernelError, LabError
from netns.kernel import capture, containers, ipr
from netns.lab import apply
from netns.lab.plan import impair_links, impair_steps, plan
from netns.rules import impair
from netns.rules import nat as natrules
from netns.topology import behaviour
from netns.topology.impairment import Impairment, from_dict
from netns.topology.model import Node, Topology

log = logging.getLogger(__name__)

STATE_FILE = "lab.json"
# Worker threads for `up` (netns/lab/apply.py): namespaces proceed side by side, mostly waiting on the kernel.
JOBS = 16


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
            **({"image": node.container.image} if node.container else {}),
            **({"nat_config": _nat_config(node)} if node.nat else {}),
        }
        for node in topology.nodes
    }
    return {"name": lab, "topology": topology.source, "nodes": nodes, **_impair_state(topology, lab)}


def _nat_config(node: Node) -> dict[str, Any]:
    """What rebuilds a router's NAT rules while the lab runs (``readdress``): its Nat and its LANs."""
    assert node.nat is not None
    return {**dataclasses.asdict(node.nat), "lans": natrules.lans_of(node)}


def read_state(lab: str) -> dict[str, Any] | None:
    """The state ``up`` recorded for lab ``lab`` (nodes, networks, captures), or None if there is none."""
    return _read_state(lab)


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
    seconds: float = 0.0  # building the lab: applying its plan
    steps: dict[str, dict[str, float]] = field(default_factory=dict)  # apply.StepClock.by_kind()


def up(topology: Topology, lab: str, capture_dir: Path | None = None) -> Summary:
    """Build ``topology`` as lab ``lab`` (with pcaps of every NAT's WAN in ``capture_dir``, if given); on any error
    or interruption leave nothing behind."""
    naming.check_lab_name(lab)
    require_root("up")
    existing = namespaces_with_prefix(lab)
    state_dir = naming.state_dir(lab)
    if existing or state_dir.exists():
        what = f"namespaces {', '.join(existing)}" if existing else f"state dir {state_dir}"
        raise LabError(f"lab {lab!r} is already up ({what}); run `python -m netns down --name {lab}` first")
    images = sorted({n.container.image for n in topology.nodes if n.container is not None})
    if images:
        containers.check_images(images)  # an engine and every image, before anything is built
    netem = any(n.impair for n in topology.networks) and ipr.netem_supported(sys.executable)
    steps = plan(topology, lab, netem, sys.executable)
    clock = apply.StepClock()
    try:
        state_dir.mkdir(parents=True)
        (state_dir / STATE_FILE).write_text(json.dumps(_state(topology, lab), indent=2) + "\n", encoding="utf-8")
        started = time.monotonic()
        with _no_gc():
            apply.apply(steps, clock, jobs=JOBS)
        built = time.monotonic() - started
    except OSError as exc:
        shutil.rmtree(state_dir, ignore_errors=True)
        raise LabError(f"cannot write state dir {state_dir}: {exc.strerror}; check /run is writable") from exc
    except BaseException:
        shutil.rmtree(state_dir, ignore_errors=True)
        raise
    if capture_dir is not None:
        _start_captures(topology, lab, capture_dir)
    summary = Summary(lab, seconds=round(built, 6), steps=clock.by_kind())
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
                "image": node.container.image if node.container else None,
            }
        )
    return summary


@contextmanager
def _no_gc() -> Iterator[None]:
    """The cyclic garbage collector off for the block: a big lab keeps thousands of netlink handles (and their
    objects) alive while it is built, and each collection would walk them all (it made ``up`` 2-3x slower)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _start_captures(topology: Topology, lab: str, directory: Path) -> None:
    """Start the pcaps and record them in the state file; if that fails, take the lab down again."""
    try:
        captures = capture.start(topology, lab, directory)
        path = naming.state_dir(lab) / STATE_FILE
        state = json.loads(path.read_text(encoding="utf-8"))
        state["captures"] = captures
        path.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    except BaseException:
        down(lab)
        raise


def _stop_processes(namespaces: list[str], timeout: float) -> int:
    """SIGTERM every process in ``namespaces``, poll until gone, SIGKILL the rest. Returns how many."""
    pids = ipr.pids_in_any(namespaces)
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
    containers: list[str] = field(default_factory=list)


def down(lab: str, timeout: float = 5.0) -> DownReport:
    """Delete everything lab ``lab`` owns (its containers first, found by label); "already gone" is success."""
    naming.check_lab_name(lab)
    require_root("down")
    owned = owned_namespaces(lab)
    removed = _remove_containers(lab)
    stopped = _stop_processes(owned, timeout)
    with ThreadPoolExecutor(JOBS, "netns-down") as pool:  # each waits on the kernel; `list` re-raises any error
        list(pool.map(ipr.delete_namespace, owned))
    shutil.rmtree(naming.state_dir(lab), ignore_errors=True)
    return DownReport(lab, owned, stopped, removed)


def _remove_containers(lab: str) -> list[str]:
    """Remove the lab's containers. The engine is asked only if the state records container nodes (or is gone,
    e.g. after a crash); if it cannot be asked then, that is a warning: the namespaces still go."""
    state = _read_state(lab)
    expected = state is None or any(info.get("image") for info in state.get("nodes", {}).values())
    if not expected:
        return []
    try:
        return containers.remove(lab)
    except LabError as exc:
        if state is not None:
            log.warning("%s; containers labelled %s=%s may be left", exc, naming.CONTAINER_LAB_LABEL, lab)
        else:
            log.debug("no containers of lab %s removed: %s", lab, exc)
        return []


def status(lab: str) -> dict[str, Any]:
    """Nodes of a running lab with their interfaces, addresses, routes and NAT kind."""
    naming.check_lab_name(lab)
    state = _read_state(lab)
    present = set(ipr.list_namespaces())
    if state is None:
        raise LabError(f"lab {lab!r} is not up; run `python -m netns up --name {lab}`")
    nodes = []
    missing = []
    engine: list[dict[str, Any] | LabError] = []  # the engine's answer, asked once and only for a container node
    for name, info in state.get("nodes", {}).items():
        ns = naming.namespace(lab, name)
        entry: dict[str, Any] = {
            "node": name,
            "kind": info.get("kind"),
            "namespace": ns,
            "nat": info.get("nat"),
            "behaviour": info.get("behaviour"),
        }
        if info.get("image"):
            entry["image"] = info["image"]
            entry["container"] = _container_status(lab, name, engine)
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
        "captures": state.get("captures", []),
        "impairments": impairments(lab, state, present),
    }


def _container_status(lab: str, node: str, engine: list[dict[str, Any] | LabError]) -> dict[str, Any]:
    """Node ``node``'s container as the engine sees it (name, id, image, status, pid), or why it cannot say.
    ``engine`` keeps the engine's answer (or its error) for the next node."""
    if not engine:
        try:
            engine.append(containers.describe(lab))
        except LabError as exc:
            engine.append(exc)
    answer = engine[0]
    if isinstance(answer, LabError):
        return {"error": str(answer)}
    return answer.get(node) or {"error": "no container (removed?)"}


def is_container(lab: str, node: str) -> bool:
    """Whether ``node`` of lab ``lab`` is a container node (as recorded by ``up``)."""
    info = (_read_state(lab) or {}).get("nodes", {}).get(node)
    return bool(isinstance(info, dict) and info.get("image"))


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


# -- impairments ----------------------------------------------------------------------------------------------

QUEUE_ALTERNATE = 1 << 15  # a changed delay runs on the network's other queue number while the old one drains


def _impair_state(topology: Topology, lab: str) -> dict[str, Any]:
    """What ``status`` and ``impair`` need: each network's members, queue and impairment, and the mechanism."""
    netem = any(n.impair for n in topology.networks) and ipr.netem_supported(sys.executable)
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


def _links(lab: str, networks: dict[str, Any]) -> list[impair.Link]:
    return [
        impair.Link(name, member, naming.namespace(lab, member), name, from_dict(info["impair"]), info["queue"])
        for name, info in networks.items()
        if info.get("impair")
        for member in info["members"]
    ]


def set_impairment(lab: str, network: str, impairment: Impairment | None) -> dict[str, Any]:
    """Change (or with None clear) the impairment of ``network`` in running lab ``lab``; returns its status."""
    naming.check_lab_name(lab)
    require_root("impair")
    state = _read_state(lab)
    if state is None or not owned_namespaces(lab):
        raise LabError(f"lab {lab!r} is not up; run `python -m netns up --name {lab}`")
    networks: dict[str, Any] = state.get("networks", {})
    if network not in networks:
        raise LabError(f"no network {network!r} in lab {lab!r}; its networks are {', '.join(networks)}")
    netem = state.get("netem")
    if netem is None:
        netem = ipr.netem_supported(sys.executable)
    old = _links(lab, networks)
    info = networks[network]
    before = from_dict(info["impair"]) if info.get("impair") else None
    old_delay = (before.delay_ms, before.jitter_ms) if before and before.delay_ms is not None else None
    new_delay = (impairment.delay_ms, impairment.jitter_ms) if impairment else None
    if old_delay is not None and new_delay is not None and old_delay != new_delay:
        info["queue"] ^= QUEUE_ALTERNATE
    info["impair"] = impairment.as_dict() if impairment else None
    new = _links(lab, networks)
    steps = []
    for member in info["members"]:
        steps += impair_steps(
            [link for link in new if link.node == member],
            [link for link in old if link.node == member],
            netem,
            lab,
            sys.executable,
        )
    state["netem"] = netem
    apply.apply(steps)
    (naming.state_dir(lab) / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    return next((i for i in impairments(lab, state, set(ipr.list_namespaces())) if i["network"] == network), {})


def impairments(lab: str, state: dict[str, Any], present: set[str]) -> list[dict[str, Any]]:
    """Each impaired network with, per member interface, every impairment and the mechanism building it,
    as found in the kernel now (``ok`` is False if a mechanism is missing, e.g. a delay daemon died)."""
    netem = bool(state.get("netem"))
    links = _links(lab, state.get("networks", {}))
    kernel = _Kernel(netem, ipr.delayds(sorted({link.ns for link in links if link.ns in present})))
    result = []
    for link_group in _by_network(links):
        first = link_group[0]
        members = []
        for link in link_group:
            if link.ns not in present:
                members.append({"node": link.node, "interface": link.ifname, "ok": False, "mechanisms": []})
                continue
            members.append(_member_status(link, netem, kernel))
        result.append(
            {
                "network": first.network,
                "impair": first.impairment.as_dict(),
                "summary": first.impairment.describe(),
                "ok": all(m["ok"] for m in members),
                "members": members,
            }
        )
    return result


def _by_network(links: list[impair.Link]) -> list[list[impair.Link]]:
    groups: dict[str, list[impair.Link]] = {}
    for link in links:
        groups.setdefault(link.network, []).append(link)
    return list(groups.values())


@dataclass(slots=True)
class _Kernel:
    """What ``impairments`` reads of each namespace, read once per namespace however many members it has: root
    qdiscs, the impairment's nftables tables, and the delay daemons (all found in one pass over /proc)."""

    netem: bool
    delayds: dict[tuple[str, int], int]
    _qdiscs: dict[str, dict[str, str]] = field(default_factory=dict)
    _tables: dict[str, str] = field(default_factory=dict)

    def qdisc(self, ns: str, ifname: str) -> str | None:
        if ns not in self._qdiscs:
            self._qdiscs[ns] = ipr.qdiscs(ns)
        return self._qdiscs[ns].get(ifname)

    def table(self, ns: str) -> str:
        if self.netem:
            return ""
        if ns not in self._tables:
            self._tables[ns] = ipr.nft_tables(ns, ("ip", "netdev"), impair.TABLE)
        return self._tables[ns]


def _member_status(link: impair.Link, netem: bool, kernel: _Kernel) -> dict[str, Any]:
    mechanisms = []
    for kind, text in link.impairment.parts():
        how = impair.mechanisms(link.impairment, netem)[kind]
        entry: dict[str, Any] = {"impairment": text, "mechanism": how}
        if how in (impair.NETEM, impair.TBF):
            entry["present"] = kernel.qdisc(link.ns, link.ifname) == how
        elif how == impair.NFQUEUE:
            pid = kernel.delayds.get((link.ns, link.queue))
            entry.update(pid=pid, queue=link.queue, present=pid is not None)
        else:
            needle = f'device "{link.ifname}"'  # the loss chain's hook, or the dup rule's device
            action = "hook egress" if how == impair.NUMGEN else "dup to"
            entry["present"] = any(needle in r and action in r for r in kernel.table(link.ns).splitlines())
        mechanisms.append(entry)
    ok = all(m["present"] for m in mechanisms)
    return {"node": link.node, "interface": link.ifname, "ok": ok, "mechanisms": mechanisms}
