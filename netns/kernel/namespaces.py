"""Network namespaces: created, named, entered and deleted by the calling thread, with no fork.

Work inside a namespace is done by the calling thread after it has entered the namespace (``entered``:
setns(2) changes only the calling thread's network namespace, and it is always restored): a netlink socket
opened there belongs to the namespace, a write to /proc/sys/net sets the namespace's sysctl, and a helper
started from the thread (iptables-restore, nft) runs in the namespace. Nothing forks per namespace, so a
thousand namespaces cost a thousand syscalls, not a thousand processes. A namespace is created the way
``ip netns add`` does it, by the thread itself: unshare(CLONE_NEWNET), then a bind mount on /run/netns/NAME.
Removal is idempotent: "already gone" is success.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager

from netns.errors import KernelError
from netns.kernel.boundary import translated, wait_for

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
MS_BIND, MS_REC, MS_SHARED = 0x1000, 0x4000, 0x100000
MNT_DETACH = 2  # umount2(2): lazy unmount
_libc = ctypes.CDLL(None, use_errno=True)
_run_dir_ready: list[bool] = []


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


@contextmanager
def entered(ns: str) -> Iterator[None]:
    """Run the block with this thread inside namespace ``ns`` (setns(2)); the thread's own is restored after."""
    with translated(f"enter namespace {ns}"):
        target = os.open(os.path.join(NETNS_DIR, ns), os.O_RDONLY | os.O_CLOEXEC)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        with translated(f"enter namespace {ns}"):
            _check(_libc.setns(target, CLONE_NEWNET), "setns")
        try:
            yield
        finally:
            _check(_libc.setns(own, CLONE_NEWNET), "setns back")  # a thread left elsewhere would be a disaster
    finally:
        os.close(target)
        os.close(own)


def list_namespaces() -> list[str]:
    """Names of the namespaces in /run/netns (what ``ip netns list`` shows)."""
    with translated("list namespaces"):
        try:
            return sorted(os.listdir(NETNS_DIR))
        except FileNotFoundError:
            return []


def identity(ns: str) -> tuple[int, int] | None:
    """(device, inode) of namespace ``ns``'s file, what /proc/PID/ns/net of its processes show; None if gone."""
    try:
        st = os.stat(os.path.join(NETNS_DIR, ns))
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _is_mounted(ns: str) -> bool:
    ident = identity(ns)
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
    with translated(f"create namespace {ns}"), _mount_point(ns) as path:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _check(_libc.unshare(CLONE_NEWNET), "unshare")
            try:
                _check(_libc.mount(b"/proc/thread-self/ns/net", path.encode(), b"none", MS_BIND, None), "mount")
            finally:
                _check(_libc.setns(own, CLONE_NEWNET), "setns back")
        finally:
            os.close(own)
    wait_for(lambda: _is_mounted(ns), f"namespace {ns} to be mounted")


def attach_namespace(ns: str, pid: int) -> None:
    """Name the network namespace of process ``pid`` ``ns``, as ``ip netns attach NS PID`` does: bind-mount
    /proc/PID/ns/net on /run/netns/NS. The mount keeps the namespace alive after the process is gone."""
    with translated(f"attach namespace {ns} to PID {pid}"), _mount_point(ns) as path:
        _check(_libc.mount(f"/proc/{pid}/ns/net".encode(), path.encode(), b"none", MS_BIND, None), "mount")
    wait_for(lambda: _is_mounted(ns), f"namespace {ns} to be mounted")


@contextmanager
def _mount_point(ns: str) -> Iterator[str]:
    """The file /run/netns/NS, new, for the block to mount a namespace on; removed again if the block fails."""
    path = os.path.join(NETNS_DIR, ns)
    _prepare_run_dir()
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    except FileExistsError:
        raise KernelError(f"namespace {ns} already exists; run `python -m netns down` for its lab first") from None
    try:
        yield path
    except BaseException:
        os.unlink(path)
        raise


def delete_namespace(ns: str) -> None:
    """Unmount and unlink ``ns``; its interfaces (and their veth peers) go with it. Gone is success."""
    path = os.path.join(NETNS_DIR, ns)
    with translated(f"delete namespace {ns}"):
        _libc.umount2(path.encode(), MNT_DETACH)  # as `ip netns delete`: an error here shows in the unlink
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
    wait_for(lambda: identity(ns) is None, f"namespace {ns} to disappear")


def sysctl(ns: str, key: str, value: str, optional: bool = False) -> None:
    """Set ``key`` inside ``ns`` (its /proc/sys file, written from inside); with ``optional``, a key this kernel
    does not have is skipped (sysctl -e)."""
    path = "/proc/sys/" + key.replace(".", "/")
    with entered(ns), translated(f"sysctl {key}={value} in {ns}"):
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
