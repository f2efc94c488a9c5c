"""`punch server`: its flags checked, then served until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import ipaddress
import logging
import signal
from collections.abc import Coroutine
from typing import Any

from punch.cli.flags import positive
from punch.errors import UsageError
from punch.rendezvous.relay import MIN_RELAY_RATE, RelayBudget
from punch.rendezvous.server import DEFAULT_PORT, serve
from punch.stun import Address, fastpath
from punch.stun.credentials import read_secret
from punch.stun.endpoints import parse_endpoint

log = logging.getLogger("punch")


def run_server(args: argparse.Namespace) -> int:
    listen = parse_endpoint(args.listen, "--listen", DEFAULT_PORT)
    alternate = parse_endpoint(args.alternate, "--alternate", None) if args.alternate else None
    if alternate is not None:
        if ipaddress.ip_address(listen[0]).is_unspecified:
            raise UsageError(
                f"--alternate needs --listen on a specific address, not {listen[0]}; e.g. 203.0.113.1:3478"
            )
        if alternate[0] == listen[0] or alternate[1] == listen[1]:
            raise UsageError("--alternate must differ from --listen in both address and port, e.g. 203.0.113.2:3479")
    positive("--max-lease", args.max_lease)
    if args.max_peers < 1:
        raise UsageError(f"--max-peers must be 1 or more, got {args.max_peers}")
    if args.stats_interval < 0:
        raise UsageError(f"--stats-interval must be 0 or more, got {args.stats_interval:g}")
    if args.relay_rate != 0 and not args.relay_rate >= MIN_RELAY_RATE:  # NaN too
        raise UsageError(
            f"--relay-rate must be 0 (no limit) or at least {MIN_RELAY_RATE} bytes/s (one datagram), "
            f"got {args.relay_rate:g}"
        )
    if args.relay_bytes < 0:
        raise UsageError(f"--relay-bytes must be 0 (no limit) or more, got {args.relay_bytes}")
    _check_workers(args.workers, args.rate_limit, alternate)
    _check_registry(args.registry, args.name)
    advertise = _advertised(args.advertise, args.registry, listen)
    group = read_secret(args.secret_file) if args.secret_file else None
    asyncio.run(
        _until_terminated(
            serve(
                listen,
                alternate=alternate,
                max_lease=args.max_lease,
                max_peers=args.max_peers,
                group=group,
                rate_limit=args.rate_limit,
                stats_interval=args.stats_interval,
                relay_budget=RelayBudget(rate=args.relay_rate, total=args.relay_bytes),
                workers=args.workers,
                shared_registry=args.registry,
                name=args.name,
                advertise=advertise,
            )
        )
    )
    return 0


def _check_registry(url: str | None, name: str | None) -> None:
    if url is None:
        if name is not None:
            raise UsageError("--name names this server among those sharing --registry; give --registry URL too")
        return
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise UsageError(f"--registry must be a Redis URL, e.g. redis://127.0.0.1:6379/0, got {url!r}")
    if importlib.util.find_spec("redis") is None:
        raise UsageError("--registry needs redis-py: pip install 'punch[redis]'")


def _advertised(text: str | None, registry: str | None, listen: Address) -> Address | None:
    if text is None:
        return None
    if registry is None:
        raise UsageError("--advertise names this server to peers of other servers sharing --registry; give --registry")
    advertise = parse_endpoint(text, "--advertise", listen[1])
    if ipaddress.ip_address(advertise[0]).is_unspecified:
        raise UsageError(f"--advertise must be an address peers reach, not {advertise[0]}; e.g. 203.0.113.1:3478")
    return advertise


async def _until_terminated(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` until SIGTERM (docker stop, systemd, the lab's `down`), then cancel it, so that it closes
    cleanly and logs its last stats line; the command then exits 0."""
    task = asyncio.ensure_future(main)
    terminated = asyncio.Event()

    def terminate() -> None:
        log.info("SIGTERM: stopping")
        terminated.set()
        task.cancel()

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, terminate)
    try:
        await task
    except asyncio.CancelledError:
        if not terminated.is_set():
            raise  # cancelled from outside (Ctrl-C): asyncio.run turns that into KeyboardInterrupt, exit 130
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def _check_workers(workers: int, rate_limit: float, alternate: Address | None) -> None:
    if workers < 1:
        raise UsageError(f"--workers must be 1 or more, got {workers}")
    if workers == 1:
        return
    if rate_limit != 0:
        raise UsageError(
            "--workers above 1 needs --rate-limit 0: the per-source limit lives in one process and the other "
            "workers answer Binding without it"
        )
    if alternate is not None:
        raise UsageError("--workers above 1 does not work with --alternate yet; run one worker for NAT discovery")
    if fastpath.load() is None:
        raise UsageError(f"--workers above 1 needs the C fast path: {fastpath.unavailable_reason()}")
