"""``just fuzz``: coverage-guided fuzzing of the codec, the server and the QUIC side of the punched socket with
atheris (libFuzzer), time-bounded.

    python -m tests.fuzz.run TARGET SECONDS      # TARGET: one of TARGETS

The seed corpus is tests/data/stun/*.hex (RFC 5769/8489 vectors and punch's own messages), and for quic_datagram
also the first datagrams the link pair exchanged, written as binary into a scratch corpus directory that also keeps
what the fuzzer finds. A crash is written to
tests/data/fuzz/crash-TARGET-*; copy it there as a regression case (tests/unit/test_fuzz_regressions.py runs
every file there through its target).
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris

SEEDS = Path(__file__).parents[1] / "data" / "stun"
CRASHES = Path(__file__).parents[1] / "data" / "fuzz"


TARGETS = ("stun_decode", "server_datagram", "quic_demux", "quic_datagram")


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] not in TARGETS:
        print(f"usage: python -m tests.fuzz.run {'|'.join(TARGETS)} SECONDS", file=sys.stderr)
        return 2
    name, seconds = sys.argv[1], int(sys.argv[2])
    with atheris.instrument_imports():
        from tests.fuzz import harness
    target: Callable[[bytes], None]
    extra_seeds: list[bytes] = []
    if name == "stun_decode":
        target = harness.stun_decode
    elif name == "server_datagram":
        target = harness.ServerTarget()
    elif name == "quic_demux":
        target = harness.quic_demux
    else:
        links = harness.LinkTarget()
        target, extra_seeds = links, links.seeds
    corpus = Path(tempfile.mkdtemp(prefix=f"punch-fuzz-{name}-"))
    for seed in sorted(SEEDS.glob("*.hex")):
        (corpus / seed.stem).write_bytes(bytes.fromhex(seed.read_text().strip()))
    for n, data in enumerate(extra_seeds):
        (corpus / f"quic-{n:02d}").write_bytes(data)
    CRASHES.mkdir(exist_ok=True)
    args = [sys.argv[0], f"-max_total_time={seconds}", f"-artifact_prefix={CRASHES}/crash-{name}-", str(corpus)]
    print(f"fuzzing {name} for {seconds} s; corpus {corpus}", file=sys.stderr)
    atheris.Setup(args, target)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
