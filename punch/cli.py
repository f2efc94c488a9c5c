"""`punch server`, `punch peer`, `punch probe` and `punch diagram`: the command line. The only place that configures
logging or prints.

Exit codes: 0 success, 1 failure (one-line reason on stderr), 2 usage error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import importlib.util
import ipaddress
import json
import logging
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any

from punch import __version__
from punch.api import Connection
from punch.diagram import TraceError, draw
from punch.diagram.mermaid import markdown
from punch.errors import PeerError, UsageError
from punch.identity.fingerprint import FingerprintError, looks_like_fingerprint, parse_fingerprint
from punch.identity.keyfile import Identity, default_identity_path, load_identity
from punch.identity.known_peers import KnownPeers, default_known_peers_path
from punch.peer.config import ANYONE, PeerConfig, PeerResult
from punch.peer.predict import PredictConfig
from punch.peer.puncher import PunchTimings
from punch.probe import probe
from punch.rendezvous.relay import DEFAULT_RELAY_BYTES, DEFAULT_RELAY_RATE, MIN_RELAY_RATE, RelayBudget
from punch.rendezvous.server import DEFAULT_PORT, MAX_LEASE, MAX_PEERS, RATE_LIMIT, serve
from punch.stun import Address, fastpath, trace
from punch.stun.credentials import read_secret
from punch.stun.endpoints import parse_endpoint
from punch.stun.protocol import format_address
from punch.tunnel.spec import Target, parse_allow, parse_forward

log = logging.getLogger("punch")
PEERING = ("peer", "send", "receive")  # the commands that run a peer


def _positive(flag: str, value: float) -> float:
    if value <= 0:
        raise UsageError(f"{flag} must be greater than 0, got {value:g}")
    return value


def _not_negative(flag: str, value: float) -> float:
    if value < 0 or value != value:  # NaN too
        raise UsageError(f"{flag} must be 0 or more, got {value:g}")
    return value


def _default(config: type, name: str) -> Any:
    """The default of a field of a config dataclass: a flag's default is the library's, written once."""
    return next(f.default for f in dataclasses.fields(config) if f.name == name)


PEER_TIMEOUT = _default(PeerConfig, "timeout")
LINGER = _default(PeerConfig, "linger")
KEEPALIVE = _default(PeerConfig, "keepalive")
REJOIN = _default(PeerConfig, "rejoin")
UPGRADE_INTERVAL = _default(PeerConfig, "upgrade_interval")
NAT_UDP_TIMEOUT = _default(PeerConfig, "nat_udp_timeout")
PUNCH_TIMEOUT = _default(PunchTimings, "timeout")
OPEN_TTL = _default(PunchTimings, "open_ttl")
EARLY_CHECKS = _default(PunchTimings, "early")
PREDICT_SOCKETS = _default(PredictConfig, "sockets")
PREDICT_PROBES = _default(PredictConfig, "probes")
PREDICT_RATE = _default(PredictConfig, "rate")


@functools.cache
def build_parser() -> argparse.ArgumentParser:
    """The command line's parser, built once per process: a process that imports punch and forks peers which each
    call :func:`main` (a benchmark, a fork server) builds it once for all of them, instead of once in each (forty
    options with their help texts: about 4 ms of CPU in a forked child, a quarter of a whole peer's run)."""
    parser = argparse.ArgumentParser(prog="punch", description="UDP hole punching over STUN.")
    parser.add_argument("--version", action="version", version=f"punch {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="how much to log on stderr (default info; -v = debug, -q = warning)",
    )
    common.add_argument("-v", "--verbose", action="store_true", help="log every datagram (debug)")
    common.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    traced = argparse.ArgumentParser(add_help=False)
    traced.add_argument(
        "--trace",
        metavar="FILE",
        help="write a trace to FILE: a JSON line for each datagram our sockets send or receive (and each ICMP error "
        "they read), and our log lines at info level whatever -q says; `punch diagram` draws the traces of a server "
        "and its peers as a sequence diagram. No keys, tokens or payloads are written",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    server = commands.add_parser("server", parents=[common, traced], help="run the STUN/rendezvous server")
    server.add_argument(
        "--listen",
        default=f"0.0.0.0:{DEFAULT_PORT}",
        metavar="HOST:PORT",
        help=f"address to listen on (default 0.0.0.0:{DEFAULT_PORT})",
    )
    server.add_argument(
        "--alternate",
        metavar="IP:PORT",
        help="second address and port for RFC 5780 NAT behaviour discovery (`punch probe`); needs a specific --listen",
    )
    server.add_argument(
        "--secret-file",
        metavar="PATH",
        help="serve only a closed group: rendezvous requests must be signed with this secret (peers pass the same)",
    )
    server.add_argument(
        "--rate-limit",
        type=float,
        default=RATE_LIMIT,
        metavar="N",
        help=f"requests a second allowed per source IP, in bursts of 2N (default {RATE_LIMIT:g}; 0 = no limit)",
    )
    server.add_argument(
        "--stats-interval",
        type=float,
        default=60.0,
        metavar="S",
        help="log a line of counters (registrations, sessions, drops by reason) every S seconds; 0 = only at exit",
    )
    server.add_argument(
        "--relay-rate",
        type=float,
        default=DEFAULT_RELAY_RATE,
        metavar="BYTES/S",
        help=f"bytes a second each relayed session may use, both directions together (default {DEFAULT_RELAY_RATE}; "
        "0 = no limit); what exceeds it is dropped",
    )
    server.add_argument(
        "--relay-bytes",
        type=int,
        default=DEFAULT_RELAY_BYTES,
        metavar="N",
        help=f"bytes each relayed session may use in all (default {DEFAULT_RELAY_BYTES}; 0 = no limit); "
        "then its requests get 486",
    )
    server.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="processes sharing the port (SO_REUSEPORT): N-1 of them answer Binding with the C fast path and pass "
        "everything else to the first, which holds every registration (default 1; above 1 needs --rate-limit 0)",
    )
    server.add_argument(
        "--max-lease",
        type=float,
        default=MAX_LEASE,
        metavar="S",
        help=f"longest registration lease granted, seconds (default {MAX_LEASE:g})",
    )
    server.add_argument(
        "--max-peers",
        type=int,
        default=MAX_PEERS,
        metavar="N",
        help=f"registrations held at most; new IDs beyond get 508 (default {MAX_PEERS:,}, about 0.35 GiB when full)",
    )
    server.add_argument(
        "--registry",
        metavar="URL",
        help="share registrations, wishes and sessions with other servers in Redis (redis://HOST:PORT/DB; a Redis "
        "Cluster is found by itself): a peer registered at one meets a peer registered at another (needs "
        "punch[redis]; default: in this process alone)",
    )
    server.add_argument(
        "--name",
        metavar="NAME",
        help="this server's name among those sharing --registry: unique, and the same across its restarts (default: "
        "host name:port)",
    )

    probe_cmd = commands.add_parser(
        "probe", parents=[common], help="find how the NAT in front of us behaves (RFC 5780; server needs --alternate)"
    )
    probe_cmd.add_argument("--server", required=True, metavar="HOST[:PORT]", help="a `punch server --alternate ...`")
    probe_cmd.add_argument("--bind", default="0.0.0.0:0", metavar="ADDR:PORT", help="local socket (default 0.0.0.0:0)")
    probe_cmd.add_argument("--json", action="store_true", help="print the result as one JSON object")

    identity = argparse.ArgumentParser(add_help=False)
    identity.add_argument(
        "--identity",
        metavar="PATH",
        help="our key pair, an Ed25519 private key in PEM, mode 0600 (default $XDG_CONFIG_HOME/punch/identity, "
        "else ~/.config/punch/identity, made on first use)",
    )

    id_cmd = commands.add_parser(
        "id",
        parents=[common, identity, traced],
        help="print our public key's fingerprint (making the identity file if it is missing)",
    )
    id_cmd.add_argument("--json", action="store_true", help="print the fingerprint and the file as one JSON object")

    peer = argparse.ArgumentParser(add_help=False)  # what `peer`, `send` and `receive` share
    peer.add_argument(
        "--server",
        required=True,
        action="append",
        metavar="HOST[:PORT]",
        help=f"rendezvous server (port {DEFAULT_PORT}); again for others sharing its --registry: we register with "
        "the nearest answering one and turn to another when it falls silent",
    )
    peer.add_argument("--id", help="our peer ID (default: our fingerprint, `punch id`)")
    peer.add_argument(
        "--keylog",
        metavar="FILE",
        help="append each session's secrets to FILE (NSS key log format, as SSLKEYLOGFILE): whoever reads it can "
        "read and forge the session, so use it only to debug, e.g. with Wireshark",
    )
    peer.add_argument(
        "--known-peers",
        metavar="PATH",
        help="the keys we met peers with, `FINGERPRINT ID` a line (default $XDG_CONFIG_HOME/punch/known_peers, "
        "else ~/.config/punch/known_peers)",
    )
    peer.add_argument("--bind", default="0.0.0.0:0", metavar="ADDR:PORT", help="local socket (default 0.0.0.0:0)")
    peer.add_argument(
        "--timeout",
        type=float,
        default=PEER_TIMEOUT,
        metavar="S",
        help=f"give up if the other peer has not shown up / said goodbye by then (default {PEER_TIMEOUT:g})",
    )
    peer.add_argument(
        "--punch-timeout",
        type=float,
        default=PUNCH_TIMEOUT,
        metavar="S",
        help=f"give up punching after this long (default {PUNCH_TIMEOUT:g})",
    )
    peer.add_argument(
        "--open-ttl",
        default="auto",
        metavar="N|auto",
        help="IP TTL of the probes that open our own NAT mapping: auto (default) traces the route to the server "
        f"and passes every private router ({OPEN_TTL} if that finds nothing); N fixes it; 0 = off. Toward a peer "
        "with our public address (behind our own NAT) the probe gets one less: it dies at that NAT, which would "
        "turn it around to the other peer",
    )
    peer.add_argument(
        "--secret-file", metavar="PATH", help="the group's secret, where the server serves a closed group"
    )
    peer.add_argument(
        "--linger",
        type=float,
        default=LINGER,
        metavar="S",
        help="on closing, wait up to S seconds for the other peer to acknowledge everything we sent, which QUIC "
        f"sends again meanwhile (default {LINGER:g}; usually it takes one round trip)",
    )
    peer.add_argument(
        "--keepalive",
        type=float,
        default=KEEPALIVE,
        metavar="S",
        help="check a direct path every S seconds while talking; a silent peer is reported as lost "
        f"(default {KEEPALIVE:g})",
    )
    peer.add_argument(
        "--rejoin",
        type=float,
        default=REJOIN,
        metavar="S",
        help="when the direct path breaks (a NAT got a new address), wait S seconds for the other peer to find us "
        f"again through the server and punch anew (default {REJOIN:g}; 0 = report the loss at once)",
    )
    peer.add_argument(
        "--upgrade-interval",
        type=float,
        default=UPGRADE_INTERVAL,
        metavar="S",
        help="on the relay, retry a direct path after S seconds, then after twice as long each time (up to 300 s), and "
        f"move onto it when proven (default {UPGRADE_INTERVAL:g}; 0 = never)",
    )
    peer.add_argument(
        "--nat-udp-timeout",
        type=float,
        default=NAT_UDP_TIMEOUT,
        metavar="S",
        help=f"how long a NAT on the way may remember a UDP flow nobody answered (default {NAT_UDP_TIMEOUT:g}: "
        "Linux's 30 s timeout, "
        "then up to 60 s until its garbage collector removes the entry); after a failed retry on the relay the peers "
        "stay quiet toward each other 11 s longer, so that the NATs forget what a lost race recorded",
    )
    peer.add_argument(
        "--early-checks",
        action=argparse.BooleanOptionalAction,
        default=EARLY_CHECKS,
        help="check without waiting for the server's Go, timed by both peers' round trips to the server (default, "
        "where that is faster: a server more than about a millisecond away): a round trip to the server faster than "
        "Ready/Go (--no-early-checks). An introduction that "
        "arrives late loses the conntrack race on a NAT without a firewall; a peer whose check that NAT refuses has "
        "the other move to a fresh socket, and where the NAT refuses silently the session recovers from the relay",
    )
    peer.add_argument(
        "--no-relay", action="store_true", help="fail instead of relaying through the server when punching fails"
    )
    peer.add_argument(
        "--predict-sockets",
        type=int,
        default=PREDICT_SOCKETS,
        metavar="N",
        help="port prediction, behind an endpoint-dependent (symmetric) NAT: open N sockets "
        f"(default {PREDICT_SOCKETS})",
    )
    peer.add_argument(
        "--predict-probes",
        type=int,
        default=PREDICT_PROBES,
        metavar="N",
        help=f"port prediction, toward such a NAT: send at most N checks to random ports (default {PREDICT_PROBES})",
    )
    peer.add_argument(
        "--predict-rate",
        type=float,
        default=PREDICT_RATE,
        metavar="N",
        help=f"port prediction: checks a second toward the random ports (default {PREDICT_RATE:g})",
    )
    peer.add_argument(
        "--no-predict",
        action="store_true",
        help="do not measure our NAT's mapping, and never predict ports (punch as usual, then relay)",
    )
    peer.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    _peer_parsers(commands, [common, identity, traced, peer])
    _diagram_parser(commands, common)
    return parser


def _other_peer(parser: argparse.ArgumentParser, flag: str) -> None:
    """``--to``/``--from`` ID and its ``-key`` FINGERPRINT (both land in ``to`` and ``to_key``)."""
    parser.add_argument(
        flag,
        dest="to",
        required=True,
        metavar="ID",
        help="the other peer: its ID, or its fingerprint (then only the key with that fingerprint is accepted)",
    )
    parser.add_argument(
        f"{flag}-key",
        dest="to_key",
        metavar="FINGERPRINT",
        help="accept the other peer only with the key of this fingerprint (`punch id` on its machine prints it); "
        "without it, the first key seen for its ID is remembered and a different one refused (trust on first use)",
    )


def _peer_parsers(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    peer = commands.add_parser(
        "peer", parents=parents, help="find another peer through the server; talk, and forward ports through it"
    )
    _other_peer(peer, "--to")
    peer.add_argument(
        "--send",
        action="append",
        metavar="TEXT",
        help="send TEXT (repeatable), then close; without it, lines from stdin are sent",
    )
    peer.add_argument(
        "--forward",
        action="append",
        default=[],
        metavar="[udp:]LOCAL_PORT:HOST:PORT",
        help="carry each TCP connection (or UDP flow, udp:) to 127.0.0.1:LOCAL_PORT to HOST:PORT on the other peer's "
        "side, which must --allow it (repeatable); the peer then runs until interrupted",
    )
    peer.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="[udp:]HOST:PORT",
        help="let the other peer's --forward reach HOST:PORT from here (repeatable; nothing is reachable by "
        "default); the peer then runs until interrupted",
    )
    send = commands.add_parser("send", parents=parents, help="send one file to another peer (`punch receive`)")
    send.add_argument("file", type=Path, metavar="FILE", help="the file; the other peer stores it under its name")
    _other_peer(send, "--to")
    receive = commands.add_parser("receive", parents=parents, help="receive one file from another peer (`punch send`)")
    _other_peer(receive, "--from")
    receive.add_argument(
        "--dir", type=Path, default=Path("."), metavar="DIR", help="store the file here (default: the current one)"
    )


def _diagram_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    diagram = commands.add_parser(
        "diagram",
        parents=[common],
        help="draw the traces (--trace) of one run as a sequence diagram (Mermaid)",
        description="Merge the traces of a server and its peers by time into a Mermaid sequence diagram: a column "
        "per peer and server (and a peer's fresh socket, port prediction's sockets, the routers low-TTL probes died "
        "at, a NAT that refused a check), an arrow per datagram with its time in ms since the first one (what nobody "
        "received ends in a cross: lost, dead at a router, refused), notes for the steps the peers logged (the path "
        "chosen, a move, the relay). GitHub renders a ```mermaid block of it.",
    )
    diagram.add_argument("traces", nargs="+", type=Path, metavar="TRACE", help="trace files of one run, any order")
    diagram.add_argument("--output", "-o", type=Path, metavar="FILE", help="write the diagram there (default stdout)")
    diagram.add_argument(
        "--format",
        choices=["mermaid", "markdown"],
        default="mermaid",
        help="mermaid: the diagram's text (.mmd, default); markdown: in a ```mermaid block, as GitHub renders it",
    )
    diagram.add_argument(
        "--name",
        action="append",
        default=[],
        metavar="WHO=LABEL",
        help="call a participant LABEL (repeatable): WHO is an IP address of a router or NAT, an IP:PORT the "
        "participant used, or its name as drawn ('peer 10'); participants given one LABEL share a column, e.g. "
        "--name 198.51.100.1=core --name 192.0.2.1=core",
    )


def configure_logging(args: argparse.Namespace, prefix: str) -> None:
    level = (args.log_level or ("debug" if args.verbose else "warning" if args.quiet else "info")).upper()
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format=f"%(asctime)s.%(msecs)03d {prefix} %(message)s",
        datefmt="%H:%M:%S",
    )
    if getattr(args, "trace", None):  # the trace takes info lines at least; stderr shows what was asked
        for handler in logging.getLogger().handlers:
            handler.setLevel(level)
        punch = logging.getLogger("punch")
        punch.setLevel(min(logging.INFO, punch.getEffectiveLevel()))


@contextlib.contextmanager
def _tracing(args: argparse.Namespace) -> Iterator[None]:
    """With ``--trace FILE``: the tracer that writes FILE is current while the command runs (punch.stun.trace), and
    punch's log lines go to it too."""
    path = getattr(args, "trace", None)
    if path is None:
        yield
        return
    if args.command in PEERING:
        server = format_address(parse_endpoint(args.server[0], "--server", DEFAULT_PORT))
        who = {"id": args.id, "to": args.to, "server": server}
    else:
        if args.workers > 1:
            raise UsageError("--trace records one process: run the server with --workers 1 to trace it")
        who = {"listen": args.listen, "alternate": args.alternate}
    handler = trace.TraceHandler()
    with contextlib.ExitStack() as stack:
        try:
            out = stack.enter_context(open(path, "w", encoding="utf-8", buffering=1))
        except OSError as error:
            why = error.strerror or error
            raise UsageError(f"--trace {path}: cannot write it ({why}); choose another file") from None
        tracer = trace.Tracer(out)
        tracer.start(
            (f"peer {args.id}" if args.id else "peer") if args.command in PEERING else "server", args.command, **who
        )
        stack.enter_context(trace.tracing(tracer))
        logging.getLogger("punch").addHandler(handler)
        stack.callback(logging.getLogger("punch").removeHandler, handler)
        yield


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
    """The PeerConfig that ``punch peer`` ARGS asks for; UsageError naming the flag when one is out of range."""
    target, pin = _pin(args)
    identity, _, _ = load_identity_of(args)
    known = KnownPeers(Path(args.known_peers) if args.known_peers else default_known_peers_path())
    open_ttl = _open_ttl(args.open_ttl)
    timeout = _positive("--punch-timeout", args.punch_timeout)
    timings = PunchTimings(  # auto keeps the default open_ttl as its fallback
        timeout=timeout, open_ttl=OPEN_TTL if open_ttl is None else open_ttl, early=args.early_checks
    )
    if not 1 <= args.predict_sockets <= 4096:
        raise UsageError(f"--predict-sockets must be 1 to 4096, got {args.predict_sockets}")
    if not 1 <= args.predict_probes <= 64512:
        raise UsageError(f"--predict-probes must be 1 to 64512 (the ports a NAT draws from), got {args.predict_probes}")
    predict = PredictConfig(
        enabled=not args.no_predict,
        sockets=args.predict_sockets,
        probes=args.predict_probes,
        rate=_positive("--predict-rate", args.predict_rate),
    )
    config = PeerConfig(
        server=parse_endpoint(args.server[0], "--server", DEFAULT_PORT),
        servers=tuple(parse_endpoint(s, "--server", DEFAULT_PORT) for s in args.server[1:]),
        peer_id=args.id if args.id is not None else identity.fingerprint,
        target=target,
        bind=parse_endpoint(args.bind, "--bind", None),
        timeout=_positive("--timeout", args.timeout),
        punch=timings,
        relay=not args.no_relay,
        keepalive=_positive("--keepalive", args.keepalive),
        linger=_not_negative("--linger", args.linger),
        group=read_secret(args.secret_file) if args.secret_file else None,
        predict=predict,
        discover_ttl=open_ttl is None,
        upgrade_interval=_not_negative("--upgrade-interval", args.upgrade_interval),
        nat_udp_timeout=_not_negative("--nat-udp-timeout", args.nat_udp_timeout),
        rejoin=_not_negative("--rejoin", args.rejoin),
        identity=identity,
        known_peers=known,
        pin=pin,
        keylog=Path(args.keylog) if args.keylog else None,
    )
    if config.peer_id == config.target:
        raise UsageError(f"--to {args.to!r} is our own --id; give the other peer's ID")
    if ANYONE in (config.peer_id, config.target):
        flag = "--id" if config.peer_id == ANYONE else "--to"
        raise UsageError(f"{flag} {ANYONE!r} is reserved (a wait for anyone, punch.api.accept); give a peer's ID")
    return config


def _run_id(args: argparse.Namespace) -> int:
    identity, path, created = load_identity_of(args)
    if args.json:
        print(json.dumps({"fingerprint": identity.fingerprint, "identity": str(path), "created": created}))
    else:
        print(identity.fingerprint)
    return 0


async def _connected(
    config: PeerConfig, allow: Sequence[Target], work: Callable[[Connection], Coroutine[Any, Any, None]]
) -> PeerResult:
    """Connect (punch.api) and do ``work`` while the connection lives; the result, also when it failed (then with
    ``error``, printed here). SIGTERM and SIGINT end the work: the connection then closes cleanly."""
    connection = await Connection.open(config, allow)
    try:
        await connection.establish()
        await connection.watched(_until_interrupted(work(connection)))
    except PeerError as error:
        print(f"punch: {error}", file=sys.stderr)
    finally:
        await connection.close()
    return connection.result


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


def _run_peer(args: argparse.Namespace) -> int:
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
        for forward in forwards:
            try:
                await connection.forward(forward)
            except OSError as error:
                raise UsageError(
                    f"--forward {forward.local_port}:{forward.target}: cannot listen on 127.0.0.1:"
                    f"{forward.local_port} ({error.strerror or error}); choose another local port"
                ) from None
        await connection.talk(texts, show, keep_running=tunnels)

    result = asyncio.run(_connected(config, allow, work))
    return _print_result(args, result)


def _run_send(args: argparse.Namespace) -> int:
    config = peer_config(args)
    path: Path = args.file
    if not path.is_file():
        raise UsageError(f"{path}: no such file; give a file to send")

    async def work(connection: Connection) -> None:
        await connection.send_file(path)

    result = asyncio.run(_connected(config, (), work))
    return _print_result(args, result, f"sent {path.name}")


def _run_receive(args: argparse.Namespace) -> int:
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


def _run_probe(args: argparse.Namespace) -> int:
    server = parse_endpoint(args.server, "--server", DEFAULT_PORT)
    bind = parse_endpoint(args.bind, "--bind", None)
    try:
        found = asyncio.run(probe(server, bind))
    except PeerError as error:
        print(f"punch: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(
            json.dumps(
                {
                    "local": format_address(found.local),
                    "mapped": format_address(found.mapped),
                    "mapping": found.mapping,
                    "filtering": found.filtering,
                    "hairpinning": found.hairpinning,
                    "nat": found.nat,
                }
            )
        )
    else:
        print(f"public endpoint: {format_address(found.mapped)} (local {format_address(found.local)})")
        print(f"mapping:         {found.mapping}")
        print(f"filtering:       {found.filtering}")
        print(f"hairpinning:     {'yes' if found.hairpinning else 'no'}")
        print(f"classic name:    {found.nat}")
    return 0


def _run_server(args: argparse.Namespace) -> int:
    listen = parse_endpoint(args.listen, "--listen", DEFAULT_PORT)
    alternate = parse_endpoint(args.alternate, "--alternate", None) if args.alternate else None
    if alternate is not None:
        if ipaddress.ip_address(listen[0]).is_unspecified:
            raise UsageError(
                f"--alternate needs --listen on a specific address, not {listen[0]}; e.g. 203.0.113.1:3478"
            )
        if alternate[0] == listen[0] or alternate[1] == listen[1]:
            raise UsageError("--alternate must differ from --listen in both address and port, e.g. 203.0.113.2:3479")
    _positive("--max-lease", args.max_lease)
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


def _run_diagram(args: argparse.Namespace) -> int:
    names: dict[str, str] = {}
    for given in args.name:
        who, equals, label = given.partition("=")
        if not equals or not who or not label:
            raise UsageError(f"--name {given!r}: write WHO=LABEL, e.g. --name 198.51.100.1=core")
        names[who] = label
    try:
        diagram = draw(args.traces, names)
    except TraceError as error:
        print(f"punch: {error}", file=sys.stderr)
        return 1
    text = markdown(diagram) if args.format == "markdown" else diagram
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        args.output.write_text(text, encoding="utf-8")
    except OSError as error:
        print(f"punch: cannot write {args.output}: {error.strerror or error}; choose another --output", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    peering = args.command in PEERING
    configure_logging(args, (f"peer {args.id}:" if args.id else "peer:") if peering else args.command)
    try:
        if args.command == "diagram":
            return _run_diagram(args)
        with _tracing(args):
            if args.command == "server":
                return _run_server(args)
            if args.command == "id":
                return _run_id(args)
            if args.command == "probe":
                return _run_probe(args)
            if args.command == "send":
                return _run_send(args)
            if args.command == "receive":
                return _run_receive(args)
            return _run_peer(args)
    except UsageError as error:
        parser.exit(2, f"punch: {error}\n")
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            print("punch: interrupted", file=sys.stderr)
        return 130
    except OSError as error:  # binding the socket failed
        where = args.listen if args.command == "server" else args.bind
        flag = "--listen" if args.command == "server" else "--bind"
        print(f"punch: cannot use {where}: {error.strerror or error}; choose another {flag}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
