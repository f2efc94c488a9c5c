"""``python -m netns readdress``: a router's WAN address changes in a running lab; routes and NAT follow."""

from __future__ import annotations

import json

import pytest

from netns.testing import Lab

pytestmark = pytest.mark.e2e


def wan14(lab: Lab) -> tuple[list[str], list[tuple[str, str | None]]]:
    status = json.loads(lab.cli("status", "--name", lab.name, "--json").stdout)
    nat14 = next(n for n in status["nodes"] if n["node"] == "nat14")
    [iface] = [i for i in nat14["interfaces"] if i["name"] == "wan14"]
    return iface["addresses"], [(r["dst"], r["via"]) for r in nat14["routes"] if r["dev"] == "wan14"]


@pytest.mark.parametrize("lab", [{"firewall": "home"}, {"firewall": "home", "nat": "full-cone"}], indirect=True)
def test_a_router_gets_a_new_wan_address_and_keeps_its_routes(lab: Lab) -> None:
    assert wan14(lab) == (["192.0.2.14/24"], [("default", "192.0.2.1"), ("192.0.2.0/24", None)])
    done = lab.cli("readdress", "--name", lab.name, "nat14", "wan14", "192.0.2.15")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("nat14: wan14 192.0.2.14/24 -> 192.0.2.15/24; routes put back: default via 192.0.2.1")
    assert wan14(lab) == (["192.0.2.15/24"], [("default", "192.0.2.1"), ("192.0.2.0/24", None)])
    rules = lab.exec("nat14", "nft", "list", "ruleset", check=True).stdout
    assert "192.0.2.14" not in rules  # an nftables NAT names its address: rebuilt with the new one
    if "netns_lab" in rules:
        assert 'oifname "wan14" snat to 192.0.2.15\n' in rules


def test_readdress_refuses_an_address_in_use_and_changes_nothing(lab: Lab) -> None:
    done = lab.cli("readdress", "--name", lab.name, "nat14", "wan14", "192.0.2.1")
    assert (done.returncode, done.stderr) == (
        1,
        "netns-lab: readdress: 192.0.2.1 is already used on wan14 by core; give another\n",
    )
    assert wan14(lab)[0] == ["192.0.2.14/24"]
