"""The C fast path (punch/_fastpath.c) against the Python codec: the same bytes, or hands off to Python.

For every datagram the fast path answers, the pure-Python server would have sent exactly the same reply; every
datagram it does not answer (malformed, not a Binding request, an attribute whose value Python checks) goes to
Python, which drops and counts it or answers it itself. Skipped where the accelerator is not built.
"""

from __future__ import annotations

import struct
import sys
import types
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import punch
from punch import SOFTWARE
from punch.errors import StunDecodeError
from punch.stun import (
    TABLE,
    Address,
    AttributeType,
    Message,
    MessageClass,
    Method,
    decode,
    encode,
    fastpath,
    is_stun,
    make_success,
    new_transaction_id,
)
from punch.stun.families import unmapped
from punch.stun.fastpath import Accelerator, binding_tail

pytestmark = pytest.mark.unit

T = AttributeType
SEEDS = [bytes.fromhex(p.read_text().strip()) for p in sorted((Path(__file__).parent.parent / "data" / "stun").glob("*.hex"))]  # fmt: skip
TAIL = binding_tail(((T.SOFTWARE, SOFTWARE),))
SOURCES: list[Address] = [
    ("127.0.0.1", 40000),
    ("203.0.113.7", 0),
    ("198.51.100.255", 65535),
    ("::1", 3478),
    ("2001:db8:1234:5678:11:2233:4455:6677", 32853),
    ("::ffff:192.0.2.1", 1),
]


def python_reply(data: bytes, source: Address) -> bytes | None:
    """What the pure-Python server sends back as a Binding success without --alternate, else None. Its endpoint
    speaks of an IPv4-mapped source by its IPv4 address (punch.stun.families), so family 0x01 it is."""
    if not is_stun(data):
        return None
    try:
        message = decode(data)
    except StunDecodeError:
        return None
    if (message.method, message.message_class) != (Method.BINDING, MessageClass.REQUEST):
        return None
    if message.unknown_comprehension_required() or message.has(T.CHANGE_REQUEST) or message.has(T.SESSION_ID):
        return None  # 420, or an integrity check first
    return encode(make_success(message, ((T.XOR_MAPPED_ADDRESS, unmapped(source)), (T.SOFTWARE, SOFTWARE))))


def binding(*attributes: tuple[int, object], fingerprint: bool = True) -> bytes:
    return encode(
        Message(Method.BINDING, MessageClass.REQUEST, new_transaction_id(), attributes), fingerprint=fingerprint
    )


def with_fingerprint(body: bytes) -> bytes:
    """``body`` (a whole message) with a FINGERPRINT appended, whatever the body says."""
    data = body[:2] + struct.pack("!H", len(body) - 20 + 8) + body[4:]
    return data + struct.pack("!HHI", T.FINGERPRINT, 4, zlib.crc32(data) ^ 0x5354554E)


def flip_last_byte(data: bytes) -> bytes:
    """``data`` with its last byte changed (a FINGERPRINT that cannot match, whatever the real CRC ends with)."""
    return data[:-1] + bytes([data[-1] ^ 0xFF])


ANSWERED = {
    "plain": binding(fingerprint=False),
    "with FINGERPRINT": binding(),
    "unknown comprehension-optional attribute": binding((0xC0FF, b"abc")),
    "two unknown optional attributes, no FINGERPRINT": binding((0xFFFE, b""), (0x8001, b"12345678"), fingerprint=False),
}

good = binding(fingerprint=False)
HANDED_TO_PYTHON = {
    "shorter than a header": good[:19],
    "top bits set": b"\x40" + good[1:],
    "wrong cookie": good[:4] + b"\x21\x12\xa4\x43" + good[8:],
    "length field too long": good[:2] + b"\x00\x04" + good[4:],
    "length not a multiple of 4": good[:2] + b"\x00\x02" + good[4:] + b"\x00\x00",
    "attribute overruns the message": good[:2] + b"\x00\x08" + good[4:] + struct.pack("!HH", 0xC0FF, 8) + b"abcd",
    "bad FINGERPRINT": flip_last_byte(binding()),
    "FINGERPRINT not last": with_fingerprint(binding(fingerprint=False))[:2]
    + b"\x00\x10"
    + with_fingerprint(binding(fingerprint=False))[4:]
    + struct.pack("!HH", 0xC0FF, 4)
    + b"abcd",
    "FINGERPRINT of 8 bytes": good[:2] + b"\x00\x0c" + good[4:] + struct.pack("!HH", T.FINGERPRINT, 8) + bytes(8),
    "unknown comprehension-required attribute": binding((0x7FF0, b"\x00\x01\x02\x03")),
    "SOFTWARE (a value Python checks)": binding((T.SOFTWARE, "client")),
    "CHANGE-REQUEST": binding((T.CHANGE_REQUEST, 6)),
    "SESSION-ID": binding((T.SESSION_ID, bytes(16))),
    "MESSAGE-INTEGRITY": encode(
        Message(Method.BINDING, MessageClass.REQUEST, new_transaction_id()), integrity_key=b"k"
    ),
    "Binding indication": encode(Message(Method.BINDING, MessageClass.INDICATION, new_transaction_id())),
    "Binding success": encode(Message(Method.BINDING, MessageClass.SUCCESS, new_transaction_id())),
    "Register request": encode(
        Message(Method.REGISTER, MessageClass.REQUEST, new_transaction_id(), ((T.PEER_ID, "a"),))
    ),
}


@pytest.mark.parametrize("name", ANSWERED)
@pytest.mark.parametrize("source", SOURCES, ids=lambda s: f"{s[0]}:{s[1]}")
def test_fast_path_answers_exactly_like_python(fast: Accelerator, name: str, source: Address) -> None:
    data = ANSWERED[name]
    expected = python_reply(data, source)
    assert expected is not None
    assert fast.answer(data, source[0], source[1], TAIL) == expected


@pytest.mark.parametrize("name", HANDED_TO_PYTHON)
def test_anything_else_goes_to_python(fast: Accelerator, name: str) -> None:
    assert fast.answer(HANDED_TO_PYTHON[name], "127.0.0.1", 40000, TAIL) is None


def test_the_vectors_go_to_python(fast: Accelerator) -> None:
    # The RFC 5769 request carries SOFTWARE, USERNAME, MESSAGE-INTEGRITY: Python's to check, not ours.
    assert [fast.answer(seed, "127.0.0.1", 1, TAIL) for seed in SEEDS] == [None] * len(SEEDS)


def test_a_tail_that_is_not_whole_attributes_is_refused(fast: Accelerator) -> None:
    with pytest.raises(ValueError, match=r"^tail is 3 bytes, expected a multiple of 4 up to 1024$"):
        fast.answer(good, "127.0.0.1", 1, b"abc")


ATTRIBUTE_TYPES = st.one_of(
    st.sampled_from(sorted(TABLE)), st.integers(0, 0xFFFF), st.sampled_from([0x8000, 0xC0FF, 0xFFFF, 0x7FFF])
)


@settings(max_examples=1500, deadline=None)
@given(
    attributes=st.lists(st.tuples(ATTRIBUTE_TYPES, st.binary(max_size=24)), max_size=4),
    fingerprint=st.booleans(),
    flip=st.one_of(st.none(), st.tuples(st.integers(0, 200), st.integers(1, 255))),
    source=st.sampled_from(SOURCES),
)
def test_whatever_the_fast_path_answers_python_answers_the_same(
    fast: Accelerator,
    attributes: list[tuple[int, bytes]],
    fingerprint: bool,
    flip: tuple[int, int] | None,
    source: Address,
) -> None:
    body = b"".join(struct.pack("!HH", kind, len(value)) + value + bytes(-len(value) % 4) for kind, value in attributes)
    data = struct.pack("!HHI", 0x0001, len(body), 0x2112A442) + new_transaction_id() + body
    if fingerprint:
        data = with_fingerprint(data)
    if flip is not None and flip[0] < len(data):
        data = data[: flip[0]] + bytes([data[flip[0]] ^ flip[1]]) + data[flip[0] + 1 :]
    answer = fast.answer(data, source[0], source[1], TAIL)
    if answer is not None:
        assert answer == python_reply(data, source)


def test_a_module_built_from_another_source_is_left_unused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkout updated without `pip install -e .` keeps the old .so: the server must not call it."""
    stale = types.ModuleType("punch._fastpath")  # an older build: no API constant, other signatures
    monkeypatch.setitem(sys.modules, "punch._fastpath", stale)
    monkeypatch.setattr(punch, "_fastpath", stale, raising=False)  # where `from punch import _fastpath` looks first
    monkeypatch.delenv(fastpath.DISABLE_VARIABLE, raising=False)
    assert fastpath.load() is None
    assert fastpath.unavailable_reason() == (
        "punch._fastpath was built from another version of its source (API 1, this punch wants "
        f"{fastpath.API}): pip install -e . builds it again"
    )


def test_the_built_module_is_the_version_this_punch_wants(fast: Accelerator) -> None:
    from punch import _fastpath

    assert _fastpath.API == fastpath.API
