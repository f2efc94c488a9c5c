"""`punch probe` and `punch diagram`: a look at our NAT, and a picture of traces."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from punch.diagram import TraceError, draw
from punch.diagram.mermaid import markdown
from punch.errors import PeerError, UsageError
from punch.probe import probe
from punch.rendezvous.server import DEFAULT_PORT
from punch.stun.endpoints import parse_endpoint
from punch.stun.families import wildcard_for
from punch.stun.protocol import format_address


def run_probe(args: argparse.Namespace) -> int:
    server = parse_endpoint(args.server, "--server", DEFAULT_PORT)
    bind = parse_endpoint(args.bind, "--bind", None) if args.bind else wildcard_for(server)
    try:
        found = asyncio.run(probe(server, bind))
    except PeerError as error:
        print(f"punch: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(
            json.dumps(
                {
                    "local": format_address(found.local),
                    "mapped": format_address(found.mapped),
                    "mapping": found.mapping,
                    "filtering": found.filtering,
                    "hairpinning": found.hairpinning,
                    "nat": found.nat,
                }
            )
        )
    else:
        print(f"public endpoint: {format_address(found.mapped)} (local {format_address(found.local)})")
        print(f"mapping:         {found.mapping}")
        print(f"filtering:       {found.filtering}")
        print(f"hairpinning:     {'yes' if found.hairpinning else 'no'}")
        print(f"classic name:    {found.nat}")
    return 0


def run_diagram(args: argparse.Namespace) -> int:
    names: dict[str, str] = {}
    for given in args.name:
        who, equals, label = given.partition("=")
        if not equals or not who or not label:
            raise UsageError(f"--name {given!r}: write WHO=LABEL, e.g. --name 198.51.100.1=core")
        names[who] = label
    try:
        diagram = draw(args.traces, names)
    except TraceError as error:
        print(f"punch: {error}", file=sys.stderr)
        return 1
    text = markdown(diagram) if args.format == "markdown" else diagram
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        args.output.write_text(text, encoding="utf-8")
    except OSError as error:
        print(f"punch: cannot write {args.output}: {error.strerror or error}; choose another --output", file=sys.stderr)
        return 1
    return 0
