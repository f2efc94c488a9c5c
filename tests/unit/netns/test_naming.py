"""Naming and ownership rules of the netns lab, and the root-free CLI verbs."""

from __future__ import annotations

from pathlib import Path

import pytest

from netns import cli, naming
from netns.errors import LabError
from netns.topology.model import DEFAULT_TOPOLOGY

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", ["punch", "p", "t0a1b2c", "abcdefgh", "lab2"])
def test_valid_lab_names(name: str) -> None:
    assert naming.check_lab_name(name) == name


@pytest.mark.parametrize("name", ["", "Punch", "punch-2", "2lab", "abcdefghi", "la b", "lab_2"])
def test_invalid_lab_names(name: str) -> None:
    with pytest.raises(LabError) as caught:
        naming.check_lab_name(name)
    assert str(caught.value) == (
        f"lab name {name!r} is invalid; use 1-8 lowercase letters or digits, starting with a letter"
    )


def test_namespace_and_marker() -> None:
    assert naming.namespace("punch", "peer10") == "punch-peer10"
    assert naming.marker("punch") == "netns-lab:punch"
    assert naming.state_dir("punch") == Path("/run/netns-lab/punch")


def test_prefix_ownership_never_confuses_similar_lab_names() -> None:
    assert naming.has_prefix("punch", "punch-peer10")
    assert not naming.has_prefix("punch", "punch2-peer10")
    assert not naming.has_prefix("punch2", "punch-peer10")
    assert not naming.has_prefix("punch", "punch-")
    assert not naming.has_prefix("punch", "punch-a-b")
    assert naming.node_of("punch", "punch-peer10") == "peer10"


def test_bridge_ports_fit_an_ifname_and_never_look_like_a_network() -> None:
    port = naming.bridge_port("abcdefghij", 999)
    assert len(port) <= naming.IFNAME_MAX
    assert not naming.NETWORK_NAME_RE.fullmatch(port)


def test_branch_bridges_and_their_uplinks_fit_an_ifname_and_look_like_no_network_or_port() -> None:
    names = [naming.branch_bridge(999, 1023), *naming.branch_uplink(999, 1023)]
    assert len(set(names)) == 3
    for name in names:
        assert len(name) <= naming.IFNAME_MAX
        assert not naming.NETWORK_NAME_RE.fullmatch(name)
        assert not naming.NODE_NAME_RE.fullmatch(name.split(".")[0])  # a member's port starts with its node


def test_cli_validate_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", str(DEFAULT_TOPOLOGY)]) == 0
    assert capsys.readouterr().out == "ok\n"


def test_cli_validate_prints_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEFAULT_TOPOLOGY.read_text().replace("firewall: home", "firewall: homee").replace("1\n", "2\n", 1))
    assert cli.main(["validate", str(bad)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "bad.yaml: version: 2 is not supported; use `version: 1`",
        "bad.yaml: nodes.nat10.nat.firewall: 'homee' is not one of home, none, udp-blocked",
        "bad.yaml: nodes.nat14.nat.firewall: 'homee' is not one of home, none, udp-blocked",
    ]


def test_cli_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["up", "--name", "bad-name"])
    assert caught.value.code == 2
    assert "lab name 'bad-name' is invalid" in capsys.readouterr().err


def test_cli_logdir(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["logdir", "--name", "lab2"]) == 0
    assert capsys.readouterr().out == "/run/netns-lab/lab2\n"
