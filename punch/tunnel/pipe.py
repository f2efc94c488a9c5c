"""Copying a pair of streams into another, both ways, each direction closed (EOF) when its source ends."""

from __future__ import annotations

import asyncio
import contextlib

CHUNK = 64 * 1024


async def copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    """Bytes from ``reader`` to ``writer`` until EOF, then EOF on ``writer`` (where it can take one); the count.
    ``drain`` after each chunk: a slow receiver slows the sender down instead of filling memory."""
    copied = 0
    try:
        while chunk := await reader.read(CHUNK):
            writer.write(chunk)
            copied += len(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass  # the other end went away: the copy ends, the caller closes both
    return copied


async def splice(
    one: tuple[asyncio.StreamReader, asyncio.StreamWriter], other: tuple[asyncio.StreamReader, asyncio.StreamWriter]
) -> tuple[int, int]:
    """Copy both ways until both directions ended, then close both writers; (bytes one -> other, other -> one)."""
    try:
        sent, received = await asyncio.gather(copy(one[0], other[1]), copy(other[0], one[1]))
    finally:
        await close_all(one[1], other[1])
    return sent, received


async def close_all(*writers: asyncio.StreamWriter) -> None:
    """Close each writer and wait until it is closed; one whose other end went away already is closed all the same."""
    for writer in writers:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
