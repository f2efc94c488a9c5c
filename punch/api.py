"""punch's Python API: a connection to another peer, whatever NATs are between, over the path punch finds.

    import punch

    async with punch.connect("203.0.113.1:3478", "bob", me="alice") as conn:
        reader, writer = await conn.open_stream()      # asyncio streams, each a QUIC stream
        conn.send_datagram(b"ping")                    # unreliable, as QUIC datagrams (RFC 9221)
        print(conn.path, conn.peer_key)                # direct / predicted / relay; bob's verified key

Both peers ask for each other at the same rendezvous server (``connect``), or one waits for any peer whose key it
allows (``accept``). The connection is QUIC (punch.transport), authenticated by both identity keys; it outlives
every change of path under it (the relay, a direct path found later, a NAT's new address). The CLI's ``punch peer``,
``send`` and ``receive`` are users of :class:`Connection` (docs/api.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import struct
from collections.abc import AsyncIterator, Callable, Collection, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path as FilePath
from types import TracebackType
from typing import Any

from punch.errors import PeerError, UsageError
from punch.identity.keyfile import Identity
from punch.identity.known_peers import KnownPeers
from punch.peer.config import ANYONE, PeerConfig, PeerResult
from punch.peer.puncher import Path
from punch.peer.session import Session
from punch.stun import Address
from punch.stun.protocol import format_address
from punch.transport.errors import LinkError
from punch.tunnel.files import FileReceiver, send_file
from punch.tunnel.forward import ForwardService, TcpForwarder, UdpForwarder
from punch.tunnel.spec import Forward, Target

log = logging.getLogger(__name__)

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]

STREAM_SERVICE = "stream"  # the service of streams opened with Connection.open_stream
APP_FLOW = struct.pack("!I", 0)  # the flow number of the application's datagrams (forwards' flows start at 1)
INCOMING_STREAMS = 64  # streams the other peer opened that wait for accept_stream; beyond, refused
INCOMING_DATAGRAMS = 1024  # datagrams that wait for receive_datagram; beyond, dropped and counted


@dataclass(frozen=True, slots=True)
class PathInfo:
    """The path the connection's packets take now: ``kind`` is direct, direct-lan, predicted or relay; ``remote``
    the other end (the other peer's endpoint, or the server's on the relay)."""

    kind: str
    remote: str

    @classmethod
    def of(cls, path: Path) -> PathInfo:
        return cls(path.kind, format_address(path.remote))


class Connection:
    """A connection to another peer (module docstring). Make it with :func:`connect` or :func:`accept`, or with
    :meth:`open` and :meth:`establish` for a :class:`~punch.peer.config.PeerConfig` of your own (the CLI does).

    Everything the other peer may open is set up before the session is: streams (:meth:`accept_stream`), datagrams
    (:meth:`receive_datagram`), texts (:meth:`texts`), files (:meth:`receive_files`) and forwards to the targets
    ``allow`` names (nothing by default).
    """

    def __init__(self, session: Session, allow: Collection[Target], texts: asyncio.Queue[str | None]) -> None:
        self._session = session
        self._texts = texts  # the other's texts, as the session takes them; None after the last
        self._streams: asyncio.Queue[Streams] = asyncio.Queue(INCOMING_STREAMS)
        self._datagrams: asyncio.Queue[bytes] = asyncio.Queue(INCOMING_DATAGRAMS)
        self._path_queues: list[asyncio.Queue[PathInfo]] = []
        self._forwarders: list[TcpForwarder | UdpForwarder] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._receiver: FileReceiver | None = None
        self.dropped: dict[str, int] = {"incoming-streams": 0, "incoming-datagrams": 0}
        services = session.services
        self._flows = _Flows(session)
        self._accepting = ForwardService(frozenset(allow), self._flows)
        services.serve(STREAM_SERVICE, self._on_stream)
        services.serve("forward", self._accepting.serve)
        services.route_flows(accepting=self._on_flow)
        services.route_flows(accepting=self._accepting.on_datagram)
        session.watch_path(self._path_changed)

    @classmethod
    async def open(
        cls, config: PeerConfig, allow: Collection[Target] = (), *, sock: socket.socket | None = None
    ) -> Connection:
        """Bind the socket (OSError if it cannot), or take ``sock`` (punch.peer.session.Session.open); nothing is
        sent yet: :meth:`establish` does."""
        texts: asyncio.Queue[str | None] = asyncio.Queue()
        session = await Session.open(config, texts.put_nowait, sock=sock)
        return cls(session, allow, texts)

    async def establish(self) -> None:
        """Register, find the other peer, punch (or take the relay) and bring QUIC up; PeerError with why not."""
        await self._session.establish()
        self._spawn(self._texts_end())

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()

    # -- who and where ----------------------------------------------------------------------------------------

    @property
    def peer(self) -> str:
        """The other peer's ID (with :func:`accept`: the one that came)."""
        return self._session.peer

    @property
    def peer_key(self) -> str:
        """The fingerprint of the other peer's identity key, as QUIC's handshake checked it."""
        key = self._session.peer_key
        assert key is not None, "the other's key is known once the connection is established"
        return key

    @property
    def server(self) -> Address:
        """The rendezvous server we are registered with now."""
        return self._session.server

    @property
    def path(self) -> PathInfo:
        """The path the connection's packets take now (:meth:`path_changes` follows it)."""
        path = self._session.path
        assert path is not None, "there is a path once the connection is established"
        return PathInfo.of(path)

    async def path_changes(self) -> AsyncIterator[PathInfo]:
        """Each path the connection takes from now on, as it changes (the relay, an upgrade, a rejoin)."""
        queue: asyncio.Queue[PathInfo] = asyncio.Queue()
        self._path_queues.append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._path_queues.remove(queue)

    def _path_changed(self, path: Path) -> None:
        for queue in self._path_queues:
            queue.put_nowait(PathInfo.of(path))

    @property
    def result(self) -> PeerResult:
        """The run so far, as ``punch peer --json`` prints it."""
        return self._session.result

    # -- streams ----------------------------------------------------------------------------------------------

    async def open_stream(self) -> Streams:
        """A new reliable stream to the other peer (its :meth:`accept_stream` gets it)."""
        reader, writer = await self._session.link.open_stream()
        writer.write(b'{"service":"stream"}\n')
        return reader, writer

    async def accept_stream(self) -> Streams:
        """The next stream the other peer opened with :meth:`open_stream`."""
        return await self._streams.get()

    async def _on_stream(
        self, header: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            self._streams.put_nowait((reader, writer))
        except asyncio.QueueFull:
            self.dropped["incoming-streams"] += 1
            log.info("refused a stream of %s: %d wait to be accepted already", self.peer, INCOMING_STREAMS)
            writer.close()

    # -- datagrams --------------------------------------------------------------------------------------------

    @property
    def max_datagram_size(self) -> int:
        """The largest datagram :meth:`send_datagram` takes on the path of the moment."""
        return max(0, self._session.link.max_datagram_payload - len(APP_FLOW))

    def send_datagram(self, data: bytes) -> bool:
        """Send one unreliable datagram (it may be lost, or come out of order); False if it was dropped because too
        many wait to be sent already. ValueError if it is larger than :attr:`max_datagram_size`."""
        if len(data) > self.max_datagram_size:
            raise ValueError(f"a datagram of {len(data)} bytes: this path carries at most {self.max_datagram_size}")
        return self._session.link.send_datagram(APP_FLOW + data)

    async def receive_datagram(self) -> bytes:
        """The next datagram from the other peer."""
        return await self._datagrams.get()

    def _on_flow(self, number: int, payload: bytes) -> bool:
        if number != 0:
            return False
        try:
            self._datagrams.put_nowait(payload)
        except asyncio.QueueFull:
            self.dropped["incoming-datagrams"] += 1
        return True

    # -- texts, files, forwards -------------------------------------------------------------------------------

    async def send_text(self, text: str) -> None:
        """Send one text; returns once the other peer acknowledged it (its :meth:`texts` yields it)."""
        await self._session.texts.send(text)

    async def done_sending(self) -> None:
        """Tell the other peer we send no more texts (its :meth:`texts` ends)."""
        await self._session.texts.close()

    async def talk(self, texts: AsyncIterator[str], show: Callable[[str], None], keep_running: bool = False) -> None:
        """Chat as ``punch peer`` does: send ``texts`` (each acknowledged before the next) and ``show`` the other's;
        then say we are done and wait until the other is done too (PeerError if it is not within the config's
        ``timeout``); with ``keep_running``, go on until cancelled instead (a peer that forwards)."""
        config = self._session.config
        shown = asyncio.ensure_future(self._show(show))
        try:
            async for text in texts:
                await self.send_text(text)
            if keep_running:
                await asyncio.Event().wait()
            await self.done_sending()
            try:
                async with asyncio.timeout(config.timeout):
                    await shown
            except TimeoutError:
                raise PeerError(f"{self.peer} did not say it was done sending within {config.timeout:g} s") from None
            log.info("session with %s closed", self.peer)
        finally:
            shown.cancel()

    async def run(self, texts: AsyncIterator[str], show: Callable[[str], None]) -> PeerResult:
        """Establish, :meth:`talk` while the connection lives, and return the result; PeerError on failure (the
        result says it too). The caller closes the connection."""
        await self.establish()
        await self.watched(self.talk(texts, show))
        return self.result

    async def _show(self, show: Callable[[str], None]) -> None:
        async for text in self.texts():
            show(text)

    async def texts(self) -> AsyncIterator[str]:
        """The other peer's texts, once each and in order, until it says it is done sending."""
        while (text := await self._texts.get()) is not None:
            yield text
        self._texts.put_nowait(None)  # for the next reader too

    async def _texts_end(self) -> None:
        await self._session.texts.remote_closed.wait()
        self._texts.put_nowait(None)

    async def send_file(self, path: FilePath) -> str:
        """Send one file; its SHA-256 once the other peer has it whole (PeerError with its reason if refused)."""
        return await send_file(self._flows, path, self.peer)

    def receive_files(self, directory: FilePath) -> asyncio.Future[FilePath]:
        """Take the files the other peer sends into ``directory`` from now on; the future is the first one's path."""
        if self._receiver is None:
            self._receiver = FileReceiver(directory, self.peer)
            self._session.services.serve("file", self._receiver.serve)
        return self._receiver.received

    async def forward(self, forward: Forward, bind: str = "127.0.0.1") -> None:
        """Carry each connection (TCP) or flow (UDP) to ``bind``:LOCAL_PORT to the target on the other side (it must
        allow it); OSError if the local port cannot be bound. It listens at once, also before :meth:`establish`: what
        connects meanwhile waits for the session, and its first bytes go as soon as QUIC is up."""
        flows = self._flows
        forwarder: TcpForwarder | UdpForwarder
        if forward.target.protocol == "udp":
            udp = UdpForwarder(flows, flows, forward, bind)
            self._session.services.route_flows(forwarding=udp.on_datagram)
            forwarder = udp
        else:
            forwarder = TcpForwarder(flows, forward, bind)
        await forwarder.start()
        self._forwarders.append(forwarder)

    # -- the end ----------------------------------------------------------------------------------------------

    async def watched(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` while the connection lives: PeerError as soon as the other peer is lost for good."""
        await self._session.watched(work)

    async def wait_closed(self) -> None:
        """Until the other peer closes the connection; PeerError if it is lost instead."""

        async def closed() -> None:
            await self._session.link.wait_closed()

        await self._session.watched(closed())

    async def close(self) -> None:
        """Close QUIC (the other peer learns at once), our forwards, the registration and every socket."""
        for forwarder in self._forwarders:
            await forwarder.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._session.close()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class _Flows:
    """The session's QUIC link as the tunnels see it (punch.tunnel.forward's Streams and Datagrams): bare streams,
    whose first line names their service, and datagrams that carry their flow's number. A forward listens before
    the session is established: a stream opened then waits for the link (ConnectionError if it never comes up)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    async def open_stream(self) -> Streams:
        try:
            link = await self._session.established_link()
            return await link.open_stream()
        except LinkError as error:
            raise ConnectionError(str(error)) from None

    def send_datagram(self, data: bytes) -> None:
        try:
            self._session.link.send_datagram(data)
        except LinkError as error:
            log.debug("a forward's datagram was not sent: %s", error)

    @property
    def max_datagram_size(self) -> int:
        return self._session.link.max_datagram_payload


def _config(
    server: str | Address,
    peer: str,
    me: str | None,
    identity: Identity | None,
    known_peers: KnownPeers | None,
    pin: str | None,
    allow_keys: Collection[str] | None,
    secret: bytes | None,
    options: dict[str, Any],
) -> PeerConfig:
    from punch.identity.keyfile import default_identity_path, load_identity
    from punch.identity.known_peers import default_known_peers_path
    from punch.stun.endpoints import parse_endpoint

    address = parse_endpoint(server, "server", 3478) if isinstance(server, str) else server
    identity = identity or load_identity(default_identity_path(), create=True)[0]
    known = known_peers or KnownPeers(default_known_peers_path())
    config = PeerConfig(
        server=address,
        peer_id=me or identity.fingerprint,
        target=peer,
        identity=identity,
        known_peers=known,
        pin=pin,
        allow=None if allow_keys is None else frozenset(allow_keys),
        group=secret,
    )
    try:
        return dataclasses.replace(config, **options)
    except TypeError as error:
        raise UsageError(f"{error}; see punch.peer.config.PeerConfig for what may be set") from None


@asynccontextmanager
async def connect(
    server: str | Address,
    peer: str,
    *,
    me: str | None = None,
    identity: Identity | None = None,
    pin: str | None = None,
    known_peers: KnownPeers | None = None,
    secret: bytes | None = None,
    allow: Collection[Target] = (),
    **options: Any,
) -> AsyncIterator[Connection]:
    """A connection to ``peer`` (its ID), introduced by the rendezvous ``server`` ("HOST:PORT" or an address) where
    ``peer`` asks for us too. We are ``me`` (default: our fingerprint) with ``identity`` (default: the one in
    ~/.config/punch, made on first use). ``peer``'s key must be ``pin`` if given, else the one ``known_peers``
    (default: ~/.config/punch/known_peers) knows it by, else it is trusted on first use and remembered there.
    ``secret``: a closed group's secret. ``allow``: what the other peer may forward to on our side. ``options``: any
    other field of punch.peer.config.PeerConfig (``timeout``, ``relay``, ``bind`` ...). PeerError if it fails."""
    config = _config(server, peer, me, identity, known_peers, pin, None, secret, options)
    connection = await Connection.open(config, allow)
    try:
        await connection.establish()
        yield connection
    finally:
        await connection.close()


@asynccontextmanager
async def accept(
    server: str | Address,
    *,
    allow_keys: Collection[str],
    me: str | None = None,
    identity: Identity | None = None,
    secret: bytes | None = None,
    allow: Collection[Target] = (),
    **options: Any,
) -> AsyncIterator[Connection]:
    """A connection to the first peer that asks the rendezvous ``server`` for us and whose key's fingerprint is one
    of ``allow_keys`` (others are refused, and we wait on); :attr:`Connection.peer` says who came. The rest as for
    :func:`connect`."""
    if not allow_keys:
        raise UsageError("accept needs allow_keys: the fingerprints of the peers that may connect")
    config = _config(server, ANYONE, me, identity, None, None, allow_keys, secret, options)
    connection = await Connection.open(config, allow)
    try:
        await connection.establish()
        yield connection
    finally:
        await connection.close()


async def run_peer(
    config: PeerConfig,
    texts: AsyncIterator[str],
    on_text: Callable[[str], None],
    sock: socket.socket | None = None,
) -> PeerResult:
    """What ``punch peer --send TEXT...`` does, for programs that run many peers (benchmarks, tests): connect, chat
    (:meth:`Connection.talk`), close; the result. PeerError on failure (the result then says it too)."""
    connection = await Connection.open(config, sock=sock)
    try:
        return await connection.run(texts, on_text)
    finally:
        await connection.close()
