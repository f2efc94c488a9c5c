"""The flags of STUN over TCP and TLS: where `punch server` listens on them (punch.rendezvous.streams), and how a peer
reaches its server when UDP gets no answer (punch.peer.reach)."""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

from punch.errors import UsageError
from punch.peer.reach import Reach, TlsServer, Via
from punch.rendezvous.streams import StreamListen
from punch.stun import Address
from punch.stun.endpoints import parse_endpoint
from punch.stun.tls import DEFAULT_TLS_PORT, certificate_sha256, format_sha256, parse_sha256, server_context

log = logging.getLogger("punch")

_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def server_stream_flags(server: argparse.ArgumentParser) -> None:
    server.add_argument(
        "--tcp-listen",
        metavar="HOST:PORT|no",
        help="where to listen over TCP, for peers whose UDP does not get out (default: the --listen address and port, "
        "as RFC 8489 serves STUN on 3478 over both; no: not at all)",
    )
    server.add_argument(
        "--tls-listen",
        metavar="HOST:PORT",
        help=f"where to listen over TLS, with --tls-cert and --tls-key (default: the --listen address, port "
        f"{DEFAULT_TLS_PORT}; 443 passes firewalls that let only the web out)",
    )
    server.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="the certificate chain (PEM, the server's first) that TLS presents: peers verify it (--server-ca) or pin "
        "its SHA-256, which the server logs (--server-pin)",
    )
    server.add_argument("--tls-key", metavar="FILE", help="the private key (PEM) of --tls-cert")


def stream_listen(args: argparse.Namespace, listen: Address) -> StreamListen:
    """Where ``punch server`` ARGS listens over TCP and TLS; UsageError naming the flag when one is wrong."""
    tcp: Address | None = listen
    if args.tcp_listen == "no":
        tcp = None
    elif args.tcp_listen is not None:
        tcp = parse_endpoint(args.tcp_listen, "--tcp-listen", listen[1])
    if (args.tls_cert is None) != (args.tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together: give the certificate chain and its private key")
    if args.tls_cert is None:
        if args.tls_listen is not None:
            raise UsageError("--tls-listen needs --tls-cert and --tls-key: TLS presents a certificate")
        return StreamListen(tcp)
    tls = parse_endpoint(args.tls_listen, "--tls-listen", DEFAULT_TLS_PORT) if args.tls_listen else None
    cert, key = Path(args.tls_cert), Path(args.tls_key)
    try:
        context = server_context(cert, key)
        digest = certificate_sha256(cert)
    except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
        reason = getattr(error, "strerror", None) or str(error)
        raise UsageError(
            f"--tls-cert {cert} and --tls-key {key} cannot be used ({reason}); give a PEM certificate chain and its key"
        ) from None
    log.info("TLS certificate SHA-256 %s: a peer may pin it (--server-pin)", format_sha256(digest))
    return StreamListen(tcp, tls or (listen[0], DEFAULT_TLS_PORT), context)


def peer_reach_flags(peer: argparse.ArgumentParser) -> None:
    peer.add_argument(
        "--server-via",
        choices=[via.value for via in Via],
        default=Via.AUTO.value,
        help="how to reach the server: auto (default) over UDP, and where UDP gets no answer over TCP, then TLS "
        "(--server-tls), starting every session on the relay; or only udp, tcp or tls",
    )
    peer.add_argument(
        "--server-tcp",
        metavar="HOST:PORT|no",
        help="where the server listens on TCP (default: --server's address and port; no: never TCP)",
    )
    peer.add_argument(
        "--server-tls",
        metavar="HOST[:PORT]",
        help=f"where the server listens on TLS (port {DEFAULT_TLS_PORT}; e.g. HOST:443 where only the web gets out), "
        "tried after TCP; HOST may be a name, which the server's certificate must carry",
    )
    peer.add_argument(
        "--server-ca",
        metavar="FILE",
        help="verify the TLS server's certificate against these CA certificates (PEM; default: the system's)",
    )
    peer.add_argument(
        "--server-pin",
        metavar="SHA256",
        help="accept only the TLS server certificate with this SHA-256 (`openssl x509 -noout -fingerprint -sha256`, "
        "or the server's log); without --server-ca the pin alone is checked",
    )


def reach_of(args: argparse.Namespace, server: Address) -> Reach:
    """How ``punch peer`` ARGS reaches ``server``; UsageError naming the flag when one is wrong."""
    via = Via(args.server_via)
    tcp_at = None
    if args.server_tcp not in (None, "no"):
        tcp_at = parse_endpoint(args.server_tcp, "--server-tcp", server[1])
    if via is Via.TCP and args.server_tcp == "no":
        raise UsageError("--server-via tcp and --server-tcp no contradict each other; give one")
    tls = _tls_server(args) if args.server_tls is not None else None
    if tls is None and (args.server_ca is not None or args.server_pin is not None):
        raise UsageError("--server-ca and --server-pin check a TLS server: give its --server-tls HOST[:PORT]")
    if via is Via.TLS and tls is None:
        raise UsageError("--server-via tls needs --server-tls HOST[:PORT]")
    if via in (Via.TCP, Via.TLS) and args.no_relay:
        raise UsageError(
            f"--server-via {via.value} starts every session on the relay, which --no-relay turns off; drop one"
        )
    return Reach(via=via, tcp=args.server_tcp != "no", tcp_at=tcp_at, tls=tls)


def _tls_server(args: argparse.Namespace) -> TlsServer:
    text: str = args.server_tls
    try:
        host, port = parse_endpoint(text, "--server-tls", DEFAULT_TLS_PORT)
    except UsageError:  # a name, then
        host, _, port_text = text.partition(":")
        if not _NAME.match(host) or (port_text and not (port_text.isdigit() and 0 < int(port_text) <= 65535)):
            raise UsageError(
                f"--server-tls {text!r}: give HOST[:PORT], HOST a name or an address, e.g. stun.example.net:443"
            ) from None
        port = int(port_text) if port_text else DEFAULT_TLS_PORT
    ca = Path(args.server_ca) if args.server_ca is not None else None
    if ca is not None and not ca.is_file():
        raise UsageError(f"--server-ca {ca}: no such file; give the CA certificates (PEM) that signed the server's")
    pin = None
    if args.server_pin is not None:
        try:
            pin = parse_sha256(args.server_pin)
        except ValueError as error:
            raise UsageError(f"--server-pin {error}; give the certificate's SHA-256 as 64 hex digits") from None
    return TlsServer(host, port, ca, pin)
