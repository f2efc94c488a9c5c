"""Redis servers of our own on loopback, for the tests and benchmarks of a shared registry (``--registry``).

Each node is Debian's ``redis-server`` (``apt-get install redis-server``) started on a free port of 127.0.0.1 with
its files in a temporary folder, nothing saved to disk, and stopped (SIGTERM, then SIGKILL) by the process ID we
started. :func:`cluster` starts three in cluster mode and joins them with ``redis-cli --cluster create``.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

INSTALL = "apt-get install redis-server"


def missing() -> str | None:
    """Why no Redis of our own can start here (with the fix), or None."""
    for program in ("redis-server", "redis-cli"):
        if shutil.which(program) is None:
            return f"{program} is not installed; `{INSTALL}`"
    return None


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_tcp_port() -> int:
    """A free port of 127.0.0.1 whose cluster bus port (10,000 above: Redis's rule) is free too."""
    for _ in range(1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        port = 20_000 + port % 35_000  # at most 54,999: the bus port stays below 65,536
        if _bindable(port) and _bindable(port + 10_000):
            return port
    raise RuntimeError("no free pair of TCP ports for a Redis node on 127.0.0.1")


@dataclass
class RedisNode:
    """One redis-server we started: ``url`` reaches it; :meth:`stop` and :meth:`start` again (same port, same
    folder) restart it, losing what it held (nothing is saved)."""

    port: int = field(default_factory=free_tcp_port)
    cluster: bool = False
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="punch-redis-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        arguments = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.folder)]
        arguments += ["--save", "", "--appendonly", "no", "--protected-mode", "no", "--daemonize", "no"]
        if self.cluster:
            arguments += ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{self.port}.conf"]
        log = (self.folder / "redis.log").open("ab")
        self.process = subprocess.Popen(arguments, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.exceptions.RedisError:
                    pass
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    tail = (self.folder / "redis.log").read_text(errors="replace")[-400:]
                    raise RuntimeError(f"redis-server on port {self.port} did not start: {tail}")
                time.sleep(0.02)  # polling a process we started, with a deadline
        finally:
            client.close()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def rss_kib(self) -> int:
        """The node's resident memory (KiB), from /proc."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0


@contextlib.contextmanager
def single() -> Iterator[RedisNode]:
    """One Redis of our own for the block."""
    node = RedisNode()
    try:
        node.start()
        yield node
    finally:
        node.remove()


@contextlib.contextmanager
def cluster(nodes: int = 3, timeout: float = 30.0) -> Iterator[list[RedisNode]]:
    """A Redis Cluster of ``nodes`` masters (no replicas) of our own for the block; the first node's URL reaches it."""
    started = [RedisNode(cluster=True) for _ in range(nodes)]
    try:
        for node in started:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in started]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
        deadline = time.monotonic() + timeout
        for node in started:
            client = redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=1.0)
            try:
                while client.execute_command("CLUSTER INFO").get("cluster_state") != "ok":  # type: ignore[no-untyped-call]
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the cluster did not come up: node {node.port} is not ok")
                    time.sleep(0.05)  # polling the cluster's own state, with a deadline
            finally:
                client.close()
        yield started
    finally:
        for node in started:
            node.remove()
