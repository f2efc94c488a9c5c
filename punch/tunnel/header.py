"""The first line of every stream a peer opens: which service it is for, as one JSON object (and the answer, another).

``{"service": "forward", "protocol": "tcp", "host": "127.0.0.1", "port": 80}`` -> ``{"ok": true}`` or
``{"ok": false, "reason": "..."}``. A line is at most :data:`MAX_HEADER` bytes of UTF-8 (a service may allow longer
lines of its own, punch.tunnel.texts); anything else from the other peer is a :class:`HeaderError`, which the caller
answers (where it can) and counts, never raises further.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

MAX_HEADER = 4096


class HeaderError(ValueError):
    """A line that is not one JSON object on one line of at most its limit of bytes."""


def encode_line(value: dict[str, Any], limit: int = MAX_HEADER) -> bytes:
    line = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass") + b"\n"
    if len(line) > limit:
        raise HeaderError(f"a line of {len(line)} bytes; at most {limit}")
    return line


def decode_line(line: bytes, limit: int = MAX_HEADER) -> dict[str, Any]:
    if len(line) > limit:
        raise HeaderError(f"a line of {len(line)} bytes; at most {limit}")
    try:
        value = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise HeaderError(f"a line that is not JSON ({error})") from None
    if not isinstance(value, dict):
        raise HeaderError(f"a line that is not a JSON object but {type(value).__name__}")
    return value


async def read_line_object(reader: asyncio.StreamReader, limit: int = MAX_HEADER) -> dict[str, Any]:
    """One JSON object on one line; HeaderError if the stream ends first, the line is too long or not an object."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as error:
        raise HeaderError(f"the stream ended after {len(error.partial)} bytes, before a whole line") from None
    except asyncio.LimitOverrunError:
        raise HeaderError("a line longer than the stream's limit") from None
    return decode_line(line, limit)


def write_line_object(writer: asyncio.StreamWriter, value: dict[str, Any], limit: int = MAX_HEADER) -> None:
    writer.write(encode_line(value, limit))


def field(header: dict[str, Any], name: str, kind: type, where: str) -> Any:
    """``header[name]`` if it is a ``kind``; HeaderError naming what is wrong."""
    value = header.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise HeaderError(f"{where}: {name!r} must be {kind.__name__}, got {value!r}")
    return value
