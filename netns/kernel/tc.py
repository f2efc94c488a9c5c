"""Traffic control: the root qdisc of an interface (netem, tbf, or the default) and whether this kernel has netem."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
from typing import Any

from netns.errors import KernelError
from netns.kernel import rtdump
from netns.kernel.boundary import translated
from netns.kernel.links import iproute, rtnetlink

log = logging.getLogger(__name__)

# Tries a netem qdisc on a veth in a throwaway namespace of its own (unshare: it vanishes with the process, so
# nothing is left even if killed); exit 0 if the kernel has netem, 3 if it does not (ENOENT/EOPNOTSUPP).
_NETEM_PROBE = """
import ctypes, errno, os, sys
if ctypes.CDLL(None, use_errno=True).unshare(0x40000000) != 0:  # CLONE_NEWNET (os.unshare is 3.12+)
    sys.exit(f"unshare: {os.strerror(ctypes.get_errno())}")
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
with IPRoute() as ipr:
    ipr.link("add", ifname="probe0", kind="veth", peer={"ifname": "probe1"})
    try:
        ipr.tc("add", "netem", ipr.link_lookup(ifname="probe0")[0], delay=1000)
    except NetlinkError as exc:
        sys.exit(3 if exc.code in (errno.ENOENT, errno.EOPNOTSUPP, errno.EINVAL) else 1)
"""
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
    from pyroute2.netlink.exceptions import NetlinkError  # imported here: see netns/kernel/boundary.py

    with iproute(ns) as ipr, translated(f"set qdisc {kind or 'default'} on {ns}:{ifname}"):
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            raise KernelError(f"no interface {ifname} in namespace {ns}")
        index = found[0]
        if kind is None:
            try:
                ipr.tc("del", index=index, root=True)
            except NetlinkError as exc:
                if exc.code not in (errno.ENOENT, errno.EINVAL):
                    raise
            return
        ipr.tc("replace", kind, index, 0x10000, **params)


def qdiscs(ns: str) -> dict[str, str]:
    """Interface name -> kind of its root qdisc, in ``ns`` (read from the link dump: IFLA_QDISC)."""
    with rtnetlink(ns) as sock, translated(f"read qdiscs of {ns}"):
        return {link.name: link.qdisc for link in rtdump.links(sock) if link.qdisc is not None}
