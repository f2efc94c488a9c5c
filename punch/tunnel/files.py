"""One file from one peer to another (``punch send FILE --to ID``, ``punch receive --from ID``): the simplest use of a
punched path.

The sender opens a stream: header ``{"service": "file", "name": NAME, "size": BYTES, "sha256": HEX}``; the receiver
answers ``{"ok": true}`` (or refuses: a file of that name exists, a name that is not a plain file name), the sender
streams the bytes and ends its side; the receiver writes them to a temporary file beside the destination, checks the
size and the SHA-256, renames it into place, and answers ``{"ok": true}`` again (or why not). Nothing half-received
is ever left under the file's name.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from punch.errors import PeerError
from punch.tunnel.forward import Streams
from punch.tunnel.header import HeaderError, field, read_line_object, write_line_object
from punch.tunnel.pipe import CHUNK

log = logging.getLogger(__name__)


def _measure(path: Path) -> tuple[int, str]:
    """The file's size and SHA-256."""
    sha = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            sha.update(chunk)
    return path.stat().st_size, sha.hexdigest()


async def send_file(connection: Streams, path: Path, peer: str) -> str:
    """Send ``path`` to ``peer``; its SHA-256 once the receiver confirmed it; PeerError with the receiver's reason."""
    size, digest = await asyncio.to_thread(_measure, path)
    reader, writer = await connection.open_stream()
    write_line_object(writer, {"service": "file", "name": path.name, "size": size, "sha256": digest})
    await writer.drain()
    answer = await _answer(reader, peer)
    log.info("sending %s (%d bytes, SHA-256 %s) to %s", path.name, size, digest[:16], peer)
    with path.open("rb") as source:
        while chunk := await asyncio.to_thread(source.read, CHUNK):
            writer.write(chunk)
            await writer.drain()
    writer.write_eof()
    answer = await _answer(reader, peer)
    writer.close()
    if answer.get("sha256") != digest:
        raise PeerError(f"{peer} received {path.name}, but reports another SHA-256: {answer.get('sha256')}")
    log.info("%s received %s whole (SHA-256 %s)", peer, path.name, digest[:16])
    return digest


async def _answer(reader: asyncio.StreamReader, peer: str) -> dict[str, Any]:
    try:
        answer = await read_line_object(reader)
    except HeaderError as error:
        raise PeerError(f"{peer} did not answer our file: {error}") from None
    if answer.get("ok") is not True:
        raise PeerError(f"{peer} refused our file: {answer.get('reason', 'no reason given')}")
    return answer


class FileReceiver:
    """The service that takes files into ``directory``; :attr:`received` is set with the last file's path."""

    def __init__(self, directory: Path, peer: str) -> None:
        self._directory = directory
        self._peer = peer
        self.received: asyncio.Future[Path] = asyncio.get_running_loop().create_future()

    async def serve(self, header: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            name = field(header, "name", str, "a file")
            size, digest = field(header, "size", int, "a file"), field(header, "sha256", str, "a file")
        except HeaderError as error:
            await self._refuse(writer, str(error))
            return
        if name in ("", ".", "..") or "/" in name or "\x00" in name:
            await self._refuse(writer, f"{name!r} is not a plain file name")
            return
        destination = self._directory / name
        if destination.exists():
            await self._refuse(writer, f"{destination} exists; it is not overwritten")
            return
        write_line_object(writer, {"ok": True})
        temporary = self._directory / f".{name}.{os.getpid()}.part"
        sha, count = hashlib.sha256(), 0
        try:
            with temporary.open("wb") as sink:
                while chunk := await reader.read(CHUNK):
                    sha.update(chunk)
                    count += len(chunk)
                    await asyncio.to_thread(sink.write, chunk)
            if (count, sha.hexdigest()) != (size, digest):
                await self._refuse(writer, f"got {count} bytes, SHA-256 {sha.hexdigest()[:16]}: not the file announced")
                return
            temporary.rename(destination)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
        write_line_object(writer, {"ok": True, "sha256": digest})
        await writer.drain()
        writer.close()
        log.info("received %s from %s: %d bytes, SHA-256 %s, in %s", name, self._peer, count, digest[:16], destination)
        if not self.received.done():
            self.received.set_result(destination)

    async def _refuse(self, writer: asyncio.StreamWriter, reason: str) -> None:
        log.warning("refused a file of %s: %s", self._peer, reason)
        write_line_object(writer, {"ok": False, "reason": reason})
        with contextlib.suppress(ConnectionError, OSError):
            await writer.drain()
        writer.close()
