"""The command line's parser is built once per process and shared by every call of main (no root, no sockets)."""

from __future__ import annotations

from punch import cli


def test_the_parser_is_built_once() -> None:
    assert cli.build_parser() is cli.build_parser()


def test_parsing_twice_with_the_shared_parser_leaves_no_trace_of_the_first() -> None:
    parser = cli.build_parser()
    first = parser.parse_args(["peer", "--server", "10.0.0.1", "--id", "a", "--to", "b", "--send", "x"])
    second = parser.parse_args(["peer", "--server", "10.0.0.1", "--id", "c", "--to", "d", "--send", "y"])
    assert (first.id, first.send) == ("a", ["x"])
    assert (second.id, second.send) == ("c", ["y"])
    assert parser.parse_args(["peer", "--server", "10.0.0.1", "--id", "e", "--to", "f"]).send is None
