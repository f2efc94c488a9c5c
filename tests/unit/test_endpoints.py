"""Endpoints as people write them (punch.stun.endpoints): addresses read strictly, a server's name resolved to every
address it has, IPv6 first (the resolver is a stand-in here: no sockets, no DNS)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from punch import cli
from punch.errors import UsageError
from punch.stun.endpoints import parse_endpoint, resolve_servers

pytestmark = pytest.mark.unit


def records(*hosts: str) -> list[tuple[Any, ...]]:
    """What getaddrinfo gives for ``hosts`` (A and AAAA records, in the resolver's order)."""
    return [(socket.AF_INET6 if ":" in h else socket.AF_INET, socket.SOCK_DGRAM, 17, "", (h, 3478)) for h in hosts]


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[tuple[Any, ...]]]:
    names: dict[str, list[tuple[Any, ...]]] = {}

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        if host not in names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return names[host]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return names


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.1", ("203.0.113.1", 3478)),
        ("203.0.113.1:5000", ("203.0.113.1", 5000)),
        ("[2001:db8::1]:5000", ("2001:db8::1", 5000)),
        ("[2001:db8::1]", ("2001:db8::1", 3478)),
    ],
)
def test_an_address_is_itself(text: str, expected: tuple[str, int], resolver: dict[str, Any]) -> None:
    assert parse_endpoint(text, "--server", 3478) == expected
    assert resolve_servers(text, "--server", 3478) == (expected,)


def test_a_name_gives_every_address_ipv6_first(resolver: dict[str, list[tuple[Any, ...]]]) -> None:
    resolver["rendezvous.example"] = records("203.0.113.1", "2001:db8:113::1", "203.0.113.1")
    assert resolve_servers("rendezvous.example:3478", "--server", 3478) == (
        ("2001:db8:113::1", 3478),
        ("203.0.113.1", 3478),
    )


def test_a_name_that_does_not_resolve_is_a_usage_error(resolver: dict[str, Any]) -> None:
    with pytest.raises(UsageError) as error:
        resolve_servers("nowhere", "--server", 3478)
    assert str(error.value) == (
        "--server 'nowhere': cannot resolve 'nowhere' (Name or service not known); give e.g. 203.0.113.1:3478"
    )
    with pytest.raises(UsageError) as bad_port:
        resolve_servers("nowhere:http", "--server", 3478)
    assert str(bad_port.value) == "--server 'nowhere:http': port must be a number from 0 to 65535"
    with pytest.raises(UsageError) as bracketed:  # brackets hold an IPv6 address, not a name
        resolve_servers("[nowhere]:3478", "--server", 3478)
    assert (
        str(bracketed.value) == "--server '[nowhere]:3478': 'nowhere' is not an IP address; give e.g. 203.0.113.1:3478"
    )


def test_a_peer_given_a_name_registers_by_ipv6_and_knows_the_ipv4_address_too(
    resolver: dict[str, list[tuple[Any, ...]]],
) -> None:
    resolver["rendezvous.example"] = records("203.0.113.1", "2001:db8:113::1")
    args = cli.build_parser().parse_args(["peer", "--server", "rendezvous.example", "--id", "a", "--to", "b"])
    config = cli.peer_config(args)
    assert (config.server, config.servers) == (("2001:db8:113::1", 3478), (("203.0.113.1", 3478),))
    assert config.local == ("::", 0)
