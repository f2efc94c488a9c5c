"""Impairments of a running lab: ``impair`` changes a network's, ``status`` reports each one with the kernel
mechanisms that build it (netns/rules/impair.py), as found in the kernel now.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from netns import naming
from netns.errors import LabError
from netns.kernel import daemons, namespaces, processes, tc
from netns.lab import apply
from netns.lab.ownership import owned_namespaces, require_root
from netns.lab.plan import impair_steps
from netns.lab.state import read_state, write_state
from netns.rules import impair
from netns.topology.impairment import Impairment, from_dict

QUEUE_ALTERNATE = 1 << 15  # a changed delay runs on the network's other queue number while the old one drains


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
    state = read_state(lab)
    if state is None or not owned_namespaces(lab):
        raise LabError(f"lab {lab!r} is not up; run `python -m netns up --name {lab}`")
    networks: dict[str, Any] = state.get("networks", {})
    if network not in networks:
        raise LabError(f"no network {network!r} in lab {lab!r}; its networks are {', '.join(networks)}")
    netem = state.get("netem")
    if netem is None:
        netem = tc.netem_supported(sys.executable)
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
    write_state(lab, state)
    return next((i for i in impairments(lab, state, set(namespaces.list_namespaces())) if i["network"] == network), {})


def impairments(lab: str, state: dict[str, Any], present: set[str]) -> list[dict[str, Any]]:
    """Each impaired network with, per member interface, every impairment and the mechanism building it,
    as found in the kernel now (``ok`` is False if a mechanism is missing, e.g. a delay daemon died)."""
    netem = bool(state.get("netem"))
    links = _links(lab, state.get("networks", {}))
    kernel = _Kernel(netem, daemons.delayds(sorted({link.ns for link in links if link.ns in present})))
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
            self._qdiscs[ns] = tc.qdiscs(ns)
        return self._qdiscs[ns].get(ifname)

    def table(self, ns: str) -> str:
        if self.netem:
            return ""
        if ns not in self._tables:
            self._tables[ns] = processes.nft_tables(ns, ("ip", "netdev"), impair.TABLE)
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
