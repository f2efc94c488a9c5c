"""miniupnpd in a router's namespace: found, started (ready once it has bound NAT-PMP's port), stopped, and its
mappings read back. The binary is built from Debian 13's source package by tools/build-miniupnpd.sh (Debian 12's
2.3.1 refuses every mapping on the lab's documentation addresses; netns/rules/portmap.py says why).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from netns.errors import KernelError, LabError
from netns.kernel.boundary import wait_for
from netns.kernel.processes import alive, processes_in, run_in, signal_pids, spawn_in
from netns.rules import portmap

BINARY_ENV = "PUNCH_MINIUPNPD"
DEFAULT_BINARY = Path("/var/cache/punch/miniupnpd/sbin/miniupnpd")  # where tools/build-miniupnpd.sh installs it
SETUP = "tools/build-miniupnpd.sh (`just miniupnpd`, as root)"


def binary() -> Path | None:
    """The miniupnpd to run: ``$PUNCH_MINIUPNPD`` if set, else the one tools/build-miniupnpd.sh built; None if it
    is not there."""
    path = Path(os.environ.get(BINARY_ENV) or DEFAULT_BINARY)
    return path if path.is_file() and os.access(path, os.X_OK) else None


def require_binary() -> Path:
    """The binary, or a LabError naming the fix."""
    found = binary()
    if found is None:
        where = os.environ.get(BINARY_ENV) or DEFAULT_BINARY
        raise LabError(
            f"port-mapping needs miniupnpd 2.3.9 at {where}, which is not there; build it with {SETUP}, "
            f"or set {BINARY_ENV} to one"
        )
    return found


def _bound(pid: int, port: int) -> bool:
    """Whether the namespace of ``pid`` has a UDP socket bound to ``port`` (/proc/PID/net/udp)."""
    try:
        with open(f"/proc/{pid}/net/udp", encoding="ascii") as f:
            return any(line.split()[1].endswith(f":{port:04X}") for line in list(f)[1:] if line.strip())
    except (OSError, IndexError):
        return False


def start(ns: str, conf: str, conf_path: str, log_path: str, timeout: float = 10.0) -> None:
    """Give miniupnpd its nftables chains in ``ns``, write ``conf`` to ``conf_path``, start it in the foreground
    (``-d``: its log goes to ``log_path``) and wait until it answers NAT-PMP and PCP."""
    path = require_binary()
    run_in(ns, ["nft", "-f", "-"], stdin=portmap.nft_table())
    Path(conf_path).write_text(conf, encoding="ascii")
    pid_file = str(Path(conf_path).with_suffix(".pid"))  # its own: miniupnpd refuses to start beside another's
    pid = spawn_in(ns, [str(path), "-d", "-f", conf_path, "-P", pid_file], log_path)

    def ready() -> bool:
        if not alive(pid):
            last = Path(log_path).read_text(encoding="utf-8", errors="replace").strip().splitlines()[-2:]
            raise KernelError(f"miniupnpd in {ns} exited: {' / '.join(last) or 'no output'}")
        return _bound(pid, portmap.NATPMP_PORT)

    wait_for(ready, f"miniupnpd in {ns} to listen on port {portmap.NATPMP_PORT}", timeout)


def pids(ns: str) -> list[int]:
    """miniupnpd processes in ``ns`` (by their executable's name)."""
    found = []
    for pid, _ in processes_in([ns]):
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            continue
        if os.path.basename(exe) == "miniupnpd":
            found.append(pid)
    return found


def stop(ns: str, timeout: float = 5.0) -> None:
    """SIGTERM miniupnpd in ``ns`` (it removes its rules) and wait for it to exit; none there is success."""
    running = pids(ns)
    signal_pids(running, signal.SIGTERM)
    wait_for(lambda: not any(map(alive, running)), f"miniupnpd in {ns} to exit", timeout)


def mappings(lease_file: str) -> dict[str, Any]:
    """What ``status`` shows of a port-mapping router: its mappings from miniupnpd's lease file."""
    try:
        text = Path(lease_file).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        text = ""
    except OSError as exc:
        return {"error": f"cannot read {lease_file}: {exc.strerror}"}
    found, bad = portmap.parse_leases(text)
    return {"mappings": found, "unparsed_lines": bad}
