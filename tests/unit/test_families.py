"""IPv4-mapped IPv6 addresses at a dual-stack socket's edge (punch.stun.families, RFC 4291 §2.5.5.2)."""

from __future__ import annotations

import pytest

from punch.stun import Address
from punch.stun.families import family_name, mapped, takes_both, unmapped

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("seen", "meant"),
    [
        (("::ffff:192.0.2.1", 3478), ("192.0.2.1", 3478)),
        (("::ffff:127.0.0.1", 1), ("127.0.0.1", 1)),
        (("2001:db8::1", 3478), ("2001:db8::1", 3478)),  # a real IPv6 address stays
        (("::ffff:c000:201", 9), ("::ffff:c000:201", 9)),  # not as the socket module writes a mapped one: left
        (("192.0.2.1", 5), ("192.0.2.1", 5)),
    ],
)
def test_a_mapped_source_is_spoken_of_by_its_ipv4_address(seen: Address, meant: Address) -> None:
    assert unmapped(seen) == meant


@pytest.mark.parametrize("address", [("192.0.2.1", 3478), ("2001:db8::1", 1), ("::1", 2)])
def test_mapping_for_the_socket_then_back_gives_the_address(address: Address) -> None:
    assert unmapped(mapped(address)) == address
    assert mapped(address)[0].startswith("::ffff:") == ("." in address[0])


def test_only_the_ipv6_wildcard_takes_both_families() -> None:
    assert [takes_both(h) for h in ("::", "0.0.0.0", "::1", "2001:db8::2", "127.0.0.1")] == [
        True, False, False, False, False,
    ]  # fmt: skip


def test_a_path_says_its_family() -> None:
    assert (family_name(("192.0.2.1", 1)), family_name(("2001:db8::1", 1))) == ("ipv4", "ipv6")
