"""``readdress``'s checks of the new address (no root: the kernel part runs in tests/e2e)."""

from __future__ import annotations

import pytest

from netns.errors import LabError
from netns.lab.readdress import Report, check_new_address

pytestmark = pytest.mark.unit

USED = {"192.0.2.1": "core"}


def test_a_free_host_address_of_the_subnet_is_taken() -> None:
    assert check_new_address("wan14", "192.0.2.14", 24, "192.0.2.15", USED) == "192.0.2.15"


@pytest.mark.parametrize(
    ("new", "message"),
    [
        ("192.0.2", "readdress: '192.0.2' is not an IPv4 address; write it like 192.0.2.15"),
        (
            "198.51.100.7",
            "readdress: 198.51.100.7 is not a host address of wan14's subnet 192.0.2.0/24; give one in it",
        ),
        ("192.0.2.255", "readdress: 192.0.2.255 is not a host address of wan14's subnet 192.0.2.0/24; give one in it"),
        ("192.0.2.14", "readdress: wan14 already has 192.0.2.14; give another address"),
        ("192.0.2.1", "readdress: 192.0.2.1 is already used on wan14 by core; give another"),
    ],
)
def test_a_bad_new_address_is_refused_with_the_fix(new: str, message: str) -> None:
    with pytest.raises(LabError) as refused:
        check_new_address("wan14", "192.0.2.14", 24, new, USED)
    assert str(refused.value) == message


def test_the_report_names_the_routes_put_back_and_how_the_nat_followed() -> None:
    report = Report("nat14", "wan14", "192.0.2.14/24", "192.0.2.15/24", [("0.0.0.0/0", "192.0.2.1")], "masquerade")
    assert report.summary() == (
        "nat14: wan14 192.0.2.14/24 -> 192.0.2.15/24; routes put back: default via 192.0.2.1; NAT: masquerade"
    )
