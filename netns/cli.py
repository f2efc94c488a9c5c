"""``python -m netns`` / ``netns-lab``: verbs up, down, status, exec, validate, logdir, matrix, matrix-html,
matrix-merge, impair, readdress.

Exit codes: 0 success, 1 failure, 2 usage error, 130 interrupted (128+N for another signal N).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from netns import naming
from netns.errors import LabError, ShardError, TopologyError
from netns.kernel import containers, namespaces, processes
from netns.lab import impairments, lifecycle, ownership, state
from netns.lab.apply import Interrupted, deferred_signals
from netns.matrix import cells
from netns.rules import impair
from netns.topology import generate, impairment, model

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
MATRIX_COMMAND = "python -m netns matrix"  # what matrix.md says made it, sharded or not
SUMMARY_NODES = 40  # `up` lists at most this many nodes (a generated lab has thousands)


def _lab_name(value: str) -> str:
    try:
        return naming.check_lab_name(value)
    except LabError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _nat_override(value: str) -> tuple[str | None, str]:
    """``PRESET`` (every router) or ``ROUTER=PRESET``."""
    router, _, preset = value.rpartition("=")
    if preset not in model.PRESETS:
        raise argparse.ArgumentTypeError(f"{preset!r} is not a preset; use one of {', '.join(model.PRESETS)}")
    if "=" in value and not naming.NODE_NAME_RE.fullmatch(router):
        raise argparse.ArgumentTypeError(f"{router!r} is not a router name; write ROUTER=PRESET, e.g. nat10={preset}")
    return (router or None), preset


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
    shape = up.add_mutually_exclusive_group()
    shape.add_argument("--topology", type=Path, default=model.DEFAULT_TOPOLOGY, help="topology YAML file")
    shape.add_argument(
        "--peers", type=int, metavar="N", help="instead of a file: N peers, each behind its own NAT, and a server"
    )
    up.add_argument("--firewall", choices=model.FIREWALLS, help="override the firewall of every router")
    up.add_argument(
        "--nat",
        type=_nat_override,
        action="append",
        default=[],
        metavar="[ROUTER=]PRESET",
        help=f"give every router (or ROUTER; repeatable) this RFC 4787 preset: {', '.join(model.PRESETS)}",
    )
    up.add_argument("--capture", type=Path, metavar="DIR", help="keep pcaps of every NAT's WAN in DIR (tcpdump)")
    up.add_argument("--json", action="store_true", help="print the nodes, and the time each kind of step took, as JSON")
    named("down", "delete everything the lab owns (processes first)")
    status = named("status", "show nodes, interfaces, addresses, routes and NAT kinds")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    exe = named("exec", "run a command inside a node's namespace (a container node's: docker exec)")
    exe.add_argument("--detach", action="store_true", help="start in the background, print its PID")
    exe.add_argument("--log", help="output file for --detach (default: LOGDIR/NODE.log)")
    exe.add_argument("node")
    exe.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    validate = verbs.add_parser("validate", help="check a topology file (no root needed)", parents=[common])
    validate.add_argument("file", type=Path)
    named("logdir", "print the lab's state/log directory")
    renumber = named("readdress", "give a node another address on one of its networks (a router's NAT follows)")
    renumber.add_argument("node")
    renumber.add_argument("network", help="the network (interface) whose address changes, e.g. wan14")
    renumber.add_argument("address", help="the new address, in the network's subnet")
    _impair_parsers(up, named)
    _matrix_parser(verbs, common)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser, for tools that read it (tools/docgen writes docs/cli.md from it)."""
    return _parser()


# -- impairments (netns/rules/impair.py): `up --impair` and the `impair` verb ------------------------------------


def _impair_parsers(up: argparse.ArgumentParser, named: Any) -> None:
    up.add_argument(
        "--impair",
        action="append",
        default=[],
        metavar="NETWORK:KEY=VALUE[,...]",
        help="impair a network (repeatable): delay=50ms,jitter=10ms,loss=20%%,duplicate=1%%,rate=1mbit",
    )
    sub = named("impair", "change the impairments of a network of a running lab")
    sub.add_argument("network")
    sub.add_argument("settings", nargs="*", metavar="KEY=VALUE", help="delay=50ms jitter=10ms loss=20%% ...")
    sub.add_argument("--clear", action="store_true", help="remove every impairment of the network")


def _cmd_impair(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.clear == bool(args.settings):
        parser.error("impair needs KEY=VALUE settings or --clear (not both)")
    change = None
    if not args.clear:
        text = f"{args.network}:{','.join(args.settings)}"
        parsed = impairment.parse_override(text)
        if isinstance(parsed, str):
            parser.error(f"impair {' '.join(args.settings)}: {parsed}")
        problems: list[str] = []
        change = impairment.parse(
            parsed[1], f"networks.{args.network}.impair", lambda path, msg: problems.append(f"{path}: {msg}")
        )
        if change is None:
            for problem in problems:
                print(f"netns-lab: {problem}", file=sys.stderr)
            return EXIT_FAILURE
    with deferred_signals():
        info = impairments.set_impairment(args.name, args.network, change)
    print(f"{args.network}: {info.get('summary', 'no impairment')}" if info else f"{args.network}: no impairment")
    return EXIT_OK


def _print_impairments(info: dict[str, Any]) -> None:
    if info.get("impairments"):
        print("impairments (each on every member's egress; a delay applies per direction):")
    for network in info.get("impairments", []):
        print(f"  {network['network']}: {network['summary']}")
        for member in network["members"]:
            parts = []
            for m in member["mechanisms"]:
                how = m["mechanism"]
                if how == impair.NFQUEUE:
                    daemon = f"daemon pid {m['pid']}" if m["pid"] else "daemon DEAD: traffic is dropped"
                    how = f"nfqueue {daemon}, queue {m['queue']}"
                elif not m["present"]:
                    how += " MISSING"
                parts.append(f"{m['impairment']} ({how})")
            where = f"{member['node']}:{member['interface']}"
            print(f"    {where:<18} " + ("; ".join(parts) if parts else "namespace missing"))


def _matrix_parser(verbs: Any, common: argparse.ArgumentParser) -> None:
    sub = verbs.add_parser(
        "matrix",
        help="run a trial command in a lab per NAT preset pair, same NAT, CGNAT and the new networks; write "
        "matrix.md/json",
        parents=[common],
    )
    sub.add_argument(
        "--trial", required=True, help="command run per trial; prints a JSON line (see netns/matrix/runner.py)"
    )
    sub.add_argument("--setup", default="", help="command run once per lab before its trials (e.g. start a server)")
    sub.add_argument("--trials", type=int, default=3, help="trials per cell (default 3)")
    sub.add_argument("--jobs", type=int, default=4, help="labs at a time (default 4)")
    sub.add_argument("--output", type=Path, default=Path("."), metavar="DIR", help="where matrix.md/json go")
    sub.add_argument("--capture", type=Path, metavar="DIR", help="keep pcaps of every NAT's WAN, a subdir per cell")
    sub.add_argument("--firewall", action="append", choices=cells.FIREWALL_KINDS, help="only this kind (repeatable)")
    sub.add_argument("--preset", action="append", choices=cells.PAIR_PRESETS, help="only these presets (repeatable)")
    sub.add_argument("--group", action="append", choices=cells.GROUPS, help="only these cells (repeatable)")
    sub.add_argument(
        "--shard",
        metavar="K/N",
        help="run only shard K of N (1 <= K <= N), a fixed share of the cells, and write shard-K-of-N.json for "
        "matrix-merge instead of matrix.md/json/html",
    )
    page = verbs.add_parser(
        "matrix-html",
        help="write matrix.html (coloured grids) from an existing matrix.json, without running the matrix again",
        parents=[common],
    )
    page.add_argument("json", type=Path, metavar="MATRIX_JSON", help="a matrix.json written by `matrix`")
    page.add_argument("--output", type=Path, metavar="FILE", help="the page (default: matrix.html beside the JSON)")
    joined = verbs.add_parser(
        "matrix-merge",
        help="write one matrix.md/json/html from the shard-K-of-N.json files of `matrix --shard K/N`, as one "
        "unsharded run of the same cells would",
        parents=[common],
    )
    joined.add_argument("shards", nargs="+", type=Path, metavar="SHARD_JSON", help="every shard's file, once")
    joined.add_argument("--output", type=Path, default=Path("."), metavar="DIR", help="where matrix.md/json/html go")


def _cmd_matrix(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from netns.matrix import merge, report, runner, shards  # here: the other verbs need none of them

    shard = shards.Shard.parse(args.shard) if args.shard is not None else None
    if args.trials < 1 or args.jobs < 1:
        parser.error("--trials and --jobs must be at least 1")
    ownership.require_root("matrix")
    whole = merge.Matrix(
        firewalls=tuple(args.firewall or cells.FIREWALL_KINDS),
        presets=tuple(args.preset or cells.PAIR_PRESETS),
        groups=tuple(args.group or cells.GROUPS),
        trials=args.trials,
        setup=args.setup,
        trial=args.trial,
        shards=shard.count if shard else 1,
    )
    chosen = whole.cells()
    mine = shard.share(chosen) if shard else chosen
    commands = runner.Commands(
        trial=runner.parse_command(args.trial),
        setup=runner.parse_command(args.setup),
        trials=args.trials,
        capture=args.capture,
    )
    part = f"shard {shard}: {len(mine)} of {len(chosen)} cells" if shard else f"{len(chosen)} cells"
    print(f"matrix: {part} x {args.trials} trial(s), {args.jobs} lab(s) at a time", file=sys.stderr)
    matrix = runner.Runner(commands, args.jobs, progress=lambda line: print(f"  {line}", file=sys.stderr, flush=True))
    results = matrix.run(mine)
    if shard is None:
        md, js, page = report.write(results, args.output, args.trials, MATRIX_COMMAND)
        print(md.read_text(encoding="utf-8"))
        print(f"wrote {md}, {js} and {page}", file=sys.stderr)
    else:
        path = merge.write(args.output, shard, whole, results, report.measured())
        print(report.markdown(results, args.trials, MATRIX_COMMAND))
        print(f"wrote {path}; `python -m netns matrix-merge` joins it with the other shards' files", file=sys.stderr)
    return EXIT_OK if all(r.succeeded for r in results) else EXIT_FAILURE


def _cmd_matrix_merge(args: argparse.Namespace) -> int:
    from netns.matrix import merge, report  # here: the other verbs need neither

    merged = merge.merge(args.shards)
    md, js, page = report.write(merged.results, args.output, merged.matrix.trials, MATRIX_COMMAND, merged.where)
    print(md.read_text(encoding="utf-8"))
    print(f"wrote {md}, {js} and {page} from {len(args.shards)} shard(s)", file=sys.stderr)
    return EXIT_OK if all(r.succeeded for r in merged.results) else EXIT_FAILURE


def _cmd_matrix_html(args: argparse.Namespace) -> int:
    from netns.matrix import html  # here: the other verbs do not need it

    output = args.output or args.json.with_name("matrix.html")
    html.write(html.read(args.json), output, args.json.name)
    print(f"wrote {output}", file=sys.stderr)
    return EXIT_OK


def _cmd_up(args: argparse.Namespace) -> int:
    topology = generate.topology(args.peers) if args.peers is not None else model.load(args.topology)
    if args.impair:
        topology = topology.with_impairs(args.impair)
    if args.firewall:
        topology = topology.with_firewall(args.firewall)
    for router, preset in args.nat:
        topology = topology.with_nat(preset, None if router is None else [router])
    with deferred_signals():
        summary = lifecycle.up(topology, args.name, args.capture)
    if args.json:
        print(json.dumps(dataclasses.asdict(summary), indent=2))
    else:
        print(
            f"lab {summary.lab} is up ({len(summary.nodes)} nodes, built in {summary.seconds:.2f} s); "
            f"logs in {naming.state_dir(summary.lab)}"
        )
    if args.peers is not None:
        _warn_neighbours(args.peers)
    if not args.json:
        _print_nodes(summary)
    return EXIT_OK


def _print_nodes(summary: lifecycle.Summary) -> None:
    """``up``'s list of the lab's nodes (the first SUMMARY_NODES of a big lab)."""
    shown = summary.nodes if len(summary.nodes) <= SUMMARY_NODES else summary.nodes[:SUMMARY_NODES]
    for node in shown:
        nat = f"  nat {node['nat']}" if node["nat"] else ""
        print(f"  {node['node']:<10} {node['kind']:<7} {' '.join(node['addresses'])}{nat}")
        if node.get("image"):
            print(f"  {'':<10} {'':<7} container {naming.container(summary.lab, node['node'])} ({node['image']})")
        if node.get("behaviour"):
            print(f"  {'':<10} {'':<7} {node['behaviour']}")
    if len(shown) < len(summary.nodes):
        print(f"  ... and {len(summary.nodes) - len(shown)} more nodes (`status --name {summary.lab}` lists them all)")


def _warn_neighbours(peers: int) -> None:
    """Warn when the kernel's ARP table, one for every namespace on the machine, is too small for the lab."""
    need = generate.NEIGHBOURS_PER_PEER * peers
    capacity = namespaces.neighbour_capacity()
    if capacity is not None and need > capacity:
        log.warning(
            "%d peers need about %d ARP entries, but the kernel's table (shared by all namespaces) holds %d: "
            "past that, packets are dropped; raise it with `sysctl -w net.ipv4.neigh.default.gc_thresh3=%d "
            "net.ipv4.neigh.default.gc_thresh2=%d`",
            peers,
            need,
            capacity,
            2 * need,
            need,
        )


def _cmd_down(args: argparse.Namespace) -> int:
    report = lifecycle.down(args.name)
    if report.namespaces:
        count = f"{len(report.namespaces)} namespaces, {report.processes} processes stopped"
        if report.containers:
            count += f", {len(report.containers)} containers removed"
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
        if "container" in node:
            c = node["container"]
            what = c.get("error") or f"{c['name']} {c['id']} {c['status']}" + (f" pid {c['pid']}" if c["pid"] else "")
            print(f"  container ({node['image']}): {what}")
        if "interfaces" not in node:
            print("  missing")
            continue
        for iface in node["interfaces"]:
            print(f"  {iface['name']:<15} {iface['state']:<8} {' '.join(iface['addresses'])}")
        for route in node["routes"]:
            via = f" via {route['via']}" if route["via"] else ""
            print(f"  route {route['dst']}{via} dev {route['dev']}")
        if "port_mapping" in node:
            _print_port_mappings(node["port_mapping"])
    for capture in info.get("captures", []):
        print(f"capture {capture['node']}:{capture['interface']} -> {capture['pcap']} (tcpdump pid {capture['pid']})")
    _print_impairments(info)


def _print_port_mappings(info: dict[str, Any]) -> None:
    """A port-mapping router's mappings, as miniupnpd's lease file has them."""
    if "error" in info:
        print(f"  port mappings: {info['error']}")
        return
    print(f"  port mappings (miniupnpd): {len(info['mappings']) or 'none'}")
    now = time.time()
    for m in info["mappings"]:
        expires = f"expires in {max(0, m['expires'] - now):.0f}s" if m["expires"] else "no expiry"
        print(f"    {m['protocol']} {m['external_port']} -> {m['internal']} ({expires}) {m['description']}")


def _cmd_status(args: argparse.Namespace) -> int:
    info = lifecycle.status(args.name)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_status(info)
    if not info["up"]:
        print(f"lab {args.name!r} is incomplete; run `python -m netns down --name {args.name}`", file=sys.stderr)
        return EXIT_FAILURE
    broken = [n["network"] for n in info.get("impairments", []) if not n["ok"]]
    if broken:
        print(
            f"lab {args.name!r}: impairment of {', '.join(broken)} is not fully in place (see above)", file=sys.stderr
        )
        return EXIT_FAILURE
    return EXIT_OK


def _cmd_exec(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("exec needs a command: exec NODE -- CMD [ARGS...]")
    ns = ownership.node_namespace(args.name, args.node)
    # A container node's command runs with `docker exec`: in the same network namespace, but with the container's
    # own filesystem, user and environment (its programs, not the host's), as the node's own processes run.
    in_container = state.is_container(args.name, args.node)
    if args.detach:
        log_path = args.log or str(naming.state_dir(args.name) / f"{args.node}.log")
        if in_container:
            print(containers.spawn_in(args.name, args.node, command, log_path))
        else:
            print(processes.spawn_in(ns, command, log_path))
        return EXIT_OK
    sys.stdout.flush()
    if in_container:
        containers.exec_in(args.name, args.node, command)
    else:
        processes.exec_in(ns, command)
    return EXIT_FAILURE  # not reached: exec_in replaces this process


def _cmd_validate(args: argparse.Namespace) -> int:
    model.load(args.file)
    print("ok")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # inside the try: a reader that left shows here, not at interpreter exit
        return code
    except BrokenPipeError:  # `status | head`: the reader left; say nothing more (not even at exit)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def _main(argv: Sequence[str] | None) -> int:
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
        if args.verb == "impair":
            return _cmd_impair(args, parser)
        if args.verb == "matrix":
            return _cmd_matrix(args, parser)
        if args.verb == "matrix-html":
            return _cmd_matrix_html(args)
        if args.verb == "matrix-merge":
            return _cmd_matrix_merge(args)
        if args.verb == "readdress":
            with deferred_signals():
                from netns.lab import readdress  # here: the other verbs do not need it

                report = readdress.readdress(args.name, args.node, args.network, args.address)
            print(report.summary())
            return EXIT_OK
        print(naming.state_dir(args.name))
        return EXIT_OK
    except TopologyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_FAILURE
    except ShardError as exc:  # shards that do not make one matrix: the user gave the wrong ones
        print(f"netns-lab: {exc}", file=sys.stderr)
        return EXIT_USAGE
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
