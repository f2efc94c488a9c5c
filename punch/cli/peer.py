"""`punch peer`, `punch send`, `punch receive` and `punch id`: a peer's configuration from its flags, and its runs,
each a user of punch.api."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any

from punch.api import Connection
from punch.cli.flags import OPEN_TTL, not_negative, positive
from punch.cli.streams import reach_of
from punch.errors import PeerError, UsageError
from punch.identity.fingerprint import FingerprintError, looks_like_fingerprint, parse_fingerprint
from punch.identity.keyfile import Identity, default_identity_path, load_identity
from punch.identity.known_peers import KnownPeers, default_known_peers_path
from punch.peer.config import ANYONE, PeerConfig, PeerResult
from punch.peer.predict import PredictConfig
from punch.peer.puncher import PunchTimings
from punch.portmap.mapper import PortmapConfig
from punch.rendezvous.server import DEFAULT_PORT
from punch.stun.credentials import read_secret
from punch.stun.endpoints import parse_endpoint, resolve_servers
from punch.tunnel.spec import Forward, Target, parse_allow, parse_forward

log = logging.getLogger("punch")


async def _stdin_lines() -> AsyncIterator[str]:
    """Lines typed on stdin, read by a daemon thread so Ctrl-C never waits for Enter."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def reader() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line.rstrip("\n"))
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=reader, name="stdin", daemon=True).start()
    while (line := await queue.get()) is not None:
        if line:
            yield line


async def _given(texts: Sequence[str]) -> AsyncIterator[str]:
    for text in texts:
        yield text


def _open_ttl(value: str) -> int | None:
    """``--open-ttl``: None for auto, else the fixed TTL."""
    if value == "auto":
        return None
    try:
        ttl = int(value)
    except ValueError:
        ttl = -1
    if not 0 <= ttl <= 255:
        raise UsageError(f"--open-ttl must be auto or 0 to 255, got {value!r}")
    return ttl


def load_identity_of(args: argparse.Namespace) -> tuple[Identity, Path, bool]:
    """The identity ``--identity`` names, or the default one; its path, and whether it was made just now. The default
    is made on first use, and `punch id` makes any; a peer given a path that does not exist stops with the fix."""
    path = Path(args.identity) if args.identity else default_identity_path()
    identity, created = load_identity(path, create=args.identity is None or args.command == "id")
    if created:
        log.info("made a new identity in %s: our fingerprint is %s", path, identity.fingerprint)
    return identity, path, created


def qlog_directory(value: str | None) -> Path | None:
    """--qlog's directory, which must exist and be writable: the qlogs are written only when a connection ends."""
    if value is None:
        return None
    path = Path(value)
    if not path.is_dir():
        raise UsageError(f"--qlog {value}: not a directory; give an existing directory (mkdir it first)")
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"--qlog {value}: not writable by us; give a directory we may write into")
    return path


def _fingerprint(text: str, flag: str) -> str:
    try:
        return parse_fingerprint(text)
    except FingerprintError as error:
        raise UsageError(f"{flag} {error}") from None


def _pin(args: argparse.Namespace) -> tuple[str, str | None]:
    """The peer to ask for and the fingerprint its key must have: ``--to FINGERPRINT`` names and pins it at once
    (the peer registered under its fingerprint, punch's default ID); ``--to-key`` pins a peer named by its ID."""
    target = args.to
    pin = _fingerprint(args.to_key, "--to-key") if args.to_key else None
    if looks_like_fingerprint(target.lower()):
        target = target.lower()
        if pin is not None and pin != target:
            raise UsageError(f"--to {args.to} is a fingerprint, and --to-key {args.to_key} another one; give one")
        pin = target
    return target, pin


def peer_config(args: argparse.Namespace) -> PeerConfig:
    """The PeerConfig that ``punch peer`` ARGS asks for; UsageError naming the flag when one is out of range. The
    identity is loaded (or made) last, once every flag is known good: a mistyped flag makes no identity."""
    target, pin = _pin(args)
    if ANYONE in (args.id, target):
        flag = "--id" if args.id == ANYONE else "--to"
        raise UsageError(f"{flag} {ANYONE!r} is reserved (a wait for anyone, punch.api.accept); give a peer's ID")
    if args.id is not None and args.id == target:
        raise UsageError(f"--to {args.to!r} is our own --id; give the other peer's ID")
    # A name gives every address it has, the first our server (punch.peer.dualstack)
    server, *servers = (a for text in args.server for a in resolve_servers(text, "--server", DEFAULT_PORT))
    open_ttl = _open_ttl(args.open_ttl)
    timings = PunchTimings(  # auto keeps the default open_ttl as its fallback
        timeout=positive("--punch-timeout", args.punch_timeout),
        open_ttl=OPEN_TTL if open_ttl is None else open_ttl,
        early=args.early_checks,
    )
    if not 1 <= args.predict_sockets <= 4096:
        raise UsageError(f"--predict-sockets must be 1 to 4096, got {args.predict_sockets}")
    if not 1 <= args.predict_probes <= 64512:
        raise UsageError(f"--predict-probes must be 1 to 64512 (the ports a NAT draws from), got {args.predict_probes}")
    if not 1 <= args.portmap_lifetime <= 2**32 - 1:
        raise UsageError(f"--portmap-lifetime must be 1 to 4294967295 seconds, got {args.portmap_lifetime}")
    predict = PredictConfig(
        enabled=not args.no_predict,
        sockets=args.predict_sockets,
        probes=args.predict_probes,
        rate=positive("--predict-rate", args.predict_rate),
    )
    bind = parse_endpoint(args.bind, "--bind", None) if args.bind else None
    timeout = positive("--timeout", args.timeout)
    keepalive = positive("--keepalive", args.keepalive)
    linger = not_negative("--linger", args.linger)
    group = read_secret(args.secret_file) if args.secret_file else None
    upgrade_interval = not_negative("--upgrade-interval", args.upgrade_interval)
    nat_udp_timeout = not_negative("--nat-udp-timeout", args.nat_udp_timeout)
    rejoin = not_negative("--rejoin", args.rejoin)
    reach = reach_of(args, server)
    qlog = qlog_directory(args.qlog)
    known_peers = KnownPeers(Path(args.known_peers) if args.known_peers else default_known_peers_path())
    identity, _, _ = load_identity_of(args)
    peer_id = args.id if args.id is not None else identity.fingerprint
    if peer_id == target:
        raise UsageError(f"--to {args.to!r} is our own identity's fingerprint; give the other peer's ID or fingerprint")
    return PeerConfig(
        server=server,
        servers=tuple(dict.fromkeys(s for s in servers if s != server)),
        target=target,
        bind=bind,
        timeout=timeout,
        punch=timings,
        relay=not args.no_relay,
        keepalive=keepalive,
        linger=linger,
        group=group,
        predict=predict,
        portmap=PortmapConfig(enabled=not args.no_portmap, lifetime=args.portmap_lifetime),
        discover_ttl=open_ttl is None,
        upgrade_interval=upgrade_interval,
        nat_udp_timeout=nat_udp_timeout,
        rejoin=rejoin,
        known_peers=known_peers,
        pin=pin,
        keylog=Path(args.keylog) if args.keylog else None,
        qlog=qlog,
        reach=reach,
        peer_id=peer_id,
        identity=identity,
    )


def run_id(args: argparse.Namespace) -> int:
    identity, path, created = load_identity_of(args)
    if args.json:
        print(json.dumps({"fingerprint": identity.fingerprint, "identity": str(path), "created": created}))
    else:
        print(identity.fingerprint)
    return 0


async def _connected(
    config: PeerConfig,
    allow: Sequence[Target],
    work: Callable[[Connection], Coroutine[Any, Any, None]],
    forwards: Sequence[Forward] = (),
) -> PeerResult:
    """Connect (punch.api) and do ``work`` while the connection lives; the result, also when it failed (then with
    ``error``, printed here). The ``forwards`` listen from the start: what connects before the session is up waits
    for it (UsageError at once if a port is taken). SIGTERM and SIGINT end the work: the connection then closes
    cleanly."""
    connection = await Connection.open(config, allow)
    try:
        for forward in forwards:
            try:
                await connection.forward(forward)
            except OSError as error:
                raise UsageError(
                    f"--forward {forward.local_port}:{forward.target}: cannot listen on 127.0.0.1:"
                    f"{forward.local_port} ({error.strerror or error}); choose another local port"
                ) from None
        with _terminated_as_interrupted():
            await connection.establish()
        await connection.watched(_until_interrupted(work(connection)))
    except PeerError as error:
        print(f"punch: {error}", file=sys.stderr)
    finally:
        await connection.close()
    return connection.result


@contextlib.contextmanager
def _terminated_as_interrupted() -> Iterator[None]:
    """Until the peer talks (then :func:`_until_interrupted` takes over), SIGTERM is Ctrl-C: the connection still
    closes on the way out (a goodbye to the server, our router's port mapping deleted), and the run ends interrupted
    (exit code 130)."""
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    assert task is not None
    terminated = False

    def terminate() -> None:
        nonlocal terminated
        terminated = True
        log.info("SIGTERM: closing")
        task.cancel()

    loop.add_signal_handler(signal.SIGTERM, terminate)
    try:
        yield
    except asyncio.CancelledError:
        if terminated:
            raise KeyboardInterrupt from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def _until_interrupted(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` until it ends, or until SIGTERM or SIGINT (the end of a peer that forwards: not a failure)."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    interrupted = False

    def interrupt(name: str) -> None:
        nonlocal interrupted
        interrupted = True
        log.info("%s: closing", name)
        task.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, interrupt, signal.Signals(signum).name)
    try:
        await task
    except asyncio.CancelledError:
        if not interrupted:
            raise
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def _print_result(args: argparse.Namespace, result: PeerResult, done: str = "") -> int:
    code = 0 if result.error is None else 1
    if args.json:
        print(json.dumps(dataclasses.asdict(result)), flush=True)
    elif code == 0:
        path = f"{result.path} path to {result.peer} via {result.remote}, after {result.punch_ms} ms"
        print(f"{done}; {path}" if done else path, flush=True)
    return code


def run_peer(args: argparse.Namespace) -> int:
    config = peer_config(args)
    forwards = [parse_forward(value, "--forward") for value in args.forward]
    allow = [parse_allow(value, "--allow") for value in args.allow]
    tunnels = bool(forwards or allow)

    def show(text: str) -> None:
        print(f"[{config.target}] {text}", flush=True)

    texts = _given(args.send) if args.send is not None else _stdin_lines()
    if args.send is None and sys.stdin.isatty():
        print(f"Chat with {config.target}: type lines, end with Ctrl-D.", file=sys.stderr)

    async def work(connection: Connection) -> None:
        await connection.talk(texts, show, keep_running=tunnels)

    result = asyncio.run(_connected(config, allow, work, forwards))
    return _print_result(args, result)


def run_send(args: argparse.Namespace) -> int:
    config = peer_config(args)
    path: Path = args.file
    if not path.is_file():
        raise UsageError(f"{path}: no such file; give a file to send")

    async def work(connection: Connection) -> None:
        await connection.send_file(path)

    result = asyncio.run(_connected(config, (), work))
    return _print_result(args, result, f"sent {path.name}")


def run_receive(args: argparse.Namespace) -> int:
    config = peer_config(args)
    directory: Path = args.dir
    if not directory.is_dir():
        raise UsageError(f"--dir {directory}: no such directory; give one to store the file in")

    async def work(connection: Connection) -> None:
        received = connection.receive_files(directory)
        stored = await received
        print(stored, flush=True)

    result = asyncio.run(_connected(config, (), work))
    return _print_result(args, result, "received")
