"""The load both relays get in bench/relay.py: one sender's loop, one receiver's count.

The sender sends a batch of ready-made datagrams round and round for a fixed time (punch's signed Relay
indications, or coturn's ChannelData: the same loop, so the same offered load); the receiver counts what reaches
its socket, and asks the kernel how many it dropped because it read too slowly.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def blast(sock: socket.socket, target: tuple[str, int], payload: int, batch: list[bytes], seconds: float) -> None:
    """Send ``batch`` to ``target`` round and round, as fast as one Python sender can, for ``seconds``; print what
    was sent (one JSON line), then pause so the receiver tells the sizes apart. The same loop loads both relays."""
    sent, started = 0, time.monotonic()
    while time.monotonic() - started < seconds:
        for data in batch:
            sock.sendto(data, target)
        sent += len(batch)
    print(json.dumps({"payload": payload, "size": len(batch[0]), "sent": sent, "seconds": seconds}), flush=True)
    time.sleep(2.0)


def count_bursts(sock: socket.socket, bursts: int) -> None:
    """Count the datagrams of ``bursts`` bursts (a second of silence ends one) and print one JSON line each: how
    many were read, how many the kernel dropped because the socket's buffer was full (the receiver shares its core
    with the sender, so it may read slower than the server delivers), and the time from the first to the last."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    inode = os.fstat(sock.fileno()).st_ino
    dropped_before = socket_drops(Path("/proc/net/udp").read_text(), inode)
    buffer = bytearray(65535)
    for _ in range(bursts):
        sock.settimeout(20.0)  # until the burst starts; then a second of silence ends it
        count, first, last = 0, 0.0, 0.0
        while True:
            try:
                sock.recv_into(buffer)
            except TimeoutError:
                break
            last = time.monotonic()
            first = first or last
            count += 1
            sock.settimeout(1.0)
        dropped = socket_drops(Path("/proc/net/udp").read_text(), inode)
        print(json.dumps({"received": count, "dropped": dropped - dropped_before, "seconds": last - first}), flush=True)
        dropped_before = dropped


def socket_drops(table: str, inode: int) -> int:
    """The ``drops`` counter of the socket with ``inode`` in /proc/net/udp's text (its 13th column): datagrams
    the kernel had for it and threw away, mostly because its receive buffer was full."""
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 13 and fields[9] == str(inode):
            return int(fields[12])
    raise ValueError(f"/proc/net/udp: no socket with inode {inode}")


def cpu_ticks(stat: str) -> int:
    """User plus system time, in clock ticks, from the text of /proc/PID/stat (fields 14 and 15, counted after the
    command name, which may hold spaces and parentheses): the whole process, all its threads."""
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def cpu_seconds(pid: int) -> float:
    """The CPU time process ``pid`` has used so far."""
    return cpu_ticks(Path(f"/proc/{pid}/stat").read_text()) / os.sysconf("SC_CLK_TCK")


def with_cpu(
    server: int, measure: Callable[[list[int]], dict[int, dict[str, float]]], payloads: list[int]
) -> dict[int, dict[str, float]]:
    """``measure`` one payload size at a time, adding to each size's counts the CPU time the ``server`` process
    used meanwhile (``cpu``, seconds)."""
    found = {}
    for payload in payloads:
        before = cpu_seconds(server)
        load = measure([payload])
        used = cpu_seconds(server) - before
        for counts in load.values():
            counts["cpu"] = used
        found.update(load)
    return found


def per_cpu_second(counts: dict[str, float]) -> float:
    """Datagrams that reached the receiver's socket per CPU-second of the relay: its rate had it a core to itself,
    whether or not the sender kept it busy (0 if unmeasured)."""
    arrived = counts["received"] + counts.get("dropped", 0.0)
    return arrived / counts["cpu"] if counts.get("cpu") else 0.0


def delivered_rate(counts: dict[str, float]) -> float:
    """Datagrams a second that reached the receiver's socket, read or dropped by a full buffer (0 if none did)."""
    arrived = counts["received"] + counts.get("dropped", 0.0)
    return arrived / counts["seconds"] if counts["seconds"] else 0.0


def collect(sender: subprocess.Popen[bytes], receiver: subprocess.Popen[bytes]) -> dict[int, dict[str, float]]:
    """Wait for a sender and a receiver (their stdout piped) and pair their JSON lines: per payload size, the
    datagram's size, the offered rate and the receiver's counts."""
    sent = [json.loads(line) for line in sender.communicate(timeout=120)[0].decode().splitlines()]
    got = [json.loads(line) for line in receiver.communicate(timeout=120)[0].decode().splitlines()]
    return {
        s["payload"]: {"size": s["size"], "sent": s["sent"], "offered": s["sent"] / s["seconds"], **r}
        for s, r in zip(sent, got, strict=True)
    }


def load_cells(counts: dict[str, float], size: int) -> list[str]:
    """A report's cells for one measured load: offered and delivered packets/s, Mbit/s of ``size``-byte datagrams
    at the delivered rate, and the share of what was sent that never reached the receiver's socket."""
    rate = delivered_rate(counts)
    return [
        f"{counts['offered']:,.0f}",
        f"{rate:,.0f}",
        f"{rate * size * 8 / 1e6:.1f}",
        f"{100 * lost_share(counts):.0f}%",
    ]


def lost_share(counts: dict[str, float]) -> float:
    """The share of the datagrams sent that never reached the receiver's socket (0 if none were sent)."""
    arrived = counts["received"] + counts.get("dropped", 0.0)
    return max(0.0, 1 - arrived / counts["sent"]) if counts["sent"] else 0.0


def median_round(rounds: list[dict[int, dict[str, float]]]) -> dict[int, dict[str, float]]:
    """Per payload size, the counts of the round whose delivered rate is the median (the lower one of an even
    number; a round that measured nothing for a size does not count for it)."""
    chosen = {}
    for payload in sorted({payload for r in rounds for payload in r}):
        measured = sorted((r[payload] for r in rounds if payload in r), key=delivered_rate)
        chosen[payload] = measured[(len(measured) - 1) // 2]
    return chosen
