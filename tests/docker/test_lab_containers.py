"""Containers as netns lab nodes: netns/topologies/containers.yaml with punch's image, end to end.

The server and both peers are containers started with ``--network none`` and wired by the lab (pyroute2) into
the default topology; the NAT routers stay plain namespaces with the kernel's MASQUERADE. The peers punch a
direct path through both routers and exchange their texts, ``exec`` runs in the containers, and ``down`` leaves
no container, namespace or state dir, also when the test fails. Needs root and a Docker engine.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from netns import naming
from netns.testing import namespaces_of, run_cli, unique_name
from tests.docker.harness import ROOT, last_json

pytestmark = pytest.mark.docker

TOPOLOGY = ROOT / "netns" / "topologies" / "containers.yaml"
CONTAINER_NODES = ("server", "peer10", "peer14")
PUBLIC = {"10": "198.51.100.10", "14": "192.0.2.14"}
LAN = {"10": "10.0.10.2", "14": "10.0.14.2"}
TEXTS = {p: [f"hello from peer{p}", f"peer{p} says bye"] for p in ("10", "14")}


def topology_with(image: str, directory: Path) -> Path:
    """containers.yaml with ``image`` for every container node, and an ``env`` for the server."""
    data = yaml.safe_load(TOPOLOGY.read_text(encoding="utf-8"))
    for name in CONTAINER_NODES:
        data["nodes"][name]["image"] = image
    data["nodes"]["server"]["env"] = {"LAB_NODE": "server"}
    path = directory / "containers.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def lab_containers(client: Any, name: str) -> list[str]:
    labelled = client.containers.list(all=True, filters={"label": f"{naming.CONTAINER_LAB_LABEL}={name}"})
    return sorted(str(c.name) for c in labelled)


@pytest.fixture
def lab_name(punch_image: tuple[Any, str], lab_root: None) -> Iterator[str]:
    """A fresh lab name; afterwards (pass or fail) ``down`` must leave no container, namespace or state dir."""
    client, _ = punch_image
    name = unique_name()
    yield name
    down = run_cli("down", "--name", name)
    left = lab_containers(client, name) + namespaces_of(name)
    left += [str(naming.state_dir(name))] if naming.state_dir(name).exists() else []
    assert down.returncode == 0, down.stderr
    assert not left, f"lab {name} left behind: {', '.join(left)}"


def test_containers_punch_through_the_kernel_nat(punch_image: tuple[Any, str], lab_name: str, tmp_path: Path) -> None:
    client, image = punch_image
    name = lab_name
    up = run_cli("up", "--name", name, "--topology", str(topology_with(image, tmp_path)), timeout=120)
    assert up.returncode == 0, up.stderr
    assert f"container {name}-peer10 ({image})" in up.stdout

    # Each container has no network of Docker's: only what the lab gave its namespace.
    for node in CONTAINER_NODES:
        container = client.containers.get(f"{name}-{node}")
        assert container.attrs["HostConfig"]["NetworkMode"] == "none"
        assert {k: v for k, v in container.labels.items() if k.startswith("netns-lab")} == {
            "netns-lab": name,
            "netns-lab.node": node,
        }

    status = run_cli("status", "--name", name, "--json")
    assert status.returncode == 0, status.stderr
    nodes = {n["node"]: n for n in json.loads(status.stdout)["nodes"]}
    server = nodes["server"]
    assert server["image"] == image
    assert server["container"]["name"] == f"{name}-server"
    assert re.fullmatch(r"[0-9a-f]{12}", server["container"]["id"])
    assert server["container"]["status"] == "running"
    assert {"dst": "default", "via": "203.0.113.254", "dev": "net-server"} in server["routes"]
    assert "image" not in nodes["nat10"]

    # The peers ran as the containers' own command: they punch, talk and exit.
    results = {}
    for p in ("10", "14"):
        container = client.containers.get(f"{name}-peer{p}")
        code = container.wait(timeout=60)["StatusCode"]
        out = bytes(container.logs(stdout=True, stderr=False)).decode(errors="replace")
        err = bytes(container.logs(stdout=False, stderr=True)).decode(errors="replace")
        assert code == 0, f"peer{p} exited {code}:\n{out}\n{err}"
        results[p] = last_json(out)
    for p, other in (("10", "14"), ("14", "10")):
        result, theirs = results[p], results[other]
        assert result["error"] is None
        assert result["path"] == "direct"
        assert result["received"] == TEXTS[other]
        assert result["sent"] == TEXTS[p]
        assert result["mapped"].startswith(f"{PUBLIC[p]}:")  # the server saw the NAT's public address
        assert result["remote"] == theirs["mapped"]  # straight to the other NAT's mapping: no server, no LAN

    # Each router's kernel NATed the flow between the two public endpoints.
    for p, other in (("10", "14"), ("14", "10")):
        local_port = results[p]["local"].rsplit(":", 1)[1]
        mapped_port = results[p]["mapped"].rsplit(":", 1)[1]
        their_port = results[other]["mapped"].rsplit(":", 1)[1]
        table = run_cli("exec", "--name", name, f"nat{p}", "--", "conntrack", "-L", "-p", "udp")
        assert table.returncode == 0, table.stderr
        entry = (
            rf"src={LAN[p]} dst={PUBLIC[other]} sport={local_port} dport={their_port} "
            rf"src={PUBLIC[other]} dst={PUBLIC[p]} sport={their_port} dport={mapped_port}\b"
        )
        assert re.search(entry, table.stdout), f"nat{p} has no entry for the direct flow:\n{table.stdout}"

    # exec in a container node: the container's programs, user and environment, in the node's namespace.
    script = "id -un; printenv LAB_NODE; ip -br -4 addr show net-server; ip route show default; stun-check 127.0.0.1"
    done = run_cli("exec", "--name", name, "server", "--", "sh", "-c", f"{script}; exit 7")
    assert done.returncode == 7, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ["punch", "server"]
    assert lines[2].split()[1:] == ["UP", "203.0.113.1/24", "203.0.113.2/24"]
    assert lines[3].startswith("default via 203.0.113.254 dev net-server")
    assert re.fullmatch(r"127\.0\.0\.1:3478 answered: mapped 127\.0\.0\.1:\d+", lines[4])

    detached = run_cli("exec", "--name", name, "--detach", "server", "--", "sleep", "300")
    assert detached.returncode == 0, detached.stderr
    pid = int(detached.stdout)
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{name}-server").st_ino

    exited = run_cli("exec", "--name", name, "peer10", "--", "true")
    assert exited.returncode == 1
    assert exited.stderr == (
        f"netns-lab: container {name}-peer10 of node 'peer10' is not running (exited, exit status 0); "
        f"see `docker logs {name}-peer10`\n"
    )

    down = run_cli("down", "--name", name)
    assert down.returncode == 0, down.stderr
    assert down.stdout.startswith(f"lab {name} is down (6 namespaces, ")
    assert down.stdout.endswith(", 3 containers removed)\n")
    assert not Path(f"/proc/{pid}/ns/net").exists()
    assert lab_containers(client, name) == []


def test_up_undoes_its_containers_and_leaves_a_strangers_alone(
    punch_image: tuple[Any, str], lab_name: str, tmp_path: Path
) -> None:
    """A container already named like peer14's, without the lab's labels: starting peer14 fails, ``up`` removes
    the server's and peer10's containers it had started (by label) and leaves the stranger alone."""
    client, image = punch_image
    name = lab_name
    stranger = client.containers.create(image, name=f"{name}-peer14", network_mode="none")
    try:
        up = run_cli("up", "--name", name, "--topology", str(topology_with(image, tmp_path)), timeout=120)
        assert up.returncode == 1
        assert up.stderr.startswith(f"netns-lab: start container {name}-peer14 ({image}): Conflict"), up.stderr
        assert len(up.stderr.splitlines()) == 1
        assert lab_containers(client, name) == []
        assert namespaces_of(name) == []
        assert not naming.state_dir(name).exists()
        stranger.reload()  # still there
    finally:
        stranger.remove(force=True)


def test_up_without_the_image_builds_nothing(punch_image: tuple[Any, str], lab_name: str, tmp_path: Path) -> None:
    image = f"{punch_image[1].split('/')[0]}/absent:latest"
    up = run_cli("up", "--name", lab_name, "--topology", str(topology_with(image, tmp_path)))
    assert up.returncode == 1
    assert up.stderr == (
        f"netns-lab: image {image} is not in the Docker engine; build or pull it first (for punch's own: "
        "`docker compose build server` builds punch-local/punch:latest)\n"
    )
    assert namespaces_of(lab_name) == []
    assert not naming.state_dir(lab_name).exists()
