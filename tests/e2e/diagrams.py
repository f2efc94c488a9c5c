"""The sequence diagrams of docs/diagrams/, from real punches through the lab: `just docs-diagrams` (root).

Not a test module: for each common case it brings up a lab of its own, provokes the case as the e2e tests do (the
same helpers, tests/e2e/punch_in_lab.py), runs the server and both peers with ``--trace``, checks that the run
was that case (the peers' --json results), keeps the traces in ``tests/data/traces/CASE/`` (with ``names.json``:
the lab's routers by address, ``netns status``) and draws them (punch.diagram) into ``docs/diagrams/CASE.mmd``.
A run that was not its case is tried again, up to three times; then the command fails and leaves the old files.
``--redraw`` draws the kept traces again without running anything (no root; after a change to punch.diagram):
tests/unit/test_diagram.py checks that the diagrams are what the traces draw.

    python -m tests.e2e.diagrams [--redraw] [CASE ...]

Cases: ready-go, early-checks, move, prediction, reflexive, relay.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netns.testing import Lab, LabFactory
from punch.diagram import draw
from tests.e2e.punch_in_lab import (
    FAR_SERVER,
    LOSE_INTRODUCTIONS,
    SYMMETRIC_VS_CONE,
    finish,
    start_in_order,
    start_peer,
    start_server,
    wait_for_line,
)

ROOT = Path(__file__).resolve().parent.parent.parent
DOCS = ROOT / "docs" / "diagrams"
TRACES = ROOT / "tests" / "data" / "traces"
FILES = ("server.trace", "peer10.trace", "peer14.trace")
TRIES = 3

Results = dict[str, dict[str, Any]]  # each peer's --json result, by ID


@dataclass(frozen=True)
class Case:
    """One picture: a lab (LabFactory arguments), how to run the punch in it, and what its results must show."""

    name: str
    what: str
    lab: dict[str, Any]
    run: Callable[[Lab, Path], Results]
    check: Callable[[Results], str | None]  # why the run is not this case, or None


def _traces(directory: Path) -> dict[str, list[str]]:
    return {me: ["--trace", str(directory / f"peer{me}.trace")] for me in ("10", "14")}


def _server(lab: Lab, directory: Path) -> subprocess.Popen[Any]:
    return start_server(lab, "--trace", str(directory / "server.trace"))


def _stop(server: subprocess.Popen[Any]) -> None:
    """SIGTERM: the server closes its trace and exits (punch.cli)."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
    server.communicate(timeout=10)


def _in_order(*extra: str) -> Callable[[Lab, Path], Results]:
    """peer10 first (the server makes it the opener), then peer14, one text each."""

    def run(lab: Lab, directory: Path) -> Results:
        server = _server(lab, directory)
        try:
            done = start_in_order(lab, server, "10", *extra, own=_traces(directory))
        finally:
            _stop(server)
        return {me: result for me, (_, result, _) in done.items()}

    return run


def _move(lab: Lab, directory: Path) -> Results:
    """As tests/e2e/test_punch_move.py: nat14 loses the introductions until peer10's checks were refused."""
    lab.exec("nat14", "nft", "-f", "-", input=LOSE_INTRODUCTIONS, check=True)
    server = _server(lab, directory)
    own = _traces(directory)
    try:
        peer10 = start_peer(lab, "10", "14", "--early-checks", "--send", "hello from 10", *own["10"])
        wait_for_line(server, r"10 asks for 14: waiting for 14 to register")
        peer14 = start_peer(lab, "14", "10", "--early-checks", "--send", "hello from 14", *own["14"])
        wait_for_line(peer10, r"asked the server to move the other peer: telling 14 to move")
        lab.exec("nat14", "nft", "delete", "table", "inet", "lose_introductions", check=True)
        return {"10": finish(peer10)[1], "14": finish(peer14)[1]}
    finally:
        _stop(server)


def _paths(kind: str, **more: object) -> Callable[[Results], str | None]:
    """Both peers took the ``kind`` path, and each result field in ``more`` has its value in both (a pair: per
    peer, 10's then 14's)."""

    def check(results: Results) -> str | None:
        ten, fourteen = results.get("10", {}), results.get("14", {})
        if (ten.get("path"), fourteen.get("path")) != (kind, kind):
            return f"paths {ten.get('path')} and {fourteen.get('path')}, not {kind}"
        for name, wanted in more.items():
            pair = wanted if isinstance(wanted, tuple) else (wanted, wanted)
            if (ten.get(name), fourteen.get(name)) != pair:
                return f"{name} {ten.get(name)} and {fourteen.get(name)}, not {pair}"
        return None

    return check


CASES = (
    Case(
        "ready-go",
        "Ready/Go next to the server: peer10 opens its NAT with low-TTL probes, says Ready, the server tells peer14 Go",
        {"firewall": "home"},
        _in_order("--no-early-checks"),
        _paths("direct", early=False, move=None),
    ),
    Case(
        "early-checks",
        "early checks, the server 2 ms from the core: both open their NATs and check at once, timed by their round "
        "trips to the server",
        {"firewall": "home", "args": FAR_SERVER},
        _in_order(),
        _paths("direct", early=True, move=None),
    ),
    Case(
        "move",
        "a move after a refused check: nat14 (bare MASQUERADE) lost the introduction, refused peer10's early checks, "
        "and peer14 punched again from a fresh socket",
        {"firewall": "none", "args": FAR_SERVER},
        _move,
        _paths("direct", move=("followed", "moved")),
    ),
    Case(
        "prediction",
        "port prediction: nat10 maps endpoint-dependently (symmetric), nat14 does not: peer10 opens 256 mappings "
        "with low-TTL probes, peer14 sprays checks at random ports until one hits",
        {"topology": SYMMETRIC_VS_CONE, "firewall": "home"},
        _in_order(),
        _paths("predicted"),
    ),
    Case(
        "reflexive",
        "peer-reflexive first: nat10 maps endpoint-dependently (symmetric), nat14 filters by address only (restricted "
        "cone): peer10 checks from its main socket, peer14 answers the port the check came from, nobody predicts",
        {"firewall": "home", "args": ("--nat", "nat10=symmetric", "--nat", "nat14=restricted-cone")},
        _in_order("--no-relay"),
        _paths("direct"),
    ),
    Case(
        "relay",
        "the relay: both NATs symmetric, no port to predict; the texts go through the server",
        {"nat": "symmetric", "firewall": "home"},
        _in_order(),
        _paths("relay"),
    ),
)


def names(lab: Lab) -> dict[str, str]:
    """The lab's routers by address (``punch diagram --name``), from ``netns status``."""
    status = json.loads(lab.cli("status", "--name", lab.name, "--json").stdout)
    return {
        address.split("/")[0]: node["node"]
        for node in status["nodes"]
        if node["kind"] in ("core", "router")
        for interface in node["interfaces"]
        if interface["name"] != "lo"
        for address in interface["addresses"]
    }


def drawing(case: Case, traces: Path = TRACES) -> str:
    """The diagram of ``case`` from its kept traces, headed by what it shows."""
    directory = traces / case.name
    named = json.loads((directory / "names.json").read_text(encoding="utf-8"))
    first, _, rest = draw([directory / name for name in FILES], named).partition("\n")
    return f"{first}\n    %% {case.what}. Regenerate: `just docs-diagrams {case.name}` (root)\n{rest}"


def make(case: Case, traces: Path) -> None:
    """Run ``case`` in a lab of its own until it shows what it should (at most TRIES runs); keep its traces."""
    why = ""
    for attempt in range(1, TRIES + 1):
        labs = LabFactory()
        with tempfile.TemporaryDirectory(prefix="punch-diagram-") as scratch:
            directory = Path(scratch)
            try:
                lab = labs(**case.lab)
                results = case.run(lab, directory)
                why = case.check(results) or ""
                if not why:
                    (directory / "names.json").write_text(json.dumps(names(lab), indent=1) + "\n", encoding="utf-8")
                    shutil.rmtree(traces / case.name, ignore_errors=True)
                    shutil.copytree(directory, traces / case.name)
            finally:
                labs.close()
        if not why:
            return
        print(f"{case.name}: run {attempt} was not the case ({why})", file=sys.stderr)
    raise RuntimeError(f"{case.name}: {TRIES} runs, none was the case; the last: {why}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.diagrams", description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="*", metavar="CASE", help=f"only these ({', '.join(c.name for c in CASES)})")
    parser.add_argument("--redraw", action="store_true", help="draw the kept traces again; run no lab (no root)")
    args = parser.parse_args()
    unknown = set(args.cases) - {c.name for c in CASES}
    if unknown:
        parser.error(f"no case {', '.join(sorted(unknown))}; the cases: {', '.join(c.name for c in CASES)}")
    DOCS.mkdir(parents=True, exist_ok=True)
    for case in CASES:
        if args.cases and case.name not in args.cases:
            continue
        if not args.redraw:
            make(case, TRACES)
        output = DOCS / f"{case.name}.mmd"
        output.write_text(drawing(case), encoding="utf-8")
        print(f"{case.name}: wrote {output.relative_to(ROOT)} from {(TRACES / case.name).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
