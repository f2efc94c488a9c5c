"""The kernel boundary: the ONLY module importing pyroute2, and where netlink/OS errors become LabErrors.

Work inside a namespace is done by the calling thread after it has entered the namespace (``entered``:
setns(2) changes only the calling thread's network namespace, and it is always restored): a netlink socket
opened there belongs to the namespace, a write to /proc/sys/net sets the namespace's sysctl, and a helper
started from the thread (iptables-restore, nft) runs in the namespace. Nothing forks per namespace, so a
thousand namespaces cost a thousand syscalls, not a thousand processes. A namespace is created the way
``ip netns add`` does it, by the thread itself: unshare(CLONE_NEWNET), then a bind mount on /run/netns/NAME.

The requests that build a lab (links, addresses, routes) are packed by netns/kernel/rtnl.py, and what ``status`` reads
back (links, addresses, routes, root qdiscs) are dumps parsed by netns/kernel/rtdump.py; traffic control and the rarer
reads and changes go through pyroute2. Between ``open_cache()`` and ``close_cache()`` a thread
keeps one rtnetlink socket per namespace (and the interface indices it looked up); otherwise each call opens and
closes its own.
Kernel state is awaited by polling with a timeout, never by sleeping blindly. Removal is idempotent:
"already gone" is success. Commands a user runs in a node (``exec``) still go through ``ip netns exec``.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from netns.errors import KernelError
from netns.kernel import rtdump, rtnl

log = logging.getLogger(__name__)

NETNS_DIR = "/run/netns"
IFF_UP = 0x1
POLL_INTERVAL = 0.02
T = TypeVar("T")


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Poll ``predicate`` until it holds; raise KernelError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise KernelError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(POLL_INTERVAL)


def _netlink_error() -> type[Exception] | None:
    """pyroute2's NetlinkError once pyroute2 is loaded. It is imported only by what needs it (qdiscs, container
    namespaces, the readers off ``up``'s hot path): importing it costs every CLI command about 0.15 s."""
    return getattr(sys.modules.get("pyroute2.netlink.exceptions"), "NetlinkError", None)


@contextmanager
def _kernel(what: str) -> Iterator[None]:
    """Translate netlink and OS errors raised while doing ``what`` into one-line KernelErrors."""
    try:
        yield
    except rtnl.DecodeError as exc:
        raise KernelError(f"{what}: {exc}") from exc
    except OSError as exc:
        raise KernelError(f"{what}: {exc.strerror or exc}") from exc
    except Exception as exc:
        netlink_error = _netlink_error()
        if netlink_error is None or not isinstance(exc, netlink_error):
            raise
        code = getattr(exc, "code", 0)
        raise KernelError(f"{what}: {os.strerror(code) if code else exc}") from exc


CLONE_NEWNET = 0x40000000
MS_BIND, MS_REC, MS_SHARED = 0x1000, 0x4000, 0x100000
MNT_DETACH = 2  # umount2(2): lazy unmount
_libc = ctypes.CDLL(None, use_errno=True)
_local = threading.local()  # per thread: the namespace handles of ``open_cache()``
_run_dir_ready: list[bool] = []


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


@contextmanager
def entered(ns: str) -> Iterator[None]:
    """Run the block with this thread inside namespace ``ns`` (setns(2)); the thread's own is restored after."""
    with _kernel(f"enter namespace {ns}"):
        target = os.open(os.path.join(NETNS_DIR, ns), os.O_RDONLY | os.O_CLOEXEC)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        with _kernel(f"enter namespace {ns}"):
            _check(_libc.setns(target, CLONE_NEWNET), "setns")
        try:
            yield
        finally:
            _check(_libc.setns(own, CLONE_NEWNET), "setns back")  # a thread left elsewhere would be a disaster
    finally:
        os.close(target)
        os.close(own)


def open_cache() -> None:
    """From now on this thread keeps one rtnetlink socket per namespace it touches (and the indices it looked up)."""
    _local.handles = {}
    _local.indices = {}


def close_cache() -> None:
    """Close the sockets ``open_cache`` kept in this thread; from now on each call opens its own again."""
    handles, _local.handles = getattr(_local, "handles", None) or {}, None
    for sock in handles.values():
        sock.close()


@contextmanager
def _ipr(ns: str) -> Iterator[Any]:
    """A pyroute2 IPRoute of ``ns``, opened from inside it, closed after the block."""
    from pyroute2 import IPRoute  # imported here: see _netlink_error

    with entered(ns), _kernel(f"open namespace {ns}"):
        ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


@contextmanager
def _rtnl(ns: str) -> Iterator[rtnl.Socket]:
    """An rtnetlink socket of ``ns``: this thread's cached one after ``open_cache()``, else one for the block."""
    handles = getattr(_local, "handles", None)
    if handles is not None and ns in handles:
        yield handles[ns]
        return
    with entered(ns), _kernel(f"open namespace {ns}"):
        sock = rtnl.Socket()
    if handles is not None:
        handles[ns] = sock
        yield sock
        return
    try:
        yield sock
    finally:
        sock.close()


def _index(sock: rtnl.Socket, ns: str, ifname: str) -> int:
    indices = getattr(_local, "indices", None) if getattr(_local, "handles", None) is not None else None
    if indices is not None and (ns, ifname) in indices:
        return int(indices[ns, ifname])
    try:
        index = sock.index(ifname)
    except OSError as exc:
        if exc.errno != errno.ENODEV:
            raise
        raise KernelError(f"no interface {ifname} in namespace {ns}") from None
    if indices is not None:
        indices[ns, ifname] = index
    return index


# -- namespaces ----------------------------------------------------------------------------------------


def list_namespaces() -> list[str]:
    """Names of the namespaces in /run/netns (what ``ip netns list`` shows)."""
    with _kernel("list namespaces"):
        try:
            return sorted(os.listdir(NETNS_DIR))
        except FileNotFoundError:
            return []


def _ns_identity(ns: str) -> tuple[int, int] | None:
    try:
        st = os.stat(os.path.join(NETNS_DIR, ns))
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _is_mounted(ns: str) -> bool:
    ident = _ns_identity(ns)
    run = os.stat(NETNS_DIR)
    return ident is not None and ident[0] != run.st_dev


def _prepare_run_dir() -> None:
    """Make /run/netns a shared mount point (once per process), as ``ip netns add`` does."""
    if _run_dir_ready:
        return
    os.makedirs(NETNS_DIR, exist_ok=True)
    directory = NETNS_DIR.encode()
    if _libc.mount(b"", directory, b"none", MS_SHARED | MS_REC, None) != 0:
        _check(_libc.mount(directory, directory, b"none", MS_BIND | MS_REC, None), f"bind mount {NETNS_DIR}")
        _check(_libc.mount(b"", directory, b"none", MS_SHARED | MS_REC, None), f"share {NETNS_DIR}")
    _run_dir_ready.append(True)


def create_namespace(ns: str) -> None:
    """A new namespace named ``ns``: this thread unshares one and bind-mounts it on /run/netns/NS (no fork)."""
    path = os.path.join(NETNS_DIR, ns)
    with _kernel(f"create namespace {ns}"):
        _prepare_run_dir()
        try:
            os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
        except FileExistsError:
            raise KernelError(f"namespace {ns} already exists; run `python -m netns down` for its lab first") from None
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _check(_libc.unshare(CLONE_NEWNET), "unshare")
            try:
                _check(_libc.mount(b"/proc/thread-self/ns/net", path.encode(), b"none", MS_BIND, None), "mount")
            finally:
                _check(_libc.setns(own, CLONE_NEWNET), "setns back")
        except OSError:
            os.unlink(path)
            raise
        finally:
            os.close(own)
    wait_for(lambda: _is_mounted(ns), f"namespace {ns} to be mounted")


def attach_namespace(ns: str, pid: int) -> None:
    """Name the network namespace of process ``pid`` ``ns``, as ``ip netns attach NS PID`` does: bind-mount
    /proc/PID/ns/net on /run/netns/NS. The mount keeps the namespace alive after the process is gone."""
    if ns in list_namespaces():
        raise KernelError(f"namespace {ns} already exists; run `python -m netns down` for its lab first")
    from pyroute2 import netns as pyroute2_netns  # imported here: see _netlink_error

    with _kernel(f"attach namespace {ns} to PID {pid}"):
        pyroute2_netns.attach(ns, pid)
    wait_for(lambda: _is_mounted(ns), f"namespace {ns} to be mounted")


def delete_namespace(ns: str) -> None:
    """Unmount and unlink ``ns``; its interfaces (and their veth peers) go with it. Gone is success."""
    path = os.path.join(NETNS_DIR, ns)
    with _kernel(f"delete namespace {ns}"):
        _libc.umount2(path.encode(), MNT_DETACH)  # as `ip netns delete`: an error here shows in the unlink
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
    wait_for(lambda: _ns_identity(ns) is None, f"namespace {ns} to disappear")


def read_marker(ns: str) -> str | None:
    """The ifalias of ``lo`` in ``ns`` (the lab's ownership marker), or None if unreadable."""
    try:
        with _ipr(ns) as ipr, _kernel(f"read marker of {ns}"):
            links = ipr.get_links(ipr.link_lookup(ifname="lo")[0])
            alias = links[0].get("ifalias") if links else None
            return str(alias) if alias else None
    except KernelError as exc:
        log.debug("cannot read marker of %s: %s", ns, exc)
        return None


def mark_namespace(ns: str, marker: str) -> None:
    with _rtnl(ns) as sock, _kernel(f"mark namespace {ns}"):
        sock.set_link(_index(sock, ns, "lo"), up=True, alias=marker)


# -- links, addresses, routes --------------------------------------------------------------------------


def create_veth(ns: str, ifname: str, peer_ns: str, peer_ifname: str) -> None:
    """A veth pair created in ``ns`` with its peer placed directly into ``peer_ns`` (never in root)."""
    with _rtnl(ns) as sock, _kernel(f"create veth {ns}:{ifname} <-> {peer_ns}:{peer_ifname}"):
        peer = os.open(os.path.join(NETNS_DIR, peer_ns), os.O_RDONLY | os.O_CLOEXEC)
        try:
            sock.add_veth(ifname, peer_ifname, peer)
        finally:
            os.close(peer)


def create_bridge(ns: str, ifname: str) -> None:
    with _rtnl(ns) as sock, _kernel(f"create bridge {ns}:{ifname}"):
        sock.add_bridge(ifname)


def _link_index(ipr: Any, ns: str, ifname: str) -> int:
    """The index of ``ifname`` through a pyroute2 IPRoute (the readers that are not on the hot path of ``up``)."""
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise KernelError(f"no interface {ifname} in namespace {ns}")
    return int(found[0])


def attach_port(ns: str, port: str, bridge: str) -> None:
    with _rtnl(ns) as sock, _kernel(f"attach {ns}:{port} to {bridge}"):
        sock.set_link(_index(sock, ns, port), master=_index(sock, ns, bridge))


def add_address(ns: str, ifname: str, address: str, prefixlen: int) -> None:
    with _rtnl(ns) as sock, _kernel(f"add {address}/{prefixlen} to {ns}:{ifname}"):
        sock.add_address(_index(sock, ns, ifname), address, prefixlen)


def addresses(ns: str, ifname: str) -> list[tuple[str, int]]:
    """The IPv4 addresses of ``ns:ifname`` as (address, prefix length), primary first."""
    with _ipr(ns) as ipr, _kernel(f"read the addresses of {ns}:{ifname}"):
        index = _link_index(ipr, ns, ifname)
        return [(str(a.get("address")), int(a["prefixlen"])) for a in ipr.get_addr(family=2, index=index)]


def delete_address(ns: str, ifname: str, address: str, prefixlen: int) -> None:
    with _ipr(ns) as ipr, _kernel(f"delete {address}/{prefixlen} from {ns}:{ifname}"):
        ipr.addr("del", index=_link_index(ipr, ns, ifname), address=address, prefixlen=prefixlen)


def gateway_routes(ns: str, ifname: str) -> list[tuple[str, str]]:
    """Main-table routes through a gateway on ``ns:ifname``, as (destination CIDR, gateway)."""
    with _ipr(ns) as ipr, _kernel(f"read the routes of {ns}"):
        index = _link_index(ipr, ns, ifname)
        found = []
        for route in ipr.get_routes(family=2, table=254):
            gateway = route.get("gateway")
            if gateway and int(route.get("oif") or 0) == index:
                found.append((f"{route.get('dst') or '0.0.0.0'}/{route['dst_len']}", str(gateway)))
        return found


def replace_route(ns: str, dst: str, gateway: str) -> None:
    """Add the route, or replace the one to ``dst`` there is."""
    with _ipr(ns) as ipr, _kernel(f"replace route {dst} via {gateway} in {ns}"):
        ipr.route("replace", dst=dst, gateway=gateway)


def link_up(ns: str, ifname: str) -> None:
    """Set ``ns:ifname`` up: the kernel acknowledges the request once the flag is set (nothing to poll)."""
    with _rtnl(ns) as sock, _kernel(f"bring up {ns}:{ifname}"):
        sock.set_link(_index(sock, ns, ifname), up=True)


def add_route(ns: str, dst: str, gateway: str, timeout: float = 5.0) -> None:
    """Add a route; while the gateway's network is not yet usable (ENETUNREACH), poll until it is."""
    deadline = time.monotonic() + timeout
    with _rtnl(ns) as sock, _kernel(f"add route {dst} via {gateway} in {ns}"):
        while True:
            try:
                sock.add_route(dst, gateway)
                return
            except OSError as exc:
                if exc.errno != errno.ENETUNREACH or time.monotonic() >= deadline:
                    raise
            time.sleep(POLL_INTERVAL)


def describe(ns: str) -> dict[str, Any]:
    """Interfaces (name, state, addresses) and main-table routes of ``ns``, for ``status``: three rtnetlink
    dumps, parsed by hand (netns/kernel/rtdump.py)."""
    with _rtnl(ns) as sock, _kernel(f"read namespace {ns}"):
        links = rtdump.links(sock)
        addresses = rtdump.addresses(sock)
        routes = rtdump.routes(sock)
    names = {link.index: link.name for link in links}
    by_link: dict[int, list[str]] = {}
    for address in addresses:
        by_link.setdefault(address.index, []).append(f"{address.address}/{address.prefixlen}")
    return {
        "interfaces": [
            {"name": link.name, "state": link.operstate, "addresses": by_link.get(link.index, [])} for link in links
        ],
        "routes": [
            {
                "dst": f"{route.dst}/{route.dst_len}" if route.dst else "default",
                "via": route.gateway,
                "dev": names.get(route.oif or 0),
            }
            for route in routes
        ],
    }


# -- commands and processes inside a namespace ---------------------------------------------------------


def in_namespace(ns: str, argv: Sequence[str]) -> list[str]:
    """The argv that runs ``argv`` inside ``ns``."""
    return ["ip", "netns", "exec", ns, *argv]


def run_in(ns: str, argv: Sequence[str], stdin: str | None = None, timeout: float = 30.0) -> str:
    """Run ``argv`` inside ``ns`` (started from this thread inside it), return its stdout; a failure becomes a
    KernelError with its stderr."""
    what = f"{' '.join(argv)} in {ns}"
    with entered(ns), _kernel(f"run {what}"):
        try:
            done = subprocess.run(
                list(argv),
                input=stdin,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise KernelError(f"{what}: timed out after {timeout:g}s") from exc
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise KernelError(f"{what}: {reason}")
    return done.stdout


def sysctl(ns: str, key: str, value: str, optional: bool = False) -> None:
    """Set ``key`` inside ``ns`` (its /proc/sys file, written from inside); with ``optional``, a key this kernel
    does not have is skipped (sysctl -e)."""
    path = "/proc/sys/" + key.replace(".", "/")
    with entered(ns), _kernel(f"sysctl {key}={value} in {ns}"):
        try:
            with open(path, "w", encoding="ascii") as f:
                f.write(value)
        except FileNotFoundError:
            if not optional:
                raise KernelError(f"sysctl {key}={value} in {ns}: no such key in this kernel") from None


def neighbour_capacity() -> int | None:
    """The kernel's limit on ARP entries (net.ipv4.neigh.default.gc_thresh3), shared by every namespace."""
    try:
        with open("/proc/sys/net/ipv4/neigh/default/gc_thresh3", encoding="ascii") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def pids_in(ns: str) -> list[int]:
    """PIDs in ``ns``: every /proc/PID/ns/net with the namespace's inode (like ``ip netns pids``)."""
    return pids_in_any([ns])


def pids_in_any(namespaces: Sequence[str]) -> list[int]:
    """PIDs in any of ``namespaces``, found in one pass over /proc."""
    idents = {ident for ns in namespaces if (ident := _ns_identity(ns)) is not None}
    return sorted(pid for pid, _ in _net_namespaces(idents))


def _net_namespaces(idents: set[tuple[int, int]]) -> Iterator[tuple[int, tuple[int, int]]]:
    """(PID, namespace identity) of every process (but this one) whose network namespace is one of ``idents``."""
    if not idents:
        return
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue  # exited meanwhile, a zombie, or a kernel thread
        if (st.st_dev, st.st_ino) in idents and int(entry) != os.getpid():
            yield int(entry), (st.st_dev, st.st_ino)


def signal_pids(pids: Sequence[int], sig: signal.Signals) -> None:
    """Send ``sig`` to each PID; a process that has already exited counts as done."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            continue
        except OSError as exc:
            raise KernelError(f"cannot send {sig.name} to PID {pid}: {exc.strerror}") from exc


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a zombie has no network namespace left)."""
    try:
        os.stat(f"/proc/{pid}/ns/net")
    except OSError:
        return False
    return True


def exec_in(ns: str, argv: Sequence[str]) -> None:
    """Replace this process with ``argv`` running inside ``ns`` (stdio and exit code pass through)."""
    full = in_namespace(ns, argv)
    with _kernel(f"run {' '.join(argv)} in {ns}"):
        os.execvp(full[0], full)


def spawn_in(ns: str, argv: Sequence[str], log_path: str) -> int:
    """Start ``argv`` inside ``ns`` in a new session, output appended to ``log_path``; return its PID.

    ``ip netns exec`` execs the command itself, so the PID is the command's.
    """
    with _kernel(f"start {' '.join(argv)} in {ns}"), open(log_path, "ab") as out:
        child = subprocess.Popen(
            in_namespace(ns, argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return child.pid


def load_ruleset(ns: str, ruleset: str) -> None:
    """Replace the iptables tables named in ``ruleset`` inside ``ns``, all in one iptables-restore run."""
    run_in(ns, ["iptables-restore"], stdin=ruleset)


def load_nftables(ns: str, ruleset: str) -> None:
    """Add the nftables tables in ``ruleset`` inside ``ns``, atomically, with ``nft -f -``."""
    run_in(ns, ["nft", "-f", "-"], stdin=ruleset)


# -- impairments (netns/rules/impair.py) ------------------------------------------------------------------------

DELAYD_MODULE = "netns.kernel.delayd"
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
        with _kernel("probe for the netem qdisc"):
            done = subprocess.run([python, "-c", _NETEM_PROBE], capture_output=True, text=True, timeout=30, check=False)
        if done.returncode not in (0, 3):
            reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            raise KernelError(f"probe for the netem qdisc: {reason}")
        _netem.append(done.returncode == 0)
        log.info("netem qdisc %s", "available" if _netem[0] else "not in this kernel; using nfqueue/nft/tbf")
    return _netem[0]


def set_qdisc(ns: str, ifname: str, kind: str | None, params: dict[str, Any]) -> None:
    """Replace the root qdisc of ``ns:ifname`` with ``kind`` (pyroute2 tc arguments); None restores the default."""
    from pyroute2.netlink.exceptions import NetlinkError  # imported here: see _netlink_error

    with _ipr(ns) as ipr, _kernel(f"set qdisc {kind or 'default'} on {ns}:{ifname}"):
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
    with _rtnl(ns) as sock, _kernel(f"read qdiscs of {ns}"):
        return {link.name: link.qdisc for link in rtdump.links(sock) if link.qdisc is not None}


def _queues_bound(pid: int) -> set[int]:
    """Queue numbers bound in the network namespace of ``pid`` (/proc/PID/net/netfilter/nfnetlink_queue)."""
    try:
        with open(f"/proc/{pid}/net/netfilter/nfnetlink_queue", encoding="ascii") as f:
            return {int(line.split()[0]) for line in f if line.strip()}
    except (OSError, ValueError, IndexError):
        return set()


def delayd_pid(ns: str, queue: int) -> int | None:
    """The PID of the delaying daemon of ``queue`` running in ``ns`` (found by its command line), or None."""
    return delayds([ns]).get((ns, queue))


def delayds(namespaces: Sequence[str]) -> dict[tuple[str, int], int]:
    """(namespace, queue) -> PID of each delaying daemon running in any of ``namespaces``, in one pass over /proc."""
    by_identity = {ident: ns for ns in namespaces if (ident := _ns_identity(ns)) is not None}
    found = {}
    for pid, ident in _net_namespaces(set(by_identity)):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        queue = argv[argv.index("--queue") + 1 :][:1] if "--queue" in argv else []
        if DELAYD_MODULE in argv and queue and queue[0].isdigit():
            found[by_identity[ident], int(queue[0])] = pid
    return found


def start_delayd(ns: str, queue: int, argv: Sequence[str], log_path: str, timeout: float = 10.0) -> None:
    """Start the delaying daemon in ``ns`` and wait until the kernel shows ``queue`` bound (or it died)."""
    pid = spawn_in(ns, argv, log_path)

    def bound() -> bool:
        if not alive(pid):
            raise KernelError(f"delay daemon for queue {queue} in {ns} exited; see {log_path}")
        return queue in _queues_bound(pid)

    wait_for(bound, f"the delay daemon to bind queue {queue} in {ns}", timeout)


def stop_delayd(ns: str, queue: int, timeout: float = 5.0) -> None:
    """SIGTERM the delaying daemon of ``queue`` in ``ns`` and wait for it to exit; gone is success."""
    pid = delayd_pid(ns, queue)
    if pid is None:
        return
    signal_pids([pid], signal.SIGTERM)
    wait_for(lambda: not alive(pid), f"the delay daemon (PID {pid}) to exit", timeout)


def load_impair(ns: str, iptables: str, nftables: str) -> None:
    """Replace the raw table (iptables-restore) and the impairment nftables table (``nft -f``) in ``ns``."""
    run_in(ns, ["iptables-restore"], stdin=iptables)
    run_in(ns, ["nft", "-f", "-"], stdin=nftables)


def nft_tables(ns: str, families: Sequence[str], table: str) -> str:
    """The text of the nftables tables ``FAMILY TABLE`` for each of ``families`` in ``ns`` (as ``nft list table``
    shows them), "" for each that does not exist: one ``nft list ruleset`` run, cut at its top-level tables."""
    try:
        ruleset = run_in(ns, ["nft", "list", "ruleset"])
    except KernelError:
        return ""
    wanted = {f"table {family} {table} {{" for family in families}
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in ruleset.splitlines(keepends=True):
        if line.startswith("table "):
            current = blocks.setdefault(line.rstrip("\n"), []) if line.rstrip("\n") in wanted else None
        if current is not None:
            current.append(line)
        if line.startswith("}"):
            current = None
    return "".join("".join(blocks.get(f"table {family} {table} {{", [])) for family in families)
