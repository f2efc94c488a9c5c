"""Bring-up of this checkout against another one, alternately: ``python -m bench.lab_up_ab --base DIR``.

For each ``--peers`` N and each of ``--rounds`` rounds, both checkouts build the same generated lab in turn
(``python -m netns up --peers N``, as bench/lab_scale.py times it: the CLI's wall time), read it back
(``status --json``) and take it down, each with its own interpreter (``DIR/.venv/bin/python``) and its own code
(the checkout is the working directory); who goes first alternates between rounds, so a machine that gets busier
or quieter during the run weighs on both. Prints the medians and this checkout's ratio to the base's, with the
machine's load average before and after (a shared machine: say how busy it was).

Needs root (it builds labs); every lab it starts is taken down, whatever happens.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
VERBS = ("up", "status", "down")


def netns(tree: Path, *args: str) -> float:
    """Run ``python -m netns ARGS`` from checkout ``tree`` with its own interpreter; its wall time in seconds."""
    python = tree / ".venv" / "bin" / "python"
    started = time.monotonic()
    done = subprocess.run([str(python), "-m", "netns", *args], cwd=tree, capture_output=True, text=True, check=False)
    took = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"{tree}: netns {' '.join(args)}: {done.stderr.strip()[-300:]}")
    return took


def one_lab(tree: Path, peers: int, name: str) -> dict[str, float]:
    times = {"up": netns(tree, "up", "--name", name, "--peers", str(peers), "--json")}
    try:
        times["status"] = netns(tree, "status", "--name", name, "--json")
    finally:
        times["down"] = netns(tree, "down", "--name", name)
    return times


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="the other checkout (with its own .venv)")
    parser.add_argument("--peers", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("needs root: it builds labs")
    trees = {"base": args.base.resolve(), "this": HERE}
    tag = "ab" + secrets.token_hex(2)
    print(f"load average before: {load()}", flush=True)
    results: dict[tuple[int, str], list[dict[str, float]]] = {}
    for n in args.peers:
        for round_ in range(args.rounds):
            order = ["base", "this"] if round_ % 2 == 0 else ["this", "base"]
            for side in order:
                name = f"{tag}{side[0]}{round_}"[:8]
                try:
                    times = one_lab(trees[side], n, name)
                except BaseException:
                    subprocess.run([sys.executable, "-m", "netns", "down", "--name", name], cwd=HERE, check=False)
                    raise
                results.setdefault((n, side), []).append(times)
                shown = ", ".join(f"{verb} {times[verb]:.2f} s" for verb in VERBS)
                print(f"N={n} round {round_ + 1} {side}: {shown}", flush=True)
    print(f"load average after: {load()}")
    print()
    print("| N | verb | base median (s) | this median (s) | this / base | base runs | this runs |")
    print("|---|---|---|---|---|---|---|")
    for n in args.peers:
        for verb in VERBS:
            base = [t[verb] for t in results[n, "base"]]
            this = [t[verb] for t in results[n, "this"]]
            ratio = statistics.median(this) / statistics.median(base)
            runs = [" ".join(f"{x:.2f}" for x in side) for side in (base, this)]
            print(
                f"| {n} | {verb} | {statistics.median(base):.2f} | {statistics.median(this):.2f} | {ratio:.2f}x "
                f"| {runs[0]} | {runs[1]} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
