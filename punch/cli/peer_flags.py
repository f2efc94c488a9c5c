"""The flags of the commands that run a peer (`peer`, `send`, `receive`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from punch.cli.flags import (
    EARLY_CHECKS,
    KEEPALIVE,
    LINGER,
    NAT_UDP_TIMEOUT,
    OPEN_TTL,
    PEER_TIMEOUT,
    PORTMAP_LIFETIME,
    PREDICT_PROBES,
    PREDICT_RATE,
    PREDICT_SOCKETS,
    PUNCH_TIMEOUT,
    REJOIN,
    UPGRADE_INTERVAL,
)
from punch.cli.streams import peer_reach_flags
from punch.rendezvous.server import DEFAULT_PORT


def peer_flags() -> argparse.ArgumentParser:
    """The flags `peer`, `send` and `receive` share (a parent parser)."""
    peer = argparse.ArgumentParser(add_help=False)
    peer.add_argument(
        "--server",
        required=True,
        action="append",
        metavar="HOST[:PORT]",
        help=f"rendezvous server (port {DEFAULT_PORT}): an address, or a name, which gives each of its addresses (with "
        "an IPv6 and an IPv4 one we offer candidates of both, IPv6 first); again for others sharing its --registry: "
        "we register with the nearest answering one and turn to another when it falls silent",
    )
    peer_reach_flags(peer)
    peer.add_argument("--id", help="our peer ID (default: our fingerprint, `punch id`)")
    peer.add_argument(
        "--keylog",
        metavar="FILE",
        help="append each session's secrets to FILE (NSS key log format, as SSLKEYLOGFILE): whoever reads it can "
        "read and forge the session, so use it only to debug, e.g. with Wireshark",
    )
    peer.add_argument(
        "--qlog",
        metavar="DIR",
        help="write each QUIC connection's qlog (its every packet, loss and timer) into DIR when it ends, for qvis: "
        "like --keylog, only to debug",
    )
    peer.add_argument(
        "--known-peers",
        metavar="PATH",
        help="the keys we met peers with, `FINGERPRINT ID` a line (default $XDG_CONFIG_HOME/punch/known_peers, "
        "else ~/.config/punch/known_peers)",
    )
    peer.add_argument(
        "--bind",
        metavar="ADDR:PORT",
        help="local socket (default [::]:0, IPv6 and IPv4, when a --server is IPv6; else 0.0.0.0:0)",
    )
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
    peer.add_argument(
        "--no-portmap",
        action="store_true",
        help="do not ask our router for a port mapping (PCP, then NAT-PMP, then UPnP IGD), which otherwise is offered "
        "to the other peer as a candidate, renewed while we run and deleted when we end",
    )
    peer.add_argument(
        "--portmap-lifetime",
        type=int,
        default=PORTMAP_LIFETIME,
        metavar="S",
        help=f"ask our router for a mapping of S seconds, renewed when half of it has passed (default "
        f"{PORTMAP_LIFETIME}, as RFC 6886 recommends; the router may grant less, or more: PCP routers often grant "
        "120 s at least)",
    )
    peer.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    return peer


def other_peer(parser: argparse.ArgumentParser, flag: str) -> None:
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


def peer_parsers(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    peer = commands.add_parser(
        "peer", parents=parents, help="find another peer through the server; talk, and forward ports through it"
    )
    other_peer(peer, "--to")
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
        "side, which must --allow it (repeatable); it listens from the start, so what connects before the session is "
        "up waits for it; the peer then runs until interrupted",
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
    other_peer(send, "--to")
    receive = commands.add_parser("receive", parents=parents, help="receive one file from another peer (`punch send`)")
    other_peer(receive, "--from")
    receive.add_argument(
        "--dir", type=Path, default=Path("."), metavar="DIR", help="store the file here (default: the current one)"
    )
