"""Lab lifecycle: validate -> plan -> apply for ``up``; teardown of what the lab owns for ``down``
(netns/lab/ownership.py); ``status``.
"""

from __future__ import annotations

import gc
import logging
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
from netns.kernel import boundary, capture, containers, links, namespaces, portmap, processes, tc
from netns.lab import apply
from netns.lab.impairments import impairments
from netns.lab.ownership import namespaces_with_prefix, owned_namespaces, require_root
from netns.lab.plan import plan, portmap_leases
from netns.lab.state import initial_state, read_state, record, write_state
from netns.rules import nat as natrules
from netns.topology import behaviour
from netns.topology.model import Topology

log = logging.getLogger(__name__)

# Worker threads for `up` (netns/lab/apply.py): namespaces proceed side by side, mostly waiting on the kernel.
JOBS = 16


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
    if any(n.nat is not None and n.nat.port_mapping for n in topology.nodes):
        portmap.require_binary()
    netem = any(n.impair for n in topology.networks) and tc.netem_supported(sys.executable)
    steps = plan(topology, lab, netem, sys.executable)
    clock = apply.StepClock()
    try:
        state_dir.mkdir(parents=True)
        write_state(lab, initial_state(topology, lab))
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
        record(lab, "captures", capture.start(topology, lab, directory))
    except BaseException:
        down(lab)
        raise


def _stop_processes(namespaces: list[str], timeout: float) -> int:
    """SIGTERM every process in ``namespaces``, poll until gone, SIGKILL the rest. Returns how many."""
    pids = processes.pids_in_any(namespaces)
    if not pids:
        return 0
    log.info("stopping %d process(es): %s", len(pids), " ".join(map(str, pids)))
    processes.signal_pids(pids, signal.SIGTERM)
    try:
        boundary.wait_for(lambda: not any(map(processes.alive, pids)), "processes to exit after SIGTERM", timeout)
    except KernelError:
        stubborn = [pid for pid in pids if processes.alive(pid)]
        log.warning("killing %d process(es) that ignored SIGTERM: %s", len(stubborn), stubborn)
        processes.signal_pids(stubborn, signal.SIGKILL)
        boundary.wait_for(lambda: not any(map(processes.alive, stubborn)), "processes to exit after SIGKILL", timeout)
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
        list(pool.map(namespaces.delete_namespace, owned))
    shutil.rmtree(naming.state_dir(lab), ignore_errors=True)
    return DownReport(lab, owned, stopped, removed)


def _remove_containers(lab: str) -> list[str]:
    """Remove the lab's containers. The engine is asked only if the state records container nodes (or is gone,
    e.g. after a crash); if it cannot be asked then, that is a warning: the namespaces still go."""
    state = read_state(lab)
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
    state = read_state(lab)
    present = set(namespaces.list_namespaces())
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
            entry.update(links.describe(ns, bool(info.get("ipv6"))))
        else:
            missing.append(ns)
        if (info.get("nat_config") or {}).get("port_mapping"):
            entry["port_mapping"] = portmap.mappings(portmap_leases(lab, name))
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
