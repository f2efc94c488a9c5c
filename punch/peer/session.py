"""One peer's whole run: register, ask, get introduced, punch, talk, close together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from punch.errors import PeerError
from punch.peer.channel import Channel
from punch.peer.client import RendezvousClient
from punch.peer.puncher import Path, Puncher, PunchTimings
from punch.stun import Address, Message, MessageClass, describe, method_name
from punch.stun.protocol import StunEndpoint, format_address, host_candidates, open_endpoint
from punch.stun.transaction import RetransmitPolicy

# RFC 8489 §6.2.1 timing with the RTO capped at 2 s: a peer gives up on a silent server after 11.75 s, not 39.5 s.
SERVER_POLICY = RetransmitPolicy(rto=0.25, max_rto=2.0)
# A keepalive that gets no answer for 7.5 s means the other peer is gone (or the path broke).
KEEPALIVE_POLICY = RetransmitPolicy(rto=0.5, max_rto=2.0, max_sends=5, last_wait=4.0)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """What ``punch peer`` was asked to do."""

    server: Address
    peer_id: str
    target: str
    bind: Address = ("0.0.0.0", 0)
    timeout: float = 30.0  # to find the other peer and punch
    lease: int = 30
    punch: PunchTimings = field(default_factory=PunchTimings)
    linger: float = 0.5  # after closing, keep answering retransmissions this long
    rendezvous: RetransmitPolicy = SERVER_POLICY  # requests to the server
    relay: bool = True  # fall back to the server's relay when no direct path can be punched
    keepalive: float = 5.0  # seconds between checks of a direct path while talking
    group: bytes | None = None  # a closed group's key (--secret-file)


@dataclass(slots=True)
class PeerResult:
    """The outcome, as printed by ``--json``."""

    id: str
    peer: str
    path: str | None = None
    remote: str | None = None
    punch_ms: float | None = None
    received: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    role: str | None = None
    session: str | None = None
    local: str | None = None
    mapped: str | None = None
    error: str | None = None


class _Dispatcher:
    """Routes requests on the one socket: server messages to the client, the peer's to puncher and channel."""

    def __init__(self) -> None:
        self.routes: list[Callable[[Message, Address], bool]] = []

    def __call__(self, message: Message, source: Address, data: bytes) -> None:
        if message.message_class is not MessageClass.REQUEST:
            log.debug("ignored a %s from %s", describe(message), format_address(source))
            return
        for route in self.routes:
            if route(message, source):
                return
        log.debug("ignored a %s from %s: nothing expects it now", method_name(message.method), format_address(source))


async def run_peer(
    config: PeerConfig,
    texts: AsyncIterator[str],
    on_text: Callable[[str], None],
    result: PeerResult,
) -> PeerResult:
    """Run one peer to the end and fill ``result``; PeerError (also recorded in ``result.error``) on failure."""
    dispatcher = _Dispatcher()
    endpoint = await open_endpoint(dispatcher, config.bind)
    try:
        await _run(config, endpoint, dispatcher, texts, on_text, result)
    except PeerError as error:
        result.error = str(error)
        raise
    finally:
        await endpoint.close()
    return result


async def _run(
    config: PeerConfig,
    endpoint: StunEndpoint,
    dispatcher: _Dispatcher,
    texts: AsyncIterator[str],
    on_text: Callable[[str], None],
    result: PeerResult,
) -> None:
    local = endpoint.local_address
    result.local = format_address(local)
    log.info("socket bound to %s", format_address(local))
    client = RendezvousClient(
        endpoint,
        config.server,
        config.peer_id,
        host_candidates(local, config.server),
        lease=config.lease,
        policy=config.rendezvous,
        group=config.group,
    )
    dispatcher.routes.append(client.on_request)
    mapped = await client.register()
    result.mapped = format_address(mapped)
    refresher = asyncio.get_running_loop().create_task(client.keep_registered())
    try:
        path, channel, puncher = await _find_path(config, endpoint, dispatcher, client, result, on_text)
        result.path, result.remote = path.kind, format_address(path.remote)
        talking = _talk(channel, texts, config.linger, config.timeout)
        if path.kind == "relay":
            await talking  # the relay answers for the server; keepalives would prove nothing about the peer
        else:
            await _first_of(talking, puncher.keep_alive(path.remote, config.keepalive, KEEPALIVE_POLICY))
    finally:
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher
        await client.unregister()


async def _first_of(*coroutines: Coroutine[Any, Any, None]) -> None:
    """Run the coroutines until the first one ends; re-raise its error; cancel the others."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        task.result()


async def _find_path(
    config: PeerConfig,
    endpoint: StunEndpoint,
    dispatcher: _Dispatcher,
    client: RendezvousClient,
    result: PeerResult,
    on_text: Callable[[str], None],
) -> tuple[Path, Channel, Puncher]:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(config.timeout):
            await client.connect(config.target)
            introduction = await client.introduction
    except TimeoutError:
        raise PeerError(
            f"{config.target} did not ask for us within {config.timeout:g} s; "
            f"start it with `punch peer --id {config.target} --to {config.peer_id}`"
        ) from None
    if introduction.peer_id != config.target:
        raise PeerError(f"the server introduced {introduction.peer_id}, but we asked for {config.target}")
    result.role = introduction.role.name.lower()
    result.session = introduction.session_id.hex()
    started = loop.time()
    puncher = Puncher(endpoint, config.peer_id, introduction, config.punch)
    channel = Channel(
        endpoint, config.peer_id, introduction.peer_id, introduction.session_id, introduction.key, on_text
    )
    result.received, result.sent = channel.received, channel.sent  # shared: a failure still reports what crossed
    dispatcher.routes += [puncher.on_request, channel.on_request]
    if introduction.role.name == "OPENER":
        await puncher.open_mappings()
        await client.ready(introduction.session_id)
    else:
        try:
            async with asyncio.timeout(config.punch.timeout):
                await client.go.wait()
        except TimeoutError:
            raise PeerError(f"the server never said Go for {introduction.peer_id}; is it still running?") from None
    try:
        path = await puncher.run()
    except PeerError as error:
        if not config.relay:
            raise
        log.info("%s; falling back to the relay through the server", error)
        path = Path(config.server, "relay")
    result.punch_ms = round((loop.time() - started) * 1000, 1)
    channel.remote = path.remote
    log.info(
        "using the %s path to %s via %s (%.1f ms after the introduction)",
        path.kind,
        introduction.peer_id,
        format_address(path.remote),
        result.punch_ms,
    )
    return path, channel, puncher


async def _talk(channel: Channel, texts: AsyncIterator[str], linger: float, patience: float) -> None:
    async for text in texts:
        await channel.send_text(text)
    await channel.close()
    try:
        async with asyncio.timeout(patience):
            await channel.remote_closed.wait()
    except TimeoutError:
        raise PeerError(f"{channel.peer} did not say it was done sending within {patience:g} s") from None
    # Keep answering for a moment: if our last acknowledgement was lost, the other side resends its Close.
    await asyncio.sleep(linger)
    log.info("session with %s closed", channel.peer)
