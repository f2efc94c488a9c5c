"""A registry shared by several servers, in Redis (``punch server --registry redis://HOST:PORT/DB``).

What one server's in-process registry (punch.rendezvous.registry) holds, kept where every server sees it:
registrations under their leases (a hash per ID: endpoints, token and public key, NAT mapping, the server it was made
at; the lease is the key's expiry), the pending wishes of Connect (one key per asker and target, under the pair's
hash slot, so that matching two wishes is one atomic script), sessions (so that a server that did not make one can
still serve it), and each server's inbox (a stream: what other servers ask it to send its peers, who only take
datagrams from the server they registered with). Every write is one Lua script or one command: nothing is ever half
written. Keys are laid out for a Redis Cluster (punch.rendezvous.records), which :class:`RedisRegistry` finds out by
itself (``INFO cluster``) and then talks to as one.

This module is the only one that imports redis; every error of Redis or of the way to it is
:class:`RegistryUnavailable` past it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import redis.asyncio
import redis.exceptions
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from punch.errors import RegistryUnavailable
from punch.rendezvous.records import (
    Envelope,
    RecordError,
    Stored,
    Write,
    decode_match,
    decode_wish,
    encode_match,
    encode_wish,
    inbox_key,
    registration_fields,
    registration_key,
    session_key,
    stored_of,
    wish_keys,
)
from punch.rendezvous.registry import Match, Registration, Wish
from punch.stun.wire import REGISTRATION_TOKEN_BYTES

log = logging.getLogger(__name__)

T = TypeVar("T")

INBOX_LENGTH = 100_000  # entries an inbox keeps at most (approximately): a server that is away misses older ones

# A registration's fields and its remaining life in milliseconds, or nothing.
_LOOKUP = """
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return false end
table.insert(fields, redis.call('PTTL', KEYS[1]))
return fields
"""

# Write a registration if the ID is free or held under the token the writer checked (ARGV[1], empty: free): 1 if it
# was there, 2 if not (a new registration, or one the registry lost); 0 if another token holds it. ARGV: token,
# endpoints, credentials, mapping, server, lease in ms.
_STORE = f"""
local current = redis.call('HGET', KEYS[1], 'c')
if current and string.sub(current, 1, {REGISTRATION_TOKEN_BYTES}) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'e', ARGV[2], 'c', ARGV[3], 'm', ARGV[4], 's', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
if current then return 1 end
return 2
"""

# Forget a registration held under the token ARGV[1] (a goodbye); 0 if another token holds it.
_REMOVE = f"""
local current = redis.call('HGET', KEYS[1], 'c')
if not current then return 1 end
if string.sub(current, 1, {REGISTRATION_TOKEN_BYTES}) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""

# KEYS: the asker's wish for the target, the target's for the asker (one slot). If the target wants the asker, both
# wishes go and the target's is returned (a match, exactly once whoever asks at the same time); else the asker's is
# kept for ARGV[2] ms.
_WANT = """
local other = redis.call('GET', KEYS[2])
if other then
  redis.call('DEL', KEYS[1], KEYS[2])
  return other
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""


_UNAVAILABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ResponseError,  # e.g. a replica that cannot write, a script killed
    redis.exceptions.RedisClusterException,
    OSError,
)


@dataclass(frozen=True, slots=True)
class _Call:
    """A script call waiting for its batch: what it does (for errors), the script, its keys and arguments."""

    what: str
    script: str
    keys: list[str]
    args: list[bytes | str | int]
    future: asyncio.Future[Any]


@functools.cache
def _sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()  # the script's name in Redis (EVALSHA)


class RedisRegistry:
    """The shared registry in one Redis or one Redis Cluster at ``url`` (``redis://HOST:PORT/DB``).

    Connects on first use and again after any failure, by itself: every call either does what it says or raises
    :class:`RegistryUnavailable`. ``timeout`` bounds each command (seconds); ``connections`` bounds the connections
    to each Redis node (requests beyond wait for one: a burst of registrations queues here, not in Redis).
    """

    def __init__(self, url: str, *, timeout: float = 1.0, connections: int = 64) -> None:
        self.url = url
        self._timeout = timeout
        self._connections = connections
        self._client: redis.asyncio.Redis | RedisCluster | None = None
        self._connecting: asyncio.Lock | None = None
        self._batch: list[_Call] = []  # scripts called in this turn of the event loop, sent together at its end
        self._sending: set[asyncio.Task[None]] = set()
        self.cluster = False  # known once connected

    def _options(self) -> dict[str, Any]:
        return {
            "socket_timeout": self._timeout,
            "socket_connect_timeout": self._timeout,
            "retry": Retry(NoBackoff(), 0),  # we say so at once and the peer retries; no hidden waits
        }

    async def _connect(self) -> redis.asyncio.Redis | RedisCluster:
        if self._client is not None:
            return self._client
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._client is not None:
                return self._client
            pool = redis.asyncio.BlockingConnectionPool.from_url(
                self.url, max_connections=self._connections, timeout=self._timeout, **self._options()
            )
            single = redis.asyncio.Redis(connection_pool=pool)
            try:
                info = await single.info("cluster")
            except BaseException:
                await single.aclose()
                raise
            if info.get("cluster_enabled"):
                await single.aclose()
                cluster = RedisCluster.from_url(self.url, max_connections=self._connections, **self._options())
                await cluster.initialize()
                self._client, self.cluster = cluster, True
            else:
                self._client = single
            return self._client

    async def _call(self, what: str, work: Awaitable[T]) -> T:
        try:
            return await work
        except _UNAVAILABLE as error:
            await self._reset()
            raise RegistryUnavailable(f"{what}: {type(error).__name__}: {error}") from None

    async def _reset(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(*_UNAVAILABLE):
                await client.aclose()

    async def _run(self, what: str, script: str, keys: list[str], args: list[bytes | str | int]) -> Any:
        """Run a Lua script: with every other script called in the same turn of the event loop, in one pipeline
        (a round trip and a few microseconds each instead of one and some tens each: redis-py's cost per command)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._batch.append(_Call(what, script, keys, args, future))
        if len(self._batch) == 1:
            asyncio.get_running_loop().call_soon(self._send_batch)
        return await future

    def _send_batch(self) -> None:
        batch, self._batch = self._batch, []
        task = asyncio.get_running_loop().create_task(self._execute(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _execute(self, batch: list[_Call]) -> None:
        """EVALSHA each call of ``batch`` in one pipeline; those that find their script missing (a Redis that
        restarted) load it and run again. Each call's future gets its result or RegistryUnavailable."""
        try:
            client = await self._connect()
            results = await self._pipeline(client, batch)
            missing = [i for i, r in enumerate(results) if isinstance(r, redis.exceptions.NoScriptError)]
            if missing:
                for script in {batch[i].script for i in missing}:
                    await client.script_load(script)
                again = await self._pipeline(client, [batch[i] for i in missing])
                for i, result in zip(missing, again, strict=True):
                    results[i] = result
        except _UNAVAILABLE as error:
            await self._reset()
            results = [error] * len(batch)
        for call, result in zip(batch, results, strict=True):
            if call.future.done():
                continue  # its caller was cancelled
            if isinstance(result, Exception):
                call.future.set_exception(RegistryUnavailable(f"{call.what}: {type(result).__name__}: {result}"))
            else:
                call.future.set_result(result)

    @staticmethod
    async def _pipeline(client: redis.asyncio.Redis | RedisCluster, batch: list[_Call]) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        for call in batch:
            pipe.evalsha(_sha(call.script), len(call.keys), *call.keys, *call.args)
        return list(await pipe.execute(raise_on_error=False))

    async def ping(self) -> None:
        """Return once the registry answers (RegistryUnavailable if it does not)."""

        async def ping() -> None:
            client = await self._connect()
            await cast(Awaitable[Any], client.ping())

        await self._call("ping", ping())

    async def close(self) -> None:
        for task in list(self._sending):
            task.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)
        await self._reset()

    # -- registrations --------------------------------------------------------------------------------------

    async def lookup(self, peer_id: str, now: float) -> Stored | None:
        """``peer_id``'s live registration (its lease ending on the caller's clock ``now``), if any."""
        found = await self._run("lookup", _LOOKUP, [registration_key(peer_id)], [])
        if not found:
            return None
        *flat, ttl_ms = found
        if ttl_ms < 0:
            return None  # no expiry: not written by us
        fields = dict(zip(flat[0::2], flat[1::2], strict=True))
        try:
            return stored_of(peer_id, fields, int(ttl_ms), now)
        except RecordError as error:
            log.warning("%s: ignored", error)
            return None

    async def store(self, registration: Registration, server: str, held_by: bytes, lease: float) -> Write:
        """Write ``registration`` (registered at ``server``) under a lease of ``lease`` seconds, if the ID is free
        (``held_by`` empty) or held under the token ``held_by``: REFUSED if another token holds it, else whether the
        registry held the ID before (RENEWED) or not (CREATED: new, or lost, e.g. by a Redis restart)."""
        fields = registration_fields(registration, server)
        args: list[bytes | str | int] = [held_by, fields["e"], fields["c"], fields["m"], fields["s"]]
        key = registration_key(registration.peer_id)
        return Write(int(await self._run("store", _STORE, [key], [*args, round(lease * 1000)])))

    async def remove(self, peer_id: str, token: bytes) -> bool:
        """Forget ``peer_id``'s registration held under ``token``; False if another token holds it."""
        return bool(await self._run("remove", _REMOVE, [registration_key(peer_id)], [token]))

    # -- wishes and sessions --------------------------------------------------------------------------------

    async def want(self, asker: str, target: str, wish: Wish, life: float) -> Wish | None:
        """Record that ``asker`` wants ``target`` for ``life`` seconds; ``target``'s wish for ``asker`` if it had
        one (both are then gone: exactly one of two servers asking at once gets the match)."""
        other = await self._run("want", _WANT, list(wish_keys(asker, target)), [encode_wish(wish), round(life * 1000)])
        return None if not other else decode_wish(other)

    async def wish_again(self, asker: str, target: str, wish: Wish, life: float) -> None:
        """Put back a wish taken by a match that could not be made (the other's registration ended meanwhile)."""
        key = wish_keys(asker, target)[0]

        async def put() -> None:
            client = await self._connect()
            await client.set(key, encode_wish(wish), px=round(life * 1000))

        await self._call("wish", put())

    async def save_session(self, match: Match, life: float) -> None:
        """Keep a session for ``life`` seconds, for a server that did not make it (a restart, a failover)."""

        async def save() -> None:
            client = await self._connect()
            await client.set(session_key(match.session_id), encode_match(match), px=round(life * 1000))

        await self._call("session", save())

    async def session(self, session_id: bytes, now: float) -> Match | None:
        """The session under ``session_id``, if it lives (its registrations' leases: the session's life)."""

        async def load() -> tuple[bytes | None, int]:
            client = await self._connect()
            key = session_key(session_id)
            return cast(bytes | None, await client.get(key)), int(await client.pttl(key))

        data, ttl_ms = await self._call("session", load())
        if data is None or ttl_ms < 0:
            return None
        try:
            return decode_match(data, now + ttl_ms / 1000)
        except RecordError as error:
            log.warning("%s: ignored", error)
            return None

    # -- between servers ------------------------------------------------------------------------------------

    async def deliver(self, server: str, envelopes: list[Envelope]) -> None:
        """Ask ``server`` to send its peers requests, in this order (its inbox: a stream, read by :meth:`receive`)."""

        async def add() -> None:
            client = await self._connect()
            pipe = client.pipeline(transaction=False)
            for envelope in envelopes:
                pipe.xadd(inbox_key(server), {b"m": envelope.encode()}, maxlen=INBOX_LENGTH, approximate=True)
            await pipe.execute()

        await self._call("deliver", add())

    async def receive(self, server: str, after: bytes, wait: float) -> tuple[bytes, list[Envelope]]:
        """What others asked ``server`` to send since the entry ``after`` (see :meth:`newest`), waiting up to
        ``wait`` seconds for some; returns the last entry's ID (to pass next time) and the envelopes."""

        async def read() -> Any:
            client = await self._connect()
            return await client.xread({inbox_key(server): after}, count=512, block=max(1, round(wait * 1000)))

        answer = await self._call("receive", read())
        envelopes: list[Envelope] = []
        last = after
        for _, entries in _streams(answer):
            for entry_id, fields in entries:
                last = entry_id
                try:
                    envelopes.append(Envelope.decode(fields[b"m"]))
                except (RecordError, KeyError) as error:
                    log.warning("an inbox entry does not decode (%r): ignored", error)
        return last, envelopes

    async def newest(self, server: str) -> bytes:
        """The ID of the newest entry in ``server``'s inbox (b"0-0" if none): :meth:`receive` after it reads what
        comes from now on."""

        async def newest() -> Any:
            client = await self._connect()
            return await client.xrevrange(inbox_key(server), count=1)

        entries = await self._call("receive", newest())
        return cast(bytes, entries[0][0]) if entries else b"0-0"


def _streams(answer: Any) -> Iterable[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]:
    """XREAD's answer, as RESP2 (a list of [stream, entries]) or RESP3 (a dict) gives it."""
    if not answer:
        return []
    if isinstance(answer, dict):
        return list(answer.items())
    return [(stream, entries) for stream, entries in answer]
