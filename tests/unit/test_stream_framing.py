"""STUN over a stream (punch.stun.stream): RFC 4571 frames read back as sent however TCP cuts them, and every kind of
bad input ends the connection, counted by reason, without waiting for anything (no sockets: an asyncio StreamReader
fed by hand, a writer that keeps what is written)."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from punch.stun import AttributeType, Message, MessageClass, Method, encode, is_stun
from punch.stun.stream import ENDINGS, FRAME_HEADER, MAX_FRAME, Stream, frame

pytestmark = pytest.mark.unit


class Transport:
    def __init__(self) -> None:
        self.queued = 0

    def get_write_buffer_size(self) -> int:
        return self.queued


class Writer:
    """What Stream needs of an asyncio.StreamWriter: what is written is kept in ``written``."""

    def __init__(self) -> None:
        self.written = b""
        self.transport = Transport()
        self.closed = False

    def get_extra_info(self, name: str) -> Any:
        return {"peername": ("192.0.2.14", 40000), "sockname": ("203.0.113.1", 3478)}.get(name)

    def is_closing(self) -> bool:
        return self.closed

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    async def wait_closed(self) -> None:
        return None


def message(text: str) -> bytes:
    """A STUN indication carrying ``text`` (SOFTWARE), with FINGERPRINT."""
    return encode(Message(Method.BINDING, MessageClass.INDICATION, bytes(12), ((AttributeType.SOFTWARE, text),)))


async def read(chunks: list[bytes], *, eof: bool = True, **timing: float) -> tuple[list[bytes], Counter[str], str]:
    """What a Stream hands over when ``chunks`` arrive (then the other end closes, if ``eof``); its counters and why
    it ended."""
    reader = asyncio.StreamReader()
    counters: Counter[str] = Counter()
    stream = Stream(reader, Writer(), counters, **timing)  # type: ignore[arg-type]
    delivered: list[bytes] = []
    for chunk in chunks:
        reader.feed_data(chunk)
    if eof:
        reader.feed_eof()
    why = await asyncio.wait_for(stream.run(delivered.append), 5)
    return delivered, counters, why


def cut(data: bytes, points: list[int]) -> list[bytes]:
    """``data`` cut at ``points`` (positions, any order, any number)."""
    edges = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(edges)]


texts = st.lists(st.text(max_size=60), max_size=6)


@settings(max_examples=200, deadline=None)
@given(texts, st.lists(st.integers(min_value=0), max_size=12))
def test_frames_come_out_as_they_went_in_however_tcp_cuts_them(said: list[str], points: list[int]) -> None:
    messages = [message(text) for text in said]
    delivered, counters, why = asyncio.run(read(cut(b"".join(frame(m) for m in messages), points)))
    assert delivered == messages
    assert (counters, why) == (Counter(), "closed by the other end")


def test_a_message_too_long_for_a_frame_is_not_framed() -> None:
    with pytest.raises(ValueError, match=f"^a {MAX_FRAME + 1}-byte message does not fit in a {MAX_FRAME}-byte frame$"):
        frame(bytes(MAX_FRAME + 1))
    assert frame(b"x" * 20)[:FRAME_HEADER] == b"\x00\x14"


GOOD = frame(message("before"))


@pytest.mark.parametrize(
    ("after", "counter", "why"),
    [
        (b"\x00\x13" + bytes(19), "stream-short", "a frame of 19 bytes, shorter than a STUN header"),
        ((MAX_FRAME + 1).to_bytes(2, "big"), "stream-long", f"a frame of {MAX_FRAME + 1} bytes, longer than {MAX_FRAME}"),
        (b"\xff\xff", "stream-long", f"a frame of 65535 bytes, longer than {MAX_FRAME}"),
        (frame(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "stream-not-stun", "a 27-byte frame that is not one STUN message"),
        (frame(message("two") + message("x")), "stream-not-stun", "a 72-byte frame that is not one STUN message"),
        (b"\x00", "stream-cut", "cut in the middle of a frame (1 bytes of it came)"),
        (frame(message("cut"))[:30], "stream-cut", "cut in the middle of a frame (30 bytes of it came)"),
    ],
    ids=["short", "long", "longest", "http", "two-in-one", "cut-length", "cut-message"],
)  # fmt: skip
def test_bad_input_ends_the_connection_counted(after: bytes, counter: str, why: str) -> None:
    delivered, counters, ended = asyncio.run(read([GOOD, after]))
    assert delivered == [message("before")]  # what came before is taken
    assert counters == Counter({counter: 1})
    assert ended == why


def test_a_frame_that_stalls_halfway_ends_the_connection() -> None:
    delivered, counters, why = asyncio.run(read([GOOD, GOOD[:25]], eof=False, frame_timeout=0.05))
    assert (delivered, counters) == ([message("before")], Counter({"stream-stalled": 1}))
    assert why == "the rest of a frame did not come in time (0.05 s)"


def test_a_silent_connection_ends_after_its_idle_time_and_only_with_one() -> None:
    delivered, counters, why = asyncio.run(read([GOOD], eof=False, idle=0.05))
    assert (delivered, counters, why) == (
        [message("before")],
        Counter({"stream-idle": 1}),
        "no frame for the idle time (0.05 s)",
    )


def test_every_ending_is_named() -> None:
    assert set(ENDINGS) == {"stream-short", "stream-long", "stream-not-stun", "stream-cut", "stream-stalled",
                            "stream-idle", "stream-error"}  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=80), st.builds(lambda t: frame(message(t)), st.text(max_size=20))), max_size=8),
       st.lists(st.integers(min_value=0), max_size=8))  # fmt: skip
def test_whatever_comes_the_stream_ends_with_the_valid_frames_before_the_first_bad_one(
    pieces: list[bytes], points: list[int]
) -> None:
    data = b"".join(pieces)
    delivered, counters, why = asyncio.run(read(cut(data, points)))
    expected, rest = [], data  # the frames a reader that knows RFC 4571 takes, up to the first bad one
    while len(rest) >= FRAME_HEADER:
        length = int.from_bytes(rest[:FRAME_HEADER], "big")
        body = rest[FRAME_HEADER : FRAME_HEADER + length]
        if not 20 <= length <= MAX_FRAME or len(body) < length or not is_stun(body):
            break
        expected.append(body)
        rest = rest[FRAME_HEADER + length :]
    assert delivered == expected
    assert sum(counters.values()) == (0 if why == "closed by the other end" else 1)
    assert (why == "closed by the other end") == (rest == b"")


def test_sending_frames_each_message_and_drops_what_cannot_go_counted() -> None:
    async def scenario() -> tuple[Writer, Counter[str]]:
        writer, counters = Writer(), Counter[str]()
        stream = Stream(asyncio.StreamReader(), writer, counters, backlog=100)  # type: ignore[arg-type]
        stream.send(message("one"))
        stream.send(bytes(MAX_FRAME + 1))  # no message of ours
        writer.transport.queued = 101  # the other end does not read
        stream.send(message("backlogged"))
        writer.transport.queued = 0
        await stream.close()
        stream.send(message("late"))
        return writer, counters

    writer, counters = asyncio.run(scenario())
    assert writer.written == frame(message("one"))
    assert counters == Counter({"stream-unsendable": 1, "stream-backlog": 1, "stream-gone": 1})
    assert writer.closed
