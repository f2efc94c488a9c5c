"""``python -m netns`` / ``netns-lab``: verbs up, down, status, exec, validate, logdir.

Exit codes: 0 success, 1 failure, 2 usage error, 130 interrupted (128+N for another signal N).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from netns import ipr, lifecycle, model, naming
from netns.apply import Interrupted, deferred_signals
from netns.errors import LabError, TopologyError

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _lab_name(value: str) -> str:
    try:
        return naming.check_lab_name(value)
    except LabError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _parser() -> argparse.ArgumentParser:
    # -v/-q are accepted before and after the verb; SUPPRESS keeps a verb's parser from resetting them.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more output")
    common.add_argument("-q", "--quiet", action="count", default=argparse.SUPPRESS, help="less output")
    parser = argparse.ArgumentParser(
        prog="netns-lab", description="Network-namespace lab built from a YAML topology.", parents=[common]
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def named(name: str, help_: str) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, help=help_, parents=[common])
        sub.add_argument("--name", type=_lab_name, default=naming.DEFAULT_LAB, help="lab name (default: punch)")
        return sub

    up = named("up", "create the lab's namespaces, links, routes and NAT")
    up.add_argument("--topology", type=Path, default=lifecycle.DEFAULT_TOPOLOGY, help="topology YAML file")
    up.add_argument("--firewall", choices=model.FIREWALLS, help="override the firewall of every router")
    up.add_argument(
        "--nat", choices=tuple(model.PRESETS), help="give every router this RFC 4787 preset (mapping and filtering)"
    )
    named("down", "delete everything the lab owns (processes first)")
    status = named("status", "show nodes, interfaces, addresses, routes and NAT kinds")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    exe = named("exec", "run a command inside a node's namespace")
    exe.add_argument("--detach", action="store_true", help="start in the background, print its PID")
    exe.add_argument("--log", help="output file for --detach (default: LOGDIR/NODE.log)")
    exe.add_argument("node")
    exe.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    validate = verbs.add_parser("validate", help="check a topology file (no root needed)", parents=[common])
    validate.add_argument("file", type=Path)
    named("logdir", "print the lab's state/log directory")
    return parser


def _cmd_up(args: argparse.Namespace) -> int:
    topology = model.load(args.topology)
    if args.firewall:
        topology = topology.with_firewall(args.firewall)
    if args.nat:
        topology = topology.with_nat(args.nat)
    with deferred_signals():
        summary = lifecycle.up(topology, args.name)
    print(f"lab {summary.lab} is up ({len(summary.nodes)} nodes); logs in {naming.state_dir(summary.lab)}")
    for node in summary.nodes:
        nat = f"  nat {node['nat']}" if node["nat"] else ""
        print(f"  {node['node']:<10} {node['kind']:<7} {' '.join(node['addresses'])}{nat}")
        if node.get("behaviour"):
            print(f"  {'':<10} {'':<7} {node['behaviour']}")
    return EXIT_OK


def _cmd_down(args: argparse.Namespace) -> int:
    report = lifecycle.down(args.name)
    if report.namespaces:
        count = f"{len(report.namespaces)} namespaces, {report.processes} processes stopped"
        print(f"lab {report.lab} is down ({count})")
    else:
        print(f"lab {report.lab} is down (nothing was left)")
    return EXIT_OK


def _print_status(info: dict[str, Any]) -> None:
    print(f"lab {info['name']} ({info['topology']})" + ("" if info["up"] else " INCOMPLETE"))
    for node in info["nodes"]:
        nat = f" nat {node['nat']}" if node["nat"] else ""
        print(f"{node['node']} [{node['kind']}] {node['namespace']}{nat}")
        if node.get("behaviour"):
            print(f"  {node['behaviour']['summary']}")
        if "interfaces" not in node:
            print("  missing")
            continue
        for iface in node["interfaces"]:
            print(f"  {iface['name']:<15} {iface['state']:<8} {' '.join(iface['addresses'])}")
        for route in node["routes"]:
            via = f" via {route['via']}" if route["via"] else ""
            print(f"  route {route['dst']}{via} dev {route['dev']}")


def _cmd_status(args: argparse.Namespace) -> int:
    info = lifecycle.status(args.name)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_status(info)
    if not info["up"]:
        print(f"lab {args.name!r} is incomplete; run `python -m netns down --name {args.name}`", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _cmd_exec(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("exec needs a command: exec NODE -- CMD [ARGS...]")
    ns = lifecycle.node_namespace(args.name, args.node)
    if args.detach:
        log_path = args.log or str(naming.state_dir(args.name) / f"{args.node}.log")
        print(ipr.spawn_in(ns, command, log_path))
        return EXIT_OK
    sys.stdout.flush()
    ipr.exec_in(ns, command)
    return EXIT_FAILURE  # not reached: exec_in replaces this process


def _cmd_validate(args: argparse.Namespace) -> int:
    model.load(args.file)
    print("ok")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    verbose, quiet = getattr(args, "verbose", 0), getattr(args, "quiet", 0)
    level = logging.WARNING - 10 * verbose + 10 * quiet
    logging.basicConfig(level=max(logging.DEBUG, level), format="%(levelname)s %(name)s: %(message)s")
    if verbose < 3:  # pyroute2's own debug output only at -vvv
        logging.getLogger("pyroute2").setLevel(max(logging.INFO, level))
    try:
        if args.verb == "up":
            return _cmd_up(args)
        if args.verb == "down":
            return _cmd_down(args)
        if args.verb == "status":
            return _cmd_status(args)
        if args.verb == "exec":
            return _cmd_exec(args, parser)
        if args.verb == "validate":
            return _cmd_validate(args)
        print(naming.state_dir(args.name))
        return EXIT_OK
    except TopologyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_FAILURE
    except LabError as exc:
        print(f"netns-lab: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except Interrupted as exc:
        name = "" if exc.signum == signal.SIGINT else f" by {signal.Signals(exc.signum).name}"
        print(f"netns-lab: interrupted{name}", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("netns-lab: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
