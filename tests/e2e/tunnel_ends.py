"""The programs at both ends of a tunnel in the lab: what the allowing peer's side serves, what the forwarding peer's
side runs through ``127.0.0.1:LOCAL_PORT``. Run inside a lab node: ``python -m tests.e2e.tunnel_ends COMMAND ...``.

Servers (long-running; each says on stderr when it listens, so a test waits for that line, not for time):

``serve-files DIR PORT [--together N]``
    HTTP (the standard library's http.server, a thread per connection) of the files in DIR on 127.0.0.1:PORT. With
    ``--together N`` each request waits until N requests are being served at once (a barrier, 30 s at most; a 503
    if they never are): proof that N connections crossed the tunnel side by side, not one after the other.
``echo-udp PORT``
    A UDP echo on 127.0.0.1:PORT that answers each datagram with ``echo `` + the datagram, to its sender.

Clients (each prints one JSON object on stdout and exits):

``fetch URL [--pause-after BYTES --slow-rate BYTES/S]``
    Downloads URL: ``{"status", "bytes", "sha256"}``. With ``--pause-after``: after that many bytes it says
    ``reading slowly after N bytes, until told to go`` on stderr, reads at ``--slow-rate`` (a download that is still
    going on while the test changes the path under it) until a line arrives on stdin, then at full speed again; the
    result has ``"at_go"``, the bytes read when that line came.
``fetch-many URL...``
    Downloads every URL at once, one connection and one thread each: ``{URL: {"status", "bytes", "sha256"}}``.
``knock PORT``
    Connects to 127.0.0.1:PORT, sends a line and reads until the connection ends: ``{"received": N, "ended":
    "closed" | "reset" | "timeout"}``.
``udp-ping PORT FLOWS COUNT``
    From each of FLOWS sockets (a UDP flow each) sends COUNT numbered datagrams of growing size to 127.0.0.1:PORT,
    one at a time, each sent again until its answer came (0.5 s apart, 20 tries at most): ``{"answers": [[flow,
    number, answer], ...], "sent": N}`` (the answer as text, or null if none came).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.client
import http.server
import json
import select
import socket
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

CHUNK = 64 * 1024
SLOW_CHUNK = 4 * 1024
GROWTH = 50  # bytes each datagram of a flow has more than the one before (udp-ping)
LOCAL = "127.0.0.1"


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class _Files(http.server.SimpleHTTPRequestHandler):
    together: threading.Barrier | None = None

    def do_GET(self) -> None:
        if self.together is not None:
            try:
                self.together.wait()
            except threading.BrokenBarrierError:
                self.send_error(503, f"{self.together.parties} requests were never served at once")
                return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # nobody reads the pipe once the server is up: a line per request could fill it


class _Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128  # socketserver's listen backlog of 5 overflows when 50 connections come at once


def serve_files(directory: str, port: int, together: int) -> None:
    _Files.together = threading.Barrier(together, timeout=30) if together else None
    handler = functools.partial(_Files, directory=directory)
    with _Server((LOCAL, port), handler) as server:
        _say(f"serving files from {directory} on {LOCAL}:{port}")
        server.serve_forever()


def echo_udp(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOCAL, port))
        _say(f"echoing UDP on {LOCAL}:{port}")
        while True:
            data, source = sock.recvfrom(65536)
            sock.sendto(b"echo " + data, source)


def _read_all(response: http.client.HTTPResponse, digest: Any) -> int:
    count = 0
    while chunk := response.read(CHUNK):
        digest.update(chunk)
        count += len(chunk)
    return count


def fetch(url: str, pause_after: int, slow_rate: float) -> dict[str, Any]:
    digest = hashlib.sha256()
    result: dict[str, Any] = {}
    with urllib.request.urlopen(url, timeout=60) as response:
        count = 0
        if pause_after:
            while count < pause_after and (chunk := response.read(min(CHUNK, pause_after - count))):
                digest.update(chunk)
                count += len(chunk)
            _say(f"reading slowly after {count} bytes, until told to go")
            pace = SLOW_CHUNK / slow_rate  # throttling, not synchronisation: the test's line on stdin ends it
            while not select.select([sys.stdin], [], [], pace)[0] and (chunk := response.read(SLOW_CHUNK)):
                digest.update(chunk)
                count += len(chunk)
            result["at_go"] = count
        count += _read_all(response, digest)
        result.update(status=response.status, bytes=count, sha256=digest.hexdigest())
    return result


def _fetch_one(url: str) -> dict[str, Any]:
    try:
        return fetch(url, 0, 0)
    except urllib.error.HTTPError as error:
        return {"status": error.code, "bytes": 0, "sha256": None}


def fetch_many(urls: Sequence[str]) -> dict[str, Any]:
    with ThreadPoolExecutor(len(urls)) as pool:
        return dict(zip(urls, pool.map(_fetch_one, urls), strict=True))


def knock(port: int) -> dict[str, Any]:
    received = 0
    with socket.create_connection((LOCAL, port), timeout=20) as sock:
        sock.sendall(b"let me in\n")
        try:
            while chunk := sock.recv(CHUNK):
                received += len(chunk)
            ended = "closed"
        except ConnectionResetError:
            ended = "reset"
        except TimeoutError:
            ended = "timeout"
    return {"received": received, "ended": ended}


def ping_datagram(flow: int, number: int) -> str:
    """The datagram ``number`` of ``flow`` that udp-ping sends (as text)."""
    return f"flow {flow} datagram {number} " + "x" * (number * GROWTH)


def udp_ping(port: int, flows: int, count: int) -> dict[str, Any]:
    answers: list[list[Any]] = []
    sent = 0
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(flows)]
    for flow, sock in enumerate(sockets):
        sock.settimeout(0.5)
        for number in range(count):
            datagram = ping_datagram(flow, number).encode()
            answer = None
            for _ in range(20):
                sock.sendto(datagram, (LOCAL, port))
                sent += 1
                try:
                    answer = sock.recv(65536).decode()
                    break
                except TimeoutError:
                    continue
            answers.append([flow, number, answer])
    for sock in sockets:
        sock.close()
    return {"answers": answers, "sent": sent}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.tunnel_ends", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    files = commands.add_parser("serve-files")
    files.add_argument("directory")
    files.add_argument("port", type=int)
    files.add_argument("--together", type=int, default=0)
    commands.add_parser("echo-udp").add_argument("port", type=int)
    one = commands.add_parser("fetch")
    one.add_argument("url")
    one.add_argument("--pause-after", type=int, default=0)
    one.add_argument("--slow-rate", type=float, default=256 * 1024)
    commands.add_parser("fetch-many").add_argument("urls", nargs="+")
    commands.add_parser("knock").add_argument("port", type=int)
    ping = commands.add_parser("udp-ping")
    for name in ("port", "flows", "count"):
        ping.add_argument(name, type=int)
    args = parser.parse_args(argv)
    if args.command == "serve-files":
        serve_files(args.directory, args.port, args.together)
    elif args.command == "echo-udp":
        echo_udp(args.port)
    else:
        clients = {
            "fetch": lambda: fetch(args.url, args.pause_after, args.slow_rate),
            "fetch-many": lambda: fetch_many(args.urls),
            "knock": lambda: knock(args.port),
            "udp-ping": lambda: udp_ping(args.port, args.flows, args.count),
        }
        print(json.dumps(clients[args.command]()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
