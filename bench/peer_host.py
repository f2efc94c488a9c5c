"""Many `punch peer`s in one process: each peer's socket in its own network namespace, all in one asyncio loop.

A peer forked as a process of its own costs an interpreter: about 17 ms of CPU over its life and 6 MiB, and
on this machine a process supervisor that works for every process alive. A host runs its guests as
coroutines of :func:`punch.api.run_peer` instead, with the same configuration as ``punch peer``
(punch.cli.peer_config), each on a UDP socket made inside the guest's namespace (setns(2) for the thread while
it creates the socket; the socket stays in that namespace), so each guest still sits behind its own NAT router
and punches through the kernel's NAT like the processes do. What it does not have is a core of its own, which
it did not have as a process on this 2-core machine either.

It talks to the benchmark like a crowd of ``punch peer --json`` processes: on stdout ``[SENDER] TEXT`` for
every text a guest receives and the guest's JSON result when it ends (one write per line, whole in the pipe),
on stderr its log. Guests with no start time start at once; the others on signal GO, each its own time after
it. Each guest sends ``hello from ME`` and talks until stdin closes (the end of the run).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import punch.cli
from netns import naming
from netns.kernel import namespaces
from netns.topology import generate
from punch.api import Connection, run_peer
from punch.errors import PeerError
from punch.peer.config import PeerConfig
from punch.rendezvous.server import RendezvousServer

log = logging.getLogger("bench.peer_host")


@dataclass(frozen=True, slots=True)
class Guest:
    me: int
    other: int
    at: float | None  # seconds after GO; None: starts at once


def socket_in(namespace: str) -> socket.socket:
    """A UDP socket of ``namespace``, bound to its address toward the server (a wildcard bind would make the
    peer ask the host's own namespace for its LAN address)."""
    with namespaces.entered(namespace):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((str(generate.SERVER), 3478))  # connecting a UDP socket sends nothing
            address = probe.getsockname()[0]
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((address, 0))
    return sock


def serve(lab: str, guests: list[Guest], argv: list[list[str]], go: signal.Signals) -> int:
    """Run ``guests`` (``argv``: each one's ``punch`` command line) to their ends; 0 when none failed.

    GO must be blocked in the calling thread (so none sent early is lost); it is unblocked once awaited.
    """
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    parser = punch.cli.build_parser()
    configs = [punch.cli.peer_config(parser.parse_args(args)) for args in argv]
    sockets = [socket_in(naming.namespace(lab, f"peer{g.me}")) for g in guests]
    asyncio.run(warm_up(configs[0]))
    return asyncio.run(_serve(guests, configs, sockets, go))


async def warm_up(config: PeerConfig) -> None:
    """One pair punches through a server of our own on loopback before any guest starts.

    A freshly forked process pays for its first run of the peer code (pages it shares with the benchmark copied
    on first write, first calls): here, once, instead of in its first guests' punches. A single pair in a fresh
    host would otherwise measure a cold process against a crowd of warm ones.
    """
    async with RendezvousServer() as server:
        await server.start(("127.0.0.1", 0))

        async def peer(me: str, other: str) -> None:
            async def texts() -> AsyncIterator[str]:
                yield f"warm-up from {me}"

            ours = dataclasses.replace(config, server=server.address, peer_id=me, target=other, bind=("127.0.0.1", 0))
            await run_peer(dataclasses.replace(ours, linger=0.0), texts(), lambda _: None)

        await asyncio.gather(peer("warm-up-a", "warm-up-b"), peer("warm-up-b", "warm-up-a"))


class _Run:
    """The guests' shared events: GO (and when it came) and the end of stdin."""

    def __init__(self, go: signal.Signals) -> None:
        self.loop = asyncio.get_running_loop()
        self.going, self.ending = asyncio.Event(), asyncio.Event()
        self.went = 0.0  # loop time of GO
        self.loop.add_signal_handler(go, self._go)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {go})
        self.loop.add_reader(0, self._stdin)

    def _go(self) -> None:
        self.went = self.loop.time()
        self.going.set()

    def _stdin(self) -> None:
        if not os.read(0, 4096):
            self.loop.remove_reader(0)
            self.ending.set()

    async def guest(self, g: Guest, config: PeerConfig, sock: socket.socket) -> bool:
        """Guest ``g`` from its start to its end; whether it ended without an error."""
        if g.at is not None:
            await self.going.wait()
            await asyncio.sleep(max(0.0, self.went + g.at - self.loop.time()))

        async def texts() -> AsyncIterator[str]:
            yield f"hello from {g.me}"
            await self.ending.wait()

        def show(text: str) -> None:
            print(f"[{config.target}] {text}", flush=True)

        session = await Connection.open(config, sock=sock)
        try:
            await session.run(texts(), show)
        except PeerError as error:
            log.warning("%s: %s", config.peer_id, error)
        finally:
            await session.close()
        result = session.result
        print(json.dumps(dataclasses.asdict(result)), flush=True)
        return result.error is None


async def _serve(
    guests: list[Guest], configs: list[PeerConfig], sockets: list[socket.socket], go: signal.Signals
) -> int:
    run = _Run(go)
    ended = await asyncio.gather(*(run.guest(*each) for each in zip(guests, configs, sockets, strict=True)))
    return 0 if all(ended) else 1
