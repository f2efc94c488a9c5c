"""Facts about trace files (punch.stun.trace), read straight from their lines: the oracle the diagram tests hold
punch.diagram's drawing to."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path


def datagrams_in(paths: Iterable[Path]) -> int:
    """How many datagrams the traces hold: each one sent, and each one received that no traced socket sent (a
    peer's route probes, punch.peer.hops); and the ICMP errors the sockets read."""
    events = [json.loads(line) for path in paths for line in path.read_text(encoding="utf-8").splitlines()]

    def key(event: dict[str, object]) -> tuple[object, object, object]:
        return event.get("method"), event.get("class"), event.get("txid", event.get("digest"))

    sent = {key(e) for e in events if e["event"] == "send"}
    unsent = [e for e in events if e["event"] == "recv" and key(e) not in sent]
    return sum(e["event"] in ("send", "icmp") for e in events) + len(unsent)
