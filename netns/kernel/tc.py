"""Traffic control: the root qdisc of an interface (netem, tbf, or the default), requests compiled by pyroute2
(netns/kernel/netlink.py) and sent over the namespace's rtnetlink socket; and whether this kernel has netem.
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
from typing import Any

from netns.errors import KernelError
from netns.kernel.boundary import translated
from netns.kernel.links import interface, rtnetlink

log = logging.getLogger(__name__)

# Tries a netem qdisc on a veth in a throwaway namespace of its own (unshare: it vanishes with the process, so
# nothing is left even if killed); exit 0 if the kernel has netem, 3 if it does not (ENOENT/EOPNOTSUPP/EINVAL).
_NETEM_PROBE = "import sys; from netns.kernel import netlink; sys.exit(netlink.probe_netem())"
_netem: list[bool] = []


def netem_supported(python: str) -> bool:
    """Whether this kernel has the netem qdisc, found by trying it (cached per run).

    ``NETNS_LAB_NETEM=0`` forces the fallback mechanisms (to exercise them on a kernel that has netem).
    """
    if os.environ.get("NETNS_LAB_NETEM") == "0":
        return False
    if not _netem:
        with translated("probe for the netem qdisc"):
            done = subprocess.run([python, "-c", _NETEM_PROBE], capture_output=True, text=True, timeout=30, check=False)
        if done.returncode not in (0, 3):
            reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            raise KernelError(f"probe for the netem qdisc: {reason}")
        _netem.append(done.returncode == 0)
        log.info("netem qdisc %s", "available" if _netem[0] else "not in this kernel; using nfqueue/nft/tbf")
    return _netem[0]


def set_qdisc(ns: str, ifname: str, kind: str | None, params: dict[str, Any]) -> None:
    """Replace the root qdisc of ``ns:ifname`` with ``kind`` (pyroute2 tc arguments); None restores the default."""
    with interface(ns, ifname, f"set qdisc {kind or 'default'} on {ns}:{ifname}") as (sock, index):
        if kind is None:
            try:
                sock.tc("del", index=index, root=True)
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.EINVAL):
                    raise
            return
        sock.tc("replace", kind, index, 0x10000, **params)


def qdiscs(ns: str) -> dict[str, str]:
    """Interface name -> kind of its root qdisc, in ``ns`` (read from the link dump: IFLA_QDISC)."""
    with rtnetlink(ns) as sock, translated(f"read qdiscs of {ns}"):
        return {link.name: link.qdisc for link in sock.links() if link.qdisc is not None}
