"""The command line's parser is built once per process and shared by every call of main (no root, no sockets)."""

from __future__ import annotations

import dataclasses
import inspect

from punch import cli
from punch.peer.config import PeerConfig
from punch.rendezvous.server import DEFAULT_PORT, serve


def test_the_parser_is_built_once() -> None:
    assert cli.build_parser() is cli.build_parser()


def test_parsing_twice_with_the_shared_parser_leaves_no_trace_of_the_first() -> None:
    parser = cli.build_parser()
    first = parser.parse_args(["peer", "--server", "10.0.0.1", "--id", "a", "--to", "b", "--send", "x"])
    second = parser.parse_args(["peer", "--server", "10.0.0.1", "--id", "c", "--to", "d", "--send", "y"])
    assert (first.id, first.send) == ("a", ["x"])
    assert (second.id, second.send) == ("c", ["y"])
    assert parser.parse_args(["peer", "--server", "10.0.0.1", "--id", "e", "--to", "f"]).send is None


def test_a_peer_without_flags_gets_the_librarys_own_configuration() -> None:
    args = cli.build_parser().parse_args(["peer", "--server", "10.0.0.1", "--id", "a", "--to", "b"])
    config = cli.peer_config(args)  # (with the identity and known peers of the user: here, of the test run)
    assert config.identity is not None
    assert config.known_peers is not None
    without_files = dataclasses.replace(config, identity=None, known_peers=None)
    assert without_files == PeerConfig(server=("10.0.0.1", DEFAULT_PORT), peer_id="a", target="b")


def test_a_peer_binds_the_wildcard_of_its_servers_family_unless_told() -> None:
    def local(*flags: str) -> tuple[str, int]:
        args = cli.build_parser().parse_args(["peer", *flags, "--id", "a", "--to", "b"])
        return cli.peer_config(args).local

    assert local("--server", "[2001:db8::1]:3478") == ("::", 0)  # IPv6, and IPv4 with it (punch.stun.families)
    assert local("--server", "203.0.113.1") == ("0.0.0.0", 0)
    assert local("--server", "203.0.113.1", "--server", "[2001:db8::1]") == ("::", 0)  # any IPv6 server
    assert local("--server", "[2001:db8::1]", "--bind", "[2001:db8:10::2]:5000") == ("2001:db8:10::2", 5000)


def test_a_server_without_flags_gets_the_librarys_own_limits() -> None:
    args = cli.build_parser().parse_args(["server"])
    defaults = inspect.signature(serve).parameters
    assert args.max_lease == defaults["max_lease"].default
    assert args.rate_limit == defaults["rate_limit"].default
    assert args.max_peers == defaults["max_peers"].default
