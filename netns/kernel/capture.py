"""Packet captures on every NAT's WAN (``up --capture DIR``): what crossed each NAT, as the internet saw it.

One ``tcpdump`` per router, inside the router's namespace, on its WAN interface (UDP and ICMP), writing
``DIR/ROUTER-WAN.pcap`` packet by packet (``--immediate-mode -U``: without them packets wait in the kernel's
capture ring for up to a second, and those still there when ``down`` stops tcpdump are lost). ``up`` waits
until each capture is listening before it returns, so the first packet of a test is in the file. The
processes live in the lab's namespaces: ``down`` stops them like any other.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from netns import naming
from netns.errors import LabError
from netns.kernel import boundary, processes
from netns.topology.model import Topology

FILTER = "udp or icmp"


def start(topology: Topology, lab: str, directory: Path, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Start a capture on each router's WAN; ``[{node, interface, pcap, pid}]`` once all are listening."""
    if shutil.which("tcpdump") is None:
        raise LabError("--capture needs tcpdump; install it (apt-get install tcpdump)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LabError(f"--capture {directory}: cannot create it: {exc.strerror}; choose a writable directory") from exc
    captures: list[dict[str, Any]] = []
    logs: list[Path] = []
    for node in topology.nodes:
        if node.nat is None:
            continue
        pcap = directory.resolve() / f"{node.name}-{node.nat.wan}.pcap"
        log_path = naming.state_dir(lab) / f"capture-{node.name}.log"
        argv = ["tcpdump", "-n", "--immediate-mode", "-U", "-Z", "root", "-i", node.nat.wan, "-w", str(pcap), FILTER]
        pid = processes.spawn_in(naming.namespace(lab, node.name), argv, str(log_path))
        captures.append({"node": node.name, "interface": node.nat.wan, "pcap": str(pcap), "pid": pid})
        logs.append(log_path)
    for capture, log_path in zip(captures, logs, strict=True):
        where, pid = f"{capture['node']}:{capture['interface']}", int(capture["pid"])
        _wait_listening(where, pid, log_path, timeout)
    return captures


def _wait_listening(where: str, pid: int, log_path: Path, timeout: float) -> None:
    """Until tcpdump says it is listening (the capture is active); a LabError with its last words if it died."""
    boundary.wait_for(
        lambda: "listening on" in _read(log_path) or not processes.alive(pid), f"tcpdump on {where} to start", timeout
    )
    if not processes.alive(pid):
        last = (_read(log_path).strip().splitlines() or ["no output"])[-1]
        raise LabError(f"tcpdump on {where} failed: {last}")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
