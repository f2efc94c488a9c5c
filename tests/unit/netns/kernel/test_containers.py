"""Container nodes (``image:``, ``command:``, ``env:``): the model's keys, the plan and its undo, and the errors
when Docker is missing. No root, no engine."""

from __future__ import annotations

import copy
import importlib
from pathlib import Path
from typing import Any

import pytest

from netns.errors import LabError, TopologyError
from netns.kernel import containers
from netns.lab import apply, lifecycle, plan
from netns.topology import model

pytestmark = pytest.mark.unit

CONTAINERS = Path(__file__).resolve().parents[4] / "netns" / "topologies" / "containers.yaml"
IMAGE = "punch-local/punch:latest"

GOOD: dict[str, Any] = {
    "version": 1,
    "networks": {"wan": {"subnet": "198.51.100.0/24"}, "lan": {"subnet": "10.0.0.0/24"}},
    "nodes": {
        "core": {"kind": "core", "interfaces": {"wan": "198.51.100.1"}},
        "server": {"kind": "server", "interfaces": {"wan": "198.51.100.3"}, "gateway": "198.51.100.1"},
        "nat": {
            "kind": "router",
            "interfaces": {"wan": "198.51.100.2", "lan": "10.0.0.1"},
            "gateway": "198.51.100.1",
            "nat": {"type": "masquerade", "wan": "wan"},
        },
        "peer": {
            "kind": "peer",
            "interfaces": {"lan": "10.0.0.2"},
            "gateway": "10.0.0.1",
            "image": IMAGE,
            "command": ["peer", "--id", "10"],
            "env": {"MODE": "test"},
        },
    },
}


def with_peer(**keys: Any) -> dict[str, Any]:
    """GOOD with the peer's container keys replaced (a value of None removes the key)."""
    data = copy.deepcopy(GOOD)
    peer = data["nodes"]["peer"]
    for key, value in keys.items():
        peer.pop(key, None)
        if value is not None:
            peer[key] = value
    return data


def problems(data: Any) -> list[str]:
    with pytest.raises(TopologyError) as caught:
        model.parse(data, "t.yaml")
    return caught.value.problems


def test_container_keys_parse() -> None:
    peer = model.parse(GOOD, "t.yaml").node("peer")
    assert peer.container == model.Container(IMAGE, ("peer", "--id", "10"), (("MODE", "test"),))


def test_command_as_a_string_is_split_like_a_shell() -> None:
    peer = model.parse(with_peer(command="peer --send 'hello there'"), "t.yaml").node("peer")
    assert peer.container is not None
    assert peer.container.command == ("peer", "--send", "hello there")


def test_image_alone_keeps_the_images_command_and_environment() -> None:
    peer = model.parse(with_peer(command=None, env=None), "t.yaml").node("peer")
    assert peer.container == model.Container(IMAGE)


def test_a_node_without_image_is_a_plain_namespace() -> None:
    assert model.parse(with_peer(image=None, command=None, env=None)).node("peer").container is None


@pytest.mark.parametrize(
    "image", ["ubuntu", "local/debian-py", "registry.example:5000/a/b:v1.2", "a@sha256:" + "0" * 64]
)
def test_image_references_that_are_accepted(image: str) -> None:
    node = model.parse(with_peer(image=image)).node("peer")
    assert node.container is not None
    assert node.container.image == image


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (
            {"image": "Punch:latest"},
            "t.yaml: nodes.peer.image: 'Punch:latest' is not a Docker image reference; write it like "
            "punch-local/punch:latest (lowercase name)",
        ),
        (
            {"image": ""},
            "t.yaml: nodes.peer.image: '' is not a Docker image reference; write it like punch-local/punch:latest "
            "(lowercase name)",
        ),
        (
            {"image": 3},
            "t.yaml: nodes.peer.image: 3 is not a Docker image reference; write it like punch-local/punch:latest "
            "(lowercase name)",
        ),
        (
            {"command": ["peer", "--id", 10]},
            "t.yaml: nodes.peer.command[2]: 10 is not a string; quote it",
        ),
        (
            {"command": []},
            "t.yaml: nodes.peer.command: is empty; give the command's words, or remove command to run the image's own",
        ),
        (
            {"command": "peer --send 'oops"},
            't.yaml: nodes.peer.command: cannot split "peer --send \'oops" into words (No closing quotation); fix '
            "the quoting or write a list",
        ),
        (
            {"command": {"peer": 1}},
            "t.yaml: nodes.peer.command: must be a list of strings or a string, not dict",
        ),
        (
            {"env": {"PUNCH_ID": 10}},
            "t.yaml: nodes.peer.env.PUNCH_ID: 10 is not a string; quote it",
        ),
        (
            {"env": {"1X": "a"}},
            "t.yaml: nodes.peer.env.1X: invalid variable name; use letters, digits and _, not starting with a digit",
        ),
        (
            {"env": ["A=1"]},
            "t.yaml: nodes.peer.env: must be a mapping of variable name to string, not list",
        ),
        (
            {"image": None},
            "t.yaml: nodes.peer.command: command is only for a container node; add `image:` or remove command",
        ),
    ],
    ids=[
        "uppercase-image",
        "empty-image",
        "image-not-a-string",
        "command-item-not-a-string",
        "empty-command",
        "unbalanced-quote",
        "command-mapping",
        "env-value-not-a-string",
        "env-bad-name",
        "env-not-a-mapping",
        "command-without-image",
    ],
)
def test_container_key_errors(keys: dict[str, Any], expected: str) -> None:
    assert problems(with_peer(**keys))[0] == expected


def test_command_and_env_without_image() -> None:
    assert problems(with_peer(image=None, command=["x", 1], env={"A": 1})) == [
        "t.yaml: nodes.peer.command: command is only for a container node; add `image:` or remove command",
        "t.yaml: nodes.peer.env: env is only for a container node; add `image:` or remove env",
    ]


def test_routers_and_cores_cannot_be_containers() -> None:
    data = copy.deepcopy(GOOD)
    data["nodes"]["nat"]["image"] = IMAGE
    data["nodes"]["core"]["image"] = IMAGE
    assert problems(data) == [
        "t.yaml: nodes.core.image: a core forwards in a namespace of the lab's own; only server, peer, host nodes "
        "can be containers, so remove image",
        "t.yaml: nodes.nat.image: a router forwards in a namespace of the lab's own; only server, peer, host nodes "
        "can be containers, so remove image",
    ]


def test_overrides_keep_the_container() -> None:
    topology = model.parse(GOOD).with_firewall("none").with_nat("symmetric")
    assert topology.node("peer").container == model.parse(GOOD).node("peer").container


def test_packaged_containers_topology() -> None:
    topology = model.load(CONTAINERS)
    assert [n.name for n in topology.nodes if n.container] == ["server", "peer10", "peer14"]
    assert {n.container.image for n in topology.nodes if n.container} == {IMAGE}
    server, peer10 = topology.node("server"), topology.node("peer10")
    assert server.container == model.Container(IMAGE)  # the image's own command: punch server
    assert peer10.container is not None
    assert peer10.container.command is not None
    assert peer10.container.command[:7] == ("peer", "--server", "203.0.113.1:3478", "--id", "10", "--to", "14")
    assert [n.name for n in topology.nodes if n.nat] == ["nat10", "nat14"]  # the routers stay namespaces


def test_plan_starts_containers_after_the_plain_namespaces_and_wires_them_last() -> None:
    steps = plan.plan(model.load(CONTAINERS), "t")
    described = [s.describe() for s in steps]
    assert described[:15] == [
        "create namespace t-core",
        "mark t-core as netns-lab:t",
        "sysctl t-core: net.ipv6.conf.all.disable_ipv6=1",
        "create namespace t-nat10",
        "mark t-nat10 as netns-lab:t",
        "sysctl t-nat10: net.ipv6.conf.all.disable_ipv6=1",
        "create namespace t-nat14",
        "mark t-nat14 as netns-lab:t",
        "sysctl t-nat14: net.ipv6.conf.all.disable_ipv6=1",
        f"container t-server ({IMAGE}) as namespace t-server",
        "mark t-server as netns-lab:t",
        f"container t-peer10 ({IMAGE}) as namespace t-peer10",
        "mark t-peer10 as netns-lab:t",
        f"container t-peer14 ({IMAGE}) as namespace t-peer14",
        "mark t-peer14 as netns-lab:t",
    ]
    # A container's program runs from its start, so its links come up (and get routes) only after the NAT rules.
    assert described[-6:] == [
        "link up t-server:net-server",
        "link up t-peer10:lan10",
        "link up t-peer14:lan14",
        "route t-server: 0.0.0.0/0 via 203.0.113.254",
        "route t-peer10: 0.0.0.0/0 via 10.0.10.1",
        "route t-peer14: 0.0.0.0/0 via 10.0.14.1",
    ]
    assert described.index("nat t-nat14: masquerade/home on wan14") < described.index("link up t-server:net-server")
    start = steps[11]
    assert start == plan.StartContainer(
        "t-peer10",
        "t",
        "peer10",
        IMAGE,
        (
            "peer",
            *("--server", "203.0.113.1:3478", "--id", "10", "--to", "14"),
            *("--send", "hello from peer10", "--send", "peer10 says bye", "--json"),
        ),
    )
    assert plan.inverse(start) == plan.RemoveContainer("t-peer10", "t", "peer10")


def test_plan_of_a_topology_without_images_has_no_container_steps() -> None:
    steps = plan.plan(model.parse(with_peer(image=None, command=None, env=None)), "t")
    assert not [s for s in steps if isinstance(s, plan.StartContainer | plan.RemoveContainer)]


def test_up_undoes_a_started_container_when_a_later_step_fails() -> None:
    steps = plan.plan(model.parse(GOOD), "t")
    done: list[str] = []

    def execute(step: plan.Step) -> None:
        if isinstance(step, plan.CreateVeth):
            raise RuntimeError("boom")
        done.append(step.describe())

    with pytest.raises(RuntimeError, match="boom"):
        apply.apply(steps, execute)
    assert done[-4:] == [
        "remove container and namespace t-peer",
        "delete namespace t-nat",
        "delete namespace t-server",
        "delete namespace t-core",
    ]


def hide_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import docker`` (as netns/kernel/containers.py does it) fail as if the SDK were not installed."""
    real = importlib.import_module

    def without_docker(name: str, package: str | None = None) -> Any:
        if name == "docker":
            raise ImportError("No module named 'docker'")
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", without_docker)


def test_no_sdk_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_the_sdk(monkeypatch)
    with pytest.raises(LabError) as caught:
        containers.check_images([IMAGE])
    assert str(caught.value) == (
        "container nodes need the Docker SDK for Python; install it: pip install docker==7.2.0 (requirements.txt)"
    )


def test_no_engine_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("docker.client", reason="the Docker SDK for Python is not installed")
    socket = tmp_path / "no-engine.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{socket}")
    with pytest.raises(LabError) as caught:
        containers.check_images([IMAGE])
    assert str(caught.value) == (
        f"container nodes need a Docker engine, and none answers at unix://{socket}; install and start an engine "
        "(apt-get install docker.io; then `systemctl start docker` or `dockerd &`)"
    )


def test_down_of_a_lab_without_containers_needs_no_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_the_sdk(monkeypatch)
    assert lifecycle._remove_containers("tnolab0") == []  # no state, no SDK: nothing to remove, no error
