"""Gather every benchmark's report into bench/results.md: `just bench` runs them all, then this.

results.md starts with the machine and the versions of everything measured, then an index (which recipe wrote
which section, and when), then each report in full. A report that is missing is listed as not run, so a
partial run says what it lacks instead of showing stale numbers as new.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from bench.report import machine, markdown_table, write_report


@dataclass(frozen=True, slots=True)
class Section:
    file: str
    recipe: str
    what: str


SECTIONS = (
    Section("punch_success.md", "bench-punch", "punch success per router kind, server near or 2 ms away"),
    Section("punch_floor.md", "bench-floor", "punch time against the physical floor, known delays"),
    Section("predict.md", "bench-predict", "port prediction through a symmetric NAT"),
    Section("matrix.md", "lab-matrix", "connectivity matrix: every NAT preset pair"),
    Section("server.md", "bench-server", "STUN Binding throughput against coturn, per core"),
    Section("registry.md", "bench-registry", "registration capacity: memory and refresh cost"),
    Section("relay.md", "bench-relay", "relay throughput through one server core, against coturn"),
    Section("transport.md", "bench-transport", "QUIC on the punched path: throughput, the first tunnelled byte"),
    Section("flood.md", "bench-flood", "registration flood: memory and service under attack"),
    Section("readdress.md", "bench-readdress", "a NAT flushed vs given a new public address mid-session"),
    Section("scale.md", "bench-scale", "registration storms, Redis's cost and scale-out to two servers"),
    Section("soak.md", "bench-soak", "live peers refreshing through two servers and Redis, an hour"),
    Section("lab_scale.md", "bench-lab-scale", "lab bring-up and concurrent punching at 10-1,000 NAT'd peers"),
    Section("compose_vs_netns.md", "bench-compose", "the same two-peer lab through docker compose and netns"),
)

# (label, command); the first line of the output is the version.
TOOLS = (
    ("iptables", ["iptables", "--version"]),
    ("nftables", ["nft", "--version"]),
    ("coturn", ["turnserver", "--version"]),
    ("conntrack", ["conntrack", "--version"]),
    ("Docker", ["docker", "--version"]),
)


def tool_version(command: list[str]) -> str:
    if shutil.which(command[0]) is None:
        return "not installed"
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unknown ({error})"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


def versions() -> list[tuple[str, str]]:
    found = [("punch", metadata.version("punch")), ("pyroute2", metadata.version("pyroute2"))]
    return found + [(label, tool_version(command)) for label, command in TOOLS]


def measured_on(text: str) -> str:
    """The date a report says it was measured, or ``?``."""
    match = re.search(r"Measured (\d{4}-\d{2}-\d{2})", text)
    return match.group(1) if match else "?"


def demoted(text: str) -> str:
    """A report's Markdown with every heading one level deeper, to sit under results.md's own."""
    return re.sub(r"^(#+) ", r"#\1 ", text, flags=re.MULTILINE)


def gather(directory: Path) -> list[str]:
    lines = [
        "# Benchmark results",
        "",
        f"Gathered {machine()} by `just bench` (or `just bench-gather`, which runs nothing). Each section below",
        "is one benchmark's own report, with the date it was measured; `just <recipe>` runs one again.",
        "",
        *markdown_table(["component", "version"], versions()),
        "",
    ]
    reports = {section.file: directory / section.file for section in SECTIONS}
    index = [
        [
            f"[{section.what}](#{section.file.removesuffix('.md')})",
            f"`just {section.recipe}`",
            measured_on(reports[section.file].read_text()) if reports[section.file].exists() else "not run",
        ]
        for section in SECTIONS
    ]
    lines += [*markdown_table(["benchmark", "recipe", "measured"], index), ""]
    for section in SECTIONS:
        report = reports[section.file]
        lines += [f'<a id="{section.file.removesuffix(".md")}"></a>', ""]
        if report.exists():
            lines += [demoted(report.read_text()).rstrip("\n"), ""]
        else:
            lines += [f"## {section.what}", "", f"Not run: `just {section.recipe}` writes `bench/{section.file}`.", ""]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--directory", type=Path, default=Path("bench"))
    parser.add_argument("--output", type=Path, default=Path("bench/results.md"))
    args = parser.parse_args()
    write_report(args.output, gather(args.directory))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
