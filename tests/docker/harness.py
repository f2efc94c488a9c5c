"""The handle on one compose project of compose.yaml that the docker tests use (see conftest.py)."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT_LABEL = "com.docker.compose.project"


@dataclass
class Project:
    """One compose project of compose.yaml: its name, image, compose CLI and SDK client."""

    name: str
    image: str
    compose_cmd: list[str]
    client: Any
    env: dict[str, str] = field(repr=False)

    def compose(self, *args: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``docker compose -p NAME ARGS`` in the repository, output captured as text."""
        result = subprocess.run(
            [*self.compose_cmd, "--project-name", self.name, *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(f"compose {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def start_run(self, service: str, *args: str) -> str:
        """``compose run --detach SERVICE ARGS`` (a one-off container); returns the container's name.

        Detached and then waited for through the engine, because ``compose run`` in the foreground does not
        pass on the container's exit status with every engine (Compose 2.40 with Docker 20.10 exits 0).
        """
        name = f"{self.name}-{service}-{secrets.token_hex(3)}"
        self.compose("run", "--detach", "--no-TTY", "--name", name, service, *args)
        return name

    def wait(self, name: str, timeout: float = 60.0) -> tuple[int, str, str]:
        """Wait for a container to exit, remove it; (exit status, stdout, stderr)."""
        container = self.client.containers.get(name)
        try:
            status = container.wait(timeout=timeout)["StatusCode"]
            out = bytes(container.logs(stdout=True, stderr=False)).decode(errors="replace")
            err = bytes(container.logs(stdout=False, stderr=True)).decode(errors="replace")
        except Exception as error:  # requests' ReadTimeout when it does not exit in time
            logs = bytes(container.logs()).decode(errors="replace")
            pytest.fail(f"{name} did not finish within {timeout:g} s ({error}):\n{logs}")
        finally:
            container.remove(force=True)
        return int(status), out, err

    def run(self, service: str, *args: str, timeout: float = 60.0) -> tuple[int, str, str]:
        """A one-off container of ``service`` run to its end: (exit status, stdout, stderr)."""
        return self.wait(self.start_run(service, *args), timeout=timeout)

    def containers(self, service: str | None = None) -> list[Any]:
        labels = [f"{PROJECT_LABEL}={self.name}"]
        if service is not None:
            labels.append(f"com.docker.compose.service={service}")
        return list(self.client.containers.list(all=True, filters={"label": labels}))

    def container(self, service: str) -> Any:
        """The one long-running (not one-off) container of ``service``."""
        found = [c for c in self.containers(service) if c.labels.get("com.docker.compose.oneoff") != "True"]
        assert len(found) == 1, f"expected one container of {service}, found {[c.name for c in found]}"
        return found[0]

    def exec(self, service: str, *cmd: str) -> tuple[int, str]:
        """Run ``cmd`` in the service's container (as its user); (exit code, stdout+stderr)."""
        code, output = self.container(service).exec_run(list(cmd))
        return int(code), bytes(output).decode(errors="replace")

    def conntrack(self, service: str) -> str:
        """The UDP entries of the conntrack table of the service's container (a router)."""
        code, table = self.exec(service, "conntrack", "-L", "-p", "udp")
        assert code == 0, f"conntrack -L in {service} exited {code}:\n{table}"
        return table

    def health(self, service: str) -> str:
        container = self.container(service)
        container.reload()
        return str(container.attrs["State"].get("Health", {}).get("Status", "none"))

    def address(self, container_name: str, network: str) -> str:
        """The IPv4 address of a container on one of the project's networks."""
        container = self.client.containers.get(container_name)
        networks = container.attrs["NetworkSettings"]["Networks"]
        return str(networks[f"{self.name}_{network}"]["IPAddress"])

    def leftovers(self) -> list[str]:
        label = {"label": f"{PROJECT_LABEL}={self.name}"}
        found = [f"container {c.name}" for c in self.client.containers.list(all=True, filters=label)]
        found += [f"network {n.name}" for n in self.client.networks.list(filters=label)]
        found += [f"image {tag}" for i in self.client.images.list(name=self.image) for tag in i.tags]
        return found


def networks_on(client: Any, subnets: Sequence[str]) -> list[str]:
    """Networks of the engine that already use one of ``subnets`` (compose.yaml cannot come up then)."""
    taken = []
    for network in client.networks.list():
        configs = (network.attrs.get("IPAM") or {}).get("Config") or []
        taken += [f"{network.name} ({c['Subnet']})" for c in configs if c.get("Subnet") in subnets]
    return taken


def last_json(output: str) -> dict[str, Any]:
    """The JSON object on the last non-empty line of a `punch peer --json` output."""
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines, "no output"
    result = json.loads(lines[-1])
    assert isinstance(result, dict)
    return result
