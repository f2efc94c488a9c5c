"""`punch server`, `punch peer`, `punch send`, `punch receive`, `punch id`, `punch probe` and `punch diagram`: the
command line. The only place that configures logging or prints.

Exit codes: 0 success, 1 failure (one-line reason on stderr), 2 usage error, 130 interrupted.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence

from punch.cli.flags import PEERING
from punch.cli.logs import configure_logging, tracing
from punch.cli.parser import build_parser
from punch.cli.peer import peer_config, run_id, run_peer, run_receive, run_send
from punch.cli.server import run_server
from punch.cli.tools import run_diagram, run_probe
from punch.errors import UsageError
from punch.rendezvous.streams import ListenFailed
from punch.stun.protocol import format_address

__all__ = ["build_parser", "main", "peer_config"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    peering = args.command in PEERING
    configure_logging(args, (f"peer {args.id}:" if args.id else "peer:") if peering else args.command)
    try:
        if args.command == "diagram":
            return run_diagram(args)
        with tracing(args):
            if args.command == "server":
                return run_server(args)
            if args.command == "id":
                return run_id(args)
            if args.command == "probe":
                return run_probe(args)
            if args.command == "send":
                return run_send(args)
            if args.command == "receive":
                return run_receive(args)
            return run_peer(args)
    except UsageError as error:
        parser.exit(2, f"punch: {error}\n")
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            print("punch: interrupted", file=sys.stderr)
        return 130
    except OSError as error:  # binding the socket failed
        where = args.listen if args.command == "server" else args.bind or "the default socket"
        flag = "--listen" if args.command == "server" else "--bind"
        if isinstance(error, ListenFailed):  # a TCP or TLS listener's
            where, flag = format_address(error.address), error.flag
        print(f"punch: cannot use {where}: {error.strerror or error}; choose another {flag}", file=sys.stderr)
        return 1
