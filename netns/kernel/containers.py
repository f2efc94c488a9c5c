"""Container nodes: the ONLY module that talks to Docker (the Docker SDK for Python, imported lazily).

A node with ``image:`` runs as a container started with no network of Docker's (``--network none``: only
``lo``, no Docker network, nothing in the root namespace). The lab then names the container's network namespace
``LAB-NODE`` from the container's PID (``namespaces.attach_namespace``, what ``ip netns attach`` does) and wires it
like any other node, so the container's traffic crosses the lab's veths, routers and kernel NAT.

The container's command starts when the container does, before it is wired: the plan brings its links up and
routes them last, after every NAT rule (``plan._containers_last``), so it never sends through a half-built lab.
Until then it has only ``lo``; a program that sends at once must retry, as STUN clients do (RFC 8489 §6.2.1).

``exec`` on a container node is ``docker exec``: the node's network namespace, but the container's own
filesystem, user and environment, so the container's programs run there (``ip netns exec`` would run the
host's programs in its namespace, which is not what the node is).

Ownership: each container is named like its namespace (``LAB-NODE``) and labelled ``netns-lab=LAB`` and
``netns-lab.node=NODE``; removal finds containers by these labels only, never by name, and "already gone" is
success. Without ``image:`` nodes the lab needs neither Docker nor the SDK. Docker's errors become LabErrors
here, one line each, with the fix.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from netns import naming
from netns.errors import LabError

log = logging.getLogger(__name__)

API_TIMEOUT = 60.0
START_TIMEOUT = 30.0
POLL_INTERVAL = 0.05
INSTALL = "install and start an engine (apt-get install docker.io; then `systemctl start docker` or `dockerd &`)"


def _sdk() -> Any:
    """The ``docker`` package, imported only when a container node needs it.

    Imported by name: the repository's own docker/ folder would shadow it for mypy, and it ships no types.
    """
    try:
        sdk = importlib.import_module("docker")
    except ImportError as exc:
        raise LabError(
            "container nodes need the Docker SDK for Python; install it: pip install docker==7.2.0 (requirements.txt)"
        ) from exc
    if not hasattr(sdk, "from_env"):
        raise LabError(f"`import docker` finds {list(sdk.__path__)}, not the Docker SDK for Python; pip install docker")
    return sdk


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "explanation", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def client(timeout: float = API_TIMEOUT) -> Any:
    """A connected ``docker.DockerClient``, or a one-line LabError saying how to get an engine."""
    sdk = _sdk()
    try:
        engine = sdk.from_env(timeout=timeout)
        engine.ping()
    except Exception as exc:  # the SDK raises DockerException, requests' and OS errors alike
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise LabError(f"container nodes need a Docker engine, and none answers at {where}; {INSTALL}") from exc
    return engine


@contextmanager
def _docker(what: str) -> Iterator[None]:
    """Translate the SDK's errors while doing ``what`` into one-line LabErrors."""
    sdk = _sdk()
    try:
        yield
    except sdk.errors.DockerException as exc:
        raise LabError(f"{what}: {_first_line(exc)}") from exc
    except OSError as exc:  # requests' connection errors derive from OSError
        raise LabError(f"{what}: the Docker engine stopped answering ({_first_line(exc)}); {INSTALL}") from exc


def check_images(images: Iterable[str]) -> None:
    """Fail before anything is built unless an engine answers and has every one of ``images`` locally."""
    sdk = _sdk()
    engine = client()
    try:
        missing = []
        with _docker("look up the topology's images"):
            for image in images:
                try:
                    engine.images.get(image)
                except sdk.errors.ImageNotFound:
                    missing.append(image)
        if missing:
            raise LabError(
                f"image {', '.join(missing)} is not in the Docker engine; build or pull it first (for punch's own: "
                "`docker compose build server` builds punch-local/punch:latest)"
            )
    finally:
        engine.close()


def _labels(lab: str, node: str | None = None) -> list[str]:
    return [f"{key}={value}" for key, value in naming.container_labels(lab, node).items()]


def _owned(engine: Any, lab: str, node: str | None = None) -> list[Any]:
    """The containers (running or not) labelled as lab ``lab``'s (and node ``node``'s, if given)."""
    with _docker(f"list the containers of lab {lab}"):
        return list(engine.containers.list(all=True, filters={"label": _labels(lab, node)}))


def start(lab: str, node: str, image: str, command: Sequence[str] | None, env: Iterable[tuple[str, str]]) -> int:
    """Start ``image`` as node ``node``'s container with ``--network none``; return its PID (in the root PID
    namespace) once it runs. Its labels make it the lab's before it runs anything."""
    name = naming.container(lab, node)
    engine = client()
    try:
        with _docker(f"start container {name} ({image})"):
            container = engine.containers.run(
                image,
                command=list(command) if command is not None else None,
                name=name,
                labels=naming.container_labels(lab, node),
                environment=dict(env),
                network_mode="none",
                detach=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with _docker(f"inspect container {name}"):
                container.reload()
            state = container.attrs["State"]
            if state.get("Pid"):
                log.debug("container %s (%s) runs as PID %s", name, image, state["Pid"])
                return int(state["Pid"])
            if state.get("Status") in ("exited", "dead") or time.monotonic() >= deadline:
                with _docker(f"read the log of container {name}"):
                    tail = bytes(container.logs(tail=3)).decode(errors="replace").strip().replace("\n", " | ")
                why = f"exited with status {state.get('ExitCode')}" if state.get("Status") != "running" else "no PID"
                raise LabError(f"container {name} ({image}) {why} before it could be wired: {tail or 'no output'}")
            time.sleep(POLL_INTERVAL)
    finally:
        engine.close()


def remove(lab: str, node: str | None = None) -> list[str]:
    """Force-remove lab ``lab``'s containers (or node ``node``'s), found by label; gone is success. Returns
    the names of those removed."""
    sdk = _sdk()
    engine = client()
    removed = []
    try:
        for container in _owned(engine, lab, node):
            with _docker(f"remove container {container.name}"), suppress(sdk.errors.NotFound):  # gone is success
                container.remove(force=True)
            log.debug("removed container %s", container.name)
            removed.append(str(container.name))
    finally:
        engine.close()
    return removed


def describe(lab: str) -> dict[str, dict[str, Any]]:
    """Node name -> its container's ``name``, ``id`` (12 hex digits), ``image``, ``status`` and ``pid``."""
    engine = client()
    try:
        result = {}
        for container in _owned(engine, lab):
            node = container.labels.get(naming.CONTAINER_NODE_LABEL, "")
            state = container.attrs.get("State", {})
            result[node] = {
                "name": str(container.name),
                "id": str(container.short_id),
                "image": str(container.attrs.get("Config", {}).get("Image", "")),
                "status": str(container.status),
                "pid": int(state.get("Pid") or 0) or None,
            }
        return result
    finally:
        engine.close()


def _running(engine: Any, lab: str, node: str) -> Any:
    """Node ``node``'s container, which must be running (``exec`` needs its processes and filesystem)."""
    found = _owned(engine, lab, node)
    if not found:
        raise LabError(f"node {node!r} of lab {lab!r} has no container; run `python -m netns down --name {lab}`")
    container = found[0]
    if container.status != "running":
        code = container.attrs.get("State", {}).get("ExitCode")
        raise LabError(
            f"container {container.name} of node {node!r} is not running ({container.status}, exit status {code}); "
            f"see `docker logs {container.name}`"
        )
    return container


def _docker_cli() -> str:
    found = shutil.which("docker")
    if found is None:
        raise LabError(
            "exec on a container node runs `docker exec`, and the docker CLI is missing; apt-get install docker.io"
        )
    return found


def exec_in(lab: str, node: str, argv: Sequence[str]) -> None:
    """Replace this process with ``docker exec`` of ``argv`` in node ``node``'s container: the container's own
    filesystem, user and environment, in the node's network namespace (stdio and exit status pass through)."""
    engine = client()
    try:
        container = _running(engine, lab, node)
    finally:
        engine.close()
    tty = ["-t"] if sys.stdin.isatty() and sys.stdout.isatty() else []
    full = [_docker_cli(), "exec", "-i", *tty, str(container.name), *argv]
    try:
        os.execv(full[0], full)
    except OSError as exc:
        raise LabError(f"run {' '.join(argv)} in container {container.name}: {exc.strerror}") from exc


def spawn_in(lab: str, node: str, argv: Sequence[str], log_path: str, timeout: float = 10.0) -> int:
    """Start ``argv`` in node ``node``'s container in the background (``docker exec``, output appended to
    ``log_path``); return the PID of the command itself, a process in the node's namespace like any other
    (so ``down`` stops it, and the container's removal in any case)."""
    engine = client()
    try:
        container = _running(engine, lab, node)
        before = set(container.attrs.get("ExecIDs") or [])
        with open(log_path, "ab") as out:
            child = subprocess.Popen(
                [_docker_cli(), "exec", str(container.name), *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with _docker(f"inspect container {container.name}"):
                container.reload()
                for exec_id in set(container.attrs.get("ExecIDs") or []) - before:
                    info = engine.api.exec_inspect(exec_id)
                    config = info.get("ProcessConfig", {})
                    if [config.get("entrypoint"), *config.get("arguments", [])] == list(argv) and info.get("Pid"):
                        return int(info["Pid"])
            if child.poll() is not None:
                raise LabError(
                    f"`docker exec {container.name} {' '.join(argv)}` exited with status {child.returncode}; "
                    f"see {log_path}"
                )
            time.sleep(POLL_INTERVAL)
        raise LabError(f"`docker exec {container.name} {' '.join(argv)}` did not start within {timeout:g}s")
    except OSError as exc:
        raise LabError(f"start {' '.join(argv)} in container {naming.container(lab, node)}: {exc.strerror}") from exc
    finally:
        engine.close()
