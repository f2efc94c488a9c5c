"""The results in README.md and docs/performance.md, read from the benchmarks' own reports (bench/*.md).

Nothing here measures anything and no figure is typed by hand: each one is looked up in a report's tables (or
its summary lines) by row and column, and links to that report. A report that changes shape stops the generator
with the report, the row and the column it could not find.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.gather import SECTIONS, measured_on
from tools.docgen.markdown import table
from tools.docgen.regions import RegionError


@dataclass(frozen=True, slots=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    lines: tuple[str, ...]  # as written in the report


class Report:
    """One bench/*.md: its tables, its text, the date it was measured."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name
        if not path.exists():
            raise RegionError(f"bench/{path.name} is missing; `just bench-gather` lists the recipe that writes it")
        self.text = path.read_text(encoding="utf-8")
        self.measured = measured_on(self.text)
        self.tables = _tables(self.text)

    def find(self, column: str, where: dict[str, str]) -> str:
        """The cell under ``column`` of the one row whose cells match ``where`` (column -> exact text)."""
        for found in self.tables:
            if column not in found.headers or any(k not in found.headers for k in where):
                continue
            for row in found.rows:
                cells = dict(zip(found.headers, row, strict=False))
                if all(cells.get(k) == v for k, v in where.items()):
                    return cells[column]
        raise RegionError(
            f"bench/{self.name}: no row {where} with a column {column!r}; the report changed shape, so "
            "tools/docgen/results.py must follow it"
        )

    def search(self, pattern: str) -> re.Match[str]:
        match = re.search(pattern, self.text, flags=re.MULTILINE)
        if match is None:
            raise RegionError(f"bench/{self.name}: nothing matches {pattern!r}; tools/docgen/results.py must follow")
        return match

    def table_with(self, first_header: str) -> Table:
        for found in self.tables:
            if found.headers and found.headers[0] == first_header:
                return found
        raise RegionError(f"bench/{self.name}: no table whose first column is {first_header!r}")


def _split(line: str) -> tuple[str, ...]:
    return tuple(cell.strip() for cell in line.strip().strip("|").split(" | "))


def _tables(text: str) -> list[Table]:
    found: list[Table] = []
    block: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append(line)
            continue
        if len(block) >= 2 and set(block[1].replace("|", "").strip()) <= {"-", ":", " "}:
            found.append(Table(_split(block[0]), tuple(_split(r) for r in block[2:]), tuple(block)))
        block = []
    return found


def _reports(root: Path) -> dict[str, Report]:
    return {s.file.removesuffix(".md"): Report(root / "bench" / s.file) for s in SECTIONS}


# -- the README's headline table ----------------------------------------------------------------------------


def _punch_success(r: Report) -> str:
    parts = []
    for kind in ("home-router firewall", "bare MASQUERADE"):
        where = {"router kind": kind, "server": "2 ms away", "technique": "default"}
        parts.append(f"{r.find('successes', where)} direct ({kind}), median {r.find('median punch (ms)', where)} ms")
    return "; ".join(parts)


def _floor(r: Report) -> str:
    parts = []
    for firewall, kind in (("home", "home routers"), ("none", "bare routers")):
        match = r.search(
            rf"^- early checks \(default\), firewall {firewall}, all pairs: median ([\d.]+x), p95 ([\d.]+x)"
        )
        parts.append(f"median {match[1]}, p95 {match[2]} the floor ({kind})")
    return "; ".join(parts) + "; goal: 1.2x and 2x"


def _matrix(r: Report) -> str:
    cells = [
        cell for found in r.tables if found.headers[0] == "nat10 \\ nat14" for row in found.rows for cell in row[1:]
    ]
    if not cells:
        raise RegionError("bench/matrix.md: no table of NAT pairs (first column `nat10 \\ nat14`)")
    relayed = [c for c in cells if c.startswith("relay")]
    through = len(cells) - len(relayed)
    return (
        f"{through} of {len(cells)} NAT pairs direct or by port prediction; "
        f"{len(relayed)} (symmetric to symmetric) on the relay, as theory says"
    )


def _predict(r: Report) -> str:
    technique = "prediction: 256 sockets, 2000 checks at 500/s"
    parts = [r.find("successes", {"router firewall": f, "technique": technique}) for f in ("home", "none")]
    hit = r.find("checks to a hit: median / p95", {"router firewall": "home", "technique": technique})
    return f"{parts[0]} (home) and {parts[1]} (bare) direct; median / p95 checks to a hit {hit}"


def _server(r: Report) -> str:
    where = {"server": "punch server (C fast path)"}
    ratio, _, rounds = r.find("vs coturn", where).partition(" ")
    return f"{r.find('replies/s', where)} replies/s on one core: {ratio} coturn's rate {rounds}".rstrip()


def _registry(r: Report) -> str:
    where = {"peers": "1,000,000"}
    memory = f"a million peers in {r.find('a million at this rate (MiB)', where)} MiB"
    core = r.find("one core's share at 50,000/s", {"what": "keepalive"})
    return f"{memory} ({r.find('vs the 1 GiB goal', where)} the 1 GiB goal); their keepalives {core} of one core"


def _relay(r: Report) -> str:
    first = r.find("median (ms)", {"path": "relay"})
    rate = r.find("delivered (pkt/s)", {"path": "relay", "through": "the lab", "payload (bytes)": "100"})
    against = r.search(
        r"^- 100-byte payloads: punch relays ([\d.]+x) \(rounds[^)]*\) coturn's packets/s and Mbit/s, and "
        r"([\d.]+x) \(rounds[^)]*\) its packets per CPU-second; goal: at least ([\d.]+x)"
    )
    return (
        f"first text {first} ms after the introduction; {rate} datagrams/s through one server core; against "
        f"coturn's relay on one core {against[1]} its packets/s, {against[2]} per CPU-second (goal: {against[3]})"
    )


def _transport(r: Report) -> str:
    direct, relay = {"carried by": "punch, direct"}, {"carried by": "punch, relay"}
    return (
        f"direct: a stream at {r.find('stream (Mbit/s)', direct)} Mbit/s ({r.find('stream / library', direct)} "
        f"aioquic's own on loopback; goal 0.8x), datagrams at {r.find('datagrams delivered (Mbit/s)', direct)} "
        f"Mbit/s ({r.find('datagrams / library', direct)}); relayed stream {r.find('stream (Mbit/s)', relay)} Mbit/s; "
        "first tunnelled byte at "
        f"{r.find('goal ratio', {'router firewall': 'home'})} (punch time + one round trip; goal 1.2x)"
    )


def _lab_scale(r: Report) -> str:
    where = {"N": "1000"}
    success = r.search(r"^- Success: (\d+/\d+) pairs direct")[1]
    up, down = r.find("up (s)", where), r.find("down (s)", where)
    return f"1,000 NAT'd peers up in {up} s, down in {down} s; {success} pairs direct"


def _scale(r: Report) -> str:
    alone = {"run": "storm, in-process registry"}
    shared = {"run": "storm, --registry (Redis)"}
    return (
        f"{r.find('registered', alone)} new peers registered on one core in {r.find('seconds', alone)} s; "
        f"{r.find('registrations/s', shared)}/s on one core sharing Redis"
    )


def _flood(r: Report) -> str:
    peers = r.find("answers / result", {"phase": "real peers during flood 1"})
    return f"real peers still punch during a flood of new registrations ({peers})"


def _readdress(r: Report) -> str:
    flushed = r.find("to the ack: median (s)", {"fault": "conntrack -F on both NATs"})
    moved = r.find("to the ack: median (s)", {"fault": "nat14 gets a new public address"})
    return f"session goes on: next text acknowledged {flushed} s after a conntrack flush, {moved} s after a new address"


def _compose(r: Report) -> str:
    where = {"step": "up"}
    return (
        f"up in {r.find('netns lab', where)} against {r.find('docker compose', where)} "
        f"({r.find('compose / netns', where)})"
    )


HEADLINE: tuple[tuple[str, str, Callable[[Report], str]], ...] = (
    ("punch_success", "Punch through real kernel NAT, server 2 ms away", _punch_success),
    ("punch_floor", "Punch time against the physical floor (introduction + one round trip)", _floor),
    ("matrix", "Connectivity matrix: every pair of NAT presets, both router kinds", _matrix),
    ("predict", "Port prediction: symmetric NAT to port-restricted cone", _predict),
    ("relay", "Relay, where no direct path exists", _relay),
    ("transport", "QUIC on the punched path: throughput, first tunnelled byte", _transport),
    ("server", "STUN Binding throughput, against coturn", _server),
    ("registry", "Registration capacity", _registry),
    ("scale", "Registration storms, one server and several sharing Redis", _scale),
    ("flood", "Registration flood", _flood),
    ("readdress", "A NAT flushed or renumbered mid-session", _readdress),
    ("lab_scale", "The lab at scale", _lab_scale),
    ("compose_vs_netns", "The two-peer lab: netns against docker compose", _compose),
)


def _link(root: Path, page: Path, report: Report) -> str:
    target = os.path.relpath(root / "bench" / report.name, page.parent)
    return f"[{report.name}]({target})"


def headline(root: Path, page: Path) -> str:
    reports = _reports(root)
    rows = []
    for name, what, figure in HEADLINE:
        report = reports[name]
        rows.append([what, figure(report), f"{_link(root, page, report)}, {report.measured}"])
    return "\n".join(table(["what", "result", "report, measured"], rows)) + "\n"


# -- docs/performance.md: each report's main tables, as the report has them ----------------------------------

# report -> the first column of each table shown (in the order shown)
SHOWN: dict[str, Sequence[str]] = {
    "punch_success": ("router kind",),
    "punch_floor": ("technique",),
    "predict": ("router firewall",),
    "matrix": ("nat10 \\ nat14", "cell"),
    "server": ("server",),
    "registry": ("peers", "what"),
    "relay": ("path", "relay"),
    "transport": ("carried by", "router firewall"),
    "flood": ("phase",),
    "readdress": ("fault",),
    "lab_scale": ("N", "step"),
    "compose_vs_netns": ("step",),
    "scale": ("run",),
    "soak": ("minute",),
}


def report_tables(root: Path, page: Path, name: str) -> str:
    if name not in SHOWN:
        raise RegionError(f"results:{name}: no such report; one of {', '.join(SHOWN)}")
    report = Report(root / "bench" / f"{name}.md")
    lines: list[str] = []
    for first in SHOWN[name]:
        for found in report.tables:
            if found.headers[0] == first:
                lines += [*found.lines, ""]
    if not lines:
        raise RegionError(f"bench/{report.name}: none of the tables tools/docgen/results.py shows ({SHOWN[name]})")
    summary = [line for line in report.text.splitlines() if line.startswith("- ")]
    if name in ("punch_floor", "lab_scale", "transport"):
        lines += [*summary[: 1 if name == "lab_scale" else None], ""]
    elif name in ("scale", "soak", "relay"):  # the verdicts below the last table (an introduction may have lists)
        text = report.text.splitlines()
        last = max(i for i, line in enumerate(text) if line.startswith("|"))
        lines += [*(line for line in text[last:] if line.startswith("- ")), ""]
    lines.append(f"From {_link(root, page, report)}, measured {report.measured} (`just {_recipe(name)}`).")
    return "\n".join(lines) + "\n"


def _recipe(name: str) -> str:
    (section,) = [s for s in SECTIONS if s.file == f"{name}.md"]
    return section.recipe
