"""Where the commands' log lines go: stderr at the level asked, and a --trace file."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator

from punch.cli.flags import PEERING
from punch.errors import UsageError
from punch.rendezvous.server import DEFAULT_PORT
from punch.stun import trace
from punch.stun.endpoints import resolve_servers
from punch.stun.protocol import format_address


def configure_logging(args: argparse.Namespace, prefix: str) -> None:
    level = (args.log_level or ("debug" if args.verbose else "warning" if args.quiet else "info")).upper()
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format=f"%(asctime)s.%(msecs)03d {prefix} %(message)s",
        datefmt="%H:%M:%S",
    )
    if getattr(args, "trace", None):  # the trace takes info lines at least; stderr shows what was asked
        for handler in logging.getLogger().handlers:
            handler.setLevel(level)
        punch = logging.getLogger("punch")
        punch.setLevel(min(logging.INFO, punch.getEffectiveLevel()))


@contextlib.contextmanager
def tracing(args: argparse.Namespace) -> Iterator[None]:
    """With ``--trace FILE``: the tracer that writes FILE is current while the command runs (punch.stun.trace), and
    punch's log lines go to it too."""
    path = getattr(args, "trace", None)
    if path is None:
        yield
        return
    if args.command in PEERING:
        server = format_address(resolve_servers(args.server[0], "--server", DEFAULT_PORT)[0])
        who = {"id": args.id, "to": args.to, "server": server}
    else:
        if args.workers > 1:
            raise UsageError("--trace records one process: run the server with --workers 1 to trace it")
        who = {"listen": args.listen, "alternate": args.alternate}
    handler = trace.TraceHandler()
    with contextlib.ExitStack() as stack:
        try:
            out = stack.enter_context(open(path, "w", encoding="utf-8", buffering=1))
        except OSError as error:
            why = error.strerror or error
            raise UsageError(f"--trace {path}: cannot write it ({why}); choose another file") from None
        tracer = trace.Tracer(out)
        tracer.start(
            (f"peer {args.id}" if args.id else "peer") if args.command in PEERING else "server", args.command, **who
        )
        stack.enter_context(trace.tracing(tracer))
        logging.getLogger("punch").addHandler(handler)
        stack.callback(logging.getLogger("punch").removeHandler, handler)
        yield
