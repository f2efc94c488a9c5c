"""The command line's parser: every command, flag and help text."""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import Any

from punch import __version__
from punch.cli.peer_flags import peer_flags, peer_parsers
from punch.rendezvous.relay import DEFAULT_RELAY_BYTES, DEFAULT_RELAY_RATE
from punch.rendezvous.server import DEFAULT_PORT, MAX_LEASE, MAX_PEERS, RATE_LIMIT


@functools.cache
def build_parser() -> argparse.ArgumentParser:
    """The command line's parser, built once per process: a process that imports punch and forks peers which each
    call :func:`main` (a benchmark, a fork server) builds it once for all of them, instead of once in each (forty
    options with their help texts: about 4 ms of CPU in a forked child, a quarter of a whole peer's run)."""
    parser = argparse.ArgumentParser(prog="punch", description="UDP hole punching over STUN.")
    parser.add_argument("--version", action="version", version=f"punch {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="how much to log on stderr (default info; -v = debug, -q = warning)",
    )
    common.add_argument("-v", "--verbose", action="store_true", help="log every datagram (debug)")
    common.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    traced = argparse.ArgumentParser(add_help=False)
    traced.add_argument(
        "--trace",
        metavar="FILE",
        help="write a trace to FILE: a JSON line for each datagram our sockets send or receive (and each ICMP error "
        "they read), and our log lines at info level whatever -q says; `punch diagram` draws the traces of a server "
        "and its peers as a sequence diagram. No keys, tokens or payloads are written",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    server = commands.add_parser("server", parents=[common, traced], help="run the STUN/rendezvous server")
    server.add_argument(
        "--listen",
        default=f"0.0.0.0:{DEFAULT_PORT}",
        metavar="HOST:PORT",
        help=f"address to listen on (default 0.0.0.0:{DEFAULT_PORT})",
    )
    server.add_argument(
        "--alternate",
        metavar="IP:PORT",
        help="second address and port for RFC 5780 NAT behaviour discovery (`punch probe`); needs a specific --listen",
    )
    server.add_argument(
        "--secret-file",
        metavar="PATH",
        help="serve only a closed group: rendezvous requests must be signed with this secret (peers pass the same)",
    )
    server.add_argument(
        "--rate-limit",
        type=float,
        default=RATE_LIMIT,
        metavar="N",
        help=f"requests a second allowed per source IP, in bursts of 2N (default {RATE_LIMIT:g}; 0 = no limit)",
    )
    server.add_argument(
        "--stats-interval",
        type=float,
        default=60.0,
        metavar="S",
        help="log a line of counters (registrations, sessions, drops by reason) every S seconds; 0 = only at exit",
    )
    server.add_argument(
        "--relay-rate",
        type=float,
        default=DEFAULT_RELAY_RATE,
        metavar="BYTES/S",
        help=f"bytes a second each relayed session may use, both directions together (default {DEFAULT_RELAY_RATE}; "
        "0 = no limit); what exceeds it is dropped",
    )
    server.add_argument(
        "--relay-bytes",
        type=int,
        default=DEFAULT_RELAY_BYTES,
        metavar="N",
        help=f"bytes each relayed session may use in all (default {DEFAULT_RELAY_BYTES}; 0 = no limit); "
        "then its requests get 486",
    )
    server.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="processes sharing the port (SO_REUSEPORT): N-1 of them answer Binding with the C fast path and pass "
        "everything else to the first, which holds every registration (default 1; above 1 needs --rate-limit 0)",
    )
    server.add_argument(
        "--max-lease",
        type=float,
        default=MAX_LEASE,
        metavar="S",
        help=f"longest registration lease granted, seconds (default {MAX_LEASE:g})",
    )
    server.add_argument(
        "--max-peers",
        type=int,
        default=MAX_PEERS,
        metavar="N",
        help=f"registrations held at most; new IDs beyond get 508 (default {MAX_PEERS:,}, about 0.35 GiB when full)",
    )
    server.add_argument(
        "--registry",
        metavar="URL",
        help="share registrations, wishes and sessions with other servers in Redis (redis://HOST:PORT/DB; a Redis "
        "Cluster is found by itself): a peer registered at one meets a peer registered at another (needs "
        "punch[redis]; default: in this process alone)",
    )
    server.add_argument(
        "--name",
        metavar="NAME",
        help="this server's name among those sharing --registry: unique, and the same across its restarts (default: "
        "host name:port)",
    )
    server.add_argument(
        "--advertise",
        metavar="HOST[:PORT]",
        help="with --registry: the address peers reach this server at, named to a peer registered at another server "
        "when this one relays its session (default: --listen's, unless that is a wildcard address)",
    )

    probe_cmd = commands.add_parser(
        "probe", parents=[common], help="find how the NAT in front of us behaves (RFC 5780; server needs --alternate)"
    )
    probe_cmd.add_argument("--server", required=True, metavar="HOST[:PORT]", help="a `punch server --alternate ...`")
    probe_cmd.add_argument("--bind", default="0.0.0.0:0", metavar="ADDR:PORT", help="local socket (default 0.0.0.0:0)")
    probe_cmd.add_argument("--json", action="store_true", help="print the result as one JSON object")

    identity = argparse.ArgumentParser(add_help=False)
    identity.add_argument(
        "--identity",
        metavar="PATH",
        help="our key pair, an Ed25519 private key in PEM, mode 0600 (default $XDG_CONFIG_HOME/punch/identity, "
        "else ~/.config/punch/identity, made on first use)",
    )

    id_cmd = commands.add_parser(
        "id",
        parents=[common, identity, traced],
        help="print our public key's fingerprint (making the identity file if it is missing)",
    )
    id_cmd.add_argument("--json", action="store_true", help="print the fingerprint and the file as one JSON object")

    peer = peer_flags()
    peer_parsers(commands, [common, identity, traced, peer])
    diagram_parser(commands, common)
    return parser


def diagram_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    diagram = commands.add_parser(
        "diagram",
        parents=[common],
        help="draw the traces (--trace) of one run as a sequence diagram (Mermaid)",
        description="Merge the traces of a server and its peers by time into a Mermaid sequence diagram: a column "
        "per peer and server (and a peer's fresh socket, port prediction's sockets, the routers low-TTL probes died "
        "at, a NAT that refused a check), an arrow per datagram with its time in ms since the first one (what nobody "
        "received ends in a cross: lost, dead at a router, refused), notes for the steps the peers logged (the path "
        "chosen, a move, the relay). GitHub renders a ```mermaid block of it.",
    )
    diagram.add_argument("traces", nargs="+", type=Path, metavar="TRACE", help="trace files of one run, any order")
    diagram.add_argument("--output", "-o", type=Path, metavar="FILE", help="write the diagram there (default stdout)")
    diagram.add_argument(
        "--format",
        choices=["mermaid", "markdown"],
        default="mermaid",
        help="mermaid: the diagram's text (.mmd, default); markdown: in a ```mermaid block, as GitHub renders it",
    )
    diagram.add_argument(
        "--name",
        action="append",
        default=[],
        metavar="WHO=LABEL",
        help="call a participant LABEL (repeatable): WHO is an IP address of a router or NAT, an IP:PORT the "
        "participant used, or its name as drawn ('peer 10'); participants given one LABEL share a column, e.g. "
        "--name 198.51.100.1=core --name 192.0.2.1=core",
    )
