"""``just fuzz``: coverage-guided fuzzing of the codec and the server with atheris (libFuzzer), time-bounded.

    python -m tests.fuzz.run TARGET SECONDS      # TARGET: stun_decode or server_datagram

The seed corpus is tests/data/stun/*.hex (RFC 5769/8489 vectors and punch's own messages), written as binary
into a scratch corpus directory that also keeps what the fuzzer finds. A crash is written to
tests/data/fuzz/crash-TARGET-*; copy it there as a regression case (tests/unit/test_fuzz_regressions.py runs
every file there through its target).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

SEEDS = Path(__file__).parents[1] / "data" / "stun"
CRASHES = Path(__file__).parents[1] / "data" / "fuzz"


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] not in ("stun_decode", "server_datagram"):
        print("usage: python -m tests.fuzz.run stun_decode|server_datagram SECONDS", file=sys.stderr)
        return 2
    name, seconds = sys.argv[1], int(sys.argv[2])
    with atheris.instrument_imports():
        from tests.fuzz import harness
    target = harness.stun_decode if name == "stun_decode" else harness.ServerTarget()
    corpus = Path(tempfile.mkdtemp(prefix=f"punch-fuzz-{name}-"))
    for seed in sorted(SEEDS.glob("*.hex")):
        (corpus / seed.stem).write_bytes(bytes.fromhex(seed.read_text().strip()))
    CRASHES.mkdir(exist_ok=True)
    args = [sys.argv[0], f"-max_total_time={seconds}", f"-artifact_prefix={CRASHES}/crash-{name}-", str(corpus)]
    print(f"fuzzing {name} for {seconds} s; corpus {corpus}", file=sys.stderr)
    atheris.Setup(args, target)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
